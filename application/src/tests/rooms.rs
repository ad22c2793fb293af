//! Unit tests of the rooms use case: create, list, get, join, invite, leave, remove members and delete.

use std::sync::Arc;

use domain::{DirectPair, MemberLimit, ReadMarker, Room, RoomId, RoomName, User, UserId, Username, Visibility};
use mockall::Sequence;

use super::fixtures::{
    alice, bob, carol, dave, fixed_clock, generated_id, member_ids, message, next_version, now, room, room_id, seq,
    sequential_ids, summary, user, user_id,
};
use crate::accounts::UserRef;
use crate::membership::{CacheLimits, MembershipCache};
use crate::ports::{
    InsertDirectError, MarkReadError, MarkedRead, MemberAddError, MemberRemoveError, MockClock, MockEventBus,
    MockIdGenerator, MockMessageArchive, MockMessageLog, MockRoomRepository, MockUserRepository, RoomEvent, RoomPage,
    RoomTail, SeqRange, StoredUser, TailQuery, UpdateRoomError, UserSettings,
};
use crate::rooms::{
    CreateRoomError, DeleteRoomError, DirectError, InviteError, JoinError, NewRoom, PageSize, ReadError,
    RemoveMemberError, RoomAccessError, Rooms,
};

/// Every port of `Rooms` as a mock without expectations: any call a test did not expect fails it.
struct Ports {
    rooms: MockRoomRepository,
    users: MockUserRepository,
    log: MockMessageLog,
    bus: MockEventBus,
    clock: MockClock,
    ids: MockIdGenerator,
    member_limit: MemberLimit,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            rooms: MockRoomRepository::new(),
            users: MockUserRepository::new(),
            log: MockMessageLog::new(),
            bus: MockEventBus::new(),
            clock: MockClock::new(),
            ids: MockIdGenerator::new(),
            member_limit: MemberLimit::DEFAULT,
        }
    }
}

impl Ports {
    fn rooms(self) -> Rooms {
        Rooms::new(
            Arc::new(self.rooms),
            Arc::new(self.users),
            Arc::new(self.log),
            Arc::new(self.bus),
            Arc::new(self.clock),
            Arc::new(self.ids),
            self.member_limit,
        )
    }

    /// Expects `times` rooms to be shown with their members' names and a last seq of 7.
    fn expect_details(&mut self, times: usize) {
        self.users.expect_by_ids().times(times).returning(|ids| Ok(directory(ids)));
        self.log.expect_last_seq().times(times).returning(|_| Ok(Some(seq(7))));
    }

    /// Expects one page of rooms to be shown: one names read for the whole page, the viewer's
    /// markers (when a viewer lists their own rooms) and the log's tails, each once.
    fn expect_page(&mut self, with_markers: bool) {
        self.users.expect_by_ids().times(1).returning(|ids| Ok(directory(ids)));
        if with_markers {
            self.rooms.expect_read_markers().times(1).returning(|_, _| Ok(Vec::new()));
        }
        self.log.expect_tails().times(1).returning(|queries, _, _| {
            Ok(queries
                .iter()
                .map(|q| RoomTail {
                    room: q.room,
                    last_seq: Some(seq(7)),
                    holds_from: Some(seq(1)),
                    newest: None,
                    unread: 0,
                })
                .collect())
        });
    }

    fn expect_no_details(&mut self) {
        self.users.expect_by_ids().never();
        self.log.expect_last_seq().never();
    }

    /// Expects `room` to be read once.
    fn expect_get(&mut self, room: Room) {
        let id = room.id();
        self.rooms.expect_get().withf(move |r| *r == id).times(1).return_once(move |_| Ok(Some(room)));
    }

    fn expect_no_update(&mut self) {
        self.rooms.expect_update().never();
    }

    /// Expects exactly this event once.
    fn expect_event(&mut self, expected: RoomEvent) {
        self.bus.expect_publish().withf(move |event| *event == expected).times(1).returning(|_| Ok(()));
    }

    fn expect_no_event(&mut self) {
        self.bus.expect_publish().never();
    }
}

/// The users among `ids` that exist, as the user repository would answer.
fn directory(ids: &[UserId]) -> Vec<User> {
    [alice(), bob(), carol(), dave()].into_iter().filter(|u| ids.contains(&u.id)).collect()
}

fn general() -> RoomId {
    room_id(1)
}

fn new_room(member_ids: Vec<UserId>) -> NewRoom {
    NewRoom { name: RoomName::new("general").expect("valid"), visibility: Visibility::Public, member_ids }
}

fn page(n: u32) -> PageSize {
    PageSize::new(n, 100).expect("valid page size")
}

fn rooms_numbered(numbers: std::ops::RangeInclusive<u128>) -> Vec<Room> {
    numbers.map(|n| room(room_id(n), Visibility::Public, &alice(), &[])).collect()
}

fn ids_of(rooms: &[crate::rooms::RoomDetails]) -> Vec<RoomId> {
    rooms.iter().map(|d| d.room.id()).collect()
}

// --- create ---

