//! Unit tests of event routing: who each kind of event is addressed to.

use super::fixtures::{alice, bob, room_id};
use crate::ports::{Audience, RoomEvent, SessionEndReason, SessionId};

fn audiences(event: RoomEvent) -> Vec<Audience> {
    event.addressed().into_iter().map(|(audience, _)| audience).collect()
}

#[test]
fn presence_goes_once_to_each_distinct_room_of_the_user_each_copy_naming_only_its_room() {
    let event =
        RoomEvent::Presence { user_id: alice().id, online: true, rooms: vec![room_id(1), room_id(2), room_id(1)] };

    let copies = event.addressed();

    let expected: Vec<(Audience, RoomEvent)> = [room_id(1), room_id(2)]
        .into_iter()
        .map(|room| {
            (Audience::Room(room), RoomEvent::Presence { user_id: alice().id, online: true, rooms: vec![room] })
        })
        .collect();
    assert_eq!(copies, expected);
}

#[test]
fn typing_is_for_its_room_and_membership_and_session_changes_are_for_everyone() {
    let user = crate::ports::UserSummary { id: bob().id, username: bob().username };
    let session = SessionId(uuid::Uuid::from_u128(7));

    assert_eq!(audiences(RoomEvent::Typing { room_id: room_id(1), user: user.clone() }), [Audience::Room(room_id(1))]);
    for event in [
        RoomEvent::MemberJoined { room_id: room_id(1), user: user.clone() },
        RoomEvent::MemberLeft { room_id: room_id(1), user },
        RoomEvent::RoomDeleted { room_id: room_id(1) },
        RoomEvent::SessionEnded { user_id: bob().id, session, reason: SessionEndReason::LoggedOut },
    ] {
        assert_eq!(audiences(event), [Audience::Everyone]);
    }
}
