//! The `EventBus` contract.
//!
//! Each assertion takes `node`, which opens another bus on the same fresh backend every time it is
//! called: another node of a distributed bus, or another handle on the one channel of an embedded
//! bus. An event must arrive within five seconds; "nothing more" means nothing within 300 ms.
//! Room deletions are for everyone, typing is for one room: the two kinds of audience.

use std::future::Future;
use std::time::Duration;

use crate::ports::{Delivery, EventBus, RoomEvent, SessionEndReason, SessionId, Subscription, UserSummary};
use domain::{Change, Emoji, FileId, FileKind, FileMeta, FileName, Message, MessageBody, MessageId, MessageText, Seq};
use futures::stream::{BoxStream, StreamExt};

use super::{now, room, sender};

type Events = BoxStream<'static, Delivery>;

pub fn room_deleted(n: u128) -> RoomEvent {
    RoomEvent::RoomDeleted { room_id: room(n) }
}

/// An event for room `n`'s followers only.
pub fn typing(n: u128) -> RoomEvent {
    RoomEvent::Typing { room_id: room(n), user: summary(3) }
}

pub fn summary(n: u128) -> UserSummary {
    let sender = sender(n);
    UserSummary { id: sender.id, username: sender.username }
}

/// One event of every variant, with bodies that are easy to get wrong on the wire.
pub fn every_variant() -> Vec<RoomEvent> {
    let message = |seq: u64, body: MessageBody| Message {
        id: MessageId::from_uuid(uuid::Uuid::now_v7()),
        room_id: room(1),
        seq: Seq::new(seq).expect("positive"),
        sender: sender(1),
        body,
        sent_at: now(),
        state: Default::default(),
    };
    let file = FileMeta {
        id: FileId::from_uuid(uuid::Uuid::now_v7()),
        name: FileName::sanitize("report \"final\" ✓.pdf"),
        size: u64::MAX,
        content_type: "application/pdf".to_owned(),
        kind: FileKind::File,
        expires_at: now() + chrono::Duration::days(30),
    };
    let text = MessageText::new("héllo\n\twörld {\"json\": true}").expect("valid text");
    vec![
        RoomEvent::Message(message(1, MessageBody::Text(text))),
        RoomEvent::Message(message(u64::from(u32::MAX) + 1, MessageBody::File(file))),
        RoomEvent::Message(message(
            3,
            MessageBody::Change(Change::Edit {
                target: Seq::FIRST,
                text: MessageText::new("edited \"text\"").expect("valid text"),
            }),
        )),
        RoomEvent::Message(message(4, MessageBody::Change(Change::Delete { target: Seq::FIRST }))),
        RoomEvent::Message(message(
            5,
            MessageBody::Change(Change::React {
                target: Seq::FIRST,
                emoji: Emoji::new("👩🏽‍💻").expect("valid emoji"),
                added: false,
            }),
        )),
        RoomEvent::MemberJoined { room_id: room(1), user: summary(2) },
        RoomEvent::MemberLeft { room_id: room(1), user: summary(2) },
        RoomEvent::RoomDeleted { room_id: room(1) },
        RoomEvent::Typing { room_id: room(1), user: summary(3) },
        RoomEvent::Presence { user_id: summary(3).id, online: true, rooms: vec![room(1), room(2), room(1)] },
        RoomEvent::Presence { user_id: summary(3).id, online: false, rooms: vec![] },
        RoomEvent::SessionEnded {
            user_id: summary(2).id,
            session: SessionId(uuid::Uuid::from_u128(0x5e55)),
            reason: SessionEndReason::LoggedOut,
        },
        RoomEvent::SessionEnded {
            user_id: summary(2).id,
            session: SessionId(uuid::Uuid::from_u128(0x5e56)),
            reason: SessionEndReason::TokenReused,
        },
    ]
}

async fn subscribe(bus: &impl EventBus) -> Events {
    bus.subscribe().await.expect("subscribe").events
}

