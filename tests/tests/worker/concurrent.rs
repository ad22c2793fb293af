//! Several workers archiving the same queue at once, while messages keep coming.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use application::ports::{MessageArchive, MessageLog, Queued};
use application::Archiver;
use domain::{Message, MessageId, RoomId};

use crate::support::{
    append, append_many, archived, assert_archived_exactly_once, assert_queue_empty, ids, new_room, new_sender, seqs,
    World,
};

const ROOMS: usize = 5;
const PER_ROOM: u64 = 100;
const BATCH: usize = 25;

/// Archives in a loop until the appenders are done and nothing more is handed out.
async fn work(archiver: Archiver, consumer: &'static str, appending: Arc<AtomicBool>) -> (usize, u64) {
    let (mut claimed, mut inserted) = (0, 0);
    loop {
        // Read the flag before claiming: an empty claim after the last append means the queue is drained.
        let done_appending = !appending.load(Ordering::SeqCst);
        let report = archiver.archive_batch(consumer, BATCH).await.expect("archive batch");
        claimed += report.claimed;
        inserted += report.inserted;
        if report.claimed == 0 {
            if done_appending {
                return (claimed, inserted);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn two_workers_running_at_once_archive_every_message_exactly_once() {
    // Arrange
    let world = World::new().await;
    let rooms: Vec<RoomId> = (0..ROOMS).map(|_| new_room()).collect();
    let appending = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = [("w1", world.restarted_archiver().await), ("w2", world.restarted_archiver().await)]
        .into_iter()
        .map(|(name, archiver)| tokio::spawn(work(archiver, name, appending.clone())))
        .collect();

    // Act: one appender per room, all at once, while both workers run.
    let appenders: Vec<_> = rooms
        .iter()
        .map(|&room| {
            let log = world.log.clone();
            tokio::spawn(async move {
                let sender = new_sender("bob");
                let mut mine = Vec::new();
                for n in 1..=PER_ROOM {
                    mine.push(append(log.as_ref(), room, &sender, &format!("message {n}")).await);
                }
                mine
            })
        })
        .collect();
    let mut appended: HashMap<RoomId, Vec<Message>> = HashMap::new();
    for (room, appender) in rooms.iter().zip(appenders) {
        appended.insert(*room, appender.await.expect("appender"));
    }
    appending.store(false, Ordering::SeqCst);
    let mut reports = Vec::new();
    for worker in workers {
        reports.push(worker.await.expect("worker"));
    }

    // Assert
    let total = ROOMS * PER_ROOM as usize;
    let claimed: usize = reports.iter().map(|r| r.0).sum();
    let inserted: u64 = reports.iter().map(|r| r.1).sum();
    assert_eq!(claimed, total, "no entry was handed to both workers: {reports:?}");
    assert_eq!(inserted, total as u64, "{reports:?}");
    for room in &rooms {
        let stored = archived(&world.store, *room).await;
        let last = world.log.last_seq(*room).await.expect("last seq").expect("a seq was given").get();
        assert_eq!(last, PER_ROOM);
        assert_eq!(seqs(&stored), (1..=last).collect::<Vec<_>>(), "room {room}: each seq once, none missing");
        assert_eq!(ids(&stored), ids(&appended[room]), "room {room}: each seq holds its own message");
    }
    assert_queue_empty(world.log.as_ref(), &["w1", "w2"]).await;
}

/// What `Archiver::archive_batch` does, with a pause between the claim and the write; when the pause
/// outlasts the idle time, the other worker takes over entries this one is still working on.
/// Returns how often each message was handed to this worker.
async fn slow_worker(world: &World, consumer: &str, pause: Duration) -> HashMap<MessageId, usize> {
    let (log, store) = (world.log.clone(), world.store.clone());
    let mut handed: HashMap<MessageId, usize> = HashMap::new();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 3 {
        let batch: Vec<Queued> = log.claim_batch(consumer, BATCH).await.expect("claim");
        tokio::time::sleep(pause).await;
        if batch.is_empty() {
            empty_in_a_row += 1;
            continue;
        }
        empty_in_a_row = 0;
        let messages: Vec<Message> = batch.iter().map(|q| q.message.clone()).collect();
        store.insert_batch(&messages).await.expect("archive write");
        let receipts: Vec<String> = batch.iter().map(|q| q.receipt.clone()).collect();
        log.ack(&receipts).await.expect("ack");
        for q in &batch {
            *handed.entry(q.message.id).or_default() += 1;
        }
    }
    handed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn workers_that_take_over_each_others_slow_batches_still_archive_every_message_once() {
    // Arrange: claims count as abandoned after 20 ms; w1 holds each batch three times that long,
    // and the quicker w2 comes back often enough to take w1's batches over while w1 still works.
    let idle = Duration::from_millis(20);
    let world = World::with(|c| {
        c.reclaim_idle = idle;
        // Takeovers count as deliveries; this test is about duplicates, not the dead-letter stream.
        c.max_deliveries = 1000;
    })
    .await;
    let room = new_room();
    let appended = append_many(world.log.as_ref(), room, 200).await;

    // Act
    let (w1, w2) = tokio::join!(slow_worker(&world, "w1", idle * 3), slow_worker(&world, "w2", idle / 2));

    // Assert
    let taken_twice = appended.iter().filter(|m| w1.contains_key(&m.id) && w2.contains_key(&m.id)).count();
    assert!(appended.iter().all(|m| w1.contains_key(&m.id) || w2.contains_key(&m.id)), "every message was handed out");
    assert!(taken_twice > 0, "the test should make the workers take over each other's entries");
    assert_archived_exactly_once(&world.store, room, &appended).await;
    assert_queue_empty(world.log.as_ref(), &["w1", "w2"]).await;
}
