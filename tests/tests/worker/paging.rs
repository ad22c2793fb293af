//! History paging while messages are sent and archived: the merge of the hot cache and the archive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use application::messaging::{HistoryQuery, SendText, HISTORY_MAX};
use application::ports::MessageLog;
use application::rooms::PageSize;
use application::{Archiver, Messaging};
use domain::{MessageId, MessageText, RoomId, User};

use crate::support::World;

const MESSAGES: u64 = 200;
const LIMIT: u32 = 17;

/// One history page as a reader saw it.
#[derive(Debug)]
struct Page {
    before: Option<u64>,
    after: Option<u64>,
    seqs: Vec<u64>,
    ids: Vec<MessageId>,
    has_more: bool,
}

async fn page(messaging: &Messaging, reader: &User, room: RoomId, before: Option<u64>, after: Option<u64>) -> Page {
    let query = HistoryQuery { before, after, limit: PageSize::new(LIMIT, HISTORY_MAX).expect("a valid page size") };
    let found = messaging.history(reader, room, query).await.expect("history");
    Page {
        before,
        after,
        seqs: found.items.iter().map(|m| m.seq.get()).collect(),
        ids: found.items.iter().map(|m| m.id).collect(),
        has_more: found.has_more,
    }
}

/// Pages backwards from the newest message to the first.
async fn walk_backwards(messaging: &Messaging, reader: &User, room: RoomId) -> Vec<Page> {
    let mut pages = vec![page(messaging, reader, room, None, None).await];
    while let Some(last) = pages.last().filter(|p| p.has_more) {
        let before = *last.seqs.first().expect("a page with more has items");
        pages.push(page(messaging, reader, room, Some(before), None).await);
    }
    pages
}

/// Pages forwards from the start until no more are known.
async fn walk_forwards(messaging: &Messaging, reader: &User, room: RoomId) -> Vec<Page> {
    let mut pages = vec![page(messaging, reader, room, None, Some(0)).await];
    while let Some(last) = pages.last().filter(|p| p.has_more) {
        let after = *last.seqs.last().expect("a page with more has items");
        pages.push(page(messaging, reader, room, None, Some(after)).await);
    }
    pages
}

/// Checks one page on its own: consecutive seqs, as many as the bounds allow, and `has_more` true
/// exactly when the paging direction has more.
fn check_page(page: &Page) {
    let context = format!("page {page:?}");
    assert!(page.seqs.windows(2).all(|w| w[1] == w[0] + 1), "a seq is skipped or repeated within {context}");
    let limit = LIMIT as u64;
    if let Some(after) = page.after {
        if let Some(&first) = page.seqs.first() {
            assert_eq!(first, after + 1, "the page starts right above its cursor: {context}");
        }
        if page.has_more {
            assert_eq!(page.seqs.len() as u64, limit, "a page with more is full: {context}");
        }
        return;
    }
    let newest = *page.seqs.last().expect("the room has messages");
    if let Some(before) = page.before {
        assert_eq!(newest, before - 1, "the page starts right below its cursor: {context}");
    }
    let oldest = newest.saturating_sub(limit - 1).max(1);
    assert_eq!(page.seqs.first(), Some(&oldest), "the page is as full as the bounds allow: {context}");
    assert_eq!(page.has_more, oldest > 1, "{context}");
}

/// Checks a backwards walk: its pages, put together, are every seq from its newest down to 1.
fn check_backwards(walk: &[Page]) {
    walk.iter().for_each(check_page);
    let seen: Vec<u64> = walk.iter().flat_map(|p| p.seqs.iter().rev().copied()).collect();
    let newest = seen.first().copied().unwrap_or(0);
    assert_eq!(seen, (1..=newest).rev().collect::<Vec<_>>(), "a backwards walk missed or repeated a seq");
}

/// Checks a forwards walk: its pages, put together, are every seq from 1 up to its newest.
fn check_forwards(walk: &[Page]) {
    walk.iter().for_each(check_page);
    let seen: Vec<u64> = walk.iter().flat_map(|p| p.seqs.iter().copied()).collect();
    let newest = seen.last().copied().unwrap_or(0);
    assert_eq!(seen, (1..=newest).collect::<Vec<_>>(), "a forwards walk missed or repeated a seq");
}

/// Every page showed each seq with the message sent under it.
fn check_ids(walks: &[Vec<Page>], sent: &BTreeMap<u64, MessageId>) {
    for page in walks.iter().flatten() {
        for (seq, id) in page.seqs.iter().zip(&page.ids) {
            assert_eq!(sent.get(seq), Some(id), "seq {seq} showed another message in {page:?}");
        }
    }
}

/// Archives until sending has stopped and nothing more is handed out.
async fn archive_continuously(archiver: Archiver, sending: Arc<AtomicBool>) {
    loop {
        let done_sending = !sending.load(Ordering::SeqCst);
        let report = archiver.archive_batch("w1", 7).await.expect("archive batch");
        if report.claimed == 0 {
            if done_sending {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn history_paging_is_exact_across_the_cache_boundary_while_archiving_runs() {
    // Arrange: a cache of five messages per room, so most pages straddle the cache and the archive.
    let world = World::with(|c| c.cache_per_room = 5).await;
    let (reader, room_id) = world.reader_and_room().await;
    let messaging = world.messaging(Arc::new(world.store.clone()));
    let sending = Arc::new(AtomicBool::new(true));
    let archiver = tokio::spawn(archive_continuously(world.restarted_archiver().await, sending.clone()));

    // Act: send, archive and page at once; then page again once everything is archived.
    let sender = {
        let (messaging, reader, sending) = (messaging.clone(), reader.clone(), sending.clone());
        tokio::spawn(async move {
            let mut sent = BTreeMap::new();
            for n in 1..=MESSAGES {
                let text = MessageText::new(&format!("message {n}")).expect("valid text");
                let request = SendText { room_id, client_msg_id: None, text };
                let message = messaging.send_text(&reader, request).await.expect("send").message;
                sent.insert(message.seq.get(), message.id);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sending.store(false, Ordering::SeqCst);
            sent
        })
    };
    let mut during = Vec::new();
    // The first message must exist before a walk can start from it.
    while world.log.last_seq(room_id).await.expect("last seq").is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while sending.load(Ordering::SeqCst) {
        during.push((true, walk_backwards(&messaging, &reader, room_id).await));
        during.push((false, walk_forwards(&messaging, &reader, room_id).await));
    }
    let sent = sender.await.expect("sender");
    archiver.await.expect("archiver");
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(walk_backwards(&messaging, &reader, room_id).await);
    }
    let forwards_after = walk_forwards(&messaging, &reader, room_id).await;

    // Assert
    assert!(during.len() >= 2, "the walks should overlap the sending; only {} ran", during.len());
    for (backwards, walk) in &during {
        if *backwards {
            check_backwards(walk);
        } else {
            check_forwards(walk);
        }
    }
    for walk in &after {
        check_backwards(walk);
        let seen: Vec<u64> = walk.iter().flat_map(|p| p.seqs.iter().rev().copied()).collect();
        assert_eq!(seen, (1..=MESSAGES).rev().collect::<Vec<_>>(), "a walk after the run saw every seq once");
    }
    check_forwards(&forwards_after);
    assert_eq!(forwards_after.last().and_then(|p| p.seqs.last()), Some(&MESSAGES));
    let everything: Vec<Vec<Page>> =
        during.into_iter().map(|(_, walk)| walk).chain(after).chain([forwards_after]).collect();
    check_ids(&everything, &sent);
    assert_eq!(sent.len() as u64, MESSAGES);
}
