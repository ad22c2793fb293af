//! The crash between the archive write and the ack on the embedded adapters: no server needed.

use std::sync::Arc;

use adapter_fs::LocalFileStore;
use adapter_memory::InMemoryMessageLog;
use adapter_security::SystemClock;
use adapter_sqlite::SqliteStore;
use application::archive::PurgePolicy;
use application::ports::{MessageArchive, MessageLog};
use application::Archiver;
use domain::{Message, RetentionPolicy};

use crate::support::{append_many, assert_archived_exactly_once, assert_queue_empty, new_room, PURGE_BATCH};

fn archiver(log: &Arc<InMemoryMessageLog>, store: &SqliteStore, files: &Arc<LocalFileStore>) -> Archiver {
    let store = Arc::new(store.clone());
    Archiver::new(
        log.clone(),
        store.clone(),
        files.clone(),
        store.clone(),
        store,
        Arc::new(SystemClock),
        PurgePolicy { retention: RetentionPolicy::default(), batch: PURGE_BATCH },
    )
}

#[tokio::test]
async fn on_the_embedded_adapters_a_worker_killed_before_the_ack_leaves_every_message_archived_once() {
    // Arrange: the log outlives the worker (it lives in the node), the worker does not.
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("chat.db")).expect("sqlite opens");
    let files = Arc::new(LocalFileStore::new(dir.path().join("files")).expect("a file store"));
    let log = Arc::new(InMemoryMessageLog::new(5));
    let room = new_room();
    let appended = append_many(log.as_ref(), room, 50).await;
    let batch = log.claim_batch("w1", 20).await.expect("claim");
    let messages: Vec<Message> = batch.iter().map(|q| q.message.clone()).collect();
    store.insert_batch(&messages).await.expect("archive write");

    // Act: a new archiver, over a store reopened from the same file, drains under the same name.
    let reopened = SqliteStore::open(&dir.path().join("chat.db")).expect("sqlite reopens");
    let drained = archiver(&log, &reopened, &files).drain("w1", 7).await.expect("drain");

    // Assert
    assert_eq!(drained, 50, "the unacknowledged batch is handed out again, then the rest");
    assert_archived_exactly_once(&reopened, room, &appended).await;
    assert_queue_empty(log.as_ref(), &["w1", "w2"]).await;
}
