//! What the `MessageLog` contract (in `contract.rs`) leaves to the Redis log: expiry, reclaiming,
//! dead letters, how the cache trims, and a lost consumer group.

use std::time::Duration;

use adapter_redis::{RedisMessageLog, ARCHIVE_GROUP};
use application::ports::{AppendError, Appended, MessageLog, Queued, SeqRange, Take};
use domain::{Message, RoomId, Seq};
use redis::AsyncCommands;

use crate::support::{dedupe, new_message, new_room, new_sender, Scope};

async fn append_texts(log: &RedisMessageLog, room: RoomId, count: usize) -> Vec<Message> {
    let sender = new_sender();
    let mut appended = Vec::new();
    for i in 0..count {
        match log.append(new_message(room, &sender, &format!("message {i}")), None).await.expect("append") {
            Appended::Created(message) => appended.push(message),
            Appended::Duplicate(_) => panic!("no dedupe key was given"),
        }
    }
    appended
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

fn queued_seqs(batch: &[Queued]) -> Vec<u64> {
    batch.iter().map(|q| q.message.seq.get()).collect()
}

fn receipts(batch: &[Queued]) -> Vec<String> {
    batch.iter().map(|q| q.receipt.clone()).collect()
}

fn seq(n: u64) -> Seq {
    Seq::new(n).expect("nonzero")
}

async fn everything(log: &RedisMessageLog, room: RoomId) -> Vec<Message> {
    log.fetch(room, SeqRange::default(), Take::Oldest(usize::MAX)).await.expect("fetch")
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn dedupe_keys_expire_after_their_ttl() {
    let scope = Scope::new();
    let log = scope.log_with(|c| c.dedupe_ttl = Duration::from_secs(1)).await;
    let room = new_room();
    let sender = new_sender();
    let key = dedupe(&sender, "c1");
    log.append(new_message(room, &sender, "a"), Some(key.clone())).await.expect("append");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = log.append(new_message(room, &sender, "b"), Some(key)).await.expect("append");

    assert!(matches!(later, Appended::Created(ref m) if m.seq == seq(2)));
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn entries_of_a_dead_consumer_are_reclaimed_after_the_idle_time() {
    let scope = Scope::new();
    let log = scope.log_with(|c| c.reclaim_idle = Duration::from_millis(200)).await;
    let room = new_room();
    append_texts(&log, room, 3).await;
    let abandoned = log.claim_batch("dead", 10).await.expect("claim");

    let too_soon = log.claim_batch("alive", 10).await.expect("claim");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reclaimed = log.claim_batch("alive", 10).await.expect("claim");
    log.ack(&receipts(&reclaimed)).await.expect("ack");

    assert!(too_soon.is_empty());
    assert_eq!(reclaimed, abandoned);
    assert!(log.claim_batch("dead", 10).await.expect("claim").is_empty(), "acked entries are gone for everyone");
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn an_entry_delivered_too_often_moves_to_the_dead_letter_stream() {
    let scope = Scope::new();
    let log = scope.log_with(|c| c.max_deliveries = 2).await;
    let room = new_room();
    append_texts(&log, room, 1).await;

    let first = log.claim_batch("w1", 10).await.expect("claim");
    let second = log.claim_batch("w1", 10).await.expect("claim");
    let third = log.claim_batch("w1", 10).await.expect("claim");

    assert_eq!((first.len(), second.len()), (1, 1));
    assert!(third.is_empty());
    assert_eq!(log.dead_letter_count().await.expect("count"), 1);
    let mut raw = scope.raw().await;
    let dead: redis::streams::StreamRangeReply =
        raw.xrange_all(scope.only_key("archive:{*}:dead").await).await.expect("xrange");
    let entry = &dead.ids[0];
    assert!(first[0].receipt.ends_with(&entry.get::<String>("origin").expect("an origin")), "{entry:?}");
    assert_eq!(entry.get::<u64>("deliveries"), Some(3));
    assert_eq!(entry.get::<u64>("seq"), Some(1));
    assert_eq!(log.oldest_unarchived().await.expect("lag"), None, "it left the queue");
    assert!(log.claim_batch("w2", 10).await.expect("claim").is_empty());
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn an_undecodable_entry_moves_to_the_dead_letter_stream_and_the_rest_are_delivered() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    append_texts(&log, room, 1).await;
    let mut raw = scope.raw().await;
    let _: String = raw
        .xadd(
            scope.only_key("archive:{*}").await,
            "*",
            &[("room", room.to_string().as_str()), ("seq", "99"), ("msg", "{")],
        )
        .await
        .expect("xadd");
    append_texts(&log, room, 1).await;

    let batch = log.claim_batch("w1", 10).await.expect("claim");

    assert_eq!(queued_seqs(&batch), vec![1, 2]);
    assert_eq!(log.dead_letter_count().await.expect("count"), 1);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn archived_messages_beyond_the_cache_size_are_trimmed_oldest_first() {
    let scope = Scope::new();
    let log = scope.log_with(|c| c.cache_per_room = 2).await;
    let room = new_room();
    append_texts(&log, room, 5).await;
    let batch = log.claim_batch("w1", 10).await.expect("claim");

    log.ack(&receipts(&batch)).await.expect("ack");

    assert_eq!(seqs(&everything(&log, room).await), vec![4, 5]);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn the_cache_keeps_an_unarchived_message_between_archived_ones() {
    let scope = Scope::new();
    let log = scope.log_with(|c| c.cache_per_room = 1).await;
    let room = new_room();
    append_texts(&log, room, 4).await;
    let batch = log.claim_batch("w1", 10).await.expect("claim");

    // Everything but seq 2 is archived: 1 may go, 2 must stay, and so does the run above it.
    let acked: Vec<String> = batch.iter().filter(|q| q.message.seq != seq(2)).map(|q| q.receipt.clone()).collect();
    log.ack(&acked).await.expect("ack");

    assert_eq!(seqs(&everything(&log, room).await), vec![2, 3, 4]);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn acking_the_id_of_an_entry_nobody_claimed_leaves_it_queued() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    append_texts(&log, room, 1).await;
    let unclaimed_id: String = {
        let mut raw = scope.raw().await;
        let reply: redis::streams::StreamRangeReply =
            raw.xrange_all(scope.only_key("archive:{*}").await).await.expect("xrange");
        reply.ids[0].id.clone()
    };

    let acked = log.ack(&[unclaimed_id]).await;

    assert!(acked.is_ok());
    assert_eq!(queued_seqs(&log.claim_batch("w1", 10).await.expect("claim")), vec![1], "a never-claimed entry stays");
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_lost_consumer_group_is_recreated_and_the_queue_read_from_the_start() {
    let scope = Scope::new();
    let log = scope.log().await;
    append_texts(&log, new_room(), 2).await;
    let before = log.claim_batch("w1", 10).await.expect("claim");
    let mut raw = scope.raw().await;
    let _: i64 = raw.xgroup_destroy(scope.only_key("archive:{*}").await, ARCHIVE_GROUP).await.expect("destroy");

    let stale_ack = log.ack(&receipts(&before)).await;
    let batch = log.claim_batch("w1", 10).await.expect("claim");

    assert!(stale_ack.is_ok(), "receipts of a lost group are unknown, so ignored");
    assert_eq!(queued_seqs(&batch), vec![1, 2]);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_log_that_lost_its_data_refuses_appends_until_its_counters_are_recovered() {
    // Arrange: three messages, then Redis loses everything.
    let scope = Scope::new();
    let log = scope.log_with(|_| {}).await;
    let room = new_room();
    append_texts(&log, room, 3).await;
    scope.wipe();

    // Act
    let refused = log.append(new_message(room, &new_sender(), "while lost"), None).await;
    log.raise_seq(room, seq(3)).await.expect("raise");
    log.counters_recovered().await.expect("recovered");
    let after = append_texts(&log, room, 1).await;

    // Assert: nothing was given a seq until the counters were raised, and then seqs go on.
    assert!(matches!(refused, Err(AppendError::CountersLost)), "{refused:?}");
    assert_eq!(seqs(&after), [4]);
    assert_eq!(seqs(&everything(&log, room).await), [4], "the refused append stored nothing");
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_queued_message_whose_slot_was_never_marked_ready_is_found_by_the_next_archivers_sweep() {
    // Arrange: an append whose process died before saying its slot has work.
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    let appended = append_texts(&log, room, 2).await;
    let mut raw = scope.raw().await;
    let _: i64 = raw.del(format!("{}archive:ready", scope.prefix)).await.expect("del");

    // Act: an archiver process starts.
    let batch = scope.log().await.claim_batch("w1", 10).await.expect("claim");

    // Assert
    assert_eq!(queued_seqs(&batch), seqs(&appended));
}
