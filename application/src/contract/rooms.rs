//! The `RoomRepository` contract.

use crate::ports::{
    InsertDirectError, MarkReadError, MemberAddError, MemberRemoveError, RoomPage, RoomRepository, UpdateRoomError,
};
use domain::{DirectPair, MemberLimit, ReadMarker, Room, RoomId, RoomName, UserId, Visibility};

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
        room.kind(),
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

pub async fn an_added_member_is_a_member_and_the_room_version_moves_on(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Private, user(1), &[user(2)]);
    repo.insert(&stored).await.expect("insert");

    repo.add_member(stored.id(), user(3), at(5_000)).await.expect("add");

    let after = repo.get(stored.id()).await.expect("get").expect("stored");
    let mut expected = bumped(&stored);
    expected.add_member(user(3), at(5_000)).expect("room for one more");
    assert_eq!(after, expected, "a plain member, joined when told, and the version bumped");
    assert!(repo.is_member(stored.id(), user(3)).await.expect("is_member"));
    assert_eq!(repo.count_members(stored.id()).await.expect("count"), 3);
    assert_eq!(repo.room_ids_for_member(user(3)).await.expect("room ids"), vec![stored.id()]);
}

pub async fn adding_a_member_twice_or_to_an_unknown_room_writes_nothing(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2)]);
    repo.insert(&stored).await.expect("insert");
    let unknown = RoomId::from_uuid(uuid(404));

    let again = repo.add_member(stored.id(), user(2), at(5_000)).await;
    let owner = repo.add_member(stored.id(), user(1), at(5_000)).await;
    let nowhere = repo.add_member(unknown, user(3), at(5_000)).await;

    assert!(matches!(again, Err(MemberAddError::AlreadyMember)), "got {again:?}");
    assert!(matches!(owner, Err(MemberAddError::AlreadyMember)), "got {owner:?}");
    assert!(matches!(nowhere, Err(MemberAddError::NotFound)), "got {nowhere:?}");
    assert_eq!(repo.get(stored.id()).await.expect("get"), Some(stored));
    assert!(!repo.is_member(unknown, user(3)).await.expect("is_member"));
    assert_eq!(repo.count_members(unknown).await.expect("count"), 0);
}

pub async fn a_full_room_refuses_one_more_member_with_its_limit(repo: &impl RoomRepository) {
    let members: Vec<UserId> = (2..=10).map(user).collect();
    let full = room(1, Visibility::Public, user(1), &members);
    repo.insert(&full).await.expect("insert");

    let outcome = repo.add_member(full.id(), user(11), at(5_000)).await;

    assert!(matches!(outcome, Err(MemberAddError::Full(10))), "got {outcome:?}");
    assert!(!repo.is_member(full.id(), user(11)).await.expect("is_member"));
    assert_eq!(repo.count_members(full.id()).await.expect("count"), 10);
}

pub async fn concurrent_adds_never_take_a_room_past_its_limit(repo: &impl RoomRepository) {
    // The room holds 10; its owner and 40 newcomers race for the other 9 places.
    let stored = room(1, Visibility::Public, user(1), &[]);
    repo.insert(&stored).await.expect("insert");

    let outcomes =
        futures::future::join_all((100..140).map(|n| repo.add_member(stored.id(), user(n), at(5_000)))).await;

    let added = outcomes.iter().filter(|o| o.is_ok()).count();
    let full = outcomes.iter().filter(|o| matches!(o, Err(MemberAddError::Full(10)))).count();
    assert_eq!((added, full), (9, 31), "every add either took a place or was told the room is full");
    assert_eq!(repo.count_members(stored.id()).await.expect("count"), 10);
    let after = repo.get(stored.id()).await.expect("get").expect("stored");
    assert_eq!(after.members().len(), 10);
    assert_eq!(after.version(), stored.version() + 9, "each add bumped the version once");
}

