//! The Redis message log: seqs, dedupe, cache reads and trimming, and the archive queue.

use std::collections::HashSet;
use std::time::Duration;

use adapter_redis::{RedisMessageLog, ARCHIVE_GROUP};
use application::ports::{Appended, MessageLog, Queued, SeqRange, Take};
use domain::{FileId, FileKind, FileMeta, FileName, Message, MessageBody, RoomId, Seq};
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
async fn seqs_are_strictly_increasing_under_concurrent_appends() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    let sender = new_sender();

    let appends = (0..50).map(|i| {
        let log = log.clone();
        let message = new_message(room, &sender, &format!("m{i}"));
        tokio::spawn(async move { log.append(message, None).await })
    });
    let results = futures::future::join_all(appends).await;

    let mut given: Vec<u64> = results
        .into_iter()
        .map(|r| match r.expect("task").expect("append") {
            Appended::Created(m) => m.seq.get(),
            Appended::Duplicate(_) => panic!("no dedupe key was given"),
        })
        .collect();
    given.sort_unstable();
    assert_eq!(given, (1..=50).collect::<Vec<_>>());
    assert_eq!(log.last_seq(room).await.expect("last_seq"), Some(seq(50)));
    assert_eq!(seqs(&everything(&log, room).await), (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn an_appended_message_round_trips_through_the_cache_and_the_queue() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    let mut message = new_message(room, &new_sender(), "unused");
    message.body = MessageBody::File(FileMeta {
        id: FileId::from_uuid(uuid::Uuid::now_v7()),
        name: FileName::sanitize("holiday photo.png"),
        size: 123_456,
        content_type: "image/png".to_owned(),
        kind: FileKind::Image,
        expires_at: chrono::Utc::now() + chrono::Duration::days(7),
    });

    let Appended::Created(created) = log.append(message.clone(), None).await.expect("append") else {
        panic!("expected a new message");
    };

    assert_eq!((created.id, created.room_id, created.seq), (message.id, room, Seq::FIRST));
    assert_eq!((&created.sender, &created.body, created.sent_at), (&message.sender, &message.body, message.sent_at));
    assert_eq!(everything(&log, room).await, vec![created.clone()]);
    let batch = log.claim_batch("w1", 10).await.expect("claim");
    assert_eq!(batch.iter().map(|q| q.message.clone()).collect::<Vec<_>>(), vec![created]);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_duplicate_client_msg_id_returns_the_original_and_appends_nothing() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    let sender = new_sender();
    let key = dedupe(&sender, "client-1");

    let Appended::Created(original) =
        log.append(new_message(room, &sender, "first"), Some(key.clone())).await.expect("append")
    else {
        panic!("the first send creates");
    };
    let again = log.append(new_message(room, &sender, "resent"), Some(key)).await.expect("append");

    assert_eq!(again, Appended::Duplicate(original.clone()));
    assert_eq!(log.last_seq(room).await.expect("last_seq"), Some(Seq::FIRST));
    assert_eq!(everything(&log, room).await, vec![original]);
    assert_eq!(log.claim_batch("w1", 10).await.expect("claim").len(), 1);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn the_same_client_msg_id_from_another_user_is_a_new_message() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    let (alice, bob) = (new_sender(), new_sender());

    let first = log.append(new_message(room, &alice, "a"), Some(dedupe(&alice, "c1"))).await.expect("append");
    let second = log.append(new_message(room, &bob, "b"), Some(dedupe(&bob, "c1"))).await.expect("append");

    assert!(matches!(first, Appended::Created(_)));
    assert!(matches!(second, Appended::Created(ref m) if m.seq == seq(2)));
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
async fn newest_take_returns_the_highest_seqs_ascending() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    append_texts(&log, room, 10).await;

    let newest = log.fetch(room, SeqRange::default(), Take::Newest(3)).await.expect("fetch");
    let oldest = log.fetch(room, SeqRange::default(), Take::Oldest(3)).await.expect("fetch");

    assert_eq!(seqs(&newest), vec![8, 9, 10]);
    assert_eq!(seqs(&oldest), vec![1, 2, 3]);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn fetch_bounds_are_exclusive() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    append_texts(&log, room, 10).await;
    let range = SeqRange { after: Some(seq(3)), before: Some(seq(7)) };

    let oldest = log.fetch(room, range, Take::Oldest(100)).await.expect("fetch");
    let newest = log.fetch(room, range, Take::Newest(2)).await.expect("fetch");
    let none = log.fetch(room, range, Take::Oldest(0)).await.expect("fetch");
    let other_room = log.fetch(new_room(), SeqRange::default(), Take::Oldest(10)).await.expect("fetch");

    assert_eq!(seqs(&oldest), vec![4, 5, 6]);
    assert_eq!(seqs(&newest), vec![5, 6]);
    assert!(none.is_empty());
    assert!(other_room.is_empty());
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn raise_seq_only_ever_raises_the_counter() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    assert_eq!(log.last_seq(room).await.expect("last_seq"), None);

    log.raise_seq(room, seq(100)).await.expect("raise");
    let Appended::Created(next) = log.append(new_message(room, &new_sender(), "x"), None).await.expect("append") else {
        panic!("expected a new message");
    };
    log.raise_seq(room, seq(50)).await.expect("raise");

    assert_eq!(next.seq, seq(101));
    assert_eq!(log.last_seq(room).await.expect("last_seq"), Some(seq(101)));
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn unacked_entries_are_redelivered_to_the_same_consumer() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    append_texts(&log, room, 2).await;
    let first = log.claim_batch("w1", 2).await.expect("claim");
    append_texts(&log, room, 1).await;

    let again = log.claim_batch("w1", 2).await.expect("claim");
    let with_new = log.claim_batch("w1", 3).await.expect("claim");

    assert_eq!(again, first, "own pending entries come back first, with the same receipts");
    assert_eq!(queued_seqs(&with_new), vec![1, 2, 3]);
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
        raw.xrange_all(format!("{}archive:dead", scope.prefix)).await.expect("xrange");
    let entry = &dead.ids[0];
    assert_eq!(entry.get::<String>("origin"), Some(first[0].receipt.clone()));
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
            format!("{}archive", scope.prefix),
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
async fn the_cache_never_trims_an_unarchived_message() {
    let scope = Scope::new();
    let log = scope.log_with(|c| c.cache_per_room = 2).await;
    let room = new_room();
    append_texts(&log, room, 5).await;
    let batch = log.claim_batch("w1", 10).await.expect("claim");

    log.ack(&receipts(&batch[2..])).await.expect("ack");
    let while_two_are_pending = everything(&log, room).await;
    log.ack(&receipts(&batch[..2])).await.expect("ack");
    let all_archived = everything(&log, room).await;

    assert_eq!(seqs(&while_two_are_pending), vec![1, 2, 3, 4, 5]);
    assert_eq!(seqs(&all_archived), vec![4, 5]);
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
async fn two_consumers_never_receive_the_same_new_entry() {
    let scope = Scope::new();
    let log = scope.log().await;
    let (room_a, room_b) = (new_room(), new_room());
    append_texts(&log, room_a, 60).await;
    append_texts(&log, room_b, 40).await;

    let drain = |consumer: &'static str| {
        let log = log.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let batch = log.claim_batch(consumer, 7).await.expect("claim");
                if batch.is_empty() {
                    return seen;
                }
                log.ack(&receipts(&batch)).await.expect("ack");
                seen.extend(batch.into_iter().map(|q| q.message.id));
            }
        })
    };
    let (a, b) = futures::join!(drain("w1"), drain("w2"));
    let (a, b) = (a.expect("task"), b.expect("task"));

    let a_set: HashSet<_> = a.iter().collect();
    let b_set: HashSet<_> = b.iter().collect();
    assert_eq!(a.len() + b.len(), 100);
    assert_eq!(a_set.len() + b_set.len(), 100, "no consumer saw an entry twice");
    assert!(a_set.is_disjoint(&b_set));
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn unknown_receipts_are_ignored() {
    let scope = Scope::new();
    let log = scope.log().await;
    let room = new_room();
    append_texts(&log, room, 1).await;
    let unclaimed_id: String = {
        let mut raw = scope.raw().await;
        let reply: redis::streams::StreamRangeReply =
            raw.xrange_all(format!("{}archive", scope.prefix)).await.expect("xrange");
        reply.ids[0].id.clone()
    };

    let acked = log.ack(&["garbage".to_owned(), "0-1".to_owned(), "99999999999999-0".to_owned(), unclaimed_id]).await;

    assert!(acked.is_ok());
    assert_eq!(queued_seqs(&log.claim_batch("w1", 10).await.expect("claim")), vec![1], "a never-claimed entry stays");
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn oldest_unarchived_is_the_first_entry_not_yet_acked() {
    let scope = Scope::new();
    let log = scope.log().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    assert_eq!(log.oldest_unarchived().await.expect("lag"), None);
    append_texts(&log, new_room(), 2).await;

    let oldest = log.oldest_unarchived().await.expect("lag").expect("something is pending");
    let batch = log.claim_batch("w1", 10).await.expect("claim");
    log.ack(&receipts(&batch)).await.expect("ack");

    assert!(oldest >= before && oldest <= chrono::Utc::now());
    assert_eq!(log.oldest_unarchived().await.expect("lag"), None);
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_lost_consumer_group_is_recreated_and_the_queue_read_from_the_start() {
    let scope = Scope::new();
    let log = scope.log().await;
    append_texts(&log, new_room(), 2).await;
    let before = log.claim_batch("w1", 10).await.expect("claim");
    let mut raw = scope.raw().await;
    let _: i64 = raw.xgroup_destroy(format!("{}archive", scope.prefix), ARCHIVE_GROUP).await.expect("destroy");

    let stale_ack = log.ack(&receipts(&before)).await;
    let batch = log.claim_batch("w1", 10).await.expect("claim");

    assert!(stale_ack.is_ok(), "receipts of a lost group are unknown, so ignored");
    assert_eq!(queued_seqs(&batch), vec![1, 2]);
}
