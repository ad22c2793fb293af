//! The `MessageLog`, `EventBus` and `PresenceRegistry` contracts of `application::contract`, run against Redis.

use adapter_redis::{RedisEventBus, RedisMessageLog, RedisPresence};
use application::contract::message_log::CACHE_PER_ROOM;
use futures::future::BoxFuture;

use crate::support::{redis_url, Scope};

/// Declares one test per named contract function of `$contract`, each under a new key prefix
/// (`$scope`) whose keys are deleted afterwards, called with `$argument`. `application::contract_tests!`
/// cannot mark its tests ignored, and these need a server. With `one_at_a_time`, each test holds
/// that lock throughout.
macro_rules! redis_contract_tests {
    (|$scope:ident| $argument:expr; $contract:path; $($name:ident),+ $(,)?) => {
        redis_contract_tests!(@each $contract, |$scope| $argument, Scope::new(), holding (); $($name),+);
    };
    (|$scope:ident| $argument:expr, on: cluster; $contract:path; $($name:ident),+ $(,)?) => {
        redis_contract_tests!(@each $contract, |$scope| $argument, Scope::cluster(), holding (); $($name),+);
    };
    (|$scope:ident| $argument:expr, one_at_a_time: $lock:path; $contract:path; $($name:ident),+ $(,)?) => {
        redis_contract_tests!(@each $contract, |$scope| $argument, Scope::new(), holding $lock.lock().await; $($name),+);
    };
    (@each $contract:path, |$scope:ident| $argument:expr, $new:expr, holding $guard:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs Redis (CHAT_TEST_REDIS_URL, CHAT_TEST_REDIS_CLUSTER_URL)"]
            async fn $name() {
                use $contract as contract;
                let _guard = $guard;
                let $scope = $new;
                contract::$name($argument).await;
            }
        )+
    };
}

async fn log(scope: &Scope) -> RedisMessageLog {
    scope.log_with(|config| config.cache_per_room = CACHE_PER_ROOM).await
}

/// Each call connects another node to the scope's channel, as another process would.
fn nodes(scope: &Scope) -> impl Fn() -> BoxFuture<'static, RedisEventBus> {
    let prefix = scope.prefix.clone();
    move || {
        let prefix = prefix.clone();
        Box::pin(async move { RedisEventBus::connect(&redis_url(), &prefix).await.expect("Redis is reachable") })
    }
}

mod message_log {
    use super::{log, Scope};

    application::message_log_contract!(redis_contract_tests!(|scope| &log(&scope).await));
    application::archive_queue_contract!(redis_contract_tests!(|scope| &log(&scope).await));
}

/// The same suites on a 3-master Redis Cluster, where a room's keys and its slot's queue sit on
/// one of three nodes.
mod cluster {
    mod message_log {
        use crate::contract::log;
        use crate::support::Scope;

        application::message_log_contract!(redis_contract_tests!(|scope| &log(&scope).await, on: cluster));
        application::archive_queue_contract!(redis_contract_tests!(|scope| &log(&scope).await, on: cluster));
    }

    mod presence {
        use crate::contract::presence_nodes;
        use crate::support::Scope;

        application::presence_contract!(redis_contract_tests!(|scope| presence_nodes(&scope), on: cluster));
    }
}

mod event_bus {
    use super::{nodes, Scope};

    application::event_bus_contract!(
        redis_contract_tests!(|scope| nodes(&scope), one_at_a_time: crate::support::BUS_TESTS)
    );
}

/// Each call is another node's registry on the scope's keys.
fn presence_nodes(scope: &Scope) -> impl Fn() -> BoxFuture<'static, RedisPresence> {
    let (prefix, url, mode) = (scope.prefix.clone(), scope.url(), scope.mode);
    move || {
        let (prefix, url) = (prefix.clone(), url.clone());
        Box::pin(async move { RedisPresence::connect(&url, mode, &prefix).await.expect("Redis is reachable") })
    }
}

mod presence {
    use super::{presence_nodes, Scope};

    application::presence_contract!(redis_contract_tests!(|scope| presence_nodes(&scope)));
}

/// The seeds of the Redis Cluster under test (`CHAT_TEST_REDIS_CLUSTER_URL`, comma-separated);
/// `None`, with a notice, where no cluster is given (scripts/test.sh always gives one).
pub fn cluster_seeds() -> Option<Vec<String>> {
    let seeds: Vec<String> = std::env::var("CHAT_TEST_REDIS_CLUSTER_URL")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(str::to_owned)
        .collect();
    if seeds.is_empty() {
        eprintln!("skipped: CHAT_TEST_REDIS_CLUSTER_URL is not set, so there is no Redis Cluster to test against");
        return None;
    }
    Some(seeds)
}

/// Each call connects another node to the cluster under one fresh prefix.
pub fn cluster_nodes(seeds: Vec<String>) -> impl Fn() -> BoxFuture<'static, RedisEventBus> {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    move || {
        let (seeds, prefix) = (seeds.clone(), prefix.clone());
        Box::pin(
            async move { RedisEventBus::connect_cluster(&seeds, &prefix).await.expect("the cluster is reachable") },
        )
    }
}

/// As `redis_contract_tests!`, against the Redis Cluster, one test at a time.
macro_rules! cluster_contract_tests {
    (; $contract:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs a Redis Cluster (CHAT_TEST_REDIS_CLUSTER_URL)"]
            async fn $name() {
                use $contract as contract;
                let Some(seeds) = super::cluster_seeds() else { return };
                let _guard = crate::support::BUS_TESTS.lock().await;
                crate::support::init_logs();
                contract::$name(super::cluster_nodes(seeds)).await;
            }
        )+
    };
}

mod event_bus_on_a_cluster {
    application::event_bus_contract!(cluster_contract_tests!());
}