pub async fn concurrent_adds_of_one_user_add_them_once(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[]);
    repo.insert(&stored).await.expect("insert");

    let outcomes = futures::future::join_all((0..8).map(|_| repo.add_member(stored.id(), user(2), at(5_000)))).await;

    let added = outcomes.iter().filter(|o| o.is_ok()).count();
    let already = outcomes.iter().filter(|o| matches!(o, Err(MemberAddError::AlreadyMember))).count();
    assert_eq!((added, already), (1, 7));
    assert_eq!(repo.count_members(stored.id()).await.expect("count"), 2);
    // The places the losers briefly took were given back: the room still fills to its limit.
    for n in 3..=10 {
        repo.add_member(stored.id(), user(n), at(6_000)).await.expect("room for the rest");
    }
}

pub async fn a_removed_member_is_no_member_and_the_room_version_moves_on(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Private, user(1), &[user(2), user(3)]);
    repo.insert(&stored).await.expect("insert");

    repo.remove_member(stored.id(), user(2)).await.expect("remove");

    let after = repo.get(stored.id()).await.expect("get").expect("stored");
    let mut expected = bumped(&stored);
    expected.remove_member(user(2)).expect("a member");
    assert_eq!(after, expected);
    assert!(!repo.is_member(stored.id(), user(2)).await.expect("is_member"));
    assert_eq!(repo.count_members(stored.id()).await.expect("count"), 2);
    assert_eq!(repo.room_ids_for_member(user(2)).await.expect("room ids"), vec![]);
}

pub async fn removing_the_owner_a_stranger_or_from_an_unknown_room_writes_nothing(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2)]);
    repo.insert(&stored).await.expect("insert");

    let owner = repo.remove_member(stored.id(), user(1)).await;
    let stranger = repo.remove_member(stored.id(), user(3)).await;
    let nowhere = repo.remove_member(RoomId::from_uuid(uuid(404)), user(2)).await;

    assert!(matches!(owner, Err(MemberRemoveError::Owner)), "got {owner:?}");
    assert!(matches!(stranger, Err(MemberRemoveError::NotMember)), "got {stranger:?}");
    assert!(matches!(nowhere, Err(MemberRemoveError::NotFound)), "got {nowhere:?}");
    assert_eq!(repo.get(stored.id()).await.expect("get"), Some(stored));
}

pub async fn a_removal_frees_a_place_for_the_next_member(repo: &impl RoomRepository) {
    let members: Vec<UserId> = (2..=10).map(user).collect();
    let full = room(1, Visibility::Public, user(1), &members);
    repo.insert(&full).await.expect("insert");

    repo.remove_member(full.id(), user(5)).await.expect("remove");
    let first = repo.add_member(full.id(), user(11), at(5_000)).await;
    let second = repo.add_member(full.id(), user(12), at(5_000)).await;

    assert!(first.is_ok(), "got {first:?}");
    assert!(matches!(second, Err(MemberAddError::Full(10))), "got {second:?}");
}

pub async fn an_update_from_a_copy_read_before_an_add_is_a_conflict(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2)]);
    repo.insert(&stored).await.expect("insert");
    let mut stale = repo.get(stored.id()).await.expect("get").expect("stored");
    repo.add_member(stored.id(), user(3), at(5_000)).await.expect("add");

    stale.leave(user(1)).expect("owner leaves");
    let outcome = repo.update(&stale).await;

    assert!(matches!(outcome, Err(UpdateRoomError::Conflict)), "got {outcome:?}");
    assert!(repo.is_member(stored.id(), user(3)).await.expect("is_member"), "the add was not undone");
}

pub async fn the_member_count_follows_an_update_and_includes_the_owner(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2), user(3)]);
    repo.insert(&stored).await.expect("insert");
    let mut changed = repo.get(stored.id()).await.expect("get").expect("stored");
    changed.leave(user(1)).expect("owner leaves");
    repo.update(&changed).await.expect("update");

    let count = repo.count_members(stored.id()).await.expect("count");
    let limit_holds = (4..=20).map(user).collect::<Vec<_>>();
    let mut added = 0;
    for n in limit_holds {
        if repo.add_member(stored.id(), n, at(6_000)).await.is_ok() {
            added += 1;
        }
    }

    assert_eq!(count, 2);
    assert_eq!(added, 8, "the limit of 10 counts from the updated members");
}

// ---- Issue 16: direct rooms and read markers ----

