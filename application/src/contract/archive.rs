//! The `MessageArchive` contract.

use crate::ports::{MessageArchive, SeqRange, Take};
use domain::{
    Change, Emoji, FileId, FileKind, FileMeta, FileName, Message, MessageBody, MessageId, MessageKind, MessageText,
    RoomId, Sender, Seq, UserId, Username,
};

use super::{at, uuid};

pub fn room(n: u128) -> RoomId {
    RoomId::from_uuid(uuid(1_000 + n))
}

pub fn seq(n: u64) -> Seq {
    Seq::new(n).expect("fixture seqs are positive")
}

/// A text message in room `room_n` with seq `n`, sent `n` seconds after the fixture epoch.
pub fn text_message(room_n: u128, n: u64) -> Message {
    message(room_n, n, MessageBody::Text(MessageText::new(&format!("message {n}")).expect("valid text")))
}

pub fn message(room_n: u128, n: u64, body: MessageBody) -> Message {
    Message {
        id: MessageId::from_uuid(uuid(room_n * 1_000_000 + u128::from(n))),
        room_id: room(room_n),
        seq: seq(n),
        sender: Sender { id: UserId::from_uuid(uuid(7)), username: Username::new("sender").expect("valid") },
        body,
        sent_at: at(i64::try_from(n).expect("small") * 1_000),
        state: Default::default(),
    }
}

