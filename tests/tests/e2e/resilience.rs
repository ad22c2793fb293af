//! e2e: the split shape survives a Redis restart: sockets keep delivering across nodes and the worker keeps archiving.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use e2e::TestApp;
use serde_json::json;

/// A private redis-server with an append-only file, so a restart keeps its data.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let mut redis = Self { port, dir: tempfile::tempdir().expect("temp dir"), child: None };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        self.spawn();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn the_split_shape_survives_a_redis_restart() {
    // Arrange: the split shape on a Redis of its own, two users on different socket nodes.
    let mut redis = PrivateRedis::start();
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let app = TestApp::spawn_split(dir, &[("CHAT_REDIS_URL", &redis.url())]).await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = app.create_room(&alice, "private", &[&bob]).await["id"].as_str().expect("room id").to_owned();
    let mut a = app.socket_on(&alice, 0).await;
    let mut b = app.socket_on(&bob, 1).await;
    assert_eq!(a.send_text(&room, "before", "before the restart").await["type"], "ack");
    assert_eq!(b.next_of("message").await["message"]["text"], "before the restart");

    // Act: restart Redis under the running nodes.
    redis.restart();

    // Assert: sends succeed again once the nodes reconnect, and reach the other node.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    let seq = loop {
        attempt += 1;
        let ack = a.send_text(&room, &format!("after-{attempt}"), "after the restart").await;
        if ack["type"] == "ack" {
            break ack["message"]["seq"].as_u64().expect("seq");
        }
        assert!(tokio::time::Instant::now() < deadline, "no send succeeded after the restart: {ack}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(seq, 2, "the counter survived the restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The subscriber reconnects with backoff; until then a live delivery can be missed, and
        // sync recovers it — as a reconnecting client would.
        b.send_json(json!({"type": "sync", "room_id": room, "after_seq": 1})).await;
        // A request that was in flight when Redis went away answers `internal`; clients retry.
        let synced = loop {
            let frame = b.next_json().await;
            if frame["type"] == "synced" || frame["type"] == "error" {
                break frame;
            }
        };
        if synced["last_seq"] == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bob never saw seq 2: {synced}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let c = app.signup("carol").await;
    let mut c_socket = app.socket_on(&c, 1).await;
    let (status, _) = app.post(&format!("/rooms/{room}/members"), &alice.access_token, json!({"user_id": c.id})).await;
    assert_eq!(status, 201);
    let live_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ack = a.send_text(&room, &format!("live-{}", uuid::Uuid::new_v4()), "live again").await;
        assert_eq!(ack["type"], "ack");
        let got = tokio::time::timeout(Duration::from_secs(2), c_socket.next_of("message")).await;
        if got.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < live_deadline, "live delivery did not resume after the restart");
    }
    app.wait_until_archived(3).await;
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn after_redis_loses_its_data_no_acked_seq_is_given_again_and_the_worker_keeps_archiving() {
    // Arrange: five archived messages, then FLUSHALL under the running nodes.
    let redis = PrivateRedis::start();
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let app = TestApp::spawn_split(dir, &[("CHAT_REDIS_URL", &redis.url())]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().expect("room id").to_owned();
    let mut socket = app.socket_on(&alice, 0).await;
    let mut acked = Vec::new();
    for n in 0..5 {
        let ack = socket.send_text(&room, &format!("before-{n}"), "before the flush").await;
        acked.push((ack["message"]["seq"].as_u64().expect("seq"), ack["message"]["id"].clone()));
    }
    app.wait_until_archived(5).await;
    let mut raw =
        redis::Client::open(redis.url()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.expect("FLUSHALL");

    // Act: send again through both socket nodes.
    let mut other = app.socket_on(&alice, 1).await;
    for n in 0..3 {
        let socket = if n % 2 == 0 { &mut socket } else { &mut other };
        let ack = socket.send_text(&room, &format!("after-{n}"), "after the flush").await;
        assert_eq!(ack["type"], "ack", "{ack}");
        acked.push((ack["message"]["seq"].as_u64().expect("seq"), ack["message"]["id"].clone()));
    }
    app.wait_until_archived(8).await;

    // Assert: seqs carried on from the archive, and history holds every acked message once.
    let seqs: Vec<u64> = acked.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>(), "no seq was handed out twice");
    let (_, history) = app.get(&format!("/rooms/{room}/messages?after=0&limit=100"), &alice.access_token).await;
    let stored: Vec<(u64, serde_json::Value)> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| (m["seq"].as_u64().expect("seq"), m["id"].clone()))
        .collect();
    assert_eq!(stored, acked);
    assert_eq!(app.metric("chat_archive_dead_letters").await, Some(0.0), "nothing was dead-lettered");
}
