//! Keeps this node's list of revoked sessions fresh: at once from bus events, and from the
//! store every few seconds for the events a bus reconnect or lag lost. Session ends are for
//! everyone on the bus, so the subscription follows no room.

use std::sync::Arc;
use std::time::Duration;

use application::accounts::Accounts;
use application::ports::{Delivery, EventBus, RoomEvent};
use futures::StreamExt;
use tokio::sync::watch;

/// How stale a node's list may get when a bus event is lost.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Follows revocations until `stop` turns true. Loads the store's list first, so a node that
/// starts after a logout refuses its tokens too.
pub async fn follow(accounts: Accounts, bus: Arc<dyn EventBus>, mut stop: watch::Receiver<bool>) {
    let mut events = None;
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if events.is_none() {
            match bus.subscribe().await {
                Ok(subscription) => events = Some(subscription.events),
                Err(e) => {
                    tracing::warn!(error = ?e, "cannot follow session revocations on the bus; the store is read every few seconds")
                }
            }
        }
        tokio::select! {
            event = async { events.as_mut()?.next().await }, if events.is_some() => match event {
                Some(Delivery::Event(RoomEvent::SessionEnded { session, .. })) => accounts.session_ended_elsewhere(session),
                Some(Delivery::Event(_)) => {}
                // Some events were lost: read the store now rather than at the next tick.
                Some(Delivery::Gap) => reload.reset_immediately(),
                // The bus ended the stream; subscribe again on the next turn.
                None => events = None,
            },
            _ = reload.tick() => {
                if let Err(e) = accounts.reload_revocations().await {
                    tracing::warn!(error = ?e, "could not read revoked sessions; retrying");
                }
            }
            _ = stop.changed() => return,
        }
    }
}
