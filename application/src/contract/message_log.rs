//! The `MessageLog` contract.
//!
//! Build the log under test with a hot cache of [`CACHE_PER_ROOM`] messages per room, so that an
//! adapter that trimmed unarchived messages would be caught doing it, and with the default reclaim
//! idle time, far longer than any test here: a claim of one consumer must stay its own throughout.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Appended, DedupeKey, MessageLog, NewMessage, Queued, SeqRange, TailQuery, Take};
use domain::{
    Change, ClientMsgId, Emoji, FileId, FileKind, FileMeta, FileName, Message, MessageBody, MessageId, MessageKind,
    MessageText, RoomId, Sender, Seq,
};

use super::{now, room, sender};

/// How many archived messages per room the log under test may keep in its hot cache.
pub const CACHE_PER_ROOM: usize = 2;

pub fn seq(n: u64) -> Seq {
    Seq::new(n).expect("fixture seqs are positive")
}

pub fn text(raw: &str) -> MessageBody {
    MessageBody::Text(MessageText::new(raw).expect("fixture texts are valid"))
}

/// A text message to `room` from `sender` with a new id, sent now.
pub fn new_message(room: RoomId, sender: &Sender, body: &str) -> NewMessage {
    NewMessage {
        id: MessageId::from_uuid(uuid::Uuid::now_v7()),
        room_id: room,
        sender: sender.clone(),
        body: text(body),
        sent_at: now(),
    }
}

pub fn dedupe(sender: &Sender, client_msg_id: &str) -> DedupeKey {
    DedupeKey { user: sender.id, client_msg_id: ClientMsgId::new(client_msg_id).expect("fixture ids are valid") }
}

/// `new` as the log should store it under `seq`.
fn stored(new: NewMessage, seq: Seq) -> Message {
    Message {
        id: new.id,
        room_id: new.room_id,
        seq,
        sender: new.sender,
        body: new.body,
        sent_at: new.sent_at,
        state: Default::default(),
    }
}

fn created(appended: Appended) -> Message {
    match appended {
        Appended::Created(message) => message,
        Appended::Duplicate(message) => panic!("expected a new message, got a duplicate of seq {}", message.seq),
    }
}

async fn append_texts(log: &impl MessageLog, room: RoomId, count: usize) -> Vec<Message> {
    let mut appended = Vec::with_capacity(count);
    for n in 1..=count {
        let message = new_message(room, &sender(1), &format!("message {n}"));
        appended.push(created(log.append(message, None).await.expect("append")));
    }
    appended
}