#[tokio::test]
async fn creating_a_room_makes_the_actor_owner_and_adds_the_named_members() {
    let mut ports = Ports { clock: fixed_clock(1), ids: sequential_ids(1), ..Ports::default() };
    ports.users.expect_by_ids().withf(|ids| ids == [bob().id, carol().id]).times(1).returning(|ids| Ok(directory(ids)));
    ports
        .rooms
        .expect_insert()
        .withf(|room| {
            room.id().as_uuid() == generated_id(1)
                && room.owner() == alice().id
                && member_ids(room) == [alice().id, bob().id, carol().id]
        })
        .times(1)
        .returning(|_| Ok(()));
    ports.expect_details(1);
    let announced = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = announced.clone();
    ports.bus.expect_publish().times(3).returning(move |event| {
        seen.lock().push(event);
        Ok(())
    });

    let details =
        ports.rooms().create(&alice(), new_room(vec![carol().id, bob().id, carol().id])).await.expect("created");

    // Every member, the creator too, is announced as joined, so their live sockets follow the room.
    let room_id = details.room.id();
    let joined: Vec<UserId> = announced
        .lock()
        .iter()
        .map(|event| match event {
            RoomEvent::MemberJoined { room_id: r, user } if *r == room_id => user.id,
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(joined, [alice().id, bob().id, carol().id]);

    assert!(details.room.is_owner(alice().id));
    assert_eq!(member_ids(&details.room), [alice().id, bob().id, carol().id]);
    assert_eq!(details.usernames.get(&bob().id).map(|n| n.as_str()), Some("bob"));
    assert_eq!(details.usernames.len(), 3);
    assert_eq!(details.last_seq, 7);
}

#[tokio::test]
async fn creating_a_room_with_unknown_member_ids_names_them_and_creates_nothing() {
    let mut ports = Ports::default();
    ports.users.expect_by_ids().times(1).returning(|ids| Ok(directory(ids)));
    ports.rooms.expect_insert().never();

    let result = ports.rooms().create(&alice(), new_room(vec![user_id(88), bob().id, user_id(77)])).await;

    let Err(CreateRoomError::UnknownMembers(unknown)) = result else {
        panic!("expected UnknownMembers, got {result:?}")
    };
    assert_eq!(unknown, [user_id(77), user_id(88)]);
    let message = CreateRoomError::UnknownMembers(unknown).to_string();
    assert!(message.contains(&user_id(77).to_string()) && message.contains(&user_id(88).to_string()), "{message}");
}

#[tokio::test]
async fn more_than_fifty_member_ids_are_refused_before_any_lookup() {
    let mut ports = Ports::default();
    ports.users.expect_by_ids().never();
    ports.rooms.expect_insert().never();
    let members = (100..151).map(user_id).collect();

    let result = ports.rooms().create(&alice(), new_room(members)).await;

    assert!(matches!(result, Err(CreateRoomError::TooManyMembers { max: 50, got: 51 })), "got {result:?}");
}

#[tokio::test]
async fn the_creator_among_the_member_ids_is_ignored() {
    let mut ports = Ports { clock: fixed_clock(1), ids: sequential_ids(1), ..Ports::default() };
    let others: Vec<User> = (100..150).map(|n| user(n, &format!("user{n}"))).collect();
    let known = others.clone();
    ports
        .users
        .expect_by_ids()
        .withf(|ids| ids.len() == 50 && !ids.contains(&alice().id))
        .times(1)
        .return_once(move |_| Ok(known));
    ports.rooms.expect_insert().times(1).returning(|_| Ok(()));
    ports.users.expect_by_ids().withf(|ids| ids.len() == 51).times(1).returning(|_| Ok(Vec::new()));
    ports.log.expect_last_seq().times(1).returning(|_| Ok(None));
    ports.bus.expect_publish().times(51).returning(|_| Ok(()));
    // Fifty others plus the creator: within the limit only because the creator does not count.
    let mut wanted: Vec<UserId> = others.iter().map(|u| u.id).collect();
    wanted.push(alice().id);

    let details = ports.rooms().create(&alice(), new_room(wanted)).await.expect("created");

    assert_eq!(details.room.members().len(), 51);
    assert_eq!(details.room.members().iter().filter(|m| m.user_id == alice().id).count(), 1);
    assert!(details.room.is_owner(alice().id));
}

#[tokio::test]
async fn creating_a_room_with_more_members_than_its_limit_creates_nothing() {
    let mut ports = Ports {
        member_limit: MemberLimit::new(2).expect("valid"),
        clock: fixed_clock(1),
        ids: sequential_ids(1),
        ..Ports::default()
    };
    ports.users.expect_by_ids().times(1).returning(|ids| Ok(directory(ids)));
    ports.rooms.expect_insert().never();

    let result = ports.rooms().create(&alice(), new_room(vec![bob().id, carol().id])).await;

    assert!(matches!(result, Err(CreateRoomError::Full(2))), "got {result:?}");
}

// --- list_mine / list_public ---

#[tokio::test]
async fn listing_my_rooms_gives_a_cursor_when_one_more_room_exists_than_the_page_holds() {
    let mut ports = Ports::default();
    ports
        .rooms
        .expect_list_for_member()
        .withf(|user, page| *user == alice().id && *page == RoomPage { after: None, limit: 3 })
        .times(1)
        .returning(|_, _| Ok(rooms_numbered(1..=3)));
    ports.expect_page(true);

    let list = ports.rooms().list_mine(&alice(), None, page(2)).await.expect("listed");

    assert_eq!(ids_of(&list.items), [room_id(1), room_id(2)]);
    assert_eq!(list.next_cursor, Some(room_id(2)));
}

#[tokio::test]
async fn the_last_page_of_my_rooms_has_no_cursor() {
    let mut ports = Ports::default();
    ports
        .rooms
        .expect_list_for_member()
        .withf(|_, page| *page == RoomPage { after: Some(room_id(2)), limit: 3 })
        .times(1)
        .returning(|_, _| Ok(rooms_numbered(3..=4)));
    ports.expect_page(true);

    let list = ports.rooms().list_mine(&alice(), Some(room_id(2)), page(2)).await.expect("listed");

    assert_eq!(ids_of(&list.items), [room_id(3), room_id(4)]);
    assert_eq!(list.next_cursor, None);
}

#[tokio::test]
async fn listing_public_rooms_gives_a_cursor_when_one_more_room_exists_than_the_page_holds() {
    let mut ports = Ports::default();
    ports
        .rooms
        .expect_list_public()
        .withf(|page| *page == RoomPage { after: Some(room_id(1)), limit: 3 })
        .times(1)
        .returning(|_| Ok(rooms_numbered(2..=4)));
    ports.expect_page(false);

    let list = ports.rooms().list_public(Some(room_id(1)), page(2)).await.expect("listed");

    assert_eq!(ids_of(&list.items), [room_id(2), room_id(3)]);
    assert_eq!(list.next_cursor, Some(room_id(3)));
}

#[tokio::test]
async fn the_last_page_of_public_rooms_has_no_cursor() {
    let mut ports = Ports::default();
    ports.rooms.expect_list_public().times(1).returning(|_| Ok(rooms_numbered(1..=1)));
    ports.expect_page(false);

    let list = ports.rooms().list_public(None, page(2)).await.expect("listed");

    assert_eq!(ids_of(&list.items), [room_id(1)]);
    assert_eq!(list.next_cursor, None);
}

// --- get ---

#[tokio::test]
async fn a_private_room_is_not_found_for_a_non_member() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Private, &bob(), &[&carol()]));
    ports.expect_no_details();

    let result = ports.rooms().get(&alice(), general()).await;

    assert!(matches!(result, Err(RoomAccessError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_private_room_is_shown_to_its_members() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Private, &bob(), &[&alice()]));
    ports.expect_details(1);

    let details = ports.rooms().get(&alice(), general()).await.expect("visible");

    assert_eq!(details.room.id(), general());
}

