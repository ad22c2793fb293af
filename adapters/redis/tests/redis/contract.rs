//! The `MessageLog` and `EventBus` contracts of `adapter_memory::contract`, run against Redis.

use adapter_memory::contract::message_log::CACHE_PER_ROOM;
use adapter_redis::{RedisEventBus, RedisMessageLog};
use futures::future::BoxFuture;

use crate::support::{redis_url, Scope};

/// Declares one test per named contract function of `$contract`, each under a new key prefix
/// (`$scope`) whose keys are deleted afterwards, called with `$argument`. `adapter_memory::contract_tests!`
/// cannot mark its tests ignored, and these need a server. With `one_at_a_time`, each test holds
/// that lock throughout.
macro_rules! redis_contract_tests {
    ($contract:path, |$scope:ident| $argument:expr; $($name:ident),+ $(,)?) => {
        redis_contract_tests!(@each $contract, |$scope| $argument, holding (); $($name),+);
    };
    ($contract:path, |$scope:ident| $argument:expr, one_at_a_time: $lock:path; $($name:ident),+ $(,)?) => {
        redis_contract_tests!(@each $contract, |$scope| $argument, holding $lock.lock().await; $($name),+);
    };
    (@each $contract:path, |$scope:ident| $argument:expr, holding $guard:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
            async fn $name() {
                use $contract as contract;
                let _guard = $guard;
                let $scope = Scope::new();
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

    redis_contract_tests!(adapter_memory::contract::message_log, |scope| &log(&scope).await;
        an_appended_message_is_stored_exactly_under_the_rooms_next_seq,
        seqs_are_strictly_increasing_per_room_under_concurrent_appends,
        last_seq_is_the_highest_seq_given_out_in_the_room,
        a_seen_dedupe_key_returns_the_original_and_stores_nothing,
        a_dedupe_key_matches_only_the_same_user_and_client_msg_id,
        oldest_take_returns_the_lowest_seqs_after_the_lower_bound,
        newest_take_returns_the_highest_seqs_in_ascending_order,
        fetch_bounds_are_exclusive_and_rooms_do_not_mix,
        an_empty_or_inverted_range_returns_nothing,
        raise_seq_moves_the_next_seq_past_it_and_never_lowers_it,
        appended_messages_are_queued_for_archiving_exactly_as_stored,
        a_resend_with_a_seen_dedupe_key_is_not_queued_again,
        new_entries_are_claimed_in_append_order_at_most_max_at_a_time,
        a_consumers_unacked_claims_come_back_to_it_first_with_the_same_receipts,
        two_consumers_claiming_concurrently_never_get_the_same_entry,
        acked_entries_leave_the_queue_and_the_rest_stay,
        unknown_receipts_are_ignored,
        the_cache_never_trims_an_unarchived_message,
        oldest_unarchived_is_when_the_oldest_unacked_message_was_appended,
    );
}

mod event_bus {
    use super::{nodes, Scope};

    redis_contract_tests!(adapter_memory::contract::event_bus, |scope| nodes(&scope), one_at_a_time: crate::support::BUS_TESTS;
        every_subscriber_on_every_node_receives_each_published_event_once,
        every_room_event_variant_arrives_unchanged,
        events_from_one_publisher_arrive_in_the_order_published,
        publishing_with_no_subscriber_succeeds,
        dropping_one_subscription_leaves_the_others_receiving,
    );
}
