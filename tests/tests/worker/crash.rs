//! A worker that dies between the steps of a batch, and the worker that finishes its work.

use std::collections::HashSet;
use std::time::Duration;

use application::ports::{MessageArchive, MessageLog, Queued};
use domain::Message;

use crate::support::{append_many, archived, assert_archived_exactly_once, assert_queue_empty, new_room, seqs, World};

const MESSAGES: u64 = 50;
const CRASHED_BATCH: usize = 20;
/// Smaller than what is left, so the restarted worker needs several batches.
const BATCH: usize = 7;

fn messages_of(batch: &[Queued]) -> Vec<Message> {
    batch.iter().map(|q| q.message.clone()).collect()
}

/// Archives until nothing is handed out; returns (claimed, inserted) over all batches.
async fn drain(archiver: &application::Archiver, consumer: &str) -> (usize, u64) {
    let (mut claimed, mut inserted) = (0, 0);
    loop {
        let report = archiver.archive_batch(consumer, BATCH).await.expect("archive batch");
        if report.claimed == 0 {
            return (claimed, inserted);
        }
        claimed += report.claimed;
        inserted += report.inserted;
    }
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn a_worker_killed_between_the_archive_write_and_the_ack_leaves_every_message_archived_once() {
    // Arrange: the first worker claims a batch and writes it, then dies before acknowledging.
    let world = World::new().await;
    let room = new_room();
    let appended = append_many(world.log.as_ref(), room, MESSAGES).await;
    let batch = world.log.claim_batch("w1", CRASHED_BATCH).await.expect("claim");
    assert_eq!(seqs(&messages_of(&batch)), (1..=CRASHED_BATCH as u64).collect::<Vec<_>>());
    let written = world.store.insert_batch(&messages_of(&batch)).await.expect("archive write");
    assert_eq!(written, CRASHED_BATCH as u64);

    // Act: the worker restarts under the same consumer name, on fresh connections.
    let restarted = world.restarted_archiver().await;
    let (claimed, inserted) = drain(&restarted, "w1").await;

    // Assert
    assert_eq!(claimed, MESSAGES as usize, "the unacknowledged batch is handed out again, then the rest");
    assert_eq!(inserted, MESSAGES - CRASHED_BATCH as u64, "the re-delivered batch stores nothing twice");
    assert_archived_exactly_once(&world.store, room, &appended).await;
    assert_queue_empty(world.log.as_ref(), &["w1", "w2"]).await;
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn a_worker_killed_between_the_read_and_the_write_leaves_every_message_archived_once() {
    // Arrange: the first worker claims a batch and dies before writing any of it.
    let world = World::new().await;
    let room = new_room();
    let appended = append_many(world.log.as_ref(), room, MESSAGES).await;
    let batch = world.log.claim_batch("w1", CRASHED_BATCH).await.expect("claim");
    assert_eq!(batch.len(), CRASHED_BATCH);

    // Act
    let restarted = world.restarted_archiver().await;
    let (claimed, inserted) = drain(&restarted, "w1").await;

    // Assert
    assert_eq!(claimed, MESSAGES as usize);
    assert_eq!(inserted, MESSAGES, "the claimed-but-unwritten batch is written after the restart");
    assert_archived_exactly_once(&world.store, room, &appended).await;
    assert_queue_empty(world.log.as_ref(), &["w1", "w2"]).await;
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn a_dead_workers_claims_are_taken_over_by_another_worker() {
    // Arrange: w1 claims 20 messages, writes half of them, and never comes back.
    let idle = Duration::from_millis(500);
    let world = World::with(|c| c.reclaim_idle = idle).await;
    let w2 = world.restarted_archiver().await;
    let room = new_room();
    let appended = append_many(world.log.as_ref(), room, MESSAGES).await;
    let dead = world.log.claim_batch("w1", CRASHED_BATCH).await.expect("claim");
    world.store.insert_batch(&messages_of(&dead[..CRASHED_BATCH / 2])).await.expect("archive write");

    // Act: w2 works at once, while w1 could still be alive, then again once w1's claims are idle.
    let while_w1_may_live = w2.archive_batch("w2", 1000).await.expect("archive batch");
    let not_yet_taken: HashSet<u64> = {
        let stored = archived(&world.store, room).await;
        (1..=MESSAGES).filter(|s| !seqs(&stored).contains(s)).collect()
    };
    tokio::time::sleep(idle + Duration::from_millis(100)).await;
    let (claimed, inserted) = drain(&w2, "w2").await;

    // Assert
    assert_eq!(while_w1_may_live.claimed, (MESSAGES as usize) - CRASHED_BATCH, "w1's fresh claims are left alone");
    assert_eq!(
        not_yet_taken,
        ((CRASHED_BATCH / 2 + 1) as u64..=CRASHED_BATCH as u64).collect(),
        "only w1's unwritten claims were missing before the takeover"
    );
    assert_eq!(claimed, CRASHED_BATCH, "after the idle time w2 takes over all of w1's claims");
    assert_eq!(inserted, (CRASHED_BATCH / 2) as u64, "the half w1 had written is not stored twice");
    assert_archived_exactly_once(&world.store, room, &appended).await;
    assert_queue_empty(world.log.as_ref(), &["w1", "w2"]).await;
}
