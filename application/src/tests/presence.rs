//! Unit tests of the presence use case: announcing across nodes, and the online members of a room.

use std::sync::Arc;

use domain::Visibility;

use super::fixtures::{alice, bob, room, room_id};
use crate::ports::{MockEventBus, MockPresenceRegistry, MockRoomRepository, RoomEvent};
use crate::presence::{Presence, PresenceError};

#[derive(Default)]
struct Ports {
    rooms: MockRoomRepository,
    registry: MockPresenceRegistry,
    bus: MockEventBus,
}

impl Ports {
    fn presence(self) -> Presence {
        Presence::new(Arc::new(self.rooms), Arc::new(self.registry), Arc::new(self.bus))
    }
}

#[tokio::test]
async fn coming_online_on_no_other_node_is_told_to_every_room_given() {
    let mut ports = Ports::default();
    ports.registry.expect_came_online().times(1).returning(|_| Ok(true));
    let online = RoomEvent::Presence { user_id: alice().id, online: true, rooms: vec![room_id(1), room_id(2)] };
    ports.bus.expect_publish().withf(move |event| *event == online).times(1).returning(|_| Ok(()));

    ports.presence().came_online(&alice(), vec![room_id(1), room_id(2)]).await;
}

#[tokio::test]
async fn a_second_node_coming_online_tells_nobody() {
    let mut ports = Ports::default();
    ports.registry.expect_came_online().times(1).returning(|_| Ok(false));
    ports.bus.expect_publish().never();

    ports.presence().came_online(&alice(), vec![room_id(1)]).await;
}

#[tokio::test]
async fn leaving_one_node_while_online_on_another_tells_nobody() {
    let mut ports = Ports::default();
    ports.registry.expect_went_offline().times(1).returning(|_| Ok(false));
    ports.bus.expect_publish().never();

    ports.presence().went_offline(&alice(), vec![room_id(1)]).await;
}

#[tokio::test]
async fn a_presence_the_bus_refuses_is_dropped_without_failing_the_caller() {
    let mut ports = Ports::default();
    ports.registry.expect_went_offline().times(1).returning(|_| Ok(true));
    ports.bus.expect_publish().times(1).returning(|_| Err(anyhow::anyhow!("bus down")));

    ports.presence().went_offline(&alice(), vec![room_id(1)]).await;
}

#[tokio::test]
async fn a_member_sees_which_members_are_online() {
    let mut ports = Ports::default();
    let general = room(room_id(1), Visibility::Private, &alice(), &[&bob()]);
    ports.rooms.expect_get().times(1).return_once(move |_| Ok(Some(general)));
    ports
        .registry
        .expect_online_among()
        .withf(|users| users == [alice().id, bob().id])
        .times(1)
        .returning(|_| Ok(vec![bob().id]));

    let online = ports.presence().online_in(&alice(), room_id(1)).await.expect("online members");

    assert_eq!(online, vec![bob().id]);
}

#[tokio::test]
async fn a_non_member_learns_nothing_of_a_private_room_and_is_refused_a_public_one() {
    let mut private_ports = Ports::default();
    let private = room(room_id(1), Visibility::Private, &bob(), &[]);
    private_ports.rooms.expect_get().times(1).return_once(move |_| Ok(Some(private)));
    let mut public_ports = Ports::default();
    let public = room(room_id(2), Visibility::Public, &bob(), &[]);
    public_ports.rooms.expect_get().times(1).return_once(move |_| Ok(Some(public)));

    let private = private_ports.presence().online_in(&alice(), room_id(1)).await;
    let public = public_ports.presence().online_in(&alice(), room_id(2)).await;

    assert!(matches!(private, Err(PresenceError::NotFound)), "got {private:?}");
    assert!(matches!(public, Err(PresenceError::Forbidden)), "got {public:?}");
}
