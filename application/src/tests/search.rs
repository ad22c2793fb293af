//! Unit tests of message search: only the caller's rooms, the expiry cutoff, and paging.

use std::sync::Arc;

use domain::{MessageId, SearchQuery, Visibility};

use super::fixtures::{alice, bob, days, fixed_clock, message, now, room, room_id};
use crate::ports::{ArchiveSearchError, MockClock, MockMessageArchive, MockRoomRepository};
use crate::rooms::PageSize;
use crate::search::{Search, SearchError, SearchRequest};

fn request(room: Option<domain::RoomId>, before: Option<MessageId>, limit: u32) -> SearchRequest {
    SearchRequest {
        query: SearchQuery::new("release notes").expect("valid"),
        room,
        before,
        limit: PageSize::new(limit, 50).expect("valid"),
    }
}

fn retention() -> domain::RetentionPolicy {
    domain::RetentionPolicy::new(chrono::Duration::days(30), chrono::Duration::days(14), chrono::Duration::days(28))
        .expect("valid")
}

#[tokio::test]
async fn a_search_covers_every_room_of_the_caller_past_the_cutoff_and_pages_by_the_last_id() {
    let mut rooms = MockRoomRepository::new();
    rooms.expect_room_ids_for_member().times(1).returning(|_| Ok(vec![room_id(1), room_id(2)]));
    let mut archive = MockMessageArchive::new();
    archive
        .expect_search()
        .withf(|search| {
            search.rooms == [room_id(1), room_id(2)]
                && search.query.words() == ["release", "notes"]
                && search.not_before == Some(now() - days(30))
                && search.limit == 3
        })
        .times(1)
        .returning(|_| Ok(vec![message(room_id(1), 9), message(room_id(2), 8), message(room_id(1), 7)]));
    let search = Search::new(Arc::new(rooms), Arc::new(archive), Arc::new(fixed_clock(1))).with_retention(retention());

    let page = search.search(&alice(), request(None, None, 2)).await.expect("found");

    assert_eq!(page.items, [message(room_id(1), 9), message(room_id(2), 8)]);
    assert_eq!(page.next_cursor, Some(message(room_id(2), 8).id));
}

#[tokio::test]
async fn a_caller_in_no_room_finds_nothing_without_asking_the_archive() {
    let mut rooms = MockRoomRepository::new();
    rooms.expect_room_ids_for_member().times(1).returning(|_| Ok(Vec::new()));
    let mut archive = MockMessageArchive::new();
    archive.expect_search().never();
    let search = Search::new(Arc::new(rooms), Arc::new(archive), Arc::new(MockClock::new()));

    let page = search.search(&alice(), request(None, None, 20)).await.expect("nothing");

    assert!(page.items.is_empty());
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn searching_a_room_one_is_not_in_is_not_found_or_forbidden_as_its_history_is() {
    let mut rooms = MockRoomRepository::new();
    rooms.expect_is_member().returning(|_, _| Ok(false));
    rooms
        .expect_get()
        .withf(|r| *r == room_id(1))
        .returning(|_| Ok(Some(room(room_id(1), Visibility::Private, &bob(), &[]))));
    rooms
        .expect_get()
        .withf(|r| *r == room_id(2))
        .returning(|_| Ok(Some(room(room_id(2), Visibility::Public, &bob(), &[]))));
    let mut archive = MockMessageArchive::new();
    archive.expect_search().never();
    let search = Search::new(Arc::new(rooms), Arc::new(archive), Arc::new(MockClock::new()));

    let private = search.search(&alice(), request(Some(room_id(1)), None, 20)).await;
    let public = search.search(&alice(), request(Some(room_id(2)), None, 20)).await;

    assert!(matches!(private, Err(SearchError::NotFound)), "got {private:?}");
    assert!(matches!(public, Err(SearchError::Forbidden)), "got {public:?}");
}

#[tokio::test]
async fn a_store_without_a_text_index_makes_search_unavailable() {
    let mut rooms = MockRoomRepository::new();
    rooms.expect_is_member().returning(|_, _| Ok(true));
    let mut archive = MockMessageArchive::new();
    archive
        .expect_search()
        .withf(|search| search.rooms == [room_id(1)] && search.before == Some(message(room_id(1), 4).id))
        .times(1)
        .returning(|_| Err(ArchiveSearchError::Unavailable));
    let search = Search::new(Arc::new(rooms), Arc::new(archive), Arc::new(MockClock::new()));

    let result = search.search(&alice(), request(Some(room_id(1)), Some(message(room_id(1), 4).id), 20)).await;

    assert!(matches!(result, Err(SearchError::Unavailable)), "got {result:?}");
}