/// Every cached message of `room`.
async fn everything(log: &impl MessageLog, room: RoomId) -> Vec<Message> {
    log.fetch(room, SeqRange::default(), Take::Oldest(usize::MAX)).await.expect("fetch")
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

fn queued_seqs(batch: &[Queued]) -> Vec<u64> {
    batch.iter().map(|q| q.message.seq.get()).collect()
}

fn queued_messages(batch: &[Queued]) -> Vec<Message> {
    batch.iter().map(|q| q.message.clone()).collect()
}

fn receipts(batch: &[Queued]) -> Vec<String> {
    batch.iter().map(|q| q.receipt.clone()).collect()
}

pub async fn an_appended_message_is_stored_exactly_under_the_rooms_next_seq(log: &impl MessageLog) {
    let file = NewMessage {
        body: MessageBody::File(FileMeta {
            id: FileId::from_uuid(uuid::Uuid::now_v7()),
            name: FileName::sanitize("holiday photo ✓.png"),
            size: 1_234_567,
            content_type: "image/png".to_owned(),
            kind: FileKind::Image,
            expires_at: now() + chrono::Duration::days(7),
        }),
        ..new_message(room(1), &sender(1), "unused")
    };
    let text = new_message(room(1), &sender(2), "héllo\n\twörld \"quoted\" {braces}");

    let first = log.append(file.clone(), None).await.expect("append");
    let second = log.append(text.clone(), None).await.expect("append");

    let expected = vec![stored(file, Seq::FIRST), stored(text, seq(2))];
    assert_eq!(vec![created(first), created(second)], expected);
    assert_eq!(everything(log, room(1)).await, expected, "the log holds them exactly");
}

/// For a log that queues messages for an archiver (not one that archives as it appends).
pub async fn appended_messages_are_queued_for_archiving_exactly_as_stored(log: &impl MessageLog) {
    let appended = append_texts(log, room(1), 2).await;

    let queued = log.claim_batch("archiver", 10).await.expect("claim");

    assert_eq!(queued_messages(&queued), appended);
}

pub async fn seqs_are_strictly_increasing_per_room_under_concurrent_appends<L>(log: &L)
where
    L: MessageLog + Clone,
{
    const CALLERS: u64 = 16;
    const APPENDS_EACH: u64 = 25;
    let start = Arc::new(tokio::sync::Barrier::new(usize::try_from(CALLERS).expect("small")));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (log, start) = (log.clone(), start.clone());
            let room_id = room(1 + u128::from(caller % 2));
            tokio::spawn(async move {
                start.wait().await;
                let mut given = Vec::new();
                for n in 0..APPENDS_EACH {
                    let message = new_message(room_id, &sender(1), &format!("caller {caller} message {n}"));
                    given.push(created(log.append(message, None).await.expect("append")).seq.get());
                }
                (room_id, given)
            })
        })
        .collect();

    let mut per_room: HashMap<RoomId, Vec<u64>> = HashMap::new();
    for caller in callers {
        let (room_id, given) = caller.await.expect("task");
        assert!(given.windows(2).all(|pair| pair[0] < pair[1]), "one caller's seqs went backwards: {given:?}");
        per_room.entry(room_id).or_default().extend(given);
    }

    let each_room = CALLERS / 2 * APPENDS_EACH;
    for room_id in [room(1), room(2)] {
        let mut given = per_room.remove(&room_id).unwrap_or_default();
        given.sort_unstable();
        assert_eq!(given, (1..=each_room).collect::<Vec<_>>(), "each room counts from 1, with no gap and no repeat");
        assert_eq!(log.last_seq(room_id).await.expect("last_seq"), Some(seq(each_room)));
        assert_eq!(seqs(&everything(log, room_id).await), (1..=each_room).collect::<Vec<_>>());
    }
}

pub async fn last_seq_is_the_highest_seq_given_out_in_the_room(log: &impl MessageLog) {
    let before_any = log.last_seq(room(1)).await.expect("last_seq");
    append_texts(log, room(1), 3).await;
    append_texts(log, room(2), 1).await;

    let first = log.last_seq(room(1)).await.expect("last_seq");
    let second = log.last_seq(room(2)).await.expect("last_seq");
    let unknown = log.last_seq(room(3)).await.expect("last_seq");

    assert_eq!(before_any, None);
    assert_eq!((first, second, unknown), (Some(seq(3)), Some(Seq::FIRST), None));
}

pub async fn a_seen_dedupe_key_returns_the_original_and_stores_nothing(log: &impl MessageLog) {
    let alice = sender(1);
    let original =
        created(log.append(new_message(room(1), &alice, "hello"), Some(dedupe(&alice, "c-1"))).await.expect("append"));

    let resent = log.append(new_message(room(1), &alice, "hello again"), Some(dedupe(&alice, "c-1"))).await;

    assert_eq!(resent.expect("append"), Appended::Duplicate(original.clone()));
    assert_eq!(log.last_seq(room(1)).await.expect("last_seq"), Some(Seq::FIRST), "no seq was used up");
    assert_eq!(everything(log, room(1)).await, vec![original]);
}

/// For a log that queues messages for an archiver (not one that archives as it appends).
pub async fn a_resend_with_a_seen_dedupe_key_is_not_queued_again(log: &impl MessageLog) {
    let alice = sender(1);
    let original =
        created(log.append(new_message(room(1), &alice, "hello"), Some(dedupe(&alice, "c-1"))).await.expect("append"));

    log.append(new_message(room(1), &alice, "hello again"), Some(dedupe(&alice, "c-1"))).await.expect("append");

    assert_eq!(queued_messages(&log.claim_batch("archiver", 10).await.expect("claim")), vec![original]);
}

pub async fn a_dedupe_key_matches_only_the_same_user_and_client_msg_id(log: &impl MessageLog) {
    let (alice, bob) = (sender(1), sender(2));
    log.append(new_message(room(1), &alice, "first"), Some(dedupe(&alice, "c-1"))).await.expect("append");

    let other_id = log.append(new_message(room(1), &alice, "second"), Some(dedupe(&alice, "c-2"))).await;
    let other_user = log.append(new_message(room(1), &bob, "third"), Some(dedupe(&bob, "c-1"))).await;
    let no_key = log.append(new_message(room(1), &alice, "fourth"), None).await;

    let given = [other_id, other_user, no_key].map(|appended| created(appended.expect("append")).seq.get());
    assert_eq!(given, [2, 3, 4]);
}