#[tokio::test]
async fn a_public_room_is_shown_to_a_non_member_with_names_and_last_seq() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &bob(), &[&carol()]));
    ports.expect_details(1);

    let details = ports.rooms().get(&alice(), general()).await.expect("visible");

    assert_eq!(details.room.id(), general());
    assert_eq!(details.usernames.get(&carol().id).map(|n| n.as_str()), Some("carol"));
    assert_eq!(details.last_seq, 7);
}

#[tokio::test]
async fn an_unknown_room_is_not_found() {
    let mut ports = Ports::default();
    ports.rooms.expect_get().times(1).returning(|_| Ok(None));
    ports.expect_no_details();

    let result = ports.rooms().get(&alice(), general()).await;

    assert!(matches!(result, Err(RoomAccessError::NotFound)), "got {result:?}");
}

// --- join ---

/// `room` as read back after `user` was added at `now()`.
fn with_member(room: &Room, user: &User) -> Room {
    let mut after = next_version(room);
    after.add_member(user.id, now()).expect("room for one more");
    after
}

#[tokio::test]
async fn joining_a_public_room_adds_the_actor_and_announces_it() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    let before = room(general(), Visibility::Public, &bob(), &[]);
    let after = with_member(&before, &alice());
    let mut order = Sequence::new();
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(before)));
    ports
        .rooms
        .expect_add_member()
        .withf(|room, user, at| (*room, *user, *at) == (general(), alice().id, now()))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(()));
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(after)));
    ports.expect_no_update();
    ports.expect_event(RoomEvent::MemberJoined { room_id: general(), user: summary(&alice()) });
    ports.expect_details(1);

    let details = ports.rooms().join(&alice(), general()).await.expect("joined");

    assert!(details.room.is_member(alice().id));
}

#[tokio::test]
async fn joining_a_private_room_one_is_not_in_is_refused_as_private() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Private, &bob(), &[]));
    ports.rooms.expect_add_member().never();
    ports.expect_no_event();

    let result = ports.rooms().join(&alice(), general()).await;

    // Private rooms are joined by invitation only; the API answers 403.
    assert!(matches!(result, Err(JoinError::Private)), "got {result:?}");
}

#[tokio::test]
async fn joining_a_full_room_fails_with_full() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_get(room(general(), Visibility::Public, &bob(), &[&carol()]));
    ports.rooms.expect_add_member().times(1).returning(|_, _, _| Err(MemberAddError::Full(2)));
    ports.expect_no_event();

    let result = ports.rooms().join(&alice(), general()).await;

    assert!(matches!(result, Err(JoinError::Full(2))), "got {result:?}");
}

#[tokio::test]
async fn joining_a_room_one_already_belongs_to_changes_nothing() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &bob(), &[&alice()]));
    ports.rooms.expect_add_member().never();
    ports.expect_no_event();
    ports.expect_details(1);

    let details = ports.rooms().join(&alice(), general()).await.expect("still a member");

    assert_eq!(member_ids(&details.room), [alice().id, bob().id]);
}

#[tokio::test]
async fn a_join_that_races_a_join_of_the_same_user_changes_nothing_and_announces_nothing() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    let before = room(general(), Visibility::Public, &bob(), &[]);
    let after = with_member(&before, &alice());
    let mut order = Sequence::new();
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(before)));
    ports
        .rooms
        .expect_add_member()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Err(MemberAddError::AlreadyMember));
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(after)));
    ports.expect_no_event();
    ports.expect_details(1);

    let details = ports.rooms().join(&alice(), general()).await.expect("a member either way");

    assert!(details.room.is_member(alice().id));
}

