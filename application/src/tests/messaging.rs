//! Unit tests of the messaging use case: sending text and files, typing, history merge and sync.

use std::ops::RangeInclusive;
use std::sync::Arc;

use domain::{
    Change, ChangeRefusal, ClientMsgId, Emoji, FileId, FileName, Message, MessageBody, MessageKind, MessageText,
    RetentionPolicy, RoomId, Sender, Visibility,
};
use mockall::Sequence;

use super::fixtures::{
    alice, bob, byte_stream, carol, days, fixed_clock, generated_id, message, now, read_all, room, room_id, seq,
    sequential_ids, summary,
};
use crate::files::{FileLimits, Files};
use crate::messaging::{
    ChangeError, ChangeRequest, HistoryError, HistoryQuery, Messaging, SendError, SendFileError, SendText, Wanted,
};
use crate::ports::{
    AppendError, Appended, DedupeKey, MockClock, MockEventBus, MockFileCatalog, MockFileStore, MockIdGenerator,
    MockMessageArchive, MockMessageLog, MockRoomRepository, NewMessage, RoomEvent, SeqRange, Take,
};
use crate::rooms::PageSize;

/// The ports of the `Files` use case that `Messaging` sends files through.
#[derive(Default)]
struct FilePorts {
    store: MockFileStore,
    catalog: MockFileCatalog,
    rooms: MockRoomRepository,
    clock: MockClock,
    ids: MockIdGenerator,
}

/// Every port of `Messaging` as a mock without expectations: any call a test did not expect fails it.
#[derive(Default)]
struct Ports {
    rooms: MockRoomRepository,
    log: MockMessageLog,
    archive: MockMessageArchive,
    bus: MockEventBus,
    clock: MockClock,
    ids: MockIdGenerator,
    files: FilePorts,
}

impl Ports {
    fn messaging(self) -> Messaging {
        let files = Files::new(
            Arc::new(self.files.store),
            Arc::new(self.files.catalog),
            Arc::new(self.files.rooms),
            Arc::new(self.files.clock),
            Arc::new(self.files.ids),
            FileLimits::default(),
            RetentionPolicy::default(),
        );
        Messaging::new(
            Arc::new(self.rooms),
            Arc::new(self.log),
            Arc::new(self.archive),
            Arc::new(self.bus),
            files,
            Arc::new(self.clock),
            Arc::new(self.ids),
        )
    }

    /// Expects one membership check of alice in the general room.
    fn expect_membership(&mut self, member: bool) {
        self.rooms
            .expect_is_member()
            .withf(|room, user| *room == general() && *user == alice().id)
            .times(1)
            .returning(move |_, _| Ok(member));
    }

    /// Expects one read from each store, which answer as if holding the messages numbered `cached` and `archived`.
    fn expect_stores_holding(&mut self, cached: RangeInclusive<u64>, archived: RangeInclusive<u64>) {
        let last = *cached.end().max(archived.end());
        self.log.expect_last_seq().withf(|room| *room == general()).times(1).returning(move |_| Ok(Some(seq(last))));
        self.log.expect_fetch().withf(|room, _, _| *room == general()).times(1).returning(holding(cached));
        self.archive.expect_fetch().withf(|room, _, _| *room == general()).times(1).returning(holding(archived));
    }

    fn expect_no_reads(&mut self) {
        self.log.expect_fetch().never();
        self.archive.expect_fetch().never();
    }

    fn expect_no_append(&mut self) {
        self.log.expect_append().never();
        self.bus.expect_publish().never();
    }
}

fn general() -> RoomId {
    room_id(1)
}

/// A store holding the messages numbered `held`, answering fetches as the port's contract says:
/// every bound of the range, the retention cutoff included, applies before `take` counts.
fn holding(held: RangeInclusive<u64>) -> impl FnMut(RoomId, SeqRange, Take) -> anyhow::Result<Vec<Message>> {
    move |room, range, take| {
        let within: Vec<Message> =
            held.clone().map(|n| message(room, n)).filter(|message| range.admits(message)).collect();
        Ok(match take {
            Take::Oldest(n) => within.into_iter().take(n).collect(),
            Take::Newest(n) => {
                let skip = within.len().saturating_sub(n);
                within.into_iter().skip(skip).collect()
            }
        })
    }
}