pub async fn oldest_take_returns_the_lowest_seqs_after_the_lower_bound(log: &impl MessageLog) {
    append_texts(log, room(1), 10).await;

    let first = log.fetch(room(1), SeqRange::default(), Take::Oldest(3)).await.expect("fetch");
    let after = log
        .fetch(
            room(1),
            SeqRange { after: Some(seq(4)), before: None, not_before: None, content_only: false },
            Take::Oldest(3),
        )
        .await;

    assert_eq!(seqs(&first), [1, 2, 3]);
    assert_eq!(seqs(&after.expect("fetch")), [5, 6, 7]);
}

pub async fn newest_take_returns_the_highest_seqs_in_ascending_order(log: &impl MessageLog) {
    append_texts(log, room(1), 10).await;

    let latest = log.fetch(room(1), SeqRange::default(), Take::Newest(3)).await.expect("fetch");
    let earlier = log
        .fetch(
            room(1),
            SeqRange { after: None, before: Some(seq(8)), not_before: None, content_only: false },
            Take::Newest(3),
        )
        .await;

    assert_eq!(seqs(&latest), [8, 9, 10]);
    assert_eq!(seqs(&earlier.expect("fetch")), [5, 6, 7]);
}

pub async fn fetch_bounds_are_exclusive_and_rooms_do_not_mix(log: &impl MessageLog) {
    append_texts(log, room(1), 10).await;
    append_texts(log, room(2), 5).await;
    let inner = SeqRange { after: Some(seq(3)), before: Some(seq(7)), not_before: None, content_only: false };

    let oldest = log.fetch(room(1), inner, Take::Oldest(100)).await.expect("fetch");
    let newest = log.fetch(room(1), inner, Take::Newest(100)).await.expect("fetch");
    let newest_two = log.fetch(room(1), inner, Take::Newest(2)).await.expect("fetch");
    let oldest_none = log.fetch(room(1), inner, Take::Oldest(0)).await.expect("fetch");
    let newest_none = log.fetch(room(1), inner, Take::Newest(0)).await.expect("fetch");
    let other_room = everything(log, room(2)).await;
    let unknown_room = log.fetch(room(3), SeqRange::default(), Take::Newest(10)).await.expect("fetch");

    assert_eq!(seqs(&oldest), [4, 5, 6]);
    assert_eq!(newest, oldest);
    assert_eq!(seqs(&newest_two), [5, 6]);
    assert!(oldest_none.is_empty() && newest_none.is_empty(), "taking zero takes nothing");
    assert!(oldest.iter().all(|m| m.room_id == room(1)));
    assert_eq!(seqs(&other_room), [1, 2, 3, 4, 5]);
    assert!(other_room.iter().all(|m| m.room_id == room(2)));
    assert!(unknown_room.is_empty());
}

pub async fn a_fetch_applies_the_retention_cutoff_before_it_counts(log: &impl MessageLog) {
    // 1 to 99 were sent before the cutoff (expired, and perhaps not purged), 100 exactly at it,
    // and 110 long before its neighbours (another node's clock). More than a hundred expired
    // messages come first, so a log that reads in chunks must read past the first one.
    let cutoff = now() - chrono::Duration::days(1);
    for n in 1..=120_u64 {
        let sent_at = match n {
            100 => cutoff,
            1..=99 | 110 => cutoff - chrono::Duration::milliseconds(1),
            _ => now(),
        };
        let message = NewMessage { sent_at, ..new_message(room(1), &sender(1), &format!("message {n}")) };
        created(log.append(message, None).await.expect("append"));
    }
    let live = |range: SeqRange| SeqRange { not_before: Some(cutoff), ..range };
    let everything = SeqRange::default();

    let first = log.fetch(room(1), live(everything), Take::Oldest(5)).await.expect("fetch");
    let across = log.fetch(room(1), live(SeqRange { after: Some(seq(107)), ..everything }), Take::Oldest(5)).await;
    let newest = log.fetch(room(1), live(everything), Take::Newest(3)).await.expect("fetch");
    let back = log.fetch(room(1), live(SeqRange { before: Some(seq(103)), ..everything }), Take::Newest(5)).await;
    let all = log.fetch(room(1), live(everything), Take::Oldest(usize::MAX)).await.expect("fetch");
    let without = log.fetch(room(1), everything, Take::Oldest(3)).await.expect("fetch");

    assert_eq!(seqs(&first), [100, 101, 102, 103, 104], "a full page, from the first live message");
    assert_eq!(seqs(&across.expect("fetch")), [108, 109, 111, 112, 113], "an expired message between live ones");
    assert_eq!(seqs(&newest), [118, 119, 120]);
    assert_eq!(seqs(&back.expect("fetch")), [100, 101, 102], "no expired message fills a page going back");
    assert_eq!(seqs(&all), (100..=120).filter(|n| *n != 110).collect::<Vec<_>>());
    assert_eq!(seqs(&without), [1, 2, 3], "without a cutoff, every stored message counts");
}