#[tokio::test]
async fn joining_an_unknown_room_is_not_found() {
    let mut ports = Ports::default();
    ports.rooms.expect_get().times(1).returning(|_| Ok(None));
    ports.rooms.expect_add_member().never();

    let result = ports.rooms().join(&alice(), general()).await;

    assert!(matches!(result, Err(JoinError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn joining_a_room_deleted_after_it_was_read_is_not_found() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_get(room(general(), Visibility::Public, &bob(), &[]));
    ports.rooms.expect_add_member().times(1).returning(|_, _, _| Err(MemberAddError::NotFound));
    ports.expect_no_event();

    let result = ports.rooms().join(&alice(), general()).await;

    assert!(matches!(result, Err(JoinError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_join_succeeds_even_when_announcing_it_fails() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    let before = room(general(), Visibility::Public, &bob(), &[]);
    let after = with_member(&before, &alice());
    let mut order = Sequence::new();
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(before)));
    ports.rooms.expect_add_member().times(1).in_sequence(&mut order).returning(|_, _, _| Ok(()));
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(after)));
    ports.bus.expect_publish().times(1).returning(|_| Err(anyhow::anyhow!("bus down")));
    ports.expect_details(1);

    let result = ports.rooms().join(&alice(), general()).await;

    assert!(result.is_ok(), "got {result:?}");
}

// --- invite ---

/// Expects `actor` to be asked about once, as a member or not.
fn expect_membership(ports: &mut Ports, actor: &User, member: bool) {
    let actor = actor.id;
    ports
        .rooms
        .expect_is_member()
        .withf(move |room, user| (*room, *user) == (general(), actor))
        .times(1)
        .returning(move |_, _| Ok(member));
}

#[tokio::test]
async fn inviting_a_user_adds_them_and_announces_that_they_joined() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.users.expect_by_id().withf(|id| *id == carol().id).times(1).returning(|_| Ok(Some(carol())));
    expect_membership(&mut ports, &alice(), true);
    ports
        .rooms
        .expect_add_member()
        .withf(|room, user, at| (*room, *user, *at) == (general(), carol().id, now()))
        .times(1)
        .returning(|_, _, _| Ok(()));
    ports.expect_get(with_member(&room(general(), Visibility::Private, &bob(), &[&alice()]), &carol()));
    ports.expect_event(RoomEvent::MemberJoined { room_id: general(), user: summary(&carol()) });
    ports.expect_details(1);

    let details = ports.rooms().invite(&alice(), general(), UserRef::Id(carol().id)).await.expect("invited");

    assert!(details.room.is_member(carol().id));
}

#[tokio::test]
async fn inviting_a_user_by_name_adds_the_user_of_that_name() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports
        .users
        .expect_by_username()
        .withf(|name| name.as_str() == "carol")
        .times(1)
        .returning(|_| Ok(Some(StoredUser { user: carol(), password_hash: "hash".into() })));
    expect_membership(&mut ports, &alice(), true);
    ports.rooms.expect_add_member().withf(|_, user, _| *user == carol().id).times(1).returning(|_, _, _| Ok(()));
    ports.expect_get(with_member(&room(general(), Visibility::Private, &bob(), &[&alice()]), &carol()));
    ports.expect_event(RoomEvent::MemberJoined { room_id: general(), user: summary(&carol()) });
    ports.expect_details(1);
    let carol_by_name = UserRef::Name(Username::new("carol").expect("valid"));

    let details = ports.rooms().invite(&alice(), general(), carol_by_name).await.expect("invited");

    assert!(details.room.is_member(carol().id));
}

#[tokio::test]
async fn a_non_member_cannot_invite_and_is_told_the_room_is_not_found() {
    let mut ports = Ports::default();
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(carol())));
    expect_membership(&mut ports, &alice(), false);
    ports.rooms.expect_add_member().never();
    ports.expect_no_event();

    let result = ports.rooms().invite(&alice(), general(), UserRef::Id(carol().id)).await;

    assert!(matches!(result, Err(InviteError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn inviting_an_unknown_user_fails_with_unknown_user() {
    let mut ports = Ports::default();
    ports.users.expect_by_id().times(1).returning(|_| Ok(None));
    ports.rooms.expect_is_member().never();
    ports.rooms.expect_add_member().never();
    ports.expect_no_event();

    let result = ports.rooms().invite(&alice(), general(), UserRef::Id(user_id(99))).await;

    assert!(matches!(result, Err(InviteError::UnknownUser { field: "user_id" })), "got {result:?}");
}

#[tokio::test]
async fn inviting_an_existing_member_fails_with_already_member() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(bob())));
    expect_membership(&mut ports, &alice(), true);
    ports.rooms.expect_add_member().times(1).returning(|_, _, _| Err(MemberAddError::AlreadyMember));
    ports.expect_no_event();

    let result = ports.rooms().invite(&alice(), general(), UserRef::Id(bob().id)).await;

    assert!(matches!(result, Err(InviteError::AlreadyMember)), "got {result:?}");
}

#[tokio::test]
async fn inviting_into_a_full_room_fails_with_full() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(carol())));
    expect_membership(&mut ports, &alice(), true);
    ports.rooms.expect_add_member().times(1).returning(|_, _, _| Err(MemberAddError::Full(2)));
    ports.expect_no_event();

    let result = ports.rooms().invite(&alice(), general(), UserRef::Id(carol().id)).await;

    assert!(matches!(result, Err(InviteError::Full(2))), "got {result:?}");
}

#[tokio::test]
async fn an_invite_never_rewrites_the_room_so_it_cannot_lose_a_race() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(carol())));
    expect_membership(&mut ports, &alice(), true);
    ports.rooms.expect_add_member().times(1).returning(|_, _, _| Ok(()));
    ports.expect_get(with_member(&room(general(), Visibility::Private, &bob(), &[&alice()]), &carol()));
    ports.expect_no_update();
    ports.expect_event(RoomEvent::MemberJoined { room_id: general(), user: summary(&carol()) });
    ports.expect_details(1);

    let result = ports.rooms().invite(&alice(), general(), UserRef::Id(carol().id)).await;

    assert!(result.is_ok(), "got {result:?}");
}

// --- leave ---

