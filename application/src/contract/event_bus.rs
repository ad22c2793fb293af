//! The `EventBus` contract.
//!
//! Each assertion takes `node`, which opens another bus on the same fresh backend every time it is
//! called: another node of a distributed bus, or another handle on the one channel of an embedded
//! bus. An event must arrive within five seconds; "nothing more" means nothing within 300 ms.

use std::future::Future;
use std::time::Duration;

use crate::ports::{Delivery, EventBus, RoomEvent, SessionEndReason, SessionId, UserSummary};
use domain::{Change, Emoji, FileId, FileKind, FileMeta, FileName, Message, MessageBody, MessageId, MessageText, Seq};
use futures::stream::{BoxStream, StreamExt};

use super::{now, room, sender};

type Events = BoxStream<'static, Delivery>;

pub fn room_deleted(n: u128) -> RoomEvent {
    RoomEvent::RoomDeleted { room_id: room(n) }
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
    bus.subscribe().await.expect("subscribe")
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

pub async fn every_room_event_variant_arrives_unchanged<B, F>(node: impl Fn() -> F)
where
    B: EventBus,
    F: Future<Output = B>,
{
    let (a, b) = (node().await, node().await);
    let mut elsewhere = subscribe(&b).await;
    let sent = every_variant();

    for event in &sent {
        a.publish(event.clone()).await.expect("publish");
    }

    assert_same_events(&next_n(&mut elsewhere, sent.len()).await, &sent);
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
    let sent: Vec<RoomEvent> = (1..=50).map(room_deleted).collect();

    for event in &sent {
        a.publish(event.clone()).await.expect("publish");
    }

    assert_eq!(next_n(&mut here, sent.len()).await, sent);
    assert_eq!(next_n(&mut elsewhere, sent.len()).await, sent);
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
    let (dropped, mut kept) = (subscribe(&bus).await, subscribe(&bus).await);

    drop(dropped);
    bus.publish(room_deleted(1)).await.expect("publish");

    assert_eq!(next(&mut kept).await, room_deleted(1));
}

/// Hands `$generate!` this module and every `EventBus` behaviour in it, after the caller's
/// arguments: `application::event_bus_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! event_bus_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::event_bus;
        every_subscriber_on_every_node_receives_each_published_event_once,
        every_room_event_variant_arrives_unchanged,
        events_from_one_publisher_arrive_in_the_order_published,
        publishing_with_no_subscriber_succeeds,
        dropping_one_subscription_leaves_the_others_receiving,
        );
    };
}