pub async fn an_empty_or_inverted_range_returns_nothing(log: &impl MessageLog) {
    append_texts(log, room(1), 5).await;
    let ranges = [(3, 3), (3, 4), (4, 2)].map(|(after, before)| SeqRange {
        after: Some(seq(after)),
        before: Some(seq(before)),
        not_before: None,
        content_only: false,
    });

    for range in ranges {
        let oldest = log.fetch(room(1), range, Take::Oldest(10)).await.expect("fetch");
        let newest = log.fetch(room(1), range, Take::Newest(10)).await.expect("fetch");

        assert!(oldest.is_empty() && newest.is_empty(), "{range:?} holds nothing, got {oldest:?} and {newest:?}");
    }
}

pub async fn raise_seq_moves_the_next_seq_past_it_and_never_lowers_it(log: &impl MessageLog) {
    append_texts(log, room(1), 2).await;

    log.raise_seq(room(1), seq(41)).await.expect("raise");
    let next = created(log.append(new_message(room(1), &sender(1), "after a restart"), None).await.expect("append"));
    log.raise_seq(room(1), seq(10)).await.expect("raise below");
    log.raise_seq(room(2), seq(7)).await.expect("raise a new room");
    let in_new_room = created(log.append(new_message(room(2), &sender(1), "first"), None).await.expect("append"));

    assert_eq!(next.seq, seq(42));
    assert_eq!(log.last_seq(room(1)).await.expect("last_seq"), Some(seq(42)), "a lower raise changes nothing");
    assert_eq!(in_new_room.seq, seq(8));
}

pub async fn new_entries_are_claimed_in_append_order_per_room_at_most_max_at_a_time(log: &impl MessageLog) {
    let mut appended = Vec::new();
    for n in 0..5_u128 {
        appended.extend(append_texts(log, room(1 + n % 2), 1).await);
    }

    let none = log.claim_batch("archiver-1", 0).await.expect("claim");
    let first = log.claim_batch("archiver-1", 3).await.expect("claim");
    let other = log.claim_batch("archiver-2", 10).await.expect("claim");

    // Rooms may be queued apart (one queue per Redis Cluster slot), so only each room's order holds.
    assert!(none.is_empty());
    assert_eq!(first.len(), 3);
    let mut claimed = queued_messages(&first);
    claimed.extend(queued_messages(&other));
    assert_eq!(claimed.len(), appended.len(), "a live claim is never handed to another consumer");
    for r in [room(1), room(2)] {
        let of_room = |messages: &[Message]| messages.iter().filter(|m| m.room_id == r).cloned().collect::<Vec<_>>();
        assert_eq!(of_room(&claimed), of_room(&appended), "in append order");
    }
}

pub async fn a_consumers_unacked_claims_come_back_to_it_first_with_the_same_receipts(log: &impl MessageLog) {
    append_texts(log, room(1), 3).await;
    let first = log.claim_batch("archiver", 2).await.expect("claim");
    append_texts(log, room(1), 1).await;

    let one = log.claim_batch("archiver", 1).await.expect("claim");
    let all = log.claim_batch("archiver", 10).await.expect("claim");

    assert_eq!(one, first[..1], "a restarted consumer gets back what it had not acknowledged");
    assert_eq!(all[..2], first);
    assert_eq!(queued_seqs(&all), [1, 2, 3, 4], "its own claims first, then new entries");
}