/// The direct room numbered `n` that `opener` opened with `other`.
pub fn direct(n: u128, opener: UserId, other: UserId) -> Room {
    Room::direct(RoomId::from_uuid(uuid(1_000 + n)), opener, other, at(1_000)).expect("two users")
}

fn marker(n: u64) -> ReadMarker {
    ReadMarker::restore(n)
}

pub async fn a_direct_room_reads_back_by_its_pair_whoever_asks(repo: &impl RoomRepository) {
    let stored = direct(1, user(2), user(1));
    repo.insert(&room(2, Visibility::Private, user(1), &[user(2)])).await.expect("a group of the same two");

    repo.insert_direct(&stored).await.expect("insert_direct");

    let pair = DirectPair::new(user(1), user(2)).expect("two users");
    assert_eq!(repo.find_direct(pair).await.expect("find"), Some(stored.clone()));
    assert_eq!(repo.get(stored.id()).await.expect("get"), Some(stored));
    assert_eq!(repo.find_direct(DirectPair::new(user(1), user(3)).expect("two")).await.expect("find"), None);
}

pub async fn a_second_direct_room_for_a_pair_is_a_duplicate_and_stores_nothing(repo: &impl RoomRepository) {
    let first = direct(1, user(1), user(2));
    repo.insert_direct(&first).await.expect("insert_direct");

    let outcome = repo.insert_direct(&direct(2, user(2), user(1))).await;

    assert!(matches!(outcome, Err(InsertDirectError::Duplicate)), "got {outcome:?}");
    assert_eq!(repo.get(direct(2, user(2), user(1)).id()).await.expect("get"), None);
    assert_eq!(repo.room_ids_for_member(user(2)).await.expect("room ids"), vec![first.id()]);
}

pub async fn concurrent_direct_inserts_for_one_pair_store_one_room(repo: &impl RoomRepository) {
    let outcomes = futures::future::join_all((1..=8).map(|n| {
        let (opener, other) = if n % 2 == 0 { (user(1), user(2)) } else { (user(2), user(1)) };
        let room = direct(n, opener, other);
        async move { repo.insert_direct(&room).await }
    }))
    .await;

    let stored = outcomes.iter().filter(|o| o.is_ok()).count();
    let duplicates = outcomes.iter().filter(|o| matches!(o, Err(InsertDirectError::Duplicate))).count();
    assert_eq!((stored, duplicates), (1, 7));
    assert_eq!(repo.room_ids_for_member(user(1)).await.expect("room ids").len(), 1);
    assert_eq!(repo.room_ids_for_member(user(2)).await.expect("room ids").len(), 1);
}

pub async fn a_direct_room_takes_nobody_in_and_lets_nobody_out(repo: &impl RoomRepository) {
    let stored = direct(1, user(1), user(2));
    repo.insert_direct(&stored).await.expect("insert_direct");

    let add = repo.add_member(stored.id(), user(3), at(5_000)).await;
    let remove = repo.remove_member(stored.id(), user(2)).await;

    assert!(matches!(add, Err(MemberAddError::Direct)), "got {add:?}");
    assert!(matches!(remove, Err(MemberRemoveError::Direct)), "got {remove:?}");
    assert_eq!(repo.get(stored.id()).await.expect("get"), Some(stored));
}

pub async fn a_read_marker_starts_at_zero_and_only_moves_forward(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2)]);
    repo.insert(&stored).await.expect("insert");
    let before = repo.read_markers(user(2), &[stored.id()]).await.expect("markers");

    let forward = repo.mark_read(stored.id(), user(2), marker(5)).await.expect("mark");
    let backward = repo.mark_read(stored.id(), user(2), marker(3)).await.expect("mark");
    let same = repo.mark_read(stored.id(), user(2), marker(5)).await.expect("mark");

    assert_eq!(before, vec![(stored.id(), marker(0))]);
    assert_eq!((forward.marker, forward.moved), (marker(5), true));
    assert_eq!((backward.marker, backward.moved), (marker(5), false), "a lower seq is a no-op");
    assert_eq!((same.marker, same.moved), (marker(5), false));
    assert_eq!(repo.read_markers(user(2), &[stored.id()]).await.expect("markers"), vec![(stored.id(), marker(5))]);
    assert_eq!(repo.read_markers(user(1), &[stored.id()]).await.expect("markers"), vec![(stored.id(), marker(0))]);
}