/// What the log stores for a new message: the same message with the next seq.
fn stored(new: NewMessage, n: u64) -> Message {
    Message {
        id: new.id,
        room_id: new.room_id,
        seq: seq(n),
        sender: new.sender,
        body: new.body,
        sent_at: new.sent_at,
        state: Default::default(),
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

fn hello() -> SendText {
    SendText {
        room_id: general(),
        client_msg_id: Some(ClientMsgId::new("c-1").expect("valid")),
        text: MessageText::new("hello").expect("valid"),
    }
}

fn query(before: Option<u64>, after: Option<u64>, limit: u32) -> HistoryQuery {
    HistoryQuery { before, after, limit: PageSize::new(limit, 100).expect("valid page size") }
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(len, 0);
    bytes
}

// --- send_text ---

#[tokio::test]
async fn a_members_text_is_appended_to_the_log_and_then_published() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    let mut order = Sequence::new();
    ports
        .log
        .expect_append()
        .withf(|new, dedupe| {
            new.id.as_uuid() == generated_id(1)
                && new.room_id == general()
                && new.sender == Sender { id: alice().id, username: alice().username }
                && new.body == MessageBody::Text(MessageText::new("hello").expect("valid"))
                && new.sent_at == now()
                && *dedupe
                    == Some(DedupeKey { user: alice().id, client_msg_id: ClientMsgId::new("c-1").expect("valid") })
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|new, _| Ok(Appended::Created(stored(new, 9))));
    ports
        .bus
        .expect_publish()
        .withf(|event| matches!(event, RoomEvent::Message(m) if m.seq == seq(9)))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));

    let sent = ports.messaging().send_text(&alice(), hello()).await.expect("sent");

    assert!(!sent.duplicate);
    assert_eq!(sent.message.seq, seq(9));
    assert_eq!(sent.message.id.as_uuid(), generated_id(1));
}

#[tokio::test]
async fn a_resent_client_message_id_returns_the_original_without_publishing_again() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    let original = message(general(), 4);
    let answer = original.clone();
    ports.log.expect_append().times(1).return_once(move |_, _| Ok(Appended::Duplicate(answer)));
    ports.bus.expect_publish().never();

    let sent = ports.messaging().send_text(&alice(), hello()).await.expect("sent");

    assert!(sent.duplicate);
    assert_eq!(sent.message, original);
}

#[tokio::test]
async fn a_send_after_the_log_lost_its_counters_raises_them_from_the_archive_before_appending() {
    // Arrange: the log refuses once, as after Redis lost its data.
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    let mut order = Sequence::new();
    ports.log.expect_append().times(1).in_sequence(&mut order).returning(|_, _| Err(AppendError::CountersLost));
    ports.archive.expect_last_seqs().times(1).in_sequence(&mut order).returning(|| Ok(vec![(general(), seq(41))]));
    ports
        .log
        .expect_raise_seq()
        .withf(|room, s| *room == general() && *s == seq(41))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    ports.log.expect_counters_recovered().times(1).in_sequence(&mut order).returning(|| Ok(()));
    ports
        .log
        .expect_append()
        .times(1)
        .in_sequence(&mut order)
        .returning(|new, _| Ok(Appended::Created(stored(new, 42))));
    ports.bus.expect_publish().times(1).returning(|_| Ok(()));

    // Act
    let sent = ports.messaging().send_text(&alice(), hello()).await.expect("sent");

    // Assert
    assert_eq!(sent.message.seq, seq(42));
}

