//! Unit tests of the archiver: archiving batches, draining, recovering sequences and purging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use domain::{FileId, RetentionPolicy};
use mockall::Sequence;
use uuid::Uuid;

use super::fixtures::{days, fixed_clock, message, now, room_id, seq};
use crate::archive::{ArchiveReport, Archiver, PurgePolicy, PurgeReport};
use crate::ports::{
    MockClock, MockFileCatalog, MockFileStore, MockMessageArchive, MockMessageLog, MockRoomRepository, Queued,
};

const PURGE_BATCH: u32 = 2;

/// Every port of `Archiver` as a mock without expectations: any call a test did not expect fails it.
#[derive(Default)]
struct Ports {
    log: MockMessageLog,
    archive: MockMessageArchive,
    store: MockFileStore,
    catalog: MockFileCatalog,
    rooms: MockRoomRepository,
    clock: MockClock,
}

impl Ports {
    fn archiver(self) -> Archiver {
        Archiver::new(
            Arc::new(self.log),
            Arc::new(self.archive),
            Arc::new(self.store),
            Arc::new(self.catalog),
            Arc::new(self.rooms),
            Arc::new(self.clock),
            PurgePolicy { retention: RetentionPolicy::default(), batch: PURGE_BATCH },
        )
    }
}

/// Queued messages numbered `seqs`, each with receipt `r<seq>`.
fn queued(seqs: std::ops::RangeInclusive<u64>) -> Vec<Queued> {
    seqs.map(|n| Queued { receipt: format!("r{n}"), message: message(room_id(1), n) }).collect()
}

fn receipts(seqs: std::ops::RangeInclusive<u64>) -> Vec<String> {
    seqs.map(|n| format!("r{n}")).collect()
}

fn file_id(n: u128) -> FileId {
    FileId::from_uuid(Uuid::from_u128(0xf11e_0000 + n))
}

// --- archive_batch ---

#[tokio::test]
async fn a_claimed_batch_is_acknowledged_only_after_the_archive_stored_it() {
    let mut ports = Ports::default();
    let mut order = Sequence::new();
    ports
        .log
        .expect_claim_batch()
        .withf(|consumer, max| consumer == "worker-1" && *max == 10)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(queued(1..=3)));
    let expected: Vec<_> = queued(1..=3).into_iter().map(|q| q.message).collect();
    ports
        .archive
        .expect_insert_batch()
        .withf(move |messages| messages == expected)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(2));
    ports
        .log
        .expect_ack()
        .withf(|acked| acked == receipts(1..=3))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));

    let report = ports.archiver().archive_batch("worker-1", 10).await.expect("archived");

    assert_eq!(report, ArchiveReport { claimed: 3, inserted: 2 });
}

#[tokio::test]
async fn a_batch_the_archive_failed_to_store_is_not_acknowledged() {
    let mut ports = Ports::default();
    ports.log.expect_claim_batch().times(1).returning(|_, _| Ok(queued(1..=3)));
    // The whole batch, then each message alone: the archive is down.
    ports.archive.expect_insert_batch().times(4).returning(|_| Err(anyhow::anyhow!("database locked")));
    ports.log.expect_ack().never();

    let result = ports.archiver().archive_batch("worker-1", 10).await;

    assert!(result.is_err(), "got {result:?}");
}

#[tokio::test]
async fn a_message_the_archive_refuses_stays_queued_while_the_rest_are_acknowledged() {
    let mut ports = Ports::default();
    ports.log.expect_claim_batch().times(1).returning(|_, _| Ok(queued(1..=3)));
    ports.archive.expect_insert_batch().times(4).returning(|batch| {
        if batch.len() > 1 || batch[0].seq == seq(2) {
            Err(anyhow::anyhow!("clash"))
        } else {
            Ok(1)
        }
    });
    ports.log.expect_ack().withf(|receipts| receipts == ["r1", "r3"]).times(1).returning(|_| Ok(()));

    let report = ports.archiver().archive_batch("worker-1", 10).await.expect("archived the good ones");

    assert_eq!(report, ArchiveReport { claimed: 3, inserted: 2 });
}