/// A subscription following rooms `rooms`, heard by the time this returns.
async fn following(bus: &impl EventBus, rooms: &[u128]) -> Subscription {
    let subscription = bus.subscribe().await.expect("subscribe");
    for n in rooms {
        subscription.rooms.follow(room(*n)).await.expect("follow");
    }
    subscription
}

/// The next event; nothing is lost in these tests, so a gap fails them.
async fn next(events: &mut Events) -> RoomEvent {
    let delivery = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event arrives in time")
        .expect("the stream goes on");
    match delivery {
        Delivery::Event(event) => event,
        Delivery::Gap => panic!("a gap where no event was lost"),
    }
}

async fn next_n(events: &mut Events, n: usize) -> Vec<RoomEvent> {
    let mut received = Vec::with_capacity(n);
    for _ in 0..n {
        received.push(next(events).await);
    }
    received
}

async fn nothing_more_arrives(events: &mut Events) -> bool {
    tokio::time::timeout(Duration::from_millis(300), events.next()).await.is_err()
}

/// Asserts `received` holds each of `sent` exactly once, in any order.
fn assert_same_events(received: &[RoomEvent], sent: &[RoomEvent]) {
    let mut missing: Vec<&RoomEvent> = sent.iter().collect();
    let mut unexpected = Vec::new();
    for event in received {
        match missing.iter().position(|m| *m == event) {
            Some(i) => drop(missing.remove(i)),
            None => unexpected.push(event),
        }
    }
    assert!(missing.is_empty() && unexpected.is_empty(), "missing {missing:?}; unexpected {unexpected:?}");
}

pub async fn every_subscriber_on_every_node_receives_each_published_event_once<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let mut subscribers = vec![subscribe(&a).await, subscribe(&b).await, subscribe(&b).await];
    let sent = [room_deleted(1), room_deleted(2)];

    a.publish(sent[0].clone()).await.expect("publish");
    b.publish(sent[1].clone()).await.expect("publish");

    for events in &mut subscribers {
        assert_same_events(&next_n(events, 2).await, &sent);
        assert!(nothing_more_arrives(events).await, "each event arrives once");
    }
}

pub async fn every_event_variant_arrives_unchanged_as_addressed<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let mut elsewhere = following(&b, &[1, 2]).await;
    let sent = every_variant();

    for event in &sent {
        a.publish(event.clone()).await.expect("publish");
    }

    // Presence in rooms 1 and 2 comes as one copy per room; in no room, not at all.
    let expected: Vec<RoomEvent> = sent.into_iter().flat_map(RoomEvent::addressed).map(|(_, copy)| copy).collect();
    let in_room_2 = RoomEvent::Presence { user_id: summary(3).id, online: true, rooms: vec![room(2)] };
    assert!(expected.contains(&in_room_2), "presence is split by room: {expected:?}");
    assert_same_events(&next_n(&mut elsewhere.events, expected.len()).await, &expected);
}

pub async fn a_rooms_events_reach_only_the_subscriptions_that_follow_it<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let mut in_1 = following(&a, &[1]).await;
    let mut in_none = following(&a, &[]).await;
    let mut in_2 = following(&b, &[2]).await;

    for event in [typing(1), typing(2), typing(3), room_deleted(9)] {
        b.publish(event).await.expect("publish");
    }

    // A room's events and those for everyone may interleave either way (different shards).
    assert_same_events(&next_n(&mut in_1.events, 2).await, &[typing(1), room_deleted(9)]);
    assert_same_events(&next_n(&mut in_2.events, 2).await, &[typing(2), room_deleted(9)]);
    assert_eq!(next(&mut in_none.events).await, room_deleted(9));
    for events in [&mut in_1.events, &mut in_2.events, &mut in_none.events] {
        assert!(nothing_more_arrives(events).await, "nothing of rooms not followed");
    }
}