#[tokio::test]
async fn a_send_is_refused_when_the_counters_cannot_be_recovered() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    ports.log.expect_append().times(1).returning(|_, _| Err(AppendError::CountersLost));
    ports.archive.expect_last_seqs().times(1).returning(|| Err(anyhow::anyhow!("archive down")));
    ports.log.expect_counters_recovered().never();
    ports.bus.expect_publish().never();

    let result = ports.messaging().send_text(&alice(), hello()).await;

    assert!(matches!(result, Err(SendError::Unknown(_))), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_of_an_existing_room_is_forbidden_to_send() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(Some(room(general(), Visibility::Public, &bob(), &[]))));
    ports.expect_no_append();

    let result = ports.messaging().send_text(&alice(), hello()).await;

    assert!(matches!(result, Err(SendError::Forbidden)), "got {result:?}");
}

#[tokio::test]
async fn sending_to_an_unknown_room_is_not_found() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(None));
    ports.expect_no_append();

    let result = ports.messaging().send_text(&alice(), hello()).await;

    assert!(matches!(result, Err(SendError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_stored_message_counts_as_sent_even_when_publishing_it_fails() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    ports.log.expect_append().times(1).returning(|new, _| Ok(Appended::Created(stored(new, 1))));
    ports.bus.expect_publish().times(1).returning(|_| Err(anyhow::anyhow!("bus down")));

    let sent = ports.messaging().send_text(&alice(), hello()).await.expect("sent");

    assert!(!sent.duplicate);
    assert_eq!(sent.message.seq, seq(1));
}

// --- send_file ---

/// Expects one successful upload of alice's into the general room, stored under `generated_id(1)`.
fn expect_upload(ports: &mut Ports) {
    let files = &mut ports.files;
    files.rooms.expect_is_member().times(1).returning(|_, _| Ok(true));
    files.catalog.expect_reserve().times(1).returning(|_, wanted, _, _| Ok(wanted));
    files.catalog.expect_release().times(1).returning(|_| Ok(()));
    files.ids = sequential_ids(1);
    files
        .store
        .expect_put()
        .times(1)
        .returning(|_, data, _| Ok(read_all(data).map_err(anyhow::Error::from)?.len() as u64));
    files.clock = fixed_clock(2);
    files.catalog.expect_insert().times(1).returning(|_| Ok(()));
}

#[tokio::test]
async fn a_members_file_is_stored_and_then_sent_as_a_message_pointing_at_it() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    expect_upload(&mut ports);
    let file_id = FileId::from_uuid(generated_id(1));
    ports
        .log
        .expect_append()
        .withf(move |new, _| matches!(&new.body, MessageBody::File(meta) if meta.id == file_id && meta.size == 64))
        .times(1)
        .returning(|new, _| Ok(Appended::Created(stored(new, 3))));
    ports.bus.expect_publish().times(1).returning(|_| Ok(()));
    ports.files.catalog.expect_delete().never();
    ports.files.store.expect_delete().never();

    let sent = ports
        .messaging()
        .send_file(&alice(), general(), None, FileName::sanitize("cat.png"), byte_stream(vec![png(64)]), Some(64))
        .await
        .expect("sent");

    assert!(!sent.duplicate);
    assert_eq!(sent.message.body.kind(), MessageKind::Image);
}

#[tokio::test]
async fn a_resent_file_message_discards_the_second_upload() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    expect_upload(&mut ports);
    let original = message(general(), 2);
    let answer = original.clone();
    ports.log.expect_append().times(1).return_once(move |_, _| Ok(Appended::Duplicate(answer)));
    ports.bus.expect_publish().never();
    let file_id = FileId::from_uuid(generated_id(1));
    ports.files.catalog.expect_delete().withf(move |id| *id == file_id).times(1).returning(|_| Ok(()));
    ports.files.store.expect_delete().withf(move |id| *id == file_id).times(1).returning(|_| Ok(()));

    let sent = ports
        .messaging()
        .send_file(
            &alice(),
            general(),
            Some(ClientMsgId::new("c-1").expect("valid")),
            FileName::sanitize("cat.png"),
            byte_stream(vec![png(64)]),
            Some(64),
        )
        .await
        .expect("sent");

    assert!(sent.duplicate);
    assert_eq!(sent.message, original);
}

