//! The `RoomRepository` contract.

use crate::ports::{RoomPage, RoomRepository, UpdateRoomError};
use domain::{MemberLimit, Room, RoomId, RoomName, UserId, Visibility};

use super::{at, uuid};

pub fn user(n: u128) -> UserId {
    UserId::from_uuid(uuid(n))
}

/// A room numbered `n` (ids sort by `n`) owned by `owner`, with `members` joined after it.
pub fn room(n: u128, visibility: Visibility, owner: UserId, members: &[UserId]) -> Room {
    let mut room = Room::create(
        RoomId::from_uuid(uuid(1_000 + n)),
        RoomName::new(&format!("room {n}")).expect("valid name"),
        visibility,
        owner,
        MemberLimit::new(10).expect("valid limit"),
        at(1_000),
    );
    for (i, member) in (1_i64..).zip(members) {
        room.add_member(*member, at(1_000 + i)).expect("fixture rooms have room");
    }
    room
}

fn ids(rooms: &[Room]) -> Vec<RoomId> {
    rooms.iter().map(Room::id).collect()
}

/// `room` as storage should hold it after one more successful update.
fn bumped(room: &Room) -> Room {
    Room::restore(
        room.id(),
        room.name().clone(),
        room.visibility(),
        room.owner(),
        room.members().to_vec(),
        room.member_limit(),
        room.created_at(),
        room.version() + 1,
    )
}

pub async fn an_inserted_room_reads_back_with_its_members(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Private, user(1), &[user(2), user(3)]);

    repo.insert(&stored).await.expect("insert");

    assert_eq!(repo.get(stored.id()).await.expect("get"), Some(stored));
}

pub async fn an_unknown_room_is_absent(repo: &impl RoomRepository) {
    let unknown = RoomId::from_uuid(uuid(404));

    assert_eq!(repo.get(unknown).await.expect("get"), None);
    assert!(!repo.is_member(unknown, user(1)).await.expect("is_member"));
    assert!(!repo.delete(unknown).await.expect("delete"));
}

pub async fn an_update_replaces_members_and_owner_and_bumps_the_version(repo: &impl RoomRepository) {
    let original = room(1, Visibility::Public, user(1), &[user(2), user(3)]);
    repo.insert(&original).await.expect("insert");
    let mut changed = repo.get(original.id()).await.expect("get").expect("stored");
    changed.leave(user(1)).expect("owner leaves");
    changed.remove_member(user(3)).expect("remove");
    changed.add_member(user(4), at(5_000)).expect("add");

    repo.update(&changed).await.expect("update");

    let stored = repo.get(original.id()).await.expect("get").expect("stored");
    assert_eq!(stored, bumped(&changed));
    assert_eq!(stored.owner(), user(2));
    assert!(!repo.is_member(original.id(), user(1)).await.expect("is_member"));
    assert!(repo.is_member(original.id(), user(4)).await.expect("is_member"));
    let mut again = stored.clone();
    again.add_member(user(5), at(6_000)).expect("add");
    repo.update(&again).await.expect("an update from the fresh copy succeeds");
    assert_eq!(repo.get(original.id()).await.expect("get").map(|r| r.version()), Some(stored.version() + 1));
}

pub async fn a_stale_room_update_is_a_conflict_and_writes_nothing(repo: &impl RoomRepository) {
    let original = room(1, Visibility::Public, user(1), &[]);
    repo.insert(&original).await.expect("insert");
    let mut first = repo.get(original.id()).await.expect("get").expect("stored");
    let mut stale = first.clone();
    first.add_member(user(2), at(2_000)).expect("add");
    repo.update(&first).await.expect("first update");

    stale.add_member(user(3), at(3_000)).expect("add");
    let outcome = repo.update(&stale).await;

    assert!(matches!(outcome, Err(UpdateRoomError::Conflict)), "got {outcome:?}");
    assert_eq!(repo.get(original.id()).await.expect("get"), Some(bumped(&first)));
    assert!(!repo.is_member(original.id(), user(3)).await.expect("is_member"));
}

pub async fn updating_a_deleted_room_is_not_found(repo: &impl RoomRepository) {
    let mut gone = room(1, Visibility::Public, user(1), &[]);
    repo.insert(&gone).await.expect("insert");
    assert!(repo.delete(gone.id()).await.expect("delete"));
    gone.add_member(user(2), at(2_000)).expect("add");

    let outcome = repo.update(&gone).await;

    assert!(matches!(outcome, Err(UpdateRoomError::NotFound)), "got {outcome:?}");
    assert_eq!(repo.get(gone.id()).await.expect("get"), None, "nothing was recreated");
    assert!(!repo.is_member(gone.id(), user(2)).await.expect("is_member"));
}

pub async fn deleting_a_room_removes_its_memberships(repo: &impl RoomRepository) {
    let doomed = room(1, Visibility::Public, user(1), &[user(2)]);
    let kept = room(2, Visibility::Public, user(2), &[]);
    repo.insert(&doomed).await.expect("insert");
    repo.insert(&kept).await.expect("insert");

    let deleted = repo.delete(doomed.id()).await.expect("delete");

    assert!(deleted);
    assert!(!repo.delete(doomed.id()).await.expect("second delete"), "a second delete finds nothing");
    assert!(!repo.is_member(doomed.id(), user(2)).await.expect("is_member"));
    assert_eq!(repo.room_ids_for_member(user(2)).await.expect("room ids"), vec![kept.id()]);
    let page = RoomPage { after: None, limit: 10 };
    assert_eq!(repo.list_for_member(user(2), page).await.expect("list"), vec![kept]);
}