fn file_body(n: u128, kind: FileKind, name: &str, content_type: &str) -> MessageBody {
    MessageBody::File(FileMeta {
        id: FileId::from_uuid(uuid(5_000 + n)),
        name: FileName::sanitize(name),
        size: 1_234_567,
        content_type: content_type.to_owned(),
        kind,
        expires_at: at(86_400_000),
    })
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

async fn archive_seqs(archive: &impl MessageArchive, room_n: u128, seqs: impl IntoIterator<Item = u64>) {
    let batch: Vec<Message> = seqs.into_iter().map(|n| text_message(room_n, n)).collect();
    archive.insert_batch(&batch).await.expect("insert_batch");
}

const EVERYTHING: SeqRange = SeqRange { after: None, before: None, not_before: None, content_only: false };

pub async fn archived_messages_read_back_exactly(archive: &impl MessageArchive) {
    let batch = vec![
        message(1, 1, MessageBody::Text(MessageText::new("hello\n\twörld ✓").expect("valid"))),
        message(1, 2, file_body(1, FileKind::Image, "cat.png", "image/png")),
        message(1, 3, file_body(2, FileKind::File, "report 2024.pdf", "application/pdf")),
    ];

    let inserted = archive.insert_batch(&batch).await.expect("insert_batch");

    assert_eq!(inserted, 3);
    assert_eq!(archive.fetch(room(1), EVERYTHING, Take::Oldest(10)).await.expect("fetch"), batch);
}

pub async fn a_retried_archive_batch_stores_nothing_twice(archive: &impl MessageArchive) {
    let batch = vec![text_message(1, 1), text_message(1, 2)];
    let first = archive.insert_batch(&batch).await.expect("first insert");

    let retried = archive.insert_batch(&[batch.clone(), vec![text_message(1, 3)]].concat()).await.expect("retry");
    let again = archive.insert_batch(&batch).await.expect("second retry");

    assert_eq!((first, retried, again), (2, 1, 0));
    assert_eq!(seqs(&archive.fetch(room(1), EVERYTHING, Take::Oldest(10)).await.expect("fetch")), vec![1, 2, 3]);
}

pub async fn oldest_take_returns_the_lowest_seqs_in_the_range(archive: &impl MessageArchive) {
    archive_seqs(archive, 1, (1..=10).rev()).await;

    let page = archive
        .fetch(
            room(1),
            SeqRange { after: Some(seq(2)), before: None, not_before: None, content_only: false },
            Take::Oldest(3),
        )
        .await;

    assert_eq!(seqs(&page.expect("fetch")), vec![3, 4, 5]);
}

pub async fn newest_take_returns_the_highest_seqs_in_ascending_order(archive: &impl MessageArchive) {
    archive_seqs(archive, 1, 1..=10).await;

    let latest = archive.fetch(room(1), EVERYTHING, Take::Newest(3)).await.expect("fetch");
    let earlier = archive
        .fetch(
            room(1),
            SeqRange { after: None, before: Some(seq(8)), not_before: None, content_only: false },
            Take::Newest(3),
        )
        .await;

    assert_eq!(seqs(&latest), vec![8, 9, 10]);
    assert_eq!(seqs(&earlier.expect("fetch")), vec![5, 6, 7]);
}

pub async fn fetch_bounds_are_exclusive_and_rooms_do_not_mix(archive: &impl MessageArchive) {
    archive_seqs(archive, 1, 1..=5).await;
    archive_seqs(archive, 2, 1..=5).await;
    let inner = SeqRange { after: Some(seq(1)), before: Some(seq(5)), not_before: None, content_only: false };

    let oldest = archive.fetch(room(1), inner, Take::Oldest(100)).await.expect("fetch");
    let newest = archive.fetch(room(1), inner, Take::Newest(100)).await.expect("fetch");
    let none = archive.fetch(room(1), inner, Take::Oldest(0)).await.expect("fetch");
    let unknown_room = archive.fetch(room(3), EVERYTHING, Take::Newest(10)).await.expect("fetch");

    assert_eq!(seqs(&oldest), vec![2, 3, 4]);
    assert_eq!(newest, oldest);
    assert!(oldest.iter().all(|m| m.room_id == room(1)));
    assert!(none.is_empty());
    assert!(unknown_room.is_empty());
}

pub async fn a_fetch_applies_the_retention_cutoff_before_it_counts(archive: &impl MessageArchive) {
    // Seq n is sent at n seconds; the cutoff is at 100 s, so 1 to 99 expired but are not purged
    // yet, 100 is sent exactly at it, and 110 was sent long before its neighbours (another
    // node's clock).
    let mut batch: Vec<Message> = (1..=120).map(|n| text_message(1, n)).collect();
    batch[109].sent_at = at(5_000);
    archive.insert_batch(&batch).await.expect("insert_batch");
    let live = |range: SeqRange| SeqRange { not_before: Some(at(100_000)), ..range };

    let first = archive.fetch(room(1), live(EVERYTHING), Take::Oldest(5)).await.expect("fetch");
    let across = archive.fetch(room(1), live(SeqRange { after: Some(seq(107)), ..EVERYTHING }), Take::Oldest(5)).await;
    let newest = archive.fetch(room(1), live(EVERYTHING), Take::Newest(3)).await.expect("fetch");
    let back = archive.fetch(room(1), live(SeqRange { before: Some(seq(103)), ..EVERYTHING }), Take::Newest(5)).await;
    let all = archive.fetch(room(1), live(EVERYTHING), Take::Oldest(1_000)).await.expect("fetch");
    let without = archive.fetch(room(1), EVERYTHING, Take::Oldest(3)).await.expect("fetch");

    assert_eq!(seqs(&first), vec![100, 101, 102, 103, 104], "a full page, from the first live message");
    assert_eq!(seqs(&across.expect("fetch")), vec![108, 109, 111, 112, 113], "an expired message between live ones");
    assert_eq!(seqs(&newest), vec![118, 119, 120]);
    assert_eq!(seqs(&back.expect("fetch")), vec![100, 101, 102], "no expired message fills a page going back");
    assert_eq!(seqs(&all), (100..=120).filter(|n| *n != 110).collect::<Vec<_>>());
    assert_eq!(seqs(&without), vec![1, 2, 3], "without a cutoff, every stored message counts");
}

pub async fn last_seqs_reports_the_highest_seq_per_room(archive: &impl MessageArchive) {
    let before_any = archive.last_seqs().await.expect("last_seqs");
    archive_seqs(archive, 1, [2, 3, 1]).await;
    archive_seqs(archive, 2, [9, 7]).await;

    let mut last = archive.last_seqs().await.expect("last_seqs");

    last.sort();
    assert!(before_any.is_empty());
    assert_eq!(last, vec![(room(1), seq(3)), (room(2), seq(9))]);
}

pub async fn purge_deletes_at_most_the_limit_and_only_older_messages(archive: &impl MessageArchive) {
    // Seq n is sent at n seconds: 1, 2 and 3 are older than the cutoff, 4 is sent exactly at it.
    archive_seqs(archive, 1, 1..=5).await;
    let cutoff = at(4_000);

    let first = archive.delete_sent_before(cutoff, 2).await.expect("first purge");
    let second = archive.delete_sent_before(cutoff, 10).await.expect("second purge");
    let third = archive.delete_sent_before(cutoff, 10).await.expect("third purge");

    assert_eq!((first, second, third), (2, 1, 0));
    assert_eq!(seqs(&archive.fetch(room(1), EVERYTHING, Take::Oldest(10)).await.expect("fetch")), vec![4, 5]);
}

pub async fn deleting_a_room_deletes_its_messages_in_batches_and_no_other_rooms(archive: &impl MessageArchive) {
    archive_seqs(archive, 1, 1..=5).await;
    archive_seqs(archive, 2, 1..=2).await;

    let first = archive.delete_room(room(1), 3).await.expect("first batch");
    let second = archive.delete_room(room(1), 3).await.expect("second batch");
    let third = archive.delete_room(room(1), 3).await.expect("nothing left");

    assert_eq!((first, second, third), (3, 2, 0));
    assert!(archive.fetch(room(1), EVERYTHING, Take::Oldest(10)).await.expect("fetch").is_empty());
    assert_eq!(seqs(&archive.fetch(room(2), EVERYTHING, Take::Oldest(10)).await.expect("fetch")), vec![1, 2]);
}

// ---- Issue 16: what the room list asks of the archive ----

pub async fn count_in_counts_each_range_up_to_the_cap_in_the_order_asked(archive: &impl MessageArchive) {
    archive_seqs(archive, 1, 1..=6).await;
    archive_seqs(archive, 2, 1..=3).await;
    let ranges = [
        (room(2), SeqRange { after: Some(seq(1)), ..EVERYTHING }),
        (room(1), SeqRange { after: Some(seq(2)), before: Some(seq(6)), ..EVERYTHING }),
        (room(3), EVERYTHING),
    ];

    let counted = archive.count_in(&ranges, 10).await.expect("count_in");
    let capped = archive.count_in(&ranges, 2).await.expect("count_in");
    let none = archive.count_in(&[], 10).await.expect("count_in");

    assert_eq!(counted, [2, 3, 0]);
    assert_eq!(capped, [2, 2, 0]);
    assert!(none.is_empty());
}

pub async fn count_in_and_newest_in_leave_out_expired_messages(archive: &impl MessageArchive) {
    archive_seqs(archive, 1, 1..=6).await;
    let live_from = SeqRange { not_before: Some(at(4_000)), ..EVERYTHING };
    let all_expired = SeqRange { not_before: Some(at(60_000)), ..EVERYTHING };

    let counted = archive.count_in(&[(room(1), live_from)], 10).await.expect("count_in");
    let newest = archive.newest_in(&[(room(1), all_expired)]).await.expect("newest_in");

    assert_eq!(counted, [3], "seqs 4 to 6 were sent at or after the cutoff");
    assert_eq!(newest, [None]);
}

pub async fn newest_in_gives_each_ranges_newest_message_in_the_order_asked(archive: &impl MessageArchive) {
    archive_seqs(archive, 1, 1..=6).await;
    archive_seqs(archive, 2, 1..=3).await;

    let newest = archive
        .newest_in(&[
            (room(1), SeqRange { before: Some(seq(5)), ..EVERYTHING }),
            (room(3), EVERYTHING),
            (room(2), EVERYTHING),
        ])
        .await
        .expect("newest_in");

    assert_eq!(newest, [Some(text_message(1, 4)), None, Some(text_message(2, 3))]);
}

// ---- end of issue 16 ----
/// A change entry with seq `n` in room `room_n` by user `by` (7 sent every fixture message).
pub fn change(room_n: u128, n: u64, by: u128, change: Change) -> Message {
    let mut entry = message(room_n, n, MessageBody::Change(change));
    entry.sender =
        Sender { id: UserId::from_uuid(uuid(by)), username: Username::new(&format!("user{by}")).expect("valid") };
    entry
}

fn edit(target: u64, text: &str) -> Change {
    Change::Edit { target: seq(target), text: MessageText::new(text).expect("valid text") }
}

fn react(target: u64, emoji: &str, added: bool) -> Change {
    Change::React { target: seq(target), emoji: Emoji::new(emoji).expect("valid emoji"), added }
}

fn shown_text(message: &Message) -> &str {
    match &message.body {
        MessageBody::Text(text) => text.as_str(),
        other => panic!("not a text message: {other:?}"),
    }
}

const CONTENT: SeqRange = SeqRange { content_only: true, ..EVERYTHING };

pub async fn an_archived_change_is_stored_and_applied_to_its_archived_target(archive: &impl MessageArchive) {
    archive.insert_batch(&[text_message(1, 1)]).await.expect("insert");
    let edited = change(1, 2, 7, edit(1, "edited"));

    let inserted = archive.insert_batch(std::slice::from_ref(&edited)).await.expect("insert");

    assert_eq!(inserted, 1);
    let all = archive.fetch(room(1), EVERYTHING, Take::Oldest(10)).await.expect("fetch");
    let mut expected = text_message(1, 1);
    assert!(expected.apply(&edited));
    assert_eq!(all, [expected.clone(), edited]);
    assert_eq!(archive.fetch(room(1), CONTENT, Take::Oldest(10)).await.expect("fetch"), [expected]);
}

pub async fn a_change_archived_before_its_target_applies_when_the_target_comes(archive: &impl MessageArchive) {
    let edited = change(1, 3, 7, edit(1, "edited early"));
    archive.insert_batch(std::slice::from_ref(&edited)).await.expect("insert the change first");

    archive.insert_batch(&[text_message(1, 1), text_message(1, 2)]).await.expect("insert the messages after");

    let shown = archive.fetch(room(1), CONTENT, Take::Oldest(10)).await.expect("fetch");
    assert_eq!(shown.iter().map(shown_text).collect::<Vec<_>>(), ["edited early", "message 2"]);
    assert_eq!(shown[0].state.edit_seq, Some(seq(3)));
}

pub async fn changes_repeated_or_out_of_order_apply_once_and_the_newest_edit_wins(archive: &impl MessageArchive) {
    let (first, second) = (change(1, 2, 7, edit(1, "first")), change(1, 3, 7, edit(1, "second")));
    let (add, take_back) = (change(1, 4, 8, react(1, "👍", true)), change(1, 5, 8, react(1, "👍", false)));
    archive.insert_batch(&[text_message(1, 1), second.clone(), take_back.clone()]).await.expect("insert");

    let repeated = archive.insert_batch(&[first.clone(), second, add.clone(), take_back]).await.expect("insert");
    let again = archive.apply_change(&first).await.expect("apply");
    let added_again = archive.apply_change(&add).await.expect("apply");

    assert_eq!(repeated, 2, "only the entries not stored before are new");
    assert!(!again && !added_again, "an older change applied after a newer one changes nothing");
    let shown = archive.fetch(room(1), CONTENT, Take::Oldest(1)).await.expect("fetch");
    assert_eq!(shown_text(&shown[0]), "second");
    assert!(shown[0].reactions().is_empty(), "the reaction was taken back after it was added");
}

pub async fn apply_change_changes_an_archived_target_and_stores_no_entry(archive: &impl MessageArchive) {
    archive.insert_batch(&[text_message(1, 1)]).await.expect("insert");
    let reacted = change(1, 2, 8, react(1, "🎉", true));

    let applied = archive.apply_change(&reacted).await.expect("apply");
    let nothing_to_change = archive.apply_change(&change(1, 3, 8, react(9, "🎉", true))).await.expect("apply");
    let inserted_later = archive.insert_batch(std::slice::from_ref(&reacted)).await.expect("insert");

    assert!(applied && !nothing_to_change);
    assert_eq!(inserted_later, 1, "apply_change stored no entry");
    let all = archive.fetch(room(1), EVERYTHING, Take::Oldest(10)).await.expect("fetch");
    assert_eq!(seqs(&all), [1, 2]);
    let reactions = all[0].reactions();
    assert_eq!(reactions.len(), 1);
    assert_eq!((reactions[0].emoji.as_str(), reactions[0].users.as_slice()), ("🎉", &[reacted.sender.id][..]));
}

pub async fn a_deleted_message_is_archived_as_a_tombstone_of_its_kind(archive: &impl MessageArchive) {
    let image = message(1, 1, file_body(1, FileKind::Image, "photo.png", "image/png"));
    let deleted = change(1, 2, 7, Change::Delete { target: seq(1) });

    archive.insert_batch(&[image, deleted.clone()]).await.expect("insert");

    let shown = archive.fetch(room(1), CONTENT, Take::Oldest(10)).await.expect("fetch");
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].body, MessageBody::Removed(MessageKind::Image));
    assert_eq!(shown[0].state.deleted_at, Some(deleted.sent_at));
    let edit_after = change(1, 3, 7, edit(1, "back from the dead"));
    assert!(!archive.apply_change(&edit_after).await.expect("apply"), "nothing changes a deleted message");
}