pub async fn two_consumers_claiming_concurrently_never_get_the_same_entry<L>(log: &L)
where
    L: MessageLog + Clone,
{
    let mut appended: HashSet<MessageId> = HashSet::new();
    appended.extend(append_texts(log, room(1), 60).await.iter().map(|m| m.id));
    appended.extend(append_texts(log, room(2), 40).await.iter().map(|m| m.id));
    let drain = |consumer: &'static str| {
        let log = log.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            // 100 entries take 15 batches of 7; many more means acknowledged entries come back.
            for _ in 0..50 {
                let batch = log.claim_batch(consumer, 7).await.expect("claim");
                if batch.is_empty() {
                    return seen;
                }
                log.ack(&receipts(&batch)).await.expect("ack");
                seen.extend(batch.into_iter().map(|q| q.message.id));
            }
            panic!("{consumer} is still claiming after 50 batches");
        })
    };

    let (first, second) = futures::join!(drain("archiver-1"), drain("archiver-2"));

    let (first, second) = (first.expect("task"), second.expect("task"));
    let first_set: HashSet<MessageId> = first.iter().copied().collect();
    let second_set: HashSet<MessageId> = second.iter().copied().collect();
    assert_eq!((first_set.len(), second_set.len()), (first.len(), second.len()), "no consumer saw an entry twice");
    assert!(first_set.is_disjoint(&second_set), "no entry went to both consumers");
    assert_eq!(&first_set | &second_set, appended, "every entry was claimed");
}

pub async fn acked_entries_leave_the_queue_and_the_rest_stay(log: &impl MessageLog) {
    append_texts(log, room(1), 3).await;
    let batch = log.claim_batch("archiver", 10).await.expect("claim");

    log.ack(&[batch[0].receipt.clone(), batch[2].receipt.clone()]).await.expect("ack");
    let left = log.claim_batch("archiver", 10).await.expect("claim");
    log.ack(&receipts(&batch)).await.expect("acking everything, some of it again");

    assert_eq!(left, batch[1..2], "only the unacknowledged entry comes back");
    assert!(log.claim_batch("archiver", 10).await.expect("claim").is_empty());
    assert!(log.claim_batch("another", 10).await.expect("claim").is_empty(), "acked entries are gone for everyone");
    assert_eq!(log.oldest_unarchived().await.expect("oldest_unarchived"), None);
}

pub async fn unknown_receipts_are_ignored(log: &impl MessageLog) {
    append_texts(log, room(1), 1).await;
    let batch = log.claim_batch("archiver", 10).await.expect("claim");
    let unknown = ["", "garbage", "0-1", "99999999999999-0", &uuid::Uuid::nil().to_string()].map(str::to_owned);

    let acked = log.ack(&unknown).await;
    let nothing = log.ack(&[]).await;

    assert!(acked.is_ok(), "{acked:?}");
    assert!(nothing.is_ok(), "{nothing:?}");
    assert_eq!(log.claim_batch("archiver", 10).await.expect("claim"), batch, "the claimed entry is still pending");
}

pub async fn the_cache_never_trims_an_unarchived_message(log: &impl MessageLog) {
    let appended = append_texts(log, room(1), 6).await;
    let before_any_ack = everything(log, room(1)).await;
    let batch = log.claim_batch("archiver", 10).await.expect("claim");

    // Seqs 1 and 4 stay unarchived: the oldest of all, and one between archived ones.
    let archived: Vec<String> =
        batch.iter().filter(|q| ![1, 4].contains(&q.message.seq.get())).map(|q| q.receipt.clone()).collect();
    log.ack(&archived).await.expect("ack");
    let cached = everything(log, room(1)).await;

    assert_eq!(before_any_ack, appended, "nothing is archived, so nothing may go, whatever the cache size");
    assert!(
        cached.contains(&appended[0]) && cached.contains(&appended[3]),
        "unarchived 1 and 4 stay: {:?}",
        seqs(&cached)
    );
    assert!(cached.windows(2).all(|pair| pair[0].seq < pair[1].seq), "ascending: {:?}", seqs(&cached));
}

