//! The event bus on Redis pub/sub: a channel per room, heard only by the nodes that follow the
//! room, and one control channel every node hears; one subscriber connection per node, fanned
//! out in process. On a Redis Cluster the channels are sharded (`SSUBSCRIBE`/`SPUBLISH`).
//!
//! Channels, under the configured prefix `{P}`:
//!
//! | channel | carries |
//! | --- | --- |
//! | `{P}room:{<room>}:events` | events for one room's sockets (`Audience::Room`); the braces are the cluster hash tag |
//! | `{P}control:events` | events for every node (`Audience::Everyone`): membership, deletions, sessions |

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use application::ports::{Audience, Delivery, EventBus, FollowedRooms, RoomEvent, Subscription};
use async_trait::async_trait;
use domain::RoomId;
use futures::future::BoxFuture;
use futures::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{AsyncCommands, PushKind};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::connection::{self, RedisConn};
use crate::dto::EventDto;
use crate::health::RedisHealth;

/// Events a slow local subscriber may fall behind by before it misses some.
const LOCAL_BUFFER: usize = 1024;
/// News of a cluster subscriber connection (a shard's connection closed, a subscription the
/// server dropped) it may queue before the subscriber task reads them; past this, the connection
/// counts as lost (with a gap) rather than growing without bound. Messages do not queue here.
const NEWS_BUFFER: usize = 1024;
/// A half-open subscriber connection (no FIN, e.g. a vanished host) is found by pinging it.
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Commands in flight at once, e.g. when a reconnect follows every room again, or a presence
/// change goes to every room of its user on a cluster.
const COMMANDS_AT_ONCE: usize = 64;

/// Publishes each event on its audience's channel and listens, on a single connection per
/// node, to the control channel and to the rooms some local subscription follows. If that
/// connection drops, a background task reconnects with backoff, subscribes to every followed
/// room again and reports a gap; events published meanwhile are missed, which clients recover
/// from by syncing.
#[derive(Clone)]
pub struct RedisEventBus {
    publisher: Publisher,
    channels: Channels,
    shared: Arc<Shared>,
    /// Stops the subscriber task once the last clone of the bus is dropped.
    _subscriber: Arc<AbortOnDrop>,
}