#[tokio::test]
async fn a_member_leaving_is_announced_and_the_room_stays() {
    let mut ports = Ports::default();
    ports
        .rooms
        .expect_remove_member()
        .withf(|room, user| (*room, *user) == (general(), alice().id))
        .times(1)
        .returning(|_, _| Ok(()));
    ports.expect_no_update();
    ports.rooms.expect_delete().never();
    ports.expect_event(RoomEvent::MemberLeft { room_id: general(), user: summary(&alice()) });

    let result = ports.rooms().leave(&alice(), general()).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn an_owner_leaving_hands_the_room_to_the_longest_standing_member() {
    let mut ports = Ports::default();
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Owner));
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&carol(), &bob()]));
    ports
        .rooms
        .expect_update()
        .withf(|room| room.owner() == carol().id && member_ids(room) == [bob().id, carol().id])
        .times(1)
        .returning(|_| Ok(()));
    ports.rooms.expect_delete().never();
    ports.expect_event(RoomEvent::MemberLeft { room_id: general(), user: summary(&alice()) });

    let result = ports.rooms().leave(&alice(), general()).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn an_owner_leaving_while_the_room_changes_reads_it_again() {
    let mut ports = Ports::default();
    let stale = room(general(), Visibility::Public, &alice(), &[&bob()]);
    let mut current = next_version(&stale);
    current.add_member(carol().id, now()).expect("carol joined meanwhile");
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Owner));
    let mut order = Sequence::new();
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(stale)));
    ports.rooms.expect_update().times(1).in_sequence(&mut order).returning(|_| Err(UpdateRoomError::Conflict));
    ports.rooms.expect_get().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(current)));
    ports
        .rooms
        .expect_update()
        .withf(|room| room.version() == 1 && member_ids(room) == [bob().id, carol().id])
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    ports.expect_event(RoomEvent::MemberLeft { room_id: general(), user: summary(&alice()) });

    let result = ports.rooms().leave(&alice(), general()).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn an_owner_leaving_gives_up_when_the_room_keeps_changing() {
    let mut ports = Ports::default();
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Owner));
    ports.rooms.expect_get().times(8).returning(|_| Ok(Some(room(general(), Visibility::Public, &alice(), &[&bob()]))));
    ports.rooms.expect_update().times(8).returning(|_| Err(UpdateRoomError::Conflict));
    ports.expect_no_event();

    let result = ports.rooms().leave(&alice(), general()).await;

    assert!(matches!(result, Err(RoomAccessError::Unknown(_))), "got {result:?}");
}

#[tokio::test]
async fn the_last_member_leaving_deletes_the_room_and_announces_its_deletion() {
    let mut ports = Ports::default();
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Owner));
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[]));
    let mut order = Sequence::new();
    // The write proves nobody joined since the read; only then is the room deleted.
    ports
        .rooms
        .expect_update()
        .withf(|room| room.members().is_empty())
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    ports.rooms.expect_delete().withf(|id| *id == general()).times(1).in_sequence(&mut order).returning(|_| Ok(true));
    ports.expect_event(RoomEvent::MemberLeft { room_id: general(), user: summary(&alice()) });
    ports
        .bus
        .expect_publish()
        .withf(|event| *event == RoomEvent::RoomDeleted { room_id: general() })
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));

    let result = ports.rooms().leave(&alice(), general()).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn leaving_a_room_one_is_not_in_is_not_found() {
    let mut ports = Ports::default();
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::NotMember));
    ports.expect_no_update();
    ports.rooms.expect_delete().never();
    ports.expect_no_event();

    let result = ports.rooms().leave(&alice(), general()).await;

    assert!(matches!(result, Err(RoomAccessError::NotFound)), "got {result:?}");
}

// --- remove_member ---

#[tokio::test]
async fn the_owner_removes_a_member_and_it_is_announced() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob(), &carol()]));
    ports
        .rooms
        .expect_remove_member()
        .withf(|room, user| (*room, *user) == (general(), bob().id))
        .times(1)
        .returning(|_, _| Ok(()));
    ports.expect_no_update();
    ports.users.expect_by_id().withf(|id| *id == bob().id).times(1).returning(|_| Ok(Some(bob())));
    ports.expect_event(RoomEvent::MemberLeft { room_id: general(), user: summary(&bob()) });

    let result = ports.rooms().remove_member(&alice(), general(), bob().id).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn a_member_who_is_not_the_owner_cannot_remove_others() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob(), &carol()]));
    ports.rooms.expect_remove_member().never();
    ports.expect_no_event();

    let result = ports.rooms().remove_member(&bob(), general(), carol().id).await;

    assert!(matches!(result, Err(RemoveMemberError::Forbidden)), "got {result:?}");
}

#[tokio::test]
async fn the_owner_cannot_remove_themselves() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob()]));
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Owner));
    ports.expect_no_event();

    let result = ports.rooms().remove_member(&alice(), general(), alice().id).await;

    assert!(matches!(result, Err(RemoveMemberError::CannotRemoveOwner)), "got {result:?}");
}

#[tokio::test]
async fn removing_someone_who_is_not_a_member_fails_with_not_member() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob()]));
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::NotMember));
    ports.expect_no_event();

    let result = ports.rooms().remove_member(&alice(), general(), dave().id).await;

    assert!(matches!(result, Err(RemoveMemberError::NotMember)), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_cannot_remove_anyone_and_is_told_the_room_is_not_found() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob()]));
    ports.rooms.expect_remove_member().never();
    ports.expect_no_event();

    let result = ports.rooms().remove_member(&dave(), general(), bob().id).await;

    assert!(matches!(result, Err(RemoveMemberError::NotFound)), "got {result:?}");
}

// --- delete ---