pub async fn oldest_unarchived_is_when_the_oldest_unacked_message_was_appended(log: &impl MessageLog) {
    const GAP: Duration = Duration::from_millis(300);
    let empty = log.oldest_unarchived().await.expect("oldest_unarchived");
    let first = append_texts(log, room(1), 1).await.remove(0);
    tokio::time::sleep(GAP).await;
    append_texts(log, room(2), 1).await;

    let at_first = log.oldest_unarchived().await.expect("oldest_unarchived").expect("two are queued");
    let claimed = log.claim_batch("archiver", 10).await.expect("claim");
    let while_claimed = log.oldest_unarchived().await.expect("oldest_unarchived");
    let (batch, rest): (Vec<Queued>, Vec<Queued>) = claimed.into_iter().partition(|q| q.message.id == first.id);
    log.ack(&receipts(&batch)).await.expect("ack");
    let at_second = log.oldest_unarchived().await.expect("oldest_unarchived").expect("one is queued");
    log.ack(&receipts(&rest)).await.expect("ack");
    let drained = log.oldest_unarchived().await.expect("oldest_unarchived");

    assert_eq!(empty, None);
    assert!(
        (at_first - first.sent_at).abs() < chrono::Duration::seconds(5),
        "{at_first} is not about {}",
        first.sent_at
    );
    assert_eq!(while_claimed, Some(at_first), "a claimed message is not archived until acknowledged");
    let moved = (at_second - at_first).to_std().expect("the oldest moved forward");
    assert!(moved >= GAP - Duration::from_millis(50), "it moved by {moved:?}, not to the second message");
    assert_eq!(drained, None);
}

// ---- Issue 16: the room list's tails ----

fn tail_query(room: RoomId, read: u64) -> TailQuery {
    TailQuery { room, read: domain::ReadMarker::restore(read) }
}

pub async fn tails_count_past_each_marker_and_give_the_newest_message_in_the_order_asked(log: &impl MessageLog) {
    let appended = append_texts(log, room(1), 5).await;

    let tails = log.tails(&[tail_query(room(2), 0), tail_query(room(1), 2)], None, 1000).await.expect("tails");

    let empty = &tails[0];
    assert_eq!((empty.room, empty.last_seq, empty.newest.as_ref(), empty.unread), (room(2), None, None, 0));
    let tail = &tails[1];
    assert_eq!((tail.room, tail.last_seq, tail.unread), (room(1), Some(seq(5)), 3));
    assert_eq!(tail.newest.as_ref(), appended.last());
    assert!(tail.holds_from.is_some_and(|from| from <= seq(3)), "it counted 3 to 5, so it holds them: {tail:?}");
}

pub async fn tails_count_and_show_messages_not_the_changes_made_to_them(log: &impl MessageLog) {
    let appended = append_texts(log, room(1), 2).await;
    log.append(change_of(room(1), &sender(1), edit_of(1, "edited")), None).await.expect("append");
    log.append(change_of(room(1), &sender(2), reaction(2, "👍", true)), None).await.expect("append");

    let tails = log.tails(&[tail_query(room(1), 1)], None, 1000).await.expect("tails");

    assert_eq!(tails[0].last_seq, Some(seq(4)), "changes take seqs");
    assert_eq!(tails[0].unread, 1, "only message 2 is unread past the marker at 1");
    let newest = tails[0].newest.as_ref().expect("a newest message");
    assert_eq!((newest.id, newest.seq), (appended[1].id, seq(2)), "the newest message, not the reaction to it");
}

pub async fn tails_stop_counting_at_the_cap(log: &impl MessageLog) {
    append_texts(log, room(1), 5).await;

    let tails = log.tails(&[tail_query(room(1), 0)], None, 2).await.expect("tails");

    assert_eq!(tails[0].unread, 2);
    assert_eq!(tails[0].last_seq, Some(seq(5)));
}

pub async fn tails_never_give_an_expired_message_as_the_newest(log: &impl MessageLog) {
    append_texts(log, room(1), 3).await;
    let everything_expired = now() + chrono::Duration::hours(1);

    let tails = log.tails(&[tail_query(room(1), 0)], Some(everything_expired), 1000).await.expect("tails");

    assert_eq!((tails[0].newest.as_ref(), tails[0].unread), (None, 0));
    assert_eq!(tails[0].last_seq, Some(seq(3)), "seqs given out still count");
}

