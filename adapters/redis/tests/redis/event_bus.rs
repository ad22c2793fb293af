//! What the `EventBus` contract (in `contract.rs`) leaves to the Redis bus: one subscriber
//! connection per node, which subscribes to a room's channel only while something on the node
//! follows it, channel isolation by prefix, reconnection, and shutdown.

use std::collections::HashSet;
use std::time::Duration;

use adapter_redis::RedisEventBus;
use application::ports::{Delivery, EventBus, RoomEvent, UserSummary};
use domain::{RoomId, UserId, Username};
use futures::StreamExt;

use crate::support::{new_room, redis_url, within, Scope, BUS_TESTS};

async fn bus(scope: &Scope) -> RedisEventBus {
    RedisEventBus::connect(&redis_url(), &scope.prefix).await.expect("Redis is reachable")
}

fn typing_in(room_id: RoomId) -> RoomEvent {
    RoomEvent::Typing { room_id, user: summary() }
}

fn room_deleted() -> RoomEvent {
    RoomEvent::RoomDeleted { room_id: new_room() }
}

fn summary() -> UserSummary {
    UserSummary { id: UserId::from_uuid(uuid::Uuid::now_v7()), username: Username::new("carol").expect("valid") }
}

async fn subscriber_count(scope: &Scope) -> i64 {
    channel_subscribers(&format!("{}control:events", scope.prefix)).await
}

async fn room_subscribers(scope: &Scope, room: RoomId) -> i64 {
    channel_subscribers(&format!("{}room:{{{room}}}:events", scope.prefix)).await
}

async fn channel_subscribers(channel: &str) -> i64 {
    let mut raw = Scope::new().raw().await;
    let counts: Vec<(String, i64)> =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut raw).await.expect("numsub");
    counts.first().map_or(0, |(_, n)| *n)
}

