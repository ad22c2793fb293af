//! The `MessageArchive::search` contract, a suite of its own: a store without a text index runs
//! it only where the server has one (see the MongoDB adapter's tests).

use crate::ports::{MessageArchive, MessageSearch};
use domain::{Message, MessageBody, MessageText, RoomId, SearchQuery};

use super::archive::{message, room};
use super::at;

fn said(room_n: u128, n: u64, text: &str) -> Message {
    message(room_n, n, MessageBody::Text(MessageText::new(text).expect("valid text")))
}

fn search(words: &str, rooms: &[RoomId]) -> MessageSearch {
    MessageSearch {
        query: SearchQuery::new(words).expect("valid query"),
        rooms: rooms.to_vec(),
        not_before: None,
        before: None,
        limit: 10,
    }
}

async fn found(archive: &impl MessageArchive, search: &MessageSearch) -> Vec<Message> {
    archive.search(search).await.expect("search")
}

pub async fn a_message_is_found_when_it_holds_every_word_newest_first(archive: &impl MessageArchive) {
    let messages = vec![
        said(1, 1, "Release notes for v2"),
        said(1, 2, "the release is out"),
        said(1, 3, "notes about the RELEASE, finally"),
        said(1, 4, "unrelated chatter"),
    ];
    archive.insert_batch(&messages).await.expect("insert");

    let both = found(archive, &search("release notes", &[room(1)])).await;
    let one = found(archive, &search("Release", &[room(1)])).await;
    let none = found(archive, &search("releases", &[room(1)])).await;

    assert_eq!(both, [messages[2].clone(), messages[0].clone()]);
    assert_eq!(one, [messages[2].clone(), messages[1].clone(), messages[0].clone()]);
    assert!(none.is_empty(), "whole words only: {none:?}");
}

pub async fn case_and_accents_do_not_matter_in_any_script(archive: &impl MessageArchive) {
    let messages = vec![said(1, 1, "Café Über alles"), said(1, 2, "Привет, МИР")];
    archive.insert_batch(&messages).await.expect("insert");

    let latin = found(archive, &search("cafe uber", &[room(1)])).await;
    let cyrillic = found(archive, &search("мир", &[room(1)])).await;

    assert_eq!(latin, [messages[0].clone()]);
    assert_eq!(cyrillic, [messages[1].clone()]);
}

pub async fn only_the_given_rooms_and_unexpired_messages_are_found(archive: &impl MessageArchive) {
    let messages = vec![said(1, 1, "deploy today"), said(1, 5, "deploy again"), said(2, 1, "deploy elsewhere")];
    archive.insert_batch(&messages).await.expect("insert");

    let in_room_one = found(archive, &search("deploy", &[room(1)])).await;
    let in_both = found(archive, &search("deploy", &[room(1), room(2)])).await;
    let unexpired =
        found(archive, &MessageSearch { not_before: Some(at(2_000)), ..search("deploy", &[room(1)]) }).await;

    assert_eq!(in_room_one, [messages[1].clone(), messages[0].clone()]);
    assert_eq!(in_both, [messages[2].clone(), messages[1].clone(), messages[0].clone()], "ids descending");
    assert_eq!(unexpired, [messages[1].clone()], "seq 1 was sent before the cutoff");
}

pub async fn pages_go_on_below_the_last_id_and_end(archive: &impl MessageArchive) {
    let messages: Vec<Message> = (1..=5).map(|n| said(1, n, &format!("ping number {n}"))).collect();
    archive.insert_batch(&messages).await.expect("insert");
    let first = MessageSearch { limit: 2, ..search("ping", &[room(1)]) };

    let page1 = found(archive, &first).await;
    let page2 = found(archive, &MessageSearch { before: Some(page1[1].id), ..first.clone() }).await;
    let page3 = found(archive, &MessageSearch { before: Some(page2[1].id), ..first.clone() }).await;

    let seqs = |page: &[Message]| page.iter().map(|m| m.seq.get()).collect::<Vec<_>>();
    assert_eq!((seqs(&page1), seqs(&page2), seqs(&page3)), (vec![5, 4], vec![3, 2], vec![1]));
}

pub async fn purged_and_deleted_messages_are_not_found(archive: &impl MessageArchive) {
    let messages = vec![said(1, 1, "secret plan"), said(1, 9, "secret sauce"), said(2, 1, "secret room")];
    archive.insert_batch(&messages).await.expect("insert");

    archive.delete_sent_before(at(5_000), 10).await.expect("purge");
    archive.delete_room(room(2), 10).await.expect("delete room");

    let left = found(archive, &search("secret", &[room(1), room(2)])).await;
    assert_eq!(left, [messages[1].clone()]);
}

/// Hands `$generate!` this module and every search behaviour in it, after the caller's
/// arguments: `application::search_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! search_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::search;
        a_message_is_found_when_it_holds_every_word_newest_first,
        case_and_accents_do_not_matter_in_any_script,
        only_the_given_rooms_and_unexpired_messages_are_found,
        pages_go_on_below_the_last_id_and_end,
        purged_and_deleted_messages_are_not_found,
        );
    };
}