// ---- end of issue 16 ----
/// A change to message `target` of `room` by `sender`, with a new id, made now.
pub fn change_of(room: RoomId, sender: &Sender, change: Change) -> NewMessage {
    NewMessage { body: MessageBody::Change(change), ..new_message(room, sender, "unused") }
}

pub fn edit_of(target: u64, text: &str) -> Change {
    Change::Edit { target: seq(target), text: MessageText::new(text).expect("fixture texts are valid") }
}

pub fn reaction(target: u64, emoji: &str, added: bool) -> Change {
    Change::React { target: seq(target), emoji: Emoji::new(emoji).expect("fixture emojis are valid"), added }
}

pub async fn a_change_is_an_entry_of_its_own_and_its_cached_target_shows_it(log: &impl MessageLog) {
    let [original] = append_texts(log, room(1), 1).await.try_into().expect("one message");

    let edit = created(log.append(change_of(room(1), &sender(1), edit_of(1, "edited")), None).await.expect("append"));
    let reacted = change_of(room(1), &sender(2), reaction(1, "👍", true));
    let reaction = created(log.append(reacted, None).await.expect("append"));

    assert_eq!((edit.seq, reaction.seq), (seq(2), seq(3)), "a change takes the room's next seq");
    let mut expected = original;
    assert!(expected.apply(&edit) && expected.apply(&reaction));
    assert_eq!(everything(log, room(1)).await, [expected.clone(), edit, reaction], "every entry, in seq order");
    let content = SeqRange { content_only: true, ..SeqRange::default() };
    assert_eq!(log.fetch(room(1), content, Take::Oldest(10)).await.expect("fetch"), [expected]);
}

pub async fn a_deleted_message_is_cached_as_a_tombstone(log: &impl MessageLog) {
    append_texts(log, room(1), 1).await;

    let delete = change_of(room(1), &sender(1), Change::Delete { target: seq(1) });
    let delete = created(log.append(delete, None).await.expect("append"));

    let cached = everything(log, room(1)).await;
    assert_eq!(cached[0].body, MessageBody::Removed(MessageKind::Text));
    assert_eq!(cached[0].state.deleted_at, Some(delete.sent_at));
    assert_eq!(cached[1], delete);
}

pub async fn a_resent_change_is_stored_once(log: &impl MessageLog) {
    append_texts(log, room(1), 1).await;
    let edit = change_of(room(1), &sender(1), edit_of(1, "edited once"));

    let first = created(log.append(edit.clone(), Some(dedupe(&sender(1), "e-1"))).await.expect("append"));
    let again = log.append(edit, Some(dedupe(&sender(1), "e-1"))).await.expect("append");

    assert_eq!(again, Appended::Duplicate(first));
    assert_eq!(seqs(&everything(log, room(1)).await), [1, 2]);
    assert_eq!(log.last_seq(room(1)).await.expect("last_seq"), Some(seq(2)));
}

pub async fn content_only_leaves_changes_out_before_take_counts(log: &impl MessageLog) {
    append_texts(log, room(1), 2).await;
    for n in 0..3 {
        let edit = change_of(room(1), &sender(1), edit_of(2, &format!("edit {n}")));
        log.append(edit, None).await.expect("append");
    }
    append_texts(log, room(1), 1).await;
    let content = SeqRange { content_only: true, ..SeqRange::default() };

    let newest = log.fetch(room(1), content, Take::Newest(2)).await.expect("fetch");
    let oldest = log.fetch(room(1), SeqRange { after: Some(seq(1)), ..content }, Take::Oldest(2)).await.expect("fetch");

    assert_eq!(seqs(&newest), [2, 6]);
    assert_eq!(seqs(&oldest), [2, 6]);
    assert_eq!(newest[0].body, text("edit 2"), "the newest edit shows");
}

pub async fn concurrent_changes_to_one_message_all_reach_its_cached_copy(log: &impl MessageLog) {
    append_texts(log, room(1), 1).await;
    let reactions = (2..=13_u128).map(|user| {
        let react = change_of(room(1), &sender(user), reaction(1, "👍", true));
        async move { created(log.append(react, None).await.expect("append")) }
    });

    let appended = futures::future::join_all(reactions).await;

    let cached = everything(log, room(1)).await;
    let users = &cached[0].reactions()[0].users;
    assert_eq!(users.len(), appended.len(), "every reaction sticks: {users:?}");
    assert_eq!(seqs(&cached), (1..=13).collect::<Vec<_>>());
}