async fn pubsub_client_ids(scope: &Scope) -> HashSet<String> {
    let mut raw = scope.raw().await;
    let list: String =
        redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut raw).await.expect("list");
    list.lines()
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")).map(str::to_owned))
        .collect()
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_node_holds_one_redis_subscription_however_many_local_subscribers() {
    let _serial = BUS_TESTS.lock().await;
    let scope = Scope::new();
    let node = bus(&scope).await;
    let _streams = futures::future::join_all((0..5).map(|_| node.subscribe())).await;

    let one_node = subscriber_count(&scope).await;
    let other = bus(&scope).await;
    let two_nodes = subscriber_count(&scope).await;
    drop(other);

    assert_eq!((one_node, two_nodes), (1, 2));
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn buses_with_different_prefixes_do_not_hear_each_other() {
    let _serial = BUS_TESTS.lock().await;
    let (scope_a, scope_b) = (Scope::new(), Scope::new());
    let (node_a, node_b) = (bus(&scope_a).await, bus(&scope_b).await);
    let mut on_b = node_b.subscribe().await.expect("subscribe").events;

    node_a.publish(room_deleted()).await.expect("publish");
    let marker = room_deleted();
    node_b.publish(marker.clone()).await.expect("publish");

    assert_eq!(within(on_b.next()).await, Some(Delivery::Event(marker)), "the first event B hears is its own");
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn the_subscriber_reconnects_after_its_connection_is_killed_and_reports_the_gap() {
    let _serial = BUS_TESTS.lock().await;
    let scope = Scope::new();
    let before = pubsub_client_ids(&scope).await;
    let node = bus(&scope).await;
    let ours: Vec<String> = pubsub_client_ids(&scope).await.difference(&before).cloned().collect();
    let subscription = node.subscribe().await.expect("subscribe");
    let room = new_room();
    subscription.rooms.follow(room).await.expect("follow");
    let mut events = subscription.events;
    assert_eq!(ours.len(), 1, "exactly one new subscriber connection: {ours:?}");

    let mut raw = scope.raw().await;
    let killed: i64 =
        redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&ours[0]).query_async(&mut raw).await.expect("kill");
    within(async {
        while room_subscribers(&scope, room).await != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let event = typing_in(room);
    node.publish(event.clone()).await.expect("publish");

    assert_eq!(killed, 1);
    assert_eq!(within(events.next()).await, Some(Delivery::Gap), "events published while it was down are lost: a gap");
    assert_eq!(
        within(events.next()).await,
        Some(Delivery::Event(event)),
        "the same local stream goes on after the reconnect, in the rooms it followed"
    );
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn dropping_the_bus_ends_its_streams_and_its_subscription() {
    let _serial = BUS_TESTS.lock().await;
    let scope = Scope::new();
    let node = bus(&scope).await;
    let mut events = node.subscribe().await.expect("subscribe").events;

    drop(node);

    assert_eq!(within(events.next()).await, None);
    within(async {
        while subscriber_count(&scope).await != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_node_subscribes_to_a_room_once_while_any_local_subscription_follows_it() {
    let _serial = BUS_TESTS.lock().await;
    let scope = Scope::new();
    let node = bus(&scope).await;
    let (first, second) = (node.subscribe().await.expect("subscribe"), node.subscribe().await.expect("subscribe"));
    let room = new_room();

    let before = room_subscribers(&scope, room).await;
    first.rooms.follow(room).await.expect("follow");
    second.rooms.follow(room).await.expect("follow");
    let both = room_subscribers(&scope, room).await;
    first.rooms.unfollow(room);
    drop(second);
    let after = within(async {
        while room_subscribers(&scope, room).await != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        0
    })
    .await;

    assert_eq!((before, both, after), (0, 1, 0));
}

/// Kills, on every node of the cluster, the connections holding sharded subscriptions.
async fn kill_sharded_subscribers(seeds: &[String]) -> usize {
    let mut killed = 0;
    for seed in seeds {
        let mut raw = redis::Client::open(seed.as_str())
            .expect("valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the cluster node is reachable");
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut raw).await.expect("list");
        for line in list.lines() {
            let field = |name: &str| line.split(' ').find_map(|f| f.strip_prefix(name)).map(str::to_owned);
            let sharded: u64 = field("ssub=").and_then(|n| n.parse().ok()).unwrap_or(0);
            if let (true, Some(id)) = (sharded > 0, field("id=")) {
                let n: i64 =
                    redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&id).query_async(&mut raw).await.expect("kill");
                killed += usize::try_from(n).unwrap_or(0);
            }
        }
    }
    killed
}

#[tokio::test]
#[ignore = "needs a Redis Cluster (CHAT_TEST_REDIS_CLUSTER_URL)"]
async fn on_a_cluster_the_subscriber_reconnects_after_its_shard_connections_are_killed_and_reports_the_gap() {
    let Some(seeds) = crate::contract::cluster_seeds() else { return };
    let _serial = BUS_TESTS.lock().await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let node = RedisEventBus::connect_cluster(&seeds, &prefix).await.expect("the cluster is reachable");
    let subscription = node.subscribe().await.expect("subscribe");
    let room = new_room();
    subscription.rooms.follow(room).await.expect("follow");
    let mut events = subscription.events;

    let killed = kill_sharded_subscribers(&seeds).await;
    let gap = within(events.next()).await;
    let event = typing_in(room);
    node.publish(event.clone()).await.expect("publish");

    assert!(killed >= 1, "the subscriber held sharded subscriptions");
    assert_eq!(gap, Some(Delivery::Gap), "events published while it was down are lost: a gap");
    assert_eq!(within(events.next()).await, Some(Delivery::Event(event)), "the followed room is heard again");
}

/// Subscribers of `channel` summed over every node of the cluster: (sharded, classic).
async fn cluster_subscribers(seeds: &[String], channel: &str) -> (i64, i64) {
    let (mut sharded, mut classic) = (0, 0);
    for seed in seeds {
        let mut raw = redis::Client::open(seed.as_str())
            .expect("valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the cluster node is reachable");
        for (kind, total) in [("SHARDNUMSUB", &mut sharded), ("NUMSUB", &mut classic)] {
            let counts: Vec<(String, i64)> =
                redis::cmd("PUBSUB").arg(kind).arg(channel).query_async(&mut raw).await.expect("numsub");
            *total += counts.first().map_or(0, |(_, n)| *n);
        }
    }
    (sharded, classic)
}

#[tokio::test]
#[ignore = "needs a Redis Cluster (CHAT_TEST_REDIS_CLUSTER_URL)"]
async fn on_a_cluster_a_followed_room_is_one_sharded_subscription_on_its_shard() {
    let Some(seeds) = crate::contract::cluster_seeds() else { return };
    let _serial = BUS_TESTS.lock().await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let node = RedisEventBus::connect_cluster(&seeds, &prefix).await.expect("the cluster is reachable");
    let (first, second) = (node.subscribe().await.expect("subscribe"), node.subscribe().await.expect("subscribe"));
    let room = new_room();
    let channel = format!("{prefix}room:{{{room}}}:events");

    first.rooms.follow(room).await.expect("follow");
    second.rooms.follow(room).await.expect("follow");
    let following = cluster_subscribers(&seeds, &channel).await;
    drop((first, second));
    let after = within(async {
        loop {
            let counts = cluster_subscribers(&seeds, &channel).await;
            if counts == (0, 0) {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    assert_eq!(following, (1, 0), "one sharded subscription, no classic one");
    assert_eq!(after, (0, 0));
}

/// Follows `n` new rooms at once on `node`, publishes in every `step`th from `other` (fewer than
/// the local buffer holds, as the stream is read afterwards), and checks each is heard.
async fn hears_each_of_many_rooms(node: &RedisEventBus, other: &RedisEventBus, n: usize, step: usize) {
    let subscription = node.subscribe().await.expect("subscribe");
    let rooms: Vec<RoomId> = (0..n).map(|_| new_room()).collect();

    within(futures::future::try_join_all(rooms.iter().map(|room| subscription.rooms.follow(*room))))
        .await
        .expect("every room followed");
    let rooms: Vec<RoomId> = rooms.into_iter().step_by(step).collect();
    for room in &rooms {
        other.publish(typing_in(*room)).await.expect("publish");
    }

    let mut events = subscription.events;
    let mut heard = HashSet::new();
    while heard.len() < rooms.len() {
        match within(events.next()).await {
            Some(Delivery::Event(RoomEvent::Typing { room_id, .. })) => drop(heard.insert(room_id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(heard, rooms.into_iter().collect());
}

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_subscription_following_hundreds_of_rooms_at_once_hears_each_of_them() {
    let _serial = BUS_TESTS.lock().await;
    let scope = Scope::new();
    let (node, other) = (bus(&scope).await, bus(&scope).await);

    hears_each_of_many_rooms(&node, &other, 300, 1).await;
}

#[tokio::test]
#[ignore = "needs a Redis Cluster (CHAT_TEST_REDIS_CLUSTER_URL)"]
async fn on_a_cluster_a_subscription_following_thousands_of_rooms_at_once_hears_each_of_them() {
    let Some(seeds) = crate::contract::cluster_seeds() else { return };
    let _serial = BUS_TESTS.lock().await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let connect = || RedisEventBus::connect_cluster(&seeds, &prefix);
    let (node, other) = (connect().await.expect("reachable"), connect().await.expect("reachable"));

    // More subscriptions than the connection's news queue holds: their confirmations are not news.
    hears_each_of_many_rooms(&node, &other, 3000, 10).await;
}
