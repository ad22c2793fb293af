//! The embedded event bus: one process, so a tokio broadcast channel reaches every subscriber,
//! and each subscription lets through only the rooms it follows.

use std::collections::HashSet;
use std::sync::Arc;

use application::ports::{Audience, Delivery, EventBus, FollowedRooms, RoomEvent, Subscription};
use async_trait::async_trait;
use domain::RoomId;
use futures::future::BoxFuture;
use futures::stream::StreamExt;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

/// Delivers each published event to every subscription that exists at publish time and that it
/// is for. Clones share the one channel.
#[derive(Clone)]
pub struct InMemoryEventBus {
    sender: broadcast::Sender<(Audience, RoomEvent)>,
}

impl InMemoryEventBus {
    /// How many events a slow subscriber may fall behind before it starts missing some.
    pub const DEFAULT_CAPACITY: usize = 4096;

    pub fn new(capacity: usize) -> Self {
        // A zero-capacity broadcast channel panics; one slot is the least that works.
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }
}

impl Default for InMemoryEventBus {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

/// In one process every room is heard already: following is only a filter.
#[derive(Default)]
struct Followed(Mutex<HashSet<RoomId>>);

impl FollowedRooms for Followed {
    fn follow(&self, room: RoomId) -> BoxFuture<'static, anyhow::Result<()>> {
        self.0.lock().insert(room);
        Box::pin(std::future::ready(Ok(())))
    }

    fn unfollow(&self, room: RoomId) {
        self.0.lock().remove(&room);
    }
}

#[async_trait]
impl EventBus for InMemoryEventBus {
    async fn publish(&self, event: RoomEvent) -> anyhow::Result<()> {
        for copy in event.addressed() {
            // Sending fails only when nobody subscribes; an event nobody listens for is not a failure.
            let _ = self.sender.send(copy);
        }
        Ok(())
    }

    async fn subscribe(&self) -> anyhow::Result<Subscription> {
        let followed = Arc::new(Followed::default());
        let filter = followed.clone();
        let events = BroadcastStream::new(self.sender.subscribe()).filter_map(move |item| {
            let delivery = match item {
                Ok((Audience::Room(room), _)) if !filter.0.lock().contains(&room) => None,
                Ok((_, event)) => Some(Delivery::Event(event)),
                Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                    // Clients catch up on messages through sync; the subscriber rebuilds the rest.
                    tracing::warn!(skipped, "event bus subscriber fell behind and missed events");
                    Some(Delivery::Gap)
                }
            };
            std::future::ready(delivery)
        });
        Ok(Subscription { events: events.boxed(), rooms: followed })
    }
}

#[cfg(test)]
mod tests {
    //! What the `EventBus` contract leaves to the adapter: who counts as a subscriber, and lag. The
    //! contract itself runs in `crate::tests`.

    use super::*;
    use application::contract::event_bus::room_deleted;
    use futures::stream::BoxStream;
    use std::time::Duration;

    async fn next_within_a_second(events: &mut BoxStream<'static, Delivery>) -> Option<Delivery> {
        tokio::time::timeout(Duration::from_secs(1), events.next()).await.ok().flatten()
    }

    fn event(n: u128) -> Option<Delivery> {
        Some(Delivery::Event(room_deleted(n)))
    }

    async fn nothing_more_arrives(events: &mut BoxStream<'static, Delivery>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), events.next()).await.is_err()
    }

    #[tokio::test]
    async fn a_subscriber_hears_only_events_published_after_it_subscribed() {
        // Arrange
        let bus = InMemoryEventBus::default();
        bus.publish(room_deleted(1)).await.unwrap();
        let mut events = bus.subscribe().await.unwrap().events;

        // Act
        bus.publish(room_deleted(2)).await.unwrap();

        // Assert
        assert_eq!(next_within_a_second(&mut events).await, event(2));
        assert!(nothing_more_arrives(&mut events).await);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_hears_a_gap_where_events_were_lost_and_keeps_receiving() {
        // Arrange
        let bus = InMemoryEventBus::new(2);
        let mut events = bus.subscribe().await.unwrap().events;

        // Act
        for n in 1..=5 {
            bus.publish(room_deleted(n)).await.unwrap();
        }

        // Assert
        assert_eq!(next_within_a_second(&mut events).await, Some(Delivery::Gap));
        assert_eq!(next_within_a_second(&mut events).await, event(4));
        assert_eq!(next_within_a_second(&mut events).await, event(5));
        bus.publish(room_deleted(6)).await.unwrap();
        assert_eq!(next_within_a_second(&mut events).await, event(6));
    }
}
