//! Test helpers: a private key prefix per test, cleaned up on drop, and message builders.

use std::time::Duration;

use adapter_redis::{RedisConfig, RedisMessageLog, RedisMode};
use application::ports::{DedupeKey, MessageLog as _};
use domain::{ClientMsgId, RoomId, Sender, UserId, Username};

/// Bus tests run one at a time, so the one that kills subscriber connections kills only its own.
pub static BUS_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The seed nodes of the test Redis Cluster, comma-separated (scripts/test.sh starts one).
pub fn redis_cluster_url() -> String {
    std::env::var("CHAT_TEST_REDIS_CLUSTER_URL")
        .expect("CHAT_TEST_REDIS_CLUSTER_URL names the seed nodes of a Redis Cluster; scripts/test.sh starts one")
}

/// Shows the adapters' logs when `TEST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("debug").try_init();
    }
}

/// A test's own key prefix; every key under it is deleted when this is dropped, even after a panic.
pub struct Scope {
    pub prefix: String,
    pub mode: RedisMode,
}

impl Scope {
    /// Keys on the standalone test Redis.
    pub fn new() -> Self {
        init_logs();
        Self { prefix: format!("test:{}:", uuid::Uuid::new_v4()), mode: RedisMode::Standalone }
    }

    /// Keys on the test Redis Cluster.
    pub fn cluster() -> Self {
        let mut scope = Self::new();
        scope.mode = RedisMode::Cluster;
        scope
    }

    /// The URL adapters connect to: the standalone Redis, or the cluster's seeds.
    pub fn url(&self) -> String {
        match self.mode {
            RedisMode::Standalone => redis_url(),
            RedisMode::Cluster => redis_cluster_url(),
        }
    }

    pub fn config(&self) -> RedisConfig {
        RedisConfig { key_prefix: self.prefix.clone(), mode: self.mode, ..RedisConfig::new(self.url()) }
    }

    pub async fn log(&self) -> RedisMessageLog {
        self.log_with(|_| {}).await
    }

    pub async fn log_with(&self, adjust: impl FnOnce(&mut RedisConfig)) -> RedisMessageLog {
        let mut config = self.config();
        adjust(&mut config);
        let log = RedisMessageLog::connect(config).await.expect("Redis is reachable");
        // A new deployment: nothing is archived, so the (empty) counters are whole.
        log.counters_recovered().await.expect("Redis is reachable");
        log
    }

    /// The one key of this scope that `pattern` (after the prefix) matches, on the standalone Redis.
    pub async fn only_key(&self, pattern: &str) -> String {
        let mut raw = self.raw().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}{pattern}", self.prefix))
            .query_async(&mut raw)
            .await
            .expect("Redis is reachable");
        assert_eq!(keys.len(), 1, "one key matches {pattern}: {keys:?}");
        keys[0].clone()
    }

    /// A plain connection to the standalone Redis for poking at the keys directly.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis is reachable")
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl Scope {
    /// Deletes every key of this scope, as a FLUSHALL or a restart without persistence would; on a
    /// cluster, on each seed node (the test cluster's seeds are all its masters).
    pub fn wipe(&self) {
        for node in self.url().split(',') {
            self.wipe_node(node.trim());
        }
    }

    fn wipe_node(&self, url: &str) {
        let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
            return;
        };
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
            else {
                return;
            };
            // One key per DEL: a cluster node refuses keys of several slots in one command.
            for key in keys {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(key).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

pub fn new_room() -> RoomId {
    RoomId::from_uuid(uuid::Uuid::now_v7())
}

pub fn new_sender() -> Sender {
    Sender { id: UserId::from_uuid(uuid::Uuid::now_v7()), username: Username::new("alice").expect("valid username") }
}

pub use application::contract::message_log::new_message;

pub fn dedupe(sender: &Sender, client_msg_id: &str) -> DedupeKey {
    DedupeKey { user: sender.id, client_msg_id: ClientMsgId::new(client_msg_id).expect("valid client msg id") }
}

/// Waits for a stream item, failing the test instead of hanging.
pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future).await.expect("in time")
}