/// For a log that queues messages for an archiver: changes are queued as their own entries, and
/// the message they change stays queued as it was sent, for the archive to apply them to.
pub async fn changes_are_queued_as_entries_and_their_target_as_sent(log: &impl MessageLog) {
    let sent = append_texts(log, room(1), 1).await;
    let edit = created(log.append(change_of(room(1), &sender(1), edit_of(1, "edited")), None).await.expect("append"));

    let queued = log.claim_batch("archiver", 10).await.expect("claim");

    assert_eq!(queued_messages(&queued), [sent[0].clone(), edit]);
}

/// Hands `$generate!` this module and every `MessageLog` behaviour that any log must have, after
/// the caller's arguments: `application::message_log_contract!(contract_tests!(&log()))`.
#[macro_export]
macro_rules! message_log_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::message_log;
        an_appended_message_is_stored_exactly_under_the_rooms_next_seq,
        seqs_are_strictly_increasing_per_room_under_concurrent_appends,
        last_seq_is_the_highest_seq_given_out_in_the_room,
        a_seen_dedupe_key_returns_the_original_and_stores_nothing,
        a_dedupe_key_matches_only_the_same_user_and_client_msg_id,
        oldest_take_returns_the_lowest_seqs_after_the_lower_bound,
        newest_take_returns_the_highest_seqs_in_ascending_order,
        fetch_bounds_are_exclusive_and_rooms_do_not_mix,
        a_fetch_applies_the_retention_cutoff_before_it_counts,
        an_empty_or_inverted_range_returns_nothing,
        raise_seq_moves_the_next_seq_past_it_and_never_lowers_it,
        tails_count_past_each_marker_and_give_the_newest_message_in_the_order_asked,
        tails_count_and_show_messages_not_the_changes_made_to_them,
        tails_stop_counting_at_the_cap,
        tails_never_give_an_expired_message_as_the_newest,
        a_change_is_an_entry_of_its_own_and_its_cached_target_shows_it,
        a_deleted_message_is_cached_as_a_tombstone,
        a_resent_change_is_stored_once,
        content_only_leaves_changes_out_before_take_counts,
        concurrent_changes_to_one_message_all_reach_its_cached_copy,
        );
    };
}

pub async fn forgetting_a_room_drops_its_cache_and_counter_but_not_its_queued_entries(log: &impl MessageLog) {
    // Arrange
    let forgotten = append_texts(log, room(1), 3).await;
    append_texts(log, room(2), 2).await;

    // Act
    log.forget_room(room(1)).await.expect("forget");
    log.forget_room(room(3)).await.expect("forgetting an unknown room");

    // Assert
    assert!(everything(log, room(1)).await.is_empty(), "the room's cache is gone");
    assert_eq!(log.last_seq(room(1)).await.expect("last_seq"), None);
    assert_eq!(seqs(&everything(log, room(2)).await), [1, 2], "other rooms are untouched");
    let queued = log.claim_batch("archiver-1", 10).await.expect("claim");
    let of_forgotten: Vec<Message> = queued_messages(&queued).into_iter().filter(|m| m.room_id == room(1)).collect();
    assert_eq!(of_forgotten, forgotten, "queued entries stay for the archive to decide");
}

/// The behaviours of a log that queues messages for an archiver (the in-memory and Redis logs;
/// not the SQLite log, which archives as it commits). Used like [`message_log_contract!`].
#[macro_export]
macro_rules! archive_queue_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::message_log;
        appended_messages_are_queued_for_archiving_exactly_as_stored,
        a_resend_with_a_seen_dedupe_key_is_not_queued_again,
        new_entries_are_claimed_in_append_order_per_room_at_most_max_at_a_time,
        a_consumers_unacked_claims_come_back_to_it_first_with_the_same_receipts,
        two_consumers_claiming_concurrently_never_get_the_same_entry,
        acked_entries_leave_the_queue_and_the_rest_stay,
        unknown_receipts_are_ignored,
        the_cache_never_trims_an_unarchived_message,
        changes_are_queued_as_entries_and_their_target_as_sent,
        oldest_unarchived_is_when_the_oldest_unacked_message_was_appended,
        forgetting_a_room_drops_its_cache_and_counter_but_not_its_queued_entries,
        );
    };
}