#[tokio::test]
async fn a_non_member_cannot_send_a_file_and_nothing_is_uploaded() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(Some(room(general(), Visibility::Public, &bob(), &[]))));
    ports.files.store.expect_put().never();
    ports.expect_no_append();

    let result = ports
        .messaging()
        .send_file(&alice(), general(), None, FileName::sanitize("cat.png"), byte_stream(vec![png(64)]), Some(64))
        .await;

    assert!(matches!(result, Err(SendFileError::Forbidden)), "got {result:?}");
}

// --- typing ---

#[tokio::test]
async fn a_member_typing_is_told_to_the_room() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    let typing = RoomEvent::Typing { room_id: general(), user: summary(&alice()) };
    ports.bus.expect_publish().withf(move |event| *event == typing).times(1).returning(|_| Ok(()));

    let result = ports.messaging().typing(&alice(), general()).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_typing_is_forbidden() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(Some(room(general(), Visibility::Public, &bob(), &[]))));
    ports.bus.expect_publish().never();

    let result = ports.messaging().typing(&alice(), general()).await;

    assert!(matches!(result, Err(SendError::Forbidden)), "got {result:?}");
}

// --- history ---
// The room holds messages 1 to 8: the archive has 1 to 6, the hot cache 5 to 8, so 5 and 6 are in both.

#[tokio::test]
async fn the_newest_page_merges_cache_and_archive_with_each_message_once() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().history(&alice(), general(), query(None, None, 3)).await.expect("history");

    assert_eq!(seqs(&page.items), [6, 7, 8]);
    assert!(page.has_more);
}

#[tokio::test]
async fn a_page_as_large_as_the_room_returns_every_message_once_in_order() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().history(&alice(), general(), query(None, None, 8)).await.expect("history");

    assert_eq!(seqs(&page.items), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(!page.has_more);
}

#[tokio::test]
async fn paging_back_before_a_seq_returns_the_newest_older_messages() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().history(&alice(), general(), query(Some(7), None, 3)).await.expect("history");

    assert_eq!(seqs(&page.items), [4, 5, 6]);
    assert!(page.has_more);
}

#[tokio::test]
async fn paging_back_to_the_first_message_says_there_is_no_more() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().history(&alice(), general(), query(Some(4), None, 5)).await.expect("history");

    assert_eq!(seqs(&page.items), [1, 2, 3]);
    assert!(!page.has_more);
}

#[tokio::test]
async fn paging_forward_after_a_seq_returns_the_oldest_newer_messages() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().history(&alice(), general(), query(None, Some(3), 3)).await.expect("history");

    assert_eq!(seqs(&page.items), [4, 5, 6]);
    assert!(page.has_more);
}

#[tokio::test]
async fn paging_forward_to_the_newest_message_says_there_is_no_more() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().history(&alice(), general(), query(None, Some(4), 4)).await.expect("history");

    assert_eq!(seqs(&page.items), [5, 6, 7, 8]);
    assert!(!page.has_more);
}