#[tokio::test]
async fn the_owner_deletes_the_room_and_it_is_announced() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob()]));
    ports.rooms.expect_delete().withf(|id| *id == general()).times(1).returning(|_| Ok(true));
    ports.expect_event(RoomEvent::RoomDeleted { room_id: general() });

    let result = ports.rooms().delete(&alice(), general()).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn a_member_who_is_not_the_owner_cannot_delete_the_room() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob()]));
    ports.rooms.expect_delete().never();
    ports.expect_no_event();

    let result = ports.rooms().delete(&bob(), general()).await;

    assert!(matches!(result, Err(DeleteRoomError::Forbidden)), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_cannot_delete_the_room_and_is_told_it_is_not_found() {
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob()]));
    ports.rooms.expect_delete().never();
    ports.expect_no_event();

    let result = ports.rooms().delete(&carol(), general()).await;

    assert!(matches!(result, Err(DeleteRoomError::NotFound)), "got {result:?}");
}

// --- subscriptions ---

#[tokio::test]
async fn a_live_connection_subscribes_to_every_room_of_its_user() {
    let mut ports = Ports::default();
    ports
        .rooms
        .expect_room_ids_for_member()
        .withf(|user| *user == alice().id)
        .times(1)
        .returning(|_| Ok(vec![room_id(1), room_id(2)]));

    let rooms = ports.rooms().subscriptions(alice().id).await.expect("listed");

    assert_eq!(rooms, [room_id(1), room_id(2)]);
}

// --- the membership cache ---

#[tokio::test]
async fn a_removal_clears_this_nodes_membership_cache_before_it_is_acknowledged() {
    // Arrange: bob's membership is cached on this node, with the bus followed.
    let mut store = MockRoomRepository::new();
    let mut order = Sequence::new();
    store.expect_is_member().times(1).in_sequence(&mut order).returning(|_, _| Ok(true));
    store.expect_is_member().times(1).in_sequence(&mut order).returning(|_, _| Ok(false));
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let cache = MembershipCache::new(Arc::new(store), Arc::new(clock), CacheLimits::default());
    cache.set_following(true);
    assert!(cache.is_member(general(), bob().id).await.expect("cached"));
    let mut ports = Ports::default();
    ports.expect_get(room(general(), Visibility::Public, &alice(), &[&bob()]));
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Ok(()));
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(bob())));
    ports.expect_event(RoomEvent::MemberLeft { room_id: general(), user: summary(&bob()) });
    let rooms = ports.rooms().with_membership_cache(cache.clone());

    // Act
    rooms.remove_member(&alice(), general(), bob().id).await.expect("removed");

    // Assert: the next send asks the store, without waiting for the bus.
    assert!(!cache.is_member(general(), bob().id).await.expect("lookup"));
}

// --- room list: unread counts and last messages ---

fn tail(room: RoomId, last: u64, holds_from: u64, newest: Option<u64>, unread: u64) -> RoomTail {
    RoomTail {
        room,
        last_seq: Some(seq(last)),
        holds_from: Some(seq(holds_from)),
        newest: newest.map(|n| message(room, n)),
        unread,
    }
}

/// `rooms` listed for alice in one page.
fn expect_my_rooms(ports: &mut Ports, rooms: Vec<Room>) {
    ports.rooms.expect_list_for_member().times(1).return_once(move |_, _| Ok(rooms));
    ports.users.expect_by_ids().times(1).returning(|ids| Ok(directory(ids)));
}

#[tokio::test]
async fn my_room_list_shows_each_rooms_marker_unread_count_and_last_message_in_one_read_of_each_store() {
    let mut ports = Ports::default();
    let (first, second) = (
        room(room_id(1), Visibility::Public, &alice(), &[&bob()]),
        room(room_id(2), Visibility::Public, &bob(), &[&alice()]),
    );
    expect_my_rooms(&mut ports, vec![first, second]);
    ports
        .rooms
        .expect_read_markers()
        .withf(|user, rooms| *user == alice().id && rooms == [room_id(1), room_id(2)])
        .times(1)
        .returning(|_, _| Ok(vec![(room_id(1), ReadMarker::restore(3))]));
    ports
        .log
        .expect_tails()
        .withf(|queries, not_before, cap| {
            queries
                == [
                    TailQuery { room: room_id(1), read: ReadMarker::restore(3) },
                    TailQuery { room: room_id(2), read: ReadMarker::NONE },
                ]
                && not_before.is_none()
                && *cap == 1000
        })
        .times(1)
        .returning(|_, _, _| {
            Ok(vec![
                tail(room_id(1), 7, 1, Some(7), 4),
                RoomTail { room: room_id(2), last_seq: None, holds_from: None, newest: None, unread: 0 },
            ])
        });

    let list = ports.rooms().list_mine(&alice(), None, page(10)).await.expect("listed");

    let first = list.items[0].reading.clone().expect("a reading in my own list");
    assert_eq!(
        (first.marker, first.unread, first.last_message),
        (ReadMarker::restore(3), 4, Some(message(room_id(1), 7)))
    );
    assert_eq!(list.items[0].last_seq, 7);
    let second = list.items[1].reading.clone().expect("a reading in my own list");
    assert_eq!((second.marker, second.unread, second.last_message), (ReadMarker::NONE, 0, None));
    assert_eq!(list.items[1].last_seq, 0);
}

#[tokio::test]
async fn unread_messages_the_log_no_longer_holds_are_counted_in_the_archive_in_one_read_for_the_page() {
    let mut ports = Ports::default();
    expect_my_rooms(&mut ports, rooms_numbered(1..=2));
    ports
        .rooms
        .expect_read_markers()
        .returning(|_, _| Ok(vec![(room_id(1), ReadMarker::restore(10)), (room_id(2), ReadMarker::restore(10))]));
    ports.log.expect_tails().times(1).returning(|_, _, _| {
        // Room 1: the log holds 401 to 500; room 2: the log alone already reaches the cap.
        Ok(vec![tail(room_id(1), 500, 401, Some(500), 100), tail(room_id(2), 3000, 1001, Some(3000), 1000)])
    });
    let mut archive = MockMessageArchive::new();
    archive
        .expect_count_in()
        .withf(|ranges, cap| {
            ranges
                == [(
                    room_id(1),
                    SeqRange { after: Some(seq(10)), before: Some(seq(401)), not_before: None, content_only: true },
                )]
                && *cap == 1000
        })
        .times(1)
        .returning(|_, _| Ok(vec![390]));
    archive.expect_newest_in().never();

    let list = ports.rooms().with_archive(Arc::new(archive)).list_mine(&alice(), None, page(10)).await.expect("listed");

    let unread: Vec<u64> = list.items.iter().map(|d| d.reading.as_ref().expect("reading").unread).collect();
    assert_eq!(unread, [490, 1000]);
}

