//! The purge: archived messages past the retention, and expired files' bytes and catalog entries.

use std::sync::Arc;

use adapter_security::SystemClock;
use application::archive::PurgeReport;
use application::messaging::{HistoryQuery, HISTORY_MAX};
use application::ports::{Clock, FileCatalog, FileStore, MessageArchive, MessageLog, NewMessage, StoredFile};
use application::rooms::PageSize;
use chrono::Duration;
use domain::{FileId, FileKind, FileMeta, FileName, Message, MessageId, RoomId, Seq, Timestamp, UserId};
use futures::{stream, StreamExt, TryStreamExt};

use crate::support::{archived, new_message, new_room, new_sender, seqs, text, World};

/// A clock that always says the same instant, to put messages and files exactly on the boundary.
struct FixedClock(Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// Archived messages of `room`, one per `sent_at`, with seqs from 1 in that order.
fn messages(room: RoomId, sent_at: &[Timestamp]) -> Vec<Message> {
    let sender = new_sender("carol");
    sent_at
        .iter()
        .zip(1..)
        .map(|(at, n)| Message {
            id: MessageId::from_uuid(uuid::Uuid::now_v7()),
            room_id: room,
            seq: Seq::new(n).expect("seqs start at 1"),
            sender: sender.clone(),
            body: text(&format!("sent at {at}")),
            sent_at: *at,
            state: Default::default(),
        })
        .collect()
}

/// A stored file expiring at `expires_at`: its bytes in the file store and its catalog entry.
async fn stored_file(world: &World, room: RoomId, expires_at: Timestamp) -> (FileId, Vec<u8>) {
    let id = FileId::from_uuid(uuid::Uuid::now_v7());
    let bytes = format!("the bytes of {id}").into_bytes();
    let data = stream::iter([Ok(bytes.clone())]).boxed();
    world.files.put(id, data, 1 << 20).await.expect("bytes stored");
    let file = StoredFile {
        meta: FileMeta {
            id,
            name: FileName::sanitize("notes.txt"),
            size: bytes.len() as u64,
            content_type: "application/octet-stream".to_owned(),
            kind: FileKind::File,
            expires_at,
        },
        room_id: room,
        owner: UserId::from_uuid(uuid::Uuid::now_v7()),
        created_at: expires_at - Duration::days(28),
        purged_at: None,
    };
    world.store.insert(&file).await.expect("catalog entry stored");
    (id, bytes)
}

/// The file's bytes, or `None` when the store has none.
async fn bytes_of(world: &World, id: FileId) -> Option<Vec<u8>> {
    let stream = world.files.open(id, 0).await.expect("open")?;
    let chunks: Vec<Vec<u8>> = stream.try_collect().await.expect("read");
    Some(chunks.concat())
}

/// Purged: the bytes are gone and the catalog keeps only a tombstone, so downloads answer 410.
async fn assert_file_gone(world: &World, id: FileId) {
    let entry = world.store.get(id).await.expect("catalog");
    assert!(entry.is_some_and(|f| f.purged_at.is_some()), "expired file {id} was not marked purged");
    assert_eq!(bytes_of(world, id).await, None, "bytes of expired file {id} remain");
}

async fn assert_file_kept(world: &World, id: FileId, bytes: &[u8]) {
    let entry = world.store.get(id).await.expect("catalog");
    assert!(entry.is_some_and(|f| f.purged_at.is_none()), "live file {id} was purged");
    assert_eq!(bytes_of(world, id).await.as_deref(), Some(bytes), "bytes of live file {id} changed or went");
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn purge_removes_exactly_what_is_past_the_retention() {
    // Arrange: two rooms, with messages on both sides of the 30-day retention, and files on both
    // sides of their expiry; more of each expired than one purge batch holds.
    let world = World::new().await;
    let now = SystemClock.now();
    let age = |d: Duration| now - d;
    let (first, second) = (new_room(), new_room());
    let first_messages = messages(
        first,
        &[
            age(Duration::days(365)),                       // 1: gone
            age(Duration::days(31)),                        // 2: gone
            age(Duration::days(30) + Duration::minutes(1)), // 3: gone
            age(Duration::days(30) - Duration::minutes(1)), // 4: kept
            age(Duration::days(29)),                        // 5: kept
            age(Duration::hours(1)),                        // 6: kept
        ],
    );
    let second_messages = messages(
        second,
        &[
            age(Duration::days(40)),                         // 1: gone
            age(Duration::days(30) + Duration::seconds(5)),  // 2: gone
            age(Duration::days(30) - Duration::minutes(10)), // 3: kept
            now,                                             // 4: kept
        ],
    );
    world.store.insert_batch(&first_messages).await.expect("archived");
    world.store.insert_batch(&second_messages).await.expect("archived");
    let mut expired_files = Vec::new();
    for expires_at in [age(Duration::days(1)), age(Duration::minutes(1)), age(Duration::milliseconds(1))] {
        expired_files.push(stored_file(&world, first, expires_at).await);
    }
    let mut live_files = Vec::new();
    for expires_at in [now + Duration::hours(1), now + Duration::days(14)] {
        live_files.push(stored_file(&world, second, expires_at).await);
    }
    let archiver = world.archiver_with(world.log.clone(), &world.store, Arc::new(SystemClock), 2);

    // Act
    let report = archiver.purge().await.expect("purge");
    let again = archiver.purge().await.expect("second purge");

    // Assert
    assert_eq!(
        report,
        PurgeReport { messages: 5, files: 3, rooms: 0 },
        "batches of two purge all five messages and three files"
    );
    assert_eq!(again, PurgeReport::default(), "nothing is left to purge");
    assert_eq!(seqs(&archived(&world.store, first).await), [4, 5, 6]);
    assert_eq!(archived(&world.store, first).await, first_messages[3..]);
    assert_eq!(seqs(&archived(&world.store, second).await), [3, 4]);
    assert_eq!(archived(&world.store, second).await, second_messages[2..]);
    for (id, _) in &expired_files {
        assert_file_gone(&world, *id).await;
    }
    for (id, bytes) in &live_files {
        assert_file_kept(&world, *id, bytes).await;
    }
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn purge_keeps_a_message_sent_exactly_at_the_retention_boundary_and_deletes_a_file_at_its_expiry() {
    // Arrange: a clock standing still, so the boundary is exact to the millisecond.
    let world = World::new().await;
    let now = SystemClock.now();
    let cutoff = now - Duration::days(30);
    let ms = Duration::milliseconds(1);
    let room = new_room();
    let stored = messages(room, &[cutoff - ms, cutoff, cutoff + ms]);
    world.store.insert_batch(&stored).await.expect("archived");
    let before_expiry = stored_file(&world, room, now - ms).await;
    let at_expiry = stored_file(&world, room, now).await;
    let after_expiry = stored_file(&world, room, now + ms).await;
    let archiver = world.archiver_with(world.log.clone(), &world.store, Arc::new(FixedClock(now)), 100);

    // Act
    let report = archiver.purge().await.expect("purge");

    // Assert
    assert_eq!(report, PurgeReport { messages: 1, files: 2, rooms: 0 });
    assert_eq!(archived(&world.store, room).await, stored[1..], "30 days old exactly is not past the retention");
    assert_file_gone(&world, before_expiry.0).await;
    assert_file_gone(&world, at_expiry.0).await;
    assert_file_kept(&world, after_expiry.0, &after_expiry.1).await;
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn a_message_past_the_retention_is_gone_from_history_after_the_purge() {
    // Arrange: a quiet room whose first three messages were sent 40 days ago and two today, all
    // archived; the hot cache keeps a room's newest messages, so all five are still cached.
    let world = World::new().await;
    let (reader, room) = world.reader_and_room().await;
    let sender = new_sender("gina");
    let now = SystemClock.now();
    for (n, sent_at) in [(1, now - Duration::days(40)), (2, now - Duration::days(40)), (3, now - Duration::days(40))]
        .into_iter()
        .chain([(4, now), (5, now)])
    {
        let message = NewMessage { sent_at, ..new_message(room, &sender, &format!("message {n}")) };
        world.log.append(message, None).await.expect("append");
    }
    let archiver = world.archiver(world.log.clone(), &world.store);
    archiver.drain("w1", 10).await.expect("drain");
    let messaging = world.messaging(Arc::new(world.store.clone()));

    // Act
    let report = archiver.purge().await.expect("purge");
    let query = HistoryQuery { before: None, after: None, limit: PageSize::new(50, HISTORY_MAX).expect("size") };
    let history = messaging.history(&reader, room, query).await.expect("history");
    let synced = messaging.sync(&reader, room, 0).await.expect("sync");

    // Assert
    assert_eq!(report.messages, 3);
    assert_eq!(seqs(&archived(&world.store, room).await), [4, 5]);
    assert_eq!(seqs(&history.items), [4, 5], "history still shows messages past the retention");
    assert_eq!(seqs(&synced.items), [4, 5], "sync still hands out messages past the retention");
}
