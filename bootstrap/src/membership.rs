//! Keeps this node's membership cache fresh from the bus, and off whenever the bus is not heard.
//! It follows no room: the removals and deletions it needs are for everyone (`Audience::Everyone`).

use std::sync::Arc;
use std::time::Duration;

use application::membership::MembershipCache;
use application::ports::EventBus;
use futures::StreamExt;
use tokio::sync::watch;

/// How long to wait before subscribing again after the bus refused or ended a subscription.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Follows membership events until `stop` turns true. The cache serves only while a
/// subscription is open: events sent while none is would go unheard, with no gap to say so.
pub async fn follow(cache: MembershipCache, bus: Arc<dyn EventBus>, mut stop: watch::Receiver<bool>) {
    loop {
        let mut events = match bus.subscribe().await {
            Ok(subscription) => subscription.events,
            Err(e) => {
                tracing::warn!(error = ?e, "cannot follow membership changes on the bus; every send asks the store");
                tokio::select! {
                    () = tokio::time::sleep(RESUBSCRIBE_AFTER) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        cache.set_following(true);
        loop {
            tokio::select! {
                delivery = events.next() => match delivery {
                    Some(delivery) => cache.apply(&delivery),
                    None => break,
                },
                _ = stop.changed() => {
                    cache.set_following(false);
                    return;
                }
            }
        }
        // The bus ended the stream: trust nothing until a new subscription is open.
        cache.set_following(false);
    }
}