#[tokio::test]
async fn a_room_whose_log_holds_none_of_its_messages_takes_its_last_message_from_the_archive() {
    let mut ports = Ports::default();
    expect_my_rooms(&mut ports, rooms_numbered(1..=1));
    ports.rooms.expect_read_markers().returning(|_, _| Ok(vec![(room_id(1), ReadMarker::restore(5))]));
    ports.log.expect_tails().returning(|_, _, _| {
        Ok(vec![RoomTail { room: room_id(1), last_seq: Some(seq(5)), holds_from: None, newest: None, unread: 0 }])
    });
    let mut archive = MockMessageArchive::new();
    archive.expect_count_in().never();
    archive
        .expect_newest_in()
        .withf(|ranges| {
            ranges == [(room_id(1), SeqRange { after: None, before: None, not_before: None, content_only: true })]
        })
        .times(1)
        .returning(|_| Ok(vec![Some(message(room_id(1), 5))]));

    let list = ports.rooms().with_archive(Arc::new(archive)).list_mine(&alice(), None, page(10)).await.expect("listed");

    let reading = list.items[0].reading.clone().expect("reading");
    assert_eq!((reading.unread, reading.last_message), (0, Some(message(room_id(1), 5))));
}

// --- direct rooms ---

fn direct(a: &User, b: &User) -> Room {
    Room::direct(room_id(9), a.id, b.id, now()).expect("two users")
}

fn pair(a: &User, b: &User) -> DirectPair {
    DirectPair::new(a.id, b.id).expect("two users")
}

#[tokio::test]
async fn opening_a_direct_room_that_exists_returns_it_with_the_other_user_and_opens_nothing() {
    let mut ports = Ports::default();
    ports.users.expect_by_id().withf(|id| *id == bob().id).times(1).returning(|_| Ok(Some(bob())));
    let existing = direct(&bob(), &alice());
    ports
        .rooms
        .expect_find_direct()
        .withf(|p| *p == pair(&alice(), &bob()))
        .times(1)
        .return_once(move |_| Ok(Some(existing)));
    ports.rooms.expect_insert_direct().never();
    ports.expect_no_event();
    ports.expect_details(1);

    let opened = ports.rooms().open_direct(&alice(), UserRef::Id(bob().id)).await.expect("opened");

    assert!(!opened.created);
    assert_eq!(opened.details.direct_with, Some(summary(&bob())));
}

#[tokio::test]
async fn opening_a_direct_room_the_first_time_stores_it_and_both_users_follow_it() {
    let mut ports = Ports { clock: fixed_clock(1), ids: sequential_ids(1), ..Ports::default() };
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(bob())));
    ports.rooms.expect_find_direct().times(1).returning(|_| Ok(None));
    ports
        .rooms
        .expect_insert_direct()
        .withf(|room| room.direct_pair() == Some(pair(&alice(), &bob())) && room.is_owner(alice().id))
        .times(1)
        .returning(|_| Ok(()));
    let id = RoomId::from_uuid(generated_id(1));
    let mut order = Sequence::new();
    for user in [alice(), bob()] {
        let expected = RoomEvent::MemberJoined { room_id: id, user: summary(&user) };
        ports
            .bus
            .expect_publish()
            .withf(move |e| *e == expected)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| Ok(()));
    }
    ports.expect_details(1);

    let opened = ports.rooms().open_direct(&alice(), UserRef::Id(bob().id)).await.expect("opened");

    assert!(opened.created);
    assert_eq!(opened.details.room.id(), id);
    assert_eq!(opened.details.direct_with, Some(summary(&bob())));
}

#[tokio::test]
async fn when_the_other_side_opens_the_direct_room_first_its_room_is_returned() {
    let mut ports = Ports { clock: fixed_clock(1), ids: sequential_ids(1), ..Ports::default() };
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(bob())));
    let mut order = Sequence::new();
    ports.rooms.expect_find_direct().times(1).in_sequence(&mut order).returning(|_| Ok(None));
    ports
        .rooms
        .expect_insert_direct()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Err(InsertDirectError::Duplicate));
    let winner = direct(&bob(), &alice());
    ports.rooms.expect_find_direct().times(1).in_sequence(&mut order).return_once(move |_| Ok(Some(winner)));
    ports.expect_no_event();
    ports.expect_details(1);

    let opened = ports.rooms().open_direct(&alice(), UserRef::Id(bob().id)).await.expect("opened");

    assert!(!opened.created);
    assert_eq!(opened.details.room.id(), room_id(9));
    assert!(opened.details.room.is_owner(bob().id), "the winner's room, as bob opened it");
}

#[tokio::test]
async fn a_direct_room_with_oneself_or_with_nobody_is_refused() {
    let mut ports = Ports::default();
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(alice())));
    ports.users.expect_by_username().times(1).returning(|_| Ok(None));
    ports.rooms.expect_find_direct().never();
    ports.rooms.expect_insert_direct().never();
    let rooms = ports.rooms();

    let with_self = rooms.open_direct(&alice(), UserRef::Id(alice().id)).await;
    let with_nobody = rooms.open_direct(&alice(), UserRef::Name(Username::new("ghost").expect("valid"))).await;

    assert!(matches!(with_self, Err(DirectError::WithSelf)), "got {with_self:?}");
    assert!(matches!(with_nobody, Err(DirectError::UnknownUser { field: "username" })), "got {with_nobody:?}");
}