#[tokio::test]
async fn a_non_member_reading_a_private_rooms_history_is_told_the_room_is_not_found() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(Some(room(general(), Visibility::Private, &bob(), &[]))));
    ports.expect_no_reads();

    let result = ports.messaging().history(&alice(), general(), query(None, None, 3)).await;

    assert!(matches!(result, Err(HistoryError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_reading_a_public_rooms_history_is_told_they_are_not_a_member() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(Some(room(general(), Visibility::Public, &bob(), &[]))));
    ports.expect_no_reads();

    let result = ports.messaging().history(&alice(), general(), query(None, None, 3)).await;

    assert!(matches!(result, Err(HistoryError::Forbidden)), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_sending_to_a_private_room_is_told_the_room_is_not_found() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(Some(room(general(), Visibility::Private, &bob(), &[]))));
    ports.bus.expect_publish().never();

    let result = ports.messaging().typing(&alice(), general()).await;

    assert!(matches!(result, Err(SendError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn history_never_returns_a_message_newer_than_the_last_seq_seen_before_reading() {
    // Seq 21 is still queued while another worker already archived 22 and 23.
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.log.expect_last_seq().times(1).returning(|_| Ok(Some(seq(20))));
    let capped = |range: &SeqRange| range.before == Some(seq(21));
    ports.log.expect_fetch().withf(move |_, range, _| capped(range)).times(1).returning(holding(6..=20));
    ports.archive.expect_fetch().withf(move |_, range, _| capped(range)).times(1).returning(holding(1..=20));

    let page = ports.messaging().history(&alice(), general(), query(None, None, 5)).await.expect("page");

    assert_eq!(seqs(&page.items), [16, 17, 18, 19, 20]);
}

// --- sync ---

#[tokio::test]
async fn syncing_after_seq_zero_starts_from_the_first_message() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.log.expect_last_seq().times(1).returning(|_| Ok(Some(seq(8))));
    let from_start = SeqRange { after: None, before: Some(seq(9)), not_before: None, content_only: false };
    ports.log.expect_fetch().withf(move |_, range, _| *range == from_start).times(1).returning(holding(5..=8));
    ports.archive.expect_fetch().withf(move |_, range, _| *range == from_start).times(1).returning(holding(1..=6));

    let page = ports.messaging().sync(&alice(), general(), 0).await.expect("synced");

    assert_eq!(seqs(&page.items), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(page.last_seq, 8);
    assert!(!page.has_more);
}

#[tokio::test]
async fn syncing_after_a_seq_returns_only_later_messages_and_the_last_seq_sent() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().sync(&alice(), general(), 5).await.expect("synced");

    assert_eq!(seqs(&page.items), [6, 7, 8]);
    assert_eq!(page.last_seq, 8);
    assert!(!page.has_more);
}

#[tokio::test]
async fn syncing_when_nothing_is_new_echoes_the_requested_seq() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(5..=8, 1..=6);

    let page = ports.messaging().sync(&alice(), general(), 8).await.expect("synced");

    assert!(page.items.is_empty());
    assert_eq!(page.last_seq, 8);
    assert!(!page.has_more);
}

#[tokio::test]
async fn a_backlog_larger_than_one_sync_is_delivered_in_parts() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(1401..=1500, 1..=1500);

    let page = ports.messaging().sync(&alice(), general(), 0).await.expect("synced");

    assert_eq!(page.items.len(), 1000);
    assert_eq!(page.items.first().map(|m| m.seq.get()), Some(1));
    assert_eq!(page.last_seq, 1000);
    assert!(page.has_more);
}

#[tokio::test]
async fn a_non_member_syncing_an_unknown_room_is_told_the_room_is_not_found() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.rooms.expect_get().times(1).returning(|_| Ok(None));
    ports.expect_no_reads();

    let result = ports.messaging().sync(&alice(), general(), 0).await;

    assert!(matches!(result, Err(HistoryError::NotFound)), "got {result:?}");
}

// --- retention ---
// Messages 1 to 100 have expired but are not purged yet; the archive holds the room, the hot cache
// only its newest messages. Live messages between the two must never be skipped.

/// Messages are kept a day.
fn a_day() -> RetentionPolicy {
    RetentionPolicy::new(chrono::Duration::days(1), chrono::Duration::days(1), chrono::Duration::days(1))
        .expect("positive periods")
}

/// Where messages 1 to `n` have expired under `a_day()` and `n + 1` is exactly at the cutoff.
fn cutoff_after(n: u64) -> domain::Timestamp {
    message(general(), n + 1).sent_at
}

/// `ports` with a clock read once per history or sync, when messages 1 to `n` have expired.
fn messaging_expiring_through(mut ports: Ports, n: u64) -> Messaging {
    ports.clock.expect_now().times(1).returning(move || cutoff_after(n) + a_day().messages());
    ports.messaging().with_retention(a_day())
}

#[tokio::test]
async fn paging_forward_past_expired_messages_continues_at_the_first_live_one_without_a_gap() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(151..=200, 1..=200);

    let page = messaging_expiring_through(ports, 100).history(&alice(), general(), query(None, Some(0), 20)).await;

    let page = page.expect("history");
    assert_eq!(seqs(&page.items), (101..=120).collect::<Vec<_>>(), "not the cache's 151 onwards");
    assert!(page.has_more);
}