#[tokio::test]
async fn a_stored_batch_can_be_retried_without_claiming_again() {
    let mut ports = Ports::default();
    ports.log.expect_claim_batch().times(1).returning(|_, _| Ok(queued(1..=2)));
    let mut calls = 0;
    ports.archive.expect_insert_batch().times(4).returning(move |batch| {
        calls += 1;
        // Down for the first attempt (whole batch and each message), back for the retry.
        if calls <= 3 {
            Err(anyhow::anyhow!("down"))
        } else {
            Ok(batch.len() as u64)
        }
    });
    ports.log.expect_ack().times(1).returning(|_| Ok(()));
    let archiver = ports.archiver();

    let claimed = archiver.claim("worker-1", 10).await.expect("claimed");
    let first = archiver.store(&claimed).await;
    let retry = archiver.store(&claimed).await.expect("stored on retry");

    assert!(first.is_err());
    assert_eq!(retry, ArchiveReport { claimed: 2, inserted: 2 });
}

#[tokio::test]
async fn an_empty_claim_archives_and_acknowledges_nothing() {
    let mut ports = Ports::default();
    ports.log.expect_claim_batch().times(1).returning(|_, _| Ok(Vec::new()));
    ports.archive.expect_insert_batch().never();
    ports.log.expect_ack().never();

    let report = ports.archiver().archive_batch("worker-1", 10).await.expect("nothing to do");

    assert_eq!(report, ArchiveReport::default());
}

// --- drain ---

#[tokio::test]
async fn draining_archives_batch_after_batch_until_the_log_is_empty() {
    let mut ports = Ports::default();
    let mut order = Sequence::new();
    for batch in [queued(1..=2), queued(3..=3), Vec::new()] {
        ports.log.expect_claim_batch().times(1).in_sequence(&mut order).return_once(move |_, _| Ok(batch));
    }
    ports.archive.expect_insert_batch().times(2).returning(|messages| Ok(messages.len() as u64));
    ports.log.expect_ack().times(2).returning(|_| Ok(()));

    let total = ports.archiver().drain("worker-1", 2).await.expect("drained");

    assert_eq!(total, 3);
}

#[tokio::test]
async fn draining_stops_at_the_first_failing_batch() {
    let mut ports = Ports::default();
    ports.log.expect_claim_batch().times(1).returning(|_, _| Ok(queued(1..=2)));
    // The batch, then each of its two messages alone.
    ports.archive.expect_insert_batch().times(3).returning(|_| Err(anyhow::anyhow!("database locked")));
    ports.log.expect_ack().never();

    let result = ports.archiver().drain("worker-1", 2).await;

    assert!(result.is_err(), "got {result:?}");
}

// --- recover_sequences ---

#[tokio::test]
async fn recovering_sequences_raises_every_rooms_counter_to_its_archived_seq() {
    let mut ports = Ports::default();
    ports.archive.expect_last_seqs().times(1).returning(|| Ok(vec![(room_id(1), seq(10)), (room_id(2), seq(3))]));
    ports
        .log
        .expect_raise_seq()
        .withf(|room, s| *room == room_id(1) && *s == seq(10))
        .times(1)
        .returning(|_, _| Ok(()));
    ports.log.expect_raise_seq().withf(|room, s| *room == room_id(2) && *s == seq(3)).times(1).returning(|_, _| Ok(()));
    ports.log.expect_counters_recovered().times(1).returning(|| Ok(()));

    let rooms = ports.archiver().recover_sequences().await.expect("recovered");

    assert_eq!(rooms, 2);
}

