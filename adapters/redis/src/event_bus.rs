//! The event bus on Redis pub/sub: one subscriber connection per node, fanned out in process.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use application::ports::{Delivery, EventBus, RoomEvent};
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::AsyncCommands;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::connection;
use crate::dto::EventDto;
use crate::health::RedisHealth;

/// Events a slow local subscriber may fall behind by before it misses some.
const LOCAL_BUFFER: usize = 1024;
/// A half-open subscriber connection (no FIN, e.g. a vanished host) is found by pinging it.
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Publishes to one channel and listens to it on a single connection, whatever the number of
/// local subscribers. If that connection drops, a background task reconnects with backoff; events
/// published meanwhile are missed, which clients recover from by syncing.
#[derive(Clone)]
pub struct RedisEventBus {
    /// Publishing shares the reconnecting command connection; pub/sub needs its own.
    conn: ConnectionManager,
    channel: String,
    /// Every `subscribe()` stream is a receiver of this.
    local: broadcast::Sender<Delivery>,
    /// Stops the subscriber task once the last clone of the bus is dropped.
    _subscriber: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisEventBus {
    /// Connects and subscribes to `{channel_prefix}events`; when this returns, events published
    /// by any node reach this one.
    ///
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str, channel_prefix: &str) -> anyhow::Result<Self> {
        let client = connection::client(url)?;
        let conn = connection::manager(&client).await?;
        let channel = format!("{channel_prefix}events");
        let first = subscribe(&client, &channel)
            .await
            .with_context(|| format!("cannot subscribe to events on Redis at {}", connection::address(&client)))?;
        let (local, _) = broadcast::channel(LOCAL_BUFFER);
        let task = tokio::spawn(run_subscriber(client, channel.clone(), first, local.clone()));
        Ok(Self { conn, channel, local, _subscriber: Arc::new(AbortOnDrop(task)) })
    }

    /// A readiness check on the publishing connection.
    pub fn health(&self) -> RedisHealth {
        RedisHealth::new(crate::connection::RedisConn::Single(self.conn.clone()))
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> anyhow::Result<(PubSubSink, PubSubStream)> {
    let subscribed = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    Ok(tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await.context("subscribing timed out")??)
}

/// Forwards events from the subscriber connection, reconnecting for as long as the bus lives.
async fn run_subscriber(
    client: redis::Client,
    channel: String,
    first: (PubSubSink, PubSubStream),
    local: broadcast::Sender<Delivery>,
) {
    let address = connection::address(&client);
    let mut current = Some(first);
    let mut backoff = BACKOFF_MIN;
    loop {
        let (sink, stream) = match current.take() {
            Some(connection) => connection,
            None => match subscribe(&client, &channel).await {
                Ok(connection) => {
                    tracing::info!(redis = %address, "event bus subscriber reconnected");
                    backoff = BACKOFF_MIN;
                    // Whatever was published while the connection was down is lost: say so.
                    drop(local.send(Delivery::Gap));
                    connection
                }
                Err(e) => {
                    tracing::warn!(
                        redis = %address, error = %format!("{e:#}"), retry_in = ?backoff,
                        "event bus subscriber cannot reconnect"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let reason = forward(sink, stream, &local).await;
        tracing::warn!(
            redis = %address, reason = %reason,
            "event bus subscriber connection lost; reconnecting, events published meanwhile are missed"
        );
    }
}

/// Hands every message to the local subscribers until the connection fails; returns why it did.
async fn forward(mut sink: PubSubSink, mut stream: PubSubStream, local: &broadcast::Sender<Delivery>) -> String {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => deliver(&message, local),
                None => return "connection closed".to_owned(),
            },
            _ = ping.tick() => match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("ping failed: {e}"),
                Err(_) => return "ping timed out".to_owned(),
            },
        }
    }
}

fn deliver(message: &redis::Msg, local: &broadcast::Sender<Delivery>) {
    let decoded = serde_json::from_slice::<EventDto>(message.get_payload_bytes())
        .map_err(anyhow::Error::from)
        .and_then(EventDto::into_event);
    match decoded {
        // An error only means nobody on this node is listening right now.
        Ok(event) => drop(local.send(Delivery::Event(event))),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "skipping an event that cannot be decoded"),
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    async fn publish(&self, event: RoomEvent) -> anyhow::Result<()> {
        let payload = serde_json::to_string(&EventDto::from(&event)).context("encoding an event")?;
        crate::retry::once_more("publish", || async {
            let mut conn = self.conn.clone();
            let _receivers: i64 = conn.publish(&self.channel, &payload).await.context("publishing an event")?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn subscribe(&self) -> anyhow::Result<BoxStream<'static, Delivery>> {
        let receiver = self.local.subscribe();
        let events = futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(delivery) => Some((delivery, receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a slow event subscriber missed events");
                    Some((Delivery::Gap, receiver))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(events.boxed())
    }
}