#[tokio::test]
async fn paging_forward_to_the_end_past_expired_messages_says_there_is_no_more_only_there() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(151..=200, 1..=200);

    let page = messaging_expiring_through(ports, 100).history(&alice(), general(), query(None, Some(0), 100)).await;

    let page = page.expect("history");
    assert_eq!(seqs(&page.items), (101..=200).collect::<Vec<_>>());
    assert!(!page.has_more, "the 100 live messages are all there is");
}

#[tokio::test]
async fn paging_back_into_expired_messages_says_there_is_no_more() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(151..=200, 1..=200);

    let page = messaging_expiring_through(ports, 100).history(&alice(), general(), query(Some(110), None, 20)).await;

    let page = page.expect("history");
    assert_eq!(seqs(&page.items), (101..=109).collect::<Vec<_>>());
    assert!(!page.has_more, "only expired messages are older");
}

#[tokio::test]
async fn syncing_from_zero_past_expired_messages_skips_no_live_one() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.expect_stores_holding(1401..=1500, 1..=1500);

    let page = messaging_expiring_through(ports, 300).sync(&alice(), general(), 0).await.expect("synced");

    assert_eq!(seqs(&page.items), (301..=1300).collect::<Vec<_>>(), "1002 to 1300 are not skipped");
    assert_eq!(page.last_seq, 1300);
    assert!(page.has_more);
}

#[tokio::test]
async fn both_stores_are_asked_for_live_messages_only_with_one_cutoff() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.log.expect_last_seq().times(1).returning(|_| Ok(Some(seq(200))));
    let live = |range: &SeqRange| range.not_before == Some(cutoff_after(100));
    ports.log.expect_fetch().withf(move |_, range, _| live(range)).times(1).returning(holding(151..=200));
    ports.archive.expect_fetch().withf(move |_, range, _| live(range)).times(1).returning(holding(1..=200));

    let page = messaging_expiring_through(ports, 100).sync(&alice(), general(), 0).await.expect("synced");

    assert_eq!(seqs(&page.items), (101..=200).collect::<Vec<_>>());
    assert!(!page.has_more);
}

// --- change: edit, delete, react ---

/// Expects `user`'s membership of the general room to be checked once.
fn expect_member(ports: &mut Ports, user: &domain::User) {
    let id = user.id;
    ports
        .rooms
        .expect_is_member()
        .withf(move |room, u| *room == general() && *u == id)
        .times(1)
        .returning(|_, _| Ok(true));
}

/// Expects one read of message `target` (`None`: the room has no such message), from the log.
fn expect_target(ports: &mut Ports, target: Option<Message>) {
    ports.log.expect_last_seq().times(1).returning(|_| Ok(Some(seq(8))));
    ports
        .log
        .expect_fetch()
        .withf(|_, range, _| range.content_only)
        .times(1)
        .return_once(move |_, _, _| Ok(target.into_iter().collect()));
    ports.archive.expect_fetch().withf(|_, range, _| range.content_only).times(1).returning(|_, _, _| Ok(Vec::new()));
}

fn change_request(seq: u64, what: Wanted) -> ChangeRequest {
    ChangeRequest { room_id: general(), seq, client_msg_id: Some(ClientMsgId::new("e-1").expect("valid")), what }
}

fn edit_to(text: &str) -> Wanted {
    Wanted::Edit(MessageText::new(text).expect("valid"))
}

fn thumbs_up(added: bool) -> Wanted {
    Wanted::React { emoji: Emoji::new("👍").expect("valid"), added }
}