#[tokio::test]
async fn a_failed_raise_leaves_the_counters_marked_lost() {
    let mut ports = Ports::default();
    ports.archive.expect_last_seqs().times(1).returning(|| Ok(vec![(room_id(1), seq(10))]));
    ports.log.expect_raise_seq().times(1).returning(|_, _| Err(anyhow::anyhow!("redis down")));
    ports.log.expect_counters_recovered().never();

    let result = ports.archiver().recover_sequences().await;

    assert!(result.is_err(), "got {result:?}");
}

#[tokio::test]
async fn the_lag_is_the_age_of_the_oldest_unarchived_message() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.log.expect_oldest_unarchived().times(1).returning(|| Ok(Some(now() - chrono::Duration::seconds(42))));

    let lag = ports.archiver().lag().await.expect("lag");

    assert_eq!(lag, chrono::Duration::seconds(42));
}

#[tokio::test]
async fn the_lag_is_zero_when_nothing_waits() {
    let mut ports = Ports::default();
    ports.log.expect_oldest_unarchived().times(1).returning(|| Ok(None));

    let lag = ports.archiver().lag().await.expect("lag");

    assert_eq!(lag, chrono::Duration::zero());
}

#[tokio::test]
async fn the_dead_letter_count_comes_from_the_log() {
    let mut ports = Ports::default();
    ports.log.expect_dead_lettered().times(1).returning(|| Ok(3));

    assert_eq!(ports.archiver().dead_lettered().await.expect("count"), 3);
}

// --- purge ---

/// The message cutoff of `RetentionPolicy::default()` at `now()`: tombstones purged before it have
/// no message left to point at them.
fn cutoff() -> domain::Timestamp {
    now() - days(30)
}

#[tokio::test]
async fn purging_clears_a_deleted_rooms_messages_files_and_log_then_forgets_the_room() {
    // Arrange: room 9 was deleted with 3 messages (batches of 2) and a file.
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    let mut order = Sequence::new();
    ports.rooms.expect_deleted_rooms().times(1).in_sequence(&mut order).returning(|_| Ok(vec![room_id(9)]));
    let calls = AtomicUsize::new(0);
    ports
        .archive
        .expect_delete_room()
        .withf(|room, limit| *room == room_id(9) && *limit == PURGE_BATCH)
        .times(2)
        .in_sequence(&mut order)
        .returning(move |_, _| Ok([2, 1][calls.fetch_add(1, Ordering::Relaxed)]));
    ports
        .catalog
        .expect_expire_room()
        .withf(|room, at| *room == room_id(9) && *at == now())
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(1));
    ports
        .log
        .expect_forget_room()
        .withf(|room| *room == room_id(9))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    ports
        .rooms
        .expect_content_cleared()
        .withf(|room| *room == room_id(9))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    ports.archive.expect_delete_sent_before().times(1).returning(|_, _| Ok(0));
    ports.catalog.expect_expired().times(1).returning(|_, _| Ok(Vec::new()));
    ports.catalog.expect_delete_purged_before().times(1).returning(|_, _| Ok(0));

    // Act
    let report = ports.archiver().purge().await.expect("purged");

    // Assert
    assert_eq!(report, PurgeReport { messages: 3, files: 0, rooms: 1 });
}

#[tokio::test]
async fn purging_deletes_old_messages_in_batches_until_a_short_batch() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.rooms.expect_deleted_rooms().returning(|_| Ok(Vec::new()));
    let calls = AtomicUsize::new(0);
    ports
        .archive
        .expect_delete_sent_before()
        .withf(|at, limit| *at == cutoff() && *limit == PURGE_BATCH)
        .times(3)
        .returning(move |_, _| Ok([2, 2, 1][calls.fetch_add(1, Ordering::Relaxed)]));
    ports.catalog.expect_expired().times(1).returning(|_, _| Ok(Vec::new()));
    ports.catalog.expect_delete_purged_before().times(1).returning(|_, _| Ok(0));

    let report = ports.archiver().purge().await.expect("purged");

    assert_eq!(report, PurgeReport { messages: 5, files: 0, rooms: 0 });
}