/// Where events are published: the reconnecting command connection of a standalone server, or
/// a cluster connection that routes each channel to its shard.
#[derive(Clone)]
enum Publisher {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// How subscriber connections are opened.
#[derive(Clone)]
enum Target {
    Standalone(redis::Client),
    Cluster(Vec<String>),
}

impl Target {
    fn address(&self) -> String {
        match self {
            Self::Standalone(client) => connection::address(client),
            Self::Cluster(seeds) => format!("cluster of {} seed(s)", seeds.len()),
        }
    }
}

/// The channel names of one prefix.
#[derive(Clone)]
struct Channels {
    prefix: String,
    control: String,
}

impl Channels {
    fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned(), control: format!("{prefix}control:events") }
    }

    fn room(&self, room: RoomId) -> String {
        format!("{}room:{{{room}}}:events", self.prefix)
    }

    fn of(&self, audience: Audience) -> String {
        match audience {
            Audience::Room(room) => self.room(room),
            Audience::Everyone => self.control.clone(),
        }
    }

    /// Who a message heard on `channel` is for; `None` for a channel this bus does not use.
    fn audience(&self, channel: &str) -> Option<Audience> {
        if channel == self.control {
            return Some(Audience::Everyone);
        }
        let room = channel.strip_prefix(&self.prefix)?.strip_prefix("room:{")?.strip_suffix("}:events")?;
        room.parse().ok().map(Audience::Room)
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the node's subscriber task and its local subscriptions share.
struct Shared {
    /// Every subscription's stream is a receiver of this, and keeps what it follows.
    local: broadcast::Sender<Heard>,
    /// The rooms local subscriptions follow: what the subscriber connection should hear.
    wanted: Mutex<HashMap<RoomId, Want>>,
    /// Wakes the subscriber task when `wanted` changed.
    changed: Notify,
}

/// A delivery with who it is for; a gap is for everyone.
type Heard = (Audience, Delivery);

#[derive(Default)]
struct Want {
    /// Local subscriptions following the room; at zero the entry goes.
    followers: usize,
    /// Subscribed on the current connection.
    heard: bool,
    /// Follows waiting for `heard`.
    waiters: Vec<oneshot::Sender<()>>,
}

impl Shared {
    /// Rooms to subscribe to and to leave, for a connection that holds `subscribed`. A room
    /// unfollowed and followed again since the last turn never left: it is heard already.
    fn diff(&self, subscribed: &HashSet<RoomId>) -> (Vec<RoomId>, Vec<RoomId>) {
        let mut wanted = self.wanted.lock();
        let mut add = Vec::new();
        for (room, want) in wanted.iter_mut() {
            if !subscribed.contains(room) {
                add.push(*room);
            } else if !want.heard {
                want.heard = true;
                for waiter in want.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }
        let remove = subscribed.iter().filter(|room| !wanted.contains_key(room)).copied().collect();
        (add, remove)
    }

    /// `rooms` are subscribed on the current connection: their waiting follows resolve.
    fn heard(&self, rooms: &[RoomId]) {
        let mut wanted = self.wanted.lock();
        for room in rooms {
            if let Some(want) = wanted.get_mut(room) {
                want.heard = true;
                for waiter in want.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }
    }

    /// The connection is gone: nothing is heard until the next one subscribes again.
    fn lost(&self) {
        for want in self.wanted.lock().values_mut() {
            want.heard = false;
        }
    }

    fn forward(&self, heard: Heard) {
        // An error only means nobody on this node is listening right now.
        drop(self.local.send(heard));
    }
}

/// One subscription's rooms, counted into the node's when they change.
struct Follower {
    /// Weak, so a subscription kept after the bus is dropped does not keep its channel open.
    shared: Weak<Shared>,
    rooms: Mutex<HashSet<RoomId>>,
}

impl Follower {
    fn follows(&self, room: &RoomId) -> bool {
        self.rooms.lock().contains(room)
    }

    /// One follower less for `room` on the node; the last one lets the connection leave it.
    fn release(shared: &Shared, room: RoomId) {
        let mut wanted = shared.wanted.lock();
        if let Some(want) = wanted.get_mut(&room) {
            want.followers -= 1;
            if want.followers == 0 {
                // Waiting follows hear that the room was unfollowed first.
                wanted.remove(&room);
                shared.changed.notify_one();
            }
        }
    }
}

impl FollowedRooms for Follower {
    fn follow(&self, room: RoomId) -> BoxFuture<'static, anyhow::Result<()>> {
        let Some(shared) = self.shared.upgrade() else {
            return Box::pin(std::future::ready(Err(anyhow::anyhow!("the event bus is gone"))));
        };
        let mut rooms = self.rooms.lock();
        let mut wanted = shared.wanted.lock();
        let want = wanted.entry(room).or_default();
        if rooms.insert(room) {
            want.followers += 1;
            if want.followers == 1 {
                shared.changed.notify_one();
            }
        }
        if want.heard {
            return Box::pin(std::future::ready(Ok(())));
        }
        let (heard, waiting) = oneshot::channel();
        want.waiters.push(heard);
        Box::pin(async move {
            waiting.await.map_err(|_| anyhow::anyhow!("room {room} was unfollowed before the bus heard it"))
        })
    }

    fn unfollow(&self, room: RoomId) {
        if self.rooms.lock().remove(&room) {
            if let Some(shared) = self.shared.upgrade() {
                Self::release(&shared, room);
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else { return };
        for room in self.rooms.get_mut().drain() {
            Self::release(&shared, room);
        }
    }
}

impl RedisEventBus {
    /// Connects to a standalone Redis and subscribes to `{channel_prefix}control:events`; when
    /// this returns, events for every node published by any node reach this one.
    ///
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str, channel_prefix: &str) -> anyhow::Result<Self> {
        let client = connection::client(url)?;
        let conn = connection::manager(&client).await?;
        Self::start(Publisher::Standalone(conn), Target::Standalone(client), channel_prefix).await
    }

    /// Connects to a Redis Cluster (7.0 or later) through any of `seed_urls`, and subscribes to
    /// the control channel; rooms go over sharded channels, each on its room's shard.
    ///
    /// # Errors
    /// When a URL is invalid or no seed can be reached.
    pub async fn connect_cluster(seed_urls: &[String], channel_prefix: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(!seed_urls.is_empty(), "no Redis Cluster seed URL given");
        let client = ClusterClientBuilder::new(seed_urls.to_vec())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(SUBSCRIBE_TIMEOUT)
            .build()
            // The URLs may carry a password, so the error never repeats them.
            .map_err(|e| anyhow::anyhow!("invalid Redis Cluster seed URLs ({:?})", e.kind()))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
            .await
            .context("connecting timed out")?
            .with_context(|| format!("cannot connect to the Redis Cluster at {} seed(s)", seed_urls.len()))?;
        Self::start(Publisher::Cluster(conn), Target::Cluster(seed_urls.to_vec()), channel_prefix).await
    }

    async fn start(publisher: Publisher, target: Target, channel_prefix: &str) -> anyhow::Result<Self> {
        let channels = Channels::new(channel_prefix);
        let (local, _) = broadcast::channel(LOCAL_BUFFER);
        let shared = Arc::new(Shared { local, wanted: Mutex::new(HashMap::new()), changed: Notify::new() });
        let first = Link::open(&target, &channels, &shared)
            .await
            .with_context(|| format!("cannot subscribe to events on Redis at {}", target.address()))?;
        // Nothing was lost before the first connection: it delivers from the start.
        first.go_live();
        let task = tokio::spawn(run_subscriber(target, channels.clone(), first, shared.clone()));
        Ok(Self { publisher, channels, shared, _subscriber: Arc::new(AbortOnDrop(task)) })
    }

    /// A readiness check on the publishing connection.
    pub fn health(&self) -> RedisHealth {
        RedisHealth::new(match &self.publisher {
            Publisher::Standalone(conn) => RedisConn::Single(conn.clone()),
            Publisher::Cluster(conn) => RedisConn::Cluster(conn.clone()),
        })
    }

    /// Publishes each `(channel, payload)`: a presence change goes to every room of its user at
    /// once, in one round trip (a pipeline, or commands in flight together on a cluster).
    async fn publish_all(&self, copies: &[(String, String)]) -> anyhow::Result<()> {
        crate::retry::once_more("publish", || async {
            match self.publisher.clone() {
                Publisher::Standalone(mut conn) => {
                    let mut pipe = redis::pipe();
                    for (channel, payload) in copies {
                        pipe.publish(channel, payload).ignore();
                    }
                    pipe.query_async::<()>(&mut conn).await
                }
                Publisher::Cluster(conn) => {
                    let published: Vec<redis::RedisResult<i64>> = futures::stream::iter(copies.to_vec())
                        .map(move |(channel, payload)| {
                            let mut conn = conn.clone();
                            async move { conn.spublish(channel, payload).await }
                        })
                        .buffer_unordered(COMMANDS_AT_ONCE)
                        .collect()
                        .await;
                    published.into_iter().try_for_each(|result| result.map(drop))
                }
            }
            .context("publishing an event")
        })
        .await
    }
}

/// The node's subscriber connection, standalone or cluster.
enum Link {
    Standalone {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Cluster {
        conn: ClusterConnection,
        /// Messages go to the local subscriptions straight from the connection; only what
        /// concerns the connection itself comes here.
        news: mpsc::Receiver<redis::PushInfo>,
        /// Set when news found `news` full: some were dropped.
        overflowed: Arc<AtomicBool>,
        /// Messages are delivered once set: after a reconnect, only after the gap, so that
        /// nothing heard on the new connection comes before it.
        live: Arc<AtomicBool>,
    },
}

/// The command side of a `Link`, cloned for each command in flight.
#[derive(Clone)]
enum Commands {
    Standalone(PubSubSink),
    Cluster(ClusterConnection),
}

/// What the subscriber connection said.
enum Incoming {
    Message(redis::Msg),
    /// The server stopped a subscription by itself (a cluster slot moved).
    Dropped(String),
    Lost(String),
    Other,
}

impl Link {
    /// A new connection, subscribed to the control channel only, delivering to `shared`'s
    /// local subscriptions.
    async fn open(target: &Target, channels: &Channels, shared: &Arc<Shared>) -> anyhow::Result<Self> {
        let opened = async {
            let mut link = match target {
                Target::Standalone(client) => {
                    let (sink, stream) = client.get_async_pubsub().await?.split();
                    Self::Standalone { sink, stream }
                }
                Target::Cluster(seeds) => {
                    let (sender, news) = mpsc::channel(NEWS_BUFFER);
                    let overflowed = Arc::new(AtomicBool::new(false));
                    let full = overflowed.clone();
                    let live = Arc::new(AtomicBool::new(false));
                    let (channels, shared, delivering) = (channels.clone(), Arc::downgrade(shared), live.clone());
                    // Called on the connection's own task for every push, so it never waits.
                    let on_push = move |push: redis::PushInfo| {
                        let Some(shared) = shared.upgrade() else { return Ok(()) };
                        if !concerns_the_connection(&push, &channels, &shared) {
                            // Before the gap a message is one of those it says may be lost.
                            if let Some(message) = redis::Msg::from_push_info(push) {
                                if delivering.load(Ordering::Acquire) {
                                    deliver(&message, &channels, &shared);
                                }
                            }
                            return Ok(());
                        }
                        sender.try_send(push).map_err(|e| {
                            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                                full.store(true, Ordering::Release);
                            }
                        })
                    };
                    let client = ClusterClientBuilder::new(seeds.clone())
                        .use_protocol(redis::ProtocolVersion::RESP3)
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(SUBSCRIBE_TIMEOUT)
                        .push_sender(on_push)
                        .build()?;
                    Self::Cluster { conn: client.get_async_connection().await?, news, overflowed, live }
                }
            };
            link.subscribe(std::slice::from_ref(&channels.control)).await?;
            Ok::<_, redis::RedisError>(link)
        };
        Ok(tokio::time::timeout(SUBSCRIBE_TIMEOUT, opened).await.context("subscribing timed out")??)
    }

    /// Subscribes to each of `channels` with a command of its own, many in flight at once: the
    /// standalone sink matches one reply to each command, and a cluster command's channels
    /// must share a slot.
    async fn subscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        self.each(channels, true).await
    }

    async fn unsubscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        self.each(channels, false).await
    }

    async fn each(&mut self, channels: &[String], subscribe: bool) -> redis::RedisResult<()> {
        let commands = match self {
            Self::Standalone { sink, .. } => Commands::Standalone(sink.clone()),
            Self::Cluster { conn, .. } => Commands::Cluster(conn.clone()),
        };
        let results: Vec<redis::RedisResult<()>> = futures::stream::iter(channels.to_vec())
            .map(move |channel| {
                let mut commands = commands.clone();
                async move {
                    match (&mut commands, subscribe) {
                        (Commands::Standalone(sink), true) => sink.subscribe(channel).await,
                        (Commands::Standalone(sink), false) => sink.unsubscribe(channel).await,
                        (Commands::Cluster(conn), true) => conn.ssubscribe(channel).await,
                        (Commands::Cluster(conn), false) => conn.sunsubscribe(channel).await,
                    }
                }
            })
            .buffer_unordered(COMMANDS_AT_ONCE)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Messages heard from now on go to the local subscriptions.
    fn go_live(&self) {
        if let Self::Cluster { live, .. } = self {
            live.store(true, Ordering::Release);
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Self::Standalone { sink, .. } => sink.ping::<redis::Value>().await.map(drop),
            Self::Cluster { conn, .. } => {
                let every_shard =
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded)));
                conn.route_command(&redis::cmd("PING"), every_shard).await.map(drop)
            }
        }
    }

    async fn next(&mut self) -> Incoming {
        match self {
            Self::Standalone { stream, .. } => match stream.next().await {
                Some(message) => Incoming::Message(message),
                None => Incoming::Lost("connection closed".to_owned()),
            },
            Self::Cluster { news, overflowed, .. } => {
                let Some(push) = news.recv().await else { return Incoming::Lost("connection closed".to_owned()) };
                if overflowed.load(Ordering::Acquire) {
                    return Incoming::Lost("too many messages queued".to_owned());
                }
                match push.kind {
                    PushKind::Disconnection => Incoming::Lost("a shard's connection closed".to_owned()),
                    PushKind::SUnsubscribe => match push.data.get(1) {
                        Some(redis::Value::BulkString(channel)) => {
                            Incoming::Dropped(String::from_utf8_lossy(channel).into_owned())
                        }
                        _ => Incoming::Other,
                    },
                    _ => Incoming::Other,
                }
            }
        }
    }
}