#[tokio::test]
async fn nobody_is_invited_to_leaves_or_is_removed_from_a_direct_room_and_it_cannot_be_deleted() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.users.expect_by_id().returning(|_| Ok(Some(carol())));
    ports.rooms.expect_is_member().returning(|_, _| Ok(true));
    ports.rooms.expect_add_member().times(1).returning(|_, _, _| Err(MemberAddError::Direct));
    ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Direct));
    let dm = direct(&alice(), &bob());
    ports.rooms.expect_get().returning(move |_| Ok(Some(dm.clone())));
    ports.rooms.expect_delete().never();
    ports.expect_no_update();
    ports.expect_no_event();
    let rooms = ports.rooms();

    let invite = rooms.invite(&alice(), room_id(9), UserRef::Id(carol().id)).await;
    let leave = rooms.leave(&bob(), room_id(9)).await;
    let remove = rooms.remove_member(&alice(), room_id(9), bob().id).await;
    let delete = rooms.delete(&alice(), room_id(9)).await;
    let join = rooms.join(&carol(), room_id(9)).await;

    assert!(matches!(invite, Err(InviteError::Direct)), "got {invite:?}");
    assert!(matches!(leave, Err(RoomAccessError::Direct)), "got {leave:?}");
    assert!(matches!(remove, Err(RemoveMemberError::Direct)), "got {remove:?}");
    assert!(matches!(delete, Err(DeleteRoomError::Direct)), "got {delete:?}");
    assert!(matches!(join, Err(JoinError::NotFound)), "a direct room does not exist for others: {join:?}");
}

// --- read markers ---

fn expect_member(ports: &mut Ports, member: bool) {
    ports.rooms.expect_is_member().times(1).returning(move |_, _| Ok(member));
}

fn expect_marked(ports: &mut Ports, requested: u64, stored: u64, moved: bool) {
    ports
        .rooms
        .expect_mark_read()
        .withf(move |room, user, marker| (*room, *user, marker.get()) == (general(), alice().id, requested))
        .times(1)
        .returning(move |_, _, _| Ok(MarkedRead { marker: ReadMarker::restore(stored), moved }));
}

#[tokio::test]
async fn marking_a_room_read_moves_the_marker_and_tells_the_room() {
    let mut ports = Ports::default();
    expect_member(&mut ports, true);
    ports.log.expect_last_seq().times(1).returning(|_| Ok(Some(seq(9))));
    expect_marked(&mut ports, 5, 5, true);
    ports.users.expect_settings().times(1).returning(|_| Ok(UserSettings::default()));
    ports.expect_event(RoomEvent::Read { room_id: general(), user: summary(&alice()), seq: seq(5) });

    let marker = ports.rooms().mark_read(&alice(), general(), 5).await.expect("marked");

    assert_eq!(marker, ReadMarker::restore(5));
}

#[tokio::test]
async fn a_lower_seq_leaves_the_marker_where_it_was_and_tells_no_one() {
    let mut ports = Ports::default();
    expect_member(&mut ports, true);
    ports.log.expect_last_seq().returning(|_| Ok(Some(seq(9))));
    expect_marked(&mut ports, 2, 8, false);
    ports.users.expect_settings().never();
    ports.expect_no_event();

    let marker = ports.rooms().mark_read(&alice(), general(), 2).await.expect("no error");

    assert_eq!(marker, ReadMarker::restore(8));
}

#[tokio::test]
async fn a_reader_who_turned_read_receipts_off_moves_the_marker_unannounced() {
    let mut ports = Ports::default();
    expect_member(&mut ports, true);
    ports.log.expect_last_seq().returning(|_| Ok(Some(seq(9))));
    expect_marked(&mut ports, 9, 9, true);
    ports.users.expect_settings().times(1).returning(|_| Ok(UserSettings { send_read_receipts: false }));
    ports.expect_no_event();

    let marker = ports.rooms().mark_read(&alice(), general(), 9).await.expect("marked");

    assert_eq!(marker, ReadMarker::restore(9));
}

#[tokio::test]
async fn a_seq_past_the_rooms_last_message_is_refused_and_writes_nothing() {
    let mut ports = Ports::default();
    expect_member(&mut ports, true);
    ports.log.expect_last_seq().returning(|_| Ok(Some(seq(9))));
    ports.rooms.expect_mark_read().never();
    ports.expect_no_event();

    let result = ports.rooms().mark_read(&alice(), general(), 10).await;

    assert!(matches!(result, Err(ReadError::BeyondLast(_))), "got {result:?}");
    assert!(result.unwrap_err().to_string().starts_with("seq: "), "the message names the field");
}

#[tokio::test]
async fn a_non_member_cannot_mark_a_private_room_read_and_is_told_it_is_not_found() {
    let mut ports = Ports::default();
    expect_member(&mut ports, false);
    ports.expect_get(room(general(), Visibility::Private, &bob(), &[]));
    ports.log.expect_last_seq().never();
    ports.rooms.expect_mark_read().never();

    let result = ports.rooms().mark_read(&alice(), general(), 1).await;

    assert!(matches!(result, Err(ReadError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_member_removed_between_the_check_and_the_mark_is_told_the_room_is_not_found() {
    let mut ports = Ports::default();
    expect_member(&mut ports, true);
    ports.log.expect_last_seq().returning(|_| Ok(Some(seq(9))));
    ports.rooms.expect_mark_read().times(1).returning(|_, _, _| Err(MarkReadError::NotMember));
    ports.expect_no_event();

    let result = ports.rooms().mark_read(&alice(), general(), 3).await;

    assert!(matches!(result, Err(ReadError::NotFound)), "got {result:?}");
}
