//! History reads racing two archivers: messages sent and archived out of order between the
//! history read of the hot cache and its read of the archive.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use adapter_mongo::MongoStore;
use application::messaging::{HistoryQuery, HISTORY_MAX};
use application::ports::{ArchiveSearchError, MessageArchive, MessageLog, MessageSearch, SeqRange, Take};
use application::rooms::PageSize;
use application::Messaging;
use domain::{Message, RoomId, Timestamp, User};
use futures::future::BoxFuture;

use crate::support::{append_many, new_sender, seqs, World};

type Answer<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// The MongoDB archive, with one chance to run `meanwhile` just before its next read: the moment
/// the history use case has read the hot cache and not yet the archive.
///
/// The `MessageArchive` methods are written out as `#[async_trait]` expands them, because this
/// test package does not depend on `async-trait`.
struct ArchiveReadLate {
    inner: MongoStore,
    meanwhile: Mutex<Option<BoxFuture<'static, ()>>>,
}

impl MessageArchive for ArchiveReadLate {
    fn insert_batch<'life0, 'life1, 'async_trait>(
        &'life0 self,
        messages: &'life1 [Message],
    ) -> Answer<'async_trait, u64>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.insert_batch(messages)
    }

    fn apply_change<'life0, 'life1, 'async_trait>(&'life0 self, change: &'life1 Message) -> Answer<'async_trait, bool>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.apply_change(change)
    }

    fn fetch<'life0, 'async_trait>(
        &'life0 self,
        room: RoomId,
        range: SeqRange,
        take: Take,
    ) -> Answer<'async_trait, Vec<Message>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let meanwhile = self.meanwhile.lock().expect("not poisoned").take();
            if let Some(meanwhile) = meanwhile {
                meanwhile.await;
            }
            self.inner.fetch(room, range, take).await
        })
    }

    fn last_seqs<'life0, 'async_trait>(&'life0 self) -> Answer<'async_trait, Vec<(RoomId, domain::Seq)>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.last_seqs()
    }

    fn delete_sent_before<'life0, 'async_trait>(
        &'life0 self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Answer<'async_trait, u64>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.delete_sent_before(cutoff, limit)
    }

    fn delete_room<'life0, 'async_trait>(&'life0 self, room: RoomId, limit: u32) -> Answer<'async_trait, u64>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.delete_room(room, limit)
    }

    fn count_in<'life0, 'life1, 'async_trait>(
        &'life0 self,
        ranges: &'life1 [(RoomId, SeqRange)],
        cap: u64,
    ) -> Answer<'async_trait, Vec<u64>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.count_in(ranges, cap)
    }

    fn newest_in<'life0, 'life1, 'async_trait>(
        &'life0 self,
        ranges: &'life1 [(RoomId, SeqRange)],
    ) -> Answer<'async_trait, Vec<Option<Message>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.newest_in(ranges)
    }

    fn search<'life0, 'life1, 'async_trait>(
        &'life0 self,
        search: &'life1 MessageSearch,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Message>, ArchiveSearchError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.search(search)
    }
}

/// A reader, a room it belongs to with 20 messages all archived, and `Messaging` over an archive
/// that lets two workers race in the middle of the next history read.
async fn arrange(world: &World) -> (User, RoomId, Messaging, Arc<ArchiveReadLate>) {
    let (reader, room) = world.reader_and_room().await;
    append_many(world.log.as_ref(), room, 20).await;
    world.archiver(world.log.clone(), &world.store).drain("w0", 100).await.expect("drain");
    let late = Arc::new(ArchiveReadLate { inner: world.store.clone(), meanwhile: Mutex::new(None) });
    (reader, room, world.messaging(late.clone()), late)
}

/// Three messages are sent (seqs 21, 22, 23); worker `a` claims 21 and is still writing it while
/// worker `b` archives 22 and 23 and acknowledges them.
fn two_workers_out_of_order(world: &World, room: RoomId) -> BoxFuture<'static, ()> {
    let log = world.log.clone();
    let b = world.archiver(world.log.clone(), &world.store);
    Box::pin(async move {
        let sender = new_sender("sam");
        for n in 21..=23 {
            crate::support::append(log.as_ref(), room, &sender, &format!("message {n}")).await;
        }
        let a_claims = log.claim_batch("a", 1).await.expect("claim");
        assert_eq!(seqs(&a_claims.into_iter().map(|q| q.message).collect::<Vec<_>>()), [21]);
        let report = b.archive_batch("b", 10).await.expect("archive batch");
        assert_eq!(report.claimed, 2);
    })
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn the_newest_history_page_never_skips_a_message_that_another_worker_has_not_archived_yet() {
    // Arrange
    let world = World::with(|c| c.cache_per_room = 5).await;
    let (reader, room, messaging, late) = arrange(&world).await;
    *late.meanwhile.lock().expect("not poisoned") = Some(two_workers_out_of_order(&world, room));

    // Act
    let query = HistoryQuery { before: None, after: None, limit: PageSize::new(17, HISTORY_MAX).expect("size") };
    let page = messaging.history(&reader, room, query).await.expect("history");

    // Assert: whatever the newest seq shown, no seq below it is missing from the page.
    let shown = seqs(&page.items);
    let newest = *shown.last().expect("items");
    assert_eq!(shown, (newest - 16..=newest).collect::<Vec<_>>(), "the page skips a seq");
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn sync_never_moves_past_a_message_that_another_worker_has_not_archived_yet() {
    // Arrange: a client that has everything up to seq 20 syncs.
    let world = World::with(|c| c.cache_per_room = 5).await;
    let (reader, room, messaging, late) = arrange(&world).await;
    *late.meanwhile.lock().expect("not poisoned") = Some(two_workers_out_of_order(&world, room));

    // Act
    let page = messaging.sync(&reader, room, 20).await.expect("sync");
    let next = messaging.sync(&reader, room, page.last_seq).await.expect("sync again");

    // Assert: the client's cursor must never pass seq 21 without handing it out.
    let mut received = seqs(&page.items);
    received.extend(seqs(&next.items));
    assert_eq!(received, (21..=page.last_seq.max(next.last_seq)).collect::<Vec<_>>(), "seq 21 was never synced");
}