pub async fn a_deleted_room_is_remembered_until_its_content_is_cleared(repo: &impl RoomRepository) {
    let doomed = room(1, Visibility::Private, user(1), &[]);
    let kept = room(2, Visibility::Private, user(1), &[]);
    repo.insert(&doomed).await.expect("insert");
    repo.insert(&kept).await.expect("insert");
    assert!(repo.deleted_rooms(10).await.expect("deleted rooms").is_empty());

    repo.delete(doomed.id()).await.expect("delete");
    repo.delete(room(3, Visibility::Private, user(1), &[]).id()).await.expect("delete of an unknown room");
    let remembered = repo.deleted_rooms(10).await.expect("deleted rooms");
    repo.content_cleared(doomed.id()).await.expect("cleared");

    assert_eq!(remembered, vec![doomed.id()], "only a room that existed");
    assert!(repo.deleted_rooms(10).await.expect("deleted rooms").is_empty());
}

pub async fn member_listing_pages_by_id_after_the_cursor(repo: &impl RoomRepository) {
    let me = user(1);
    let rooms = [
        room(4, Visibility::Private, user(9), &[me]),
        room(1, Visibility::Public, me, &[user(2)]),
        room(2, Visibility::Public, user(9), &[user(2)]),
        room(5, Visibility::Public, user(9), &[user(2), me]),
        room(3, Visibility::Private, me, &[]),
    ];
    for room in &rooms {
        repo.insert(room).await.expect("insert");
    }
    let mine = |n: u128| rooms.iter().find(|r| r.id() == RoomId::from_uuid(uuid(1_000 + n))).cloned().expect("fixture");

    let first = repo.list_for_member(me, RoomPage { after: None, limit: 2 }).await.expect("first page");
    let second =
        repo.list_for_member(me, RoomPage { after: Some(first[1].id()), limit: 2 }).await.expect("second page");
    let third = repo.list_for_member(me, RoomPage { after: Some(second[1].id()), limit: 2 }).await.expect("third page");

    assert_eq!(first, vec![mine(1), mine(3)], "full rooms, members included, in id order");
    assert_eq!(second, vec![mine(4), mine(5)]);
    assert_eq!(third, vec![]);
}

pub async fn public_listing_skips_private_rooms_and_pages_by_id(repo: &impl RoomRepository) {
    let rooms = [
        room(3, Visibility::Public, user(1), &[user(2)]),
        room(2, Visibility::Private, user(1), &[]),
        room(1, Visibility::Public, user(2), &[]),
        room(4, Visibility::Public, user(3), &[user(1), user(2)]),
    ];
    for room in &rooms {
        repo.insert(room).await.expect("insert");
    }

    let first = repo.list_public(RoomPage { after: None, limit: 2 }).await.expect("first page");
    let rest = repo.list_public(RoomPage { after: Some(first[1].id()), limit: 2 }).await.expect("second page");

    assert_eq!(first, vec![rooms[2].clone(), rooms[0].clone()]);
    assert_eq!(rest, vec![rooms[3].clone()]);
    assert_eq!(repo.list_public(RoomPage { after: None, limit: 0 }).await.expect("empty page"), vec![]);
}

pub async fn room_ids_for_member_lists_every_room_the_user_belongs_to(repo: &impl RoomRepository) {
    let rooms = [
        room(1, Visibility::Public, user(1), &[user(2)]),
        room(2, Visibility::Private, user(2), &[]),
        room(3, Visibility::Public, user(1), &[]),
    ];
    for room in &rooms {
        repo.insert(room).await.expect("insert");
    }

    let mut found = repo.room_ids_for_member(user(2)).await.expect("room ids");

    found.sort();
    assert_eq!(found, ids(&rooms[..2]));
    assert_eq!(repo.room_ids_for_member(user(404)).await.expect("room ids"), vec![]);
}

pub async fn is_member_is_false_for_non_members(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2)]);
    repo.insert(&stored).await.expect("insert");

    let owner = repo.is_member(stored.id(), user(1)).await.expect("is_member");
    let member = repo.is_member(stored.id(), user(2)).await.expect("is_member");
    let stranger = repo.is_member(stored.id(), user(3)).await.expect("is_member");

    assert!(owner && member);
    assert!(!stranger);
}

/// Hands `$generate!` this module and every `RoomRepository` behaviour in it, after the caller's
/// arguments: `application::rooms_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! rooms_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::rooms;
        an_inserted_room_reads_back_with_its_members,
        an_unknown_room_is_absent,
        an_update_replaces_members_and_owner_and_bumps_the_version,
        a_stale_room_update_is_a_conflict_and_writes_nothing,
        updating_a_deleted_room_is_not_found,
        deleting_a_room_removes_its_memberships,
        a_deleted_room_is_remembered_until_its_content_is_cleared,
        member_listing_pages_by_id_after_the_cursor,
        public_listing_skips_private_rooms_and_pages_by_id,
        room_ids_for_member_lists_every_room_the_user_belongs_to,
        is_member_is_false_for_non_members,
        );
    };
}