/// Whether a cluster push is news for the subscriber task: a shard's connection closed, or a
/// subscription ended that is still wanted (the server dropped it: its slot moved). The
/// confirmations of the task's own commands, and messages, are not.
fn concerns_the_connection(push: &redis::PushInfo, channels: &Channels, shared: &Shared) -> bool {
    match push.kind {
        PushKind::Disconnection => true,
        PushKind::SUnsubscribe => {
            let channel = match push.data.get(1) {
                Some(redis::Value::BulkString(channel)) => String::from_utf8_lossy(channel),
                _ => return false,
            };
            match channels.audience(&channel) {
                Some(Audience::Room(room)) => shared.wanted.lock().contains_key(&room),
                Some(Audience::Everyone) => true,
                None => false,
            }
        }
        _ => false,
    }
}

/// Keeps the node's subscriber connection hearing what is wanted, reconnecting for as long as
/// the bus lives.
async fn run_subscriber(target: Target, channels: Channels, first: Link, shared: Arc<Shared>) {
    let address = target.address();
    let mut current = Some(first);
    let mut backoff = BACKOFF_MIN;
    // Set from the first loss on: events published while no connection listened are lost.
    let mut gap_owed = false;
    loop {
        let link = match current.take() {
            Some(link) => link,
            None => match Link::open(&target, &channels, &shared).await {
                Ok(link) => {
                    tracing::info!(redis = %address, "event bus subscriber reconnected");
                    backoff = BACKOFF_MIN;
                    link
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
        let reason = serve(link, &channels, &shared, &mut gap_owed).await;
        shared.lost();
        gap_owed = true;
        tracing::warn!(
            redis = %address, reason = %reason,
            "event bus subscriber connection lost; reconnecting, events published meanwhile are missed"
        );
    }
}

/// Follows and leaves rooms as they are wanted, and hands every message to the local
/// subscriptions, until the connection fails; returns why it did. A gap owed is reported once
/// every room followed is subscribed to again, so what follows it is complete.
async fn serve(mut link: Link, channels: &Channels, shared: &Shared, gap_owed: &mut bool) -> String {
    let mut subscribed: HashSet<RoomId> = HashSet::new();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (add, remove) = shared.diff(&subscribed);
        if !remove.is_empty() {
            let names: Vec<String> = remove.iter().map(|room| channels.room(*room)).collect();
            if let Err(e) = timed(link.unsubscribe(&names)).await {
                return format!("unsubscribing failed: {e:#}");
            }
            for room in &remove {
                subscribed.remove(room);
            }
        }
        if !add.is_empty() {
            let names: Vec<String> = add.iter().map(|room| channels.room(*room)).collect();
            if let Err(e) = timed(link.subscribe(&names)).await {
                return format!("subscribing failed: {e:#}");
            }
            subscribed.extend(add.iter().copied());
            shared.heard(&add);
        }
        if std::mem::take(gap_owed) {
            shared.forward((Audience::Everyone, Delivery::Gap));
        }
        link.go_live();
        tokio::select! {
            incoming = link.next() => match incoming {
                Incoming::Message(message) => deliver(&message, channels, shared),
                Incoming::Dropped(channel) => {
                    if let Some(Audience::Room(room)) = channels.audience(&channel) {
                        if subscribed.remove(&room) {
                            // The room's shard moved: follow it where it is now; events between are lost.
                            tracing::info!(channel = %channel, "the server dropped a room's subscription; subscribing again");
                            shared.lost_one(room);
                            shared.forward((Audience::Everyone, Delivery::Gap));
                        }
                    } else if channels.audience(&channel) == Some(Audience::Everyone) {
                        return "the server dropped the control subscription".to_owned();
                    }
                }
                Incoming::Lost(reason) => return reason,
                Incoming::Other => {}
            },
            () = shared.changed.notified() => {}
            _ = ping.tick() => match tokio::time::timeout(PING_TIMEOUT, link.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return format!("ping failed: {e}"),
                Err(_) => return "ping timed out".to_owned(),
            },
        }
    }
}

impl Shared {
    /// One room is no longer subscribed on the connection, until the next turn subscribes it again.
    fn lost_one(&self, room: RoomId) {
        if let Some(want) = self.wanted.lock().get_mut(&room) {
            want.heard = false;
        }
    }
}

async fn timed<T>(command: impl std::future::Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(SUBSCRIBE_TIMEOUT, command).await.context("timed out")??)
}

fn deliver(message: &redis::Msg, channels: &Channels, shared: &Shared) {
    let Some(audience) = channels.audience(message.get_channel_name()) else { return };
    let decoded = serde_json::from_slice::<EventDto>(message.get_payload_bytes())
        .map_err(anyhow::Error::from)
        .and_then(EventDto::into_event);
    match decoded {
        Ok(event) => shared.forward((audience, Delivery::Event(event))),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "skipping an event that cannot be decoded"),
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    async fn publish(&self, event: RoomEvent) -> anyhow::Result<()> {
        let copies = event
            .addressed()
            .into_iter()
            .map(|(audience, copy)| {
                let payload = serde_json::to_string(&EventDto::from(&copy)).context("encoding an event")?;
                Ok((self.channels.of(audience), payload))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if copies.is_empty() {
            return Ok(());
        }
        self.publish_all(&copies).await
    }

    async fn subscribe(&self) -> anyhow::Result<Subscription> {
        let follower = Arc::new(Follower { shared: Arc::downgrade(&self.shared), rooms: Mutex::new(HashSet::new()) });
        let receiver = self.shared.local.subscribe();
        let events = futures::stream::unfold((receiver, follower.clone()), |(mut receiver, follower)| async move {
            loop {
                let delivery = match receiver.recv().await {
                    Ok((Audience::Room(room), _)) if !follower.follows(&room) => continue,
                    Ok((_, delivery)) => delivery,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a slow event subscriber missed events");
                        Delivery::Gap
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((delivery, (receiver, follower)));
            }
        });
        Ok(Subscription { events: events.boxed(), rooms: follower })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_channel_carries_the_room_in_its_hash_tag_and_names_it_back() {
        let channels = Channels::new("chat:");
        let room = RoomId::from_uuid(uuid::Uuid::from_u128(7));

        let name = channels.room(room);

        assert_eq!(name, format!("chat:room:{{{room}}}:events"));
        assert_eq!(channels.audience(&name), Some(Audience::Room(room)));
        assert_eq!(channels.audience("chat:control:events"), Some(Audience::Everyone));
        assert_eq!(channels.audience("other:control:events"), None);
    }
}
