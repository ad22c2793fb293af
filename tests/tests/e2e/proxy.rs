//! e2e: the split shape behind the real Caddy of bootstrap/deploy/Caddyfile, as one origin; a
//! rolling restart of a socket node through it; and whose address the limits see behind a proxy.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::proxy::{free_port, Proxy};
use e2e::{Shape, Socket, TestApp, TestUser, SHAPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Live sockets on each socket node, read from the nodes' own `/metrics`.
async fn sockets_per_node(app: &TestApp) -> Vec<u64> {
    let mut counts = Vec::new();
    for addr in &app.socket_addrs {
        let text =
            app.http.get(format!("http://{addr}/metrics")).send().await.expect("metrics").text().await.expect("text");
        let line = text.lines().find(|l| l.starts_with("chat_live_sockets ")).expect("the live sockets gauge");
        counts.push(line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count"));
    }
    counts
}

async fn room_of(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> String {
    app.create_room(owner, "private", members).await["id"].as_str().expect("room id").to_owned()
}

#[tokio::test]
#[ignore = "needs Redis, MongoDB and Caddy (scripts/test.sh)"]
async fn one_origin_serves_the_api_sockets_on_both_nodes_files_and_checks_the_origin() {
    SHAPE
        .scope(Shape::Split, async {
            // Arrange: the apps allow the proxy's origin, as docker-compose.yml sets it.
            let port = free_port();
            let origin = format!("http://127.0.0.1:{port}");
            let mut app = TestApp::spawn_with(&[("CHAT_ALLOWED_ORIGINS", origin.as_str())]).await;
            let proxy = Proxy::front_at(&app, port).await;
            app.behind(&proxy.origin());

            // Act: sign-up, login and a room, then a socket each, all through the one origin.
            let alice = app.signup("alice").await;
            let bob = app.signup("bob").await;
            let room = room_of(&app, &alice, &[&bob]).await;
            let mut a = app.socket_on(&alice, 0).await;
            let mut b = app.socket_on(&bob, 0).await;

            // Assert: the proxy spread the two sockets over both nodes, and delivery crosses them.
            assert_eq!(sockets_per_node(&app).await, [1, 1]);
            let ack = a.send_text(&room, "c1", "across the nodes").await;
            assert_eq!(ack["type"], "ack", "{ack}");
            assert_eq!(b.next_of("message").await["message"]["text"], "across the nodes");

            // A file goes up and comes back in a range, through the same origin.
            let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            let part = reqwest::multipart::Part::bytes(content.clone()).file_name("data.bin");
            let form = reqwest::multipart::Form::new().text("room_id", room.clone()).part("file", part);
            let uploaded =
                app.http.post(proxy.url("/files")).bearer_auth(&alice.access_token).multipart(form).send().await;
            let uploaded: Value = uploaded.expect("upload").json().await.expect("JSON");
            let url = proxy.url(uploaded["url"].as_str().expect("a file url"));
            let ranged = app.http.get(url).bearer_auth(&bob.access_token).header("range", "bytes=500-599").send().await;
            let ranged = ranged.expect("download");
            assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
            assert_eq!(ranged.bytes().await.expect("bytes").as_ref(), &content[500..600]);

            // The socket's origin check sees the public origin; internal routes stay inside.
            assert_eq!(app.handshake_status(0, Some(&bob.access_token), None, Some(&origin)).await, 101);
            assert_eq!(app.handshake_status(0, Some(&bob.access_token), None, Some("http://evil.example")).await, 403);
            let internal = app.http.get(proxy.url(&format!("/internal/files/{}", uploaded["id"].as_str().unwrap())));
            assert_eq!(internal.send().await.expect("answer").status(), StatusCode::NOT_FOUND);
        })
        .await;
}

/// What one client kept of the room: each seq once, as a client keyed by seq does, since a live
/// frame may also come in the answer to the sync that follows a reconnect (issue 20).
type Seen = BTreeMap<u64, usize>;

/// Opens a socket again as a client does: at once, and again shortly while the proxy still
/// sends the handshake to the node that is going away (it answers 503 `shutting_down`).
async fn reconnect(url: &str, user: &TestUser) -> Socket {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Socket::try_open(url, user).await {
            Ok(socket) => return socket,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "no node took the socket: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A member reading the room through the proxy. When its node closes the socket, it reconnects
/// through the proxy and syncs from the last seq it saw, until it has seen seq `last`.
async fn follow(url: String, user: TestUser, room: String, last: u64) -> (Seen, Vec<u16>) {
    let mut seen = Seen::new();
    let mut closes = Vec::new();
    let mut socket = Socket::open(&url, &user).await;
    while seen.keys().next_back().copied().unwrap_or(0) < last || seen.len() < last as usize {
        match socket.next_or_close().await {
            Ok(frame) if frame["type"] == "message" && frame["message"]["room_id"] == room.as_str() => {
                *seen.entry(frame["message"]["seq"].as_u64().expect("seq")).or_default() += 1;
            }
            Ok(_) => {}
            Err(code) => {
                closes.push(code);
                socket = reconnect(&url, &user).await;
                let after = seen.keys().next_back().copied().unwrap_or(0);
                socket.send_json(json!({"type": "sync", "room_id": room, "after_seq": after})).await;
            }
        }
    }
    (seen, closes)
}

#[tokio::test]
#[ignore = "needs Redis, MongoDB and Caddy (scripts/test.sh)"]
async fn a_rolling_restart_of_a_socket_node_loses_no_acked_message() {
    SHAPE
        .scope(Shape::Split, async {
            // Arrange: four readers through the proxy, two on each node; the sender on node 1.
            const SENDS: u64 = 150;
            let mut app = TestApp::spawn_with(&[("CHAT_WS_RATE_PER_SEC", "1000"), ("CHAT_WS_BURST", "1000")]).await;
            let proxy = Proxy::front(&app).await;
            let sender = app.signup("sender").await;
            let mut readers = Vec::new();
            for name in ["r1", "r2", "r3", "r4"] {
                readers.push(app.signup(name).await);
            }
            let room = room_of(&app, &sender, &readers.iter().collect::<Vec<_>>()).await;
            let followers: Vec<_> =
                readers.iter().map(|r| tokio::spawn(follow(proxy.ws_url(), r.clone(), room.clone(), SENDS))).collect();
            let mut out = Socket::open(&format!("ws://{}/ws", app.socket_addrs[1]), &sender).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while sockets_per_node(&app).await != [2, 3] {
                assert!(tokio::time::Instant::now() < deadline, "readers spread: {:?}", sockets_per_node(&app).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }

            // Act: steady sends; a third of the way in, node 0 stops as on SIGTERM.
            let mut acked = Vec::new();
            for n in 1..=SENDS {
                let ack = out.send_text(&room, &format!("m{n}"), &format!("message {n}")).await;
                assert_eq!(ack["type"], "ack", "{ack}");
                acked.push(ack["message"]["seq"].as_u64().expect("an acked seq"));
                if n == SENDS / 3 {
                    app.stop_socket_node(0).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }

            // Assert: every reader saw every acked seq, and the ones on node 0 were told 1001.
            assert_eq!(acked, (1..=SENDS).collect::<Vec<_>>());
            let mut going_away = 0;
            for follower in followers {
                let (seen, closes) =
                    tokio::time::timeout(Duration::from_secs(30), follower).await.expect("caught up").expect("reader");
                assert_eq!(seen.keys().copied().collect::<Vec<_>>(), acked, "a reader lost messages");
                assert!(closes.iter().all(|c| *c == 1001), "{closes:?}");
                going_away += closes.len();
            }
            assert_eq!(going_away, 2, "the two readers on the stopped node reconnected once each");
        })
        .await;
}

/// Failed logins until the per-address limit answers 429, each claiming `forwarded`.
async fn fail_logins_until_limited(app: &TestApp, forwarded: &str) -> u16 {
    for n in 0..10 {
        let body = json!({"username": format!("nobody{n}"), "password": "not the password"});
        let reply = app.http.post(app.url("/auth/login")).header("x-forwarded-for", forwarded).json(&body).send().await;
        let status = reply.expect("answer").status().as_u16();
        if status == 429 {
            return n;
        }
    }
    panic!("never limited");
}

async fn a_login_from(app: &TestApp, forwarded: &str) -> StatusCode {
    let body = json!({"username": "somebody", "password": "not the password"});
    app.http
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", forwarded)
        .json(&body)
        .send()
        .await
        .expect("answer")
        .status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_login_limit_keys_on_the_forwarded_client() {
    // Arrange: the test client is the "proxy" on 127.0.0.1.
    let app =
        TestApp::spawn_with(&[("CHAT_TRUSTED_PROXIES", "127.0.0.1"), ("CHAT_LOGIN_FAILURES_PER_ADDRESS", "3")]).await;

    // Act
    let tries = fail_logins_until_limited(&app, "198.51.100.1").await;

    // Assert: one client is limited, another one behind the same proxy is not.
    assert_eq!(tries, 3);
    assert_eq!(a_login_from(&app, "198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a_login_from(&app, "198.51.100.2").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn from_an_untrusted_peer_a_forged_forwarded_header_changes_nothing() {
    // Arrange: nobody is trusted, the default.
    let app = TestApp::spawn_with(&[("CHAT_LOGIN_FAILURES_PER_ADDRESS", "3")]).await;

    // Act
    fail_logins_until_limited(&app, "198.51.100.1").await;

    // Assert: claiming another address does not escape the limit.
    assert_eq!(a_login_from(&app, "198.51.100.2").await, StatusCode::TOO_MANY_REQUESTS);
}

/// docker-compose.yml, parsed: no Docker engine runs here, so its shape is checked instead.
fn compose() -> serde_yaml::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml");
    let mut compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("docker-compose.yml")).expect("valid YAML");
    compose.apply_merge().expect("`<<` merge keys resolve");
    compose
}

#[test]
fn in_docker_compose_only_the_proxy_is_published_and_every_app_is_checked_and_restarted() {
    // Arrange
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");

    // Assert
    for (name, service) in services {
        let name = name.as_str().expect("a service name");
        assert_eq!(service.get("ports").is_some(), name == "proxy", "{name}: only the proxy publishes ports");
        assert!(service["restart"].as_str().is_some(), "{name} has a restart policy");
        assert!(service["healthcheck"]["test"].is_sequence(), "{name} has a healthcheck");
        if service["command"][0].as_str().is_some_and(|c| c.starts_with("chat-")) {
            let check = serde_yaml::to_string(&service["healthcheck"]["test"]).expect("YAML");
            assert!(check.contains("/health/ready"), "{name} is healthy when ready: {check}");
            let env = &service["environment"];
            assert_eq!(env["CHAT_ALLOWED_ORIGINS"], "${CHAT_PUBLIC_ORIGIN:-http://localhost:8080}", "{name}");
            assert_eq!(env["CHAT_TRUSTED_PROXIES"], "172.28.0.10", "{name} trusts the proxy alone");
        }
    }
    let proxy = &compose["services"]["proxy"];
    assert_eq!(proxy["networks"]["chat"]["ipv4_address"], "172.28.0.10");
    assert!(proxy["volumes"][0].as_str().is_some_and(|v| v.starts_with("./bootstrap/deploy/Caddyfile:")));
    assert_eq!(proxy["environment"]["CHAT_SOCKET_UPSTREAMS"], "socket-1:8083 socket-2:8083");
}

#[test]
fn docker_composes_cluster_profile_runs_three_redis_masters_with_a_replica_each_for_the_apps() {
    // Arrange
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let nodes: Vec<&str> =
        services.keys().filter_map(|name| name.as_str()).filter(|name| name.starts_with("redis-node-")).collect();

    // Assert: six nodes in the profile, and the first one's check creates the cluster once.
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    for node in &nodes {
        let service = &compose["services"][*node];
        assert_eq!(service["profiles"][0], "cluster", "{node}");
        let command = serde_yaml::to_string(&service["command"]).expect("YAML");
        assert!(command.contains("--cluster-enabled") && command.contains("--appendonly"), "{node}: {command}");
    }
    let create = serde_yaml::to_string(&compose["services"]["redis-node-1"]["healthcheck"]["test"]).expect("YAML");
    assert!(create.contains("--cluster create") && create.contains("--cluster-replicas 1"), "{create}");
    let env = &compose["x-chat-env"];
    assert_eq!(env["CHAT_REDIS_MODE"], "${CHAT_REDIS_MODE:-standalone}");
    assert_eq!(env["CHAT_REDIS_URL"], "${CHAT_REDIS_URL:-redis://redis:6379}");
}