pub async fn concurrent_changes_to_one_archived_message_all_stick(archive: &impl MessageArchive) {
    archive.insert_batch(&[text_message(1, 1)]).await.expect("insert");
    let reactions: Vec<Message> = (2..=13).map(|n| change(1, n, u128::from(n), react(1, "👍", true))).collect();

    let applied = futures::future::join_all(reactions.iter().map(|r| archive.apply_change(r))).await;

    assert!(applied.into_iter().all(|a| a.expect("apply")), "each changed the message");
    let shown = archive.fetch(room(1), CONTENT, Take::Oldest(1)).await.expect("fetch");
    assert_eq!(shown[0].reactions()[0].count(), reactions.len());
}

/// Hands `$generate!` this module and every `MessageArchive` behaviour in it, after the caller's
/// arguments: `application::archive_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! archive_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::archive;
        archived_messages_read_back_exactly,
        a_retried_archive_batch_stores_nothing_twice,
        oldest_take_returns_the_lowest_seqs_in_the_range,
        newest_take_returns_the_highest_seqs_in_ascending_order,
        fetch_bounds_are_exclusive_and_rooms_do_not_mix,
        a_fetch_applies_the_retention_cutoff_before_it_counts,
        last_seqs_reports_the_highest_seq_per_room,
        purge_deletes_at_most_the_limit_and_only_older_messages,
        deleting_a_room_deletes_its_messages_in_batches_and_no_other_rooms,
        count_in_counts_each_range_up_to_the_cap_in_the_order_asked,
        count_in_and_newest_in_leave_out_expired_messages,
        newest_in_gives_each_ranges_newest_message_in_the_order_asked,
        an_archived_change_is_stored_and_applied_to_its_archived_target,
        a_change_archived_before_its_target_applies_when_the_target_comes,
        changes_repeated_or_out_of_order_apply_once_and_the_newest_edit_wins,
        apply_change_changes_an_archived_target_and_stores_no_entry,
        a_deleted_message_is_archived_as_a_tombstone_of_its_kind,
        concurrent_changes_to_one_archived_message_all_stick,
        );
    };
}