#[tokio::test]
async fn an_edit_is_appended_as_a_change_applied_to_the_archive_before_the_room_hears_of_it() {
    // Arrange: alice's message 5, sent 5 minutes ago.
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(2), ..Ports::default() };
    expect_member(&mut ports, &alice());
    expect_target(&mut ports, Some(message(general(), 5)));
    let mut order = Sequence::new();
    ports
        .log
        .expect_append()
        .withf(|new, dedupe| {
            new.body
                == MessageBody::Change(Change::Edit {
                    target: seq(5),
                    text: MessageText::new("edited").expect("valid"),
                })
                && dedupe.as_ref().is_some_and(|key| key.client_msg_id.as_str() == "e-1")
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|new, _| Ok(Appended::Created(stored(new, 9))));
    ports
        .archive
        .expect_apply_change()
        .withf(|change| change.seq == seq(9))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(true));
    ports
        .bus
        .expect_publish()
        .withf(|event| matches!(event, RoomEvent::Message(m) if m.seq == seq(9)))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));

    // Act
    let changed = ports.messaging().change(&alice(), change_request(5, edit_to("edited"))).await.expect("edited");

    // Assert
    assert_eq!(changed.message.seq, seq(5));
    assert_eq!(changed.message.body, MessageBody::Text(MessageText::new("edited").expect("valid")));
    assert_eq!(changed.message.state.edited_at, Some(now()));
    assert_eq!(changed.change.map(|c| c.seq), Some(seq(9)));
}

#[tokio::test]
async fn an_edit_after_the_window_is_refused_and_nothing_is_stored() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    expect_member(&mut ports, &alice());
    expect_target(&mut ports, Some(message(general(), 5)));
    ports.expect_no_append();
    let messaging = ports.messaging().with_edit_window(std::time::Duration::from_secs(60));

    let refused = messaging.change(&alice(), change_request(5, edit_to("too late"))).await;

    assert!(matches!(refused, Err(ChangeError::Refused(ChangeRefusal::WindowPassed))), "{refused:?}");
}

#[tokio::test]
async fn only_the_sender_may_edit() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    expect_member(&mut ports, &bob());
    expect_target(&mut ports, Some(message(general(), 5)));
    ports.expect_no_append();

    let refused = ports.messaging().change(&bob(), change_request(5, edit_to("not mine"))).await;

    assert!(matches!(refused, Err(ChangeError::Refused(ChangeRefusal::NotSender))), "{refused:?}");
}

#[tokio::test]
async fn a_seq_that_is_no_message_of_the_room_is_not_found() {
    let mut ports = Ports::default();
    expect_member(&mut ports, &alice());
    expect_target(&mut ports, None);
    ports.expect_no_append();

    let missing = ports.messaging().change(&alice(), change_request(7, Wanted::Delete)).await;

    assert!(matches!(missing, Err(ChangeError::MessageNotFound)), "{missing:?}");
}

#[tokio::test]
async fn a_non_member_changes_nothing() {
    let mut ports = Ports::default();
    ports.rooms.expect_is_member().times(1).returning(|_, _| Ok(false));
    ports.rooms.expect_get().times(1).returning(|_| Ok(Some(room(general(), Visibility::Public, &bob(), &[]))));
    ports.expect_no_reads();
    ports.expect_no_append();

    let refused = ports.messaging().change(&alice(), change_request(5, Wanted::Delete)).await;

    assert!(matches!(refused, Err(ChangeError::Forbidden)), "{refused:?}");
}