#[tokio::test]
async fn purging_expired_files_deletes_their_bytes_before_marking_their_entries_purged() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.rooms.expect_deleted_rooms().returning(|_| Ok(Vec::new()));
    ports.archive.expect_delete_sent_before().times(1).returning(|_, _| Ok(0));
    let mut order = Sequence::new();
    for batch in [vec![file_id(1), file_id(2)], vec![file_id(3)]] {
        let answer = batch.clone();
        ports
            .catalog
            .expect_expired()
            .withf(|at, limit| *at == now() && *limit == PURGE_BATCH)
            .times(1)
            .in_sequence(&mut order)
            .return_once(move |_, _| Ok(answer));
        for id in batch {
            ports.store.expect_delete().withf(move |d| *d == id).times(1).in_sequence(&mut order).returning(|_| Ok(()));
            ports
                .catalog
                .expect_mark_purged()
                .withf(move |d, at| *d == id && *at == now())
                .times(1)
                .in_sequence(&mut order)
                .returning(|_, _| Ok(()));
        }
    }
    ports.catalog.expect_delete_purged_before().times(1).in_sequence(&mut order).returning(|_, _| Ok(0));
    ports.catalog.expect_delete().never();

    let report = ports.archiver().purge().await.expect("purged");

    assert_eq!(report, PurgeReport { messages: 0, files: 3, rooms: 0 });
}

#[tokio::test]
async fn a_file_whose_bytes_could_not_be_deleted_is_not_marked_purged() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.rooms.expect_deleted_rooms().returning(|_| Ok(Vec::new()));
    ports.archive.expect_delete_sent_before().times(1).returning(|_, _| Ok(0));
    ports.catalog.expect_expired().times(1).returning(|_, _| Ok(vec![file_id(1)]));
    ports.store.expect_delete().times(1).returning(|_| Err(anyhow::anyhow!("permission denied")));
    ports.catalog.expect_mark_purged().never();
    ports.catalog.expect_delete().never();
    ports.catalog.expect_delete_purged_before().never();

    let result = ports.archiver().purge().await;

    assert!(result.is_err(), "got {result:?}");
}

#[tokio::test]
async fn purging_removes_tombstones_older_than_the_message_cutoff_in_batches_after_the_files() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.rooms.expect_deleted_rooms().returning(|_| Ok(Vec::new()));
    ports.archive.expect_delete_sent_before().times(1).returning(|_, _| Ok(0));
    let mut order = Sequence::new();
    ports.catalog.expect_expired().times(1).in_sequence(&mut order).returning(|_, _| Ok(Vec::new()));
    for deleted in [2, 2, 1] {
        ports
            .catalog
            .expect_delete_purged_before()
            .withf(|at, limit| *at == cutoff() && *limit == PURGE_BATCH)
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_, _| Ok(deleted));
    }
    ports.catalog.expect_delete().never();

    let report = ports.archiver().purge().await.expect("purged");

    assert_eq!(report, PurgeReport::default(), "tombstones are neither messages nor files purged now");
}

#[tokio::test]
async fn a_failing_tombstone_cleanup_fails_the_purge_after_the_files_were_purged() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.rooms.expect_deleted_rooms().returning(|_| Ok(Vec::new()));
    ports.archive.expect_delete_sent_before().times(1).returning(|_, _| Ok(0));
    ports.catalog.expect_expired().times(1).returning(|_, _| Ok(vec![file_id(1)]));
    ports.store.expect_delete().times(1).returning(|_| Ok(()));
    ports.catalog.expect_mark_purged().times(1).returning(|_, _| Ok(()));
    ports.catalog.expect_delete_purged_before().times(1).returning(|_, _| Err(anyhow::anyhow!("database locked")));

    let result = ports.archiver().purge().await;

    assert!(result.is_err(), "got {result:?}");
}