pub async fn markers_belong_to_memberships(repo: &impl RoomRepository) {
    let mine = room(1, Visibility::Public, user(1), &[user(2)]);
    let theirs = room(2, Visibility::Public, user(3), &[]);
    repo.insert(&mine).await.expect("insert");
    repo.insert(&theirs).await.expect("insert");
    repo.mark_read(mine.id(), user(2), marker(4)).await.expect("mark");

    let stranger = repo.mark_read(theirs.id(), user(2), marker(1)).await;
    let nowhere = repo.mark_read(RoomId::from_uuid(uuid(404)), user(2), marker(1)).await;
    let listed = repo.read_markers(user(2), &[mine.id(), theirs.id(), RoomId::from_uuid(uuid(404))]).await;
    repo.remove_member(mine.id(), user(2)).await.expect("remove");
    repo.add_member(mine.id(), user(2), at(9_000)).await.expect("back again");

    assert!(matches!(stranger, Err(MarkReadError::NotMember)), "got {stranger:?}");
    assert!(matches!(nowhere, Err(MarkReadError::NotMember)), "got {nowhere:?}");
    assert_eq!(listed.expect("markers"), vec![(mine.id(), marker(4))], "only rooms the user is in");
    assert_eq!(
        repo.read_markers(user(2), &[mine.id()]).await.expect("markers"),
        vec![(mine.id(), marker(0))],
        "a new membership starts from 0"
    );
}

pub async fn a_read_marker_survives_a_change_of_owner(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2), user(3)]);
    repo.insert(&stored).await.expect("insert");
    repo.mark_read(stored.id(), user(2), marker(7)).await.expect("mark");
    repo.mark_read(stored.id(), user(3), marker(2)).await.expect("mark");
    let mut changed = repo.get(stored.id()).await.expect("get").expect("stored");
    changed.leave(user(1)).expect("the owner leaves");

    repo.update(&changed).await.expect("update");

    let mut markers = repo.read_markers(user(2), &[stored.id()]).await.expect("markers");
    markers.extend(repo.read_markers(user(3), &[stored.id()]).await.expect("markers"));
    assert_eq!(markers, vec![(stored.id(), marker(7)), (stored.id(), marker(2))]);
    assert_eq!(repo.get(stored.id()).await.expect("get").map(|r| r.owner()), Some(user(2)));
}

pub async fn concurrent_marks_leave_the_highest(repo: &impl RoomRepository) {
    let stored = room(1, Visibility::Public, user(1), &[user(2)]);
    repo.insert(&stored).await.expect("insert");

    let outcomes =
        futures::future::join_all((1..=20).rev().map(|n| repo.mark_read(stored.id(), user(2), marker(n)))).await;

    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(repo.read_markers(user(2), &[stored.id()]).await.expect("markers"), vec![(stored.id(), marker(20))]);
}

// ---- end of issue 16 ----

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
        an_added_member_is_a_member_and_the_room_version_moves_on,
        adding_a_member_twice_or_to_an_unknown_room_writes_nothing,
        a_full_room_refuses_one_more_member_with_its_limit,
        concurrent_adds_never_take_a_room_past_its_limit,
        concurrent_adds_of_one_user_add_them_once,
        a_removed_member_is_no_member_and_the_room_version_moves_on,
        removing_the_owner_a_stranger_or_from_an_unknown_room_writes_nothing,
        a_removal_frees_a_place_for_the_next_member,
        an_update_from_a_copy_read_before_an_add_is_a_conflict,
        the_member_count_follows_an_update_and_includes_the_owner,
        a_direct_room_reads_back_by_its_pair_whoever_asks,
        a_second_direct_room_for_a_pair_is_a_duplicate_and_stores_nothing,
        concurrent_direct_inserts_for_one_pair_store_one_room,
        a_direct_room_takes_nobody_in_and_lets_nobody_out,
        a_read_marker_starts_at_zero_and_only_moves_forward,
        markers_belong_to_memberships,
        a_read_marker_survives_a_change_of_owner,
        concurrent_marks_leave_the_highest,
        );
    };
}