#[tokio::test]
async fn the_owner_deletes_someone_elses_file_message_and_the_file_expires() {
    // Arrange: bob owns the room; alice shared a file as message 5.
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    expect_member(&mut ports, &bob());
    let file_id = FileId::from_uuid(generated_id(40));
    let mut shared = message(general(), 5);
    shared.body = MessageBody::File(domain::FileMeta {
        id: file_id,
        name: FileName::sanitize("notes.pdf"),
        size: 10,
        content_type: "application/pdf".to_owned(),
        kind: domain::FileKind::File,
        expires_at: now() + days(1),
    });
    expect_target(&mut ports, Some(shared));
    ports
        .rooms
        .expect_get()
        .times(1)
        .returning(|_| Ok(Some(room(general(), Visibility::Private, &bob(), &[&alice()]))));
    ports
        .log
        .expect_append()
        .withf(|new, _| new.body == MessageBody::Change(Change::Delete { target: seq(5) }) && new.sender.id == bob().id)
        .times(1)
        .returning(|new, _| Ok(Appended::Created(stored(new, 9))));
    ports.archive.expect_apply_change().times(1).returning(|_| Ok(true));
    ports.bus.expect_publish().times(1).returning(|_| Ok(()));
    ports.files.clock = fixed_clock(1);
    ports
        .files
        .catalog
        .expect_expire()
        .withf(move |id, at| *id == file_id && *at == now())
        .times(1)
        .returning(|_, _| Ok(true));

    // Act
    let changed = ports.messaging().change(&bob(), change_request(5, Wanted::Delete)).await.expect("deleted");

    // Assert
    assert_eq!(changed.message.body, MessageBody::Removed(MessageKind::File));
    assert_eq!(changed.message.state.deleted_at, Some(now()));
}

#[tokio::test]
async fn a_member_who_neither_sent_nor_owns_cannot_delete() {
    let mut ports = Ports::default();
    expect_member(&mut ports, &carol());
    expect_target(&mut ports, Some(message(general(), 5)));
    ports
        .rooms
        .expect_get()
        .times(1)
        .returning(|_| Ok(Some(room(general(), Visibility::Private, &bob(), &[&alice(), &carol()]))));
    ports.expect_no_append();

    let refused = ports.messaging().change(&carol(), change_request(5, Wanted::Delete)).await;

    assert!(matches!(refused, Err(ChangeError::Refused(ChangeRefusal::NotSenderOrOwner))), "{refused:?}");
}

#[tokio::test]
async fn a_reaction_already_there_stores_nothing_and_a_new_one_is_appended() {
    // Arrange: bob already reacted 👍 to message 5.
    let mut ports = Ports::default();
    expect_member(&mut ports, &bob());
    let mut reacted = message(general(), 5);
    let earlier = Message {
        body: MessageBody::Change(Change::React {
            target: seq(5),
            emoji: Emoji::new("👍").expect("valid"),
            added: true,
        }),
        sender: Sender { id: bob().id, username: bob().username },
        ..message(general(), 6)
    };
    assert!(reacted.apply(&earlier));
    expect_target(&mut ports, Some(reacted.clone()));
    ports.expect_no_append();

    // Act
    let again = ports.messaging().change(&bob(), change_request(5, thumbs_up(true))).await.expect("no change needed");

    // Assert
    assert_eq!(again.change, None);
    assert_eq!(again.message, reacted);
}

#[tokio::test]
async fn history_and_a_change_read_content_only_while_sync_reads_every_entry() {
    let mut ports = Ports::default();
    ports.rooms.expect_is_member().times(2).returning(|_, _| Ok(true));
    ports.log.expect_last_seq().times(2).returning(|_| Ok(Some(seq(3))));
    ports.log.expect_fetch().withf(|_, range, _| range.content_only).times(1).returning(|_, _, _| Ok(Vec::new()));
    ports.archive.expect_fetch().withf(|_, range, _| range.content_only).times(1).returning(|_, _, _| Ok(Vec::new()));
    ports.log.expect_fetch().withf(|_, range, _| !range.content_only).times(1).returning(|_, _, _| Ok(Vec::new()));
    ports.archive.expect_fetch().withf(|_, range, _| !range.content_only).times(1).returning(|_, _, _| Ok(Vec::new()));
    let messaging = ports.messaging();

    messaging.history(&alice(), general(), query(None, None, 10)).await.expect("history");
    messaging.sync(&alice(), general(), 0).await.expect("sync");
}