pub async fn a_room_is_heard_once_following_it_resolves_and_no_longer_once_unfollowed<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let mut subscription = following(&b, &[]).await;

    subscription.rooms.follow(room(1)).await.expect("follow");
    a.publish(typing(1)).await.expect("publish");
    let heard = next(&mut subscription.events).await;
    subscription.rooms.unfollow(room(1));
    a.publish(typing(1)).await.expect("publish");
    a.publish(room_deleted(2)).await.expect("publish");

    assert_eq!(heard, typing(1));
    assert_eq!(next(&mut subscription.events).await, room_deleted(2), "room 1 no longer comes");
}

pub async fn one_subscription_unfollowing_a_room_leaves_another_on_the_node_following_it<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let leaving = following(&b, &[1]).await;
    let mut staying = following(&b, &[1]).await;

    leaving.rooms.unfollow(room(1));
    drop(leaving);
    a.publish(typing(1)).await.expect("publish");

    assert_eq!(next(&mut staying.events).await, typing(1));
}

pub async fn following_a_room_again_after_unfollowing_it_hears_it_again<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let mut subscription = following(&b, &[1]).await;

    subscription.rooms.unfollow(room(1));
    subscription.rooms.follow(room(1)).await.expect("follow again");
    a.publish(typing(1)).await.expect("publish");

    assert_eq!(next(&mut subscription.events).await, typing(1));
}

/// The port's doc does not promise this yet, but presence and membership updates rely on it: a
/// user who goes offline after going online must not be shown online.
pub async fn events_from_one_publisher_arrive_in_the_order_published<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let (mut here, mut elsewhere) = (subscribe(&a).await, subscribe(&b).await);
    let (mut in_room_here, mut in_room_elsewhere) = (following(&a, &[1]).await, following(&b, &[1]).await);
    let sent: Vec<RoomEvent> = (1..=50).map(room_deleted).collect();
    let in_room: Vec<RoomEvent> =
        (1..=50).map(|n| RoomEvent::Typing { room_id: room(1), user: summary(100 + n) }).collect();

    for (event, typed) in sent.iter().zip(&in_room) {
        a.publish(event.clone()).await.expect("publish");
        a.publish(typed.clone()).await.expect("publish");
    }

    assert_eq!(next_n(&mut here, sent.len()).await, sent);
    assert_eq!(next_n(&mut elsewhere, sent.len()).await, sent);
    // A room's events keep their order too; how they interleave with others' is not promised.
    for subscription in [&mut in_room_here, &mut in_room_elsewhere] {
        let heard = next_n(&mut subscription.events, 2 * sent.len()).await;
        let (typed, deleted): (Vec<RoomEvent>, Vec<RoomEvent>) =
            heard.into_iter().partition(|event| matches!(event, RoomEvent::Typing { .. }));
        assert_eq!((typed, deleted), (in_room.clone(), sent.clone()));
    }
}

pub async fn publishing_with_no_subscriber_succeeds<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let bus = node().await;

    let published = bus.publish(room_deleted(1)).await;

    assert!(published.is_ok(), "{published:?}");
}

pub async fn dropping_one_subscription_leaves_the_others_receiving<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let bus = node().await;
    let (dropped, mut kept) = (following(&bus, &[1]).await, following(&bus, &[1]).await);

    drop(dropped);
    bus.publish(typing(1)).await.expect("publish");
    bus.publish(room_deleted(1)).await.expect("publish");

    assert_same_events(&next_n(&mut kept.events, 2).await, &[typing(1), room_deleted(1)]);
}

/// Hands `$generate!` this module and every `EventBus` behaviour in it, after the caller's
/// arguments: `application::event_bus_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! event_bus_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::event_bus;
        every_subscriber_on_every_node_receives_each_published_event_once,
        every_event_variant_arrives_unchanged_as_addressed,
        a_rooms_events_reach_only_the_subscriptions_that_follow_it,
        a_room_is_heard_once_following_it_resolves_and_no_longer_once_unfollowed,
        one_subscription_unfollowing_a_room_leaves_another_on_the_node_following_it,
        following_a_room_again_after_unfollowing_it_hears_it_again,
        events_from_one_publisher_arrive_in_the_order_published,
        publishing_with_no_subscriber_succeeds,
        dropping_one_subscription_leaves_the_others_receiving,
        );
    };
}
