//! e2e: the WebSocket protocol — handshake refusals, live delivery, acks, idempotency, sync, typing, limits.

use std::time::Duration;

use e2e::{TestApp, TestUser};
use futures::SinkExt;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn a_room_created_while_connected_is_followed_live_by_its_creator_and_members() {
    // Arrange: both are connected, on different nodes in the split shape, before the room exists.
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut alice_socket = app.socket_on(&alice, 0).await;
    let mut bob_socket = app.socket_on(&bob, 1).await;

    // Act
    let room = room_with(&app, &alice, &[&bob]).await;
    alice_socket.next_of("member_joined").await;
    bob_socket.next_of("member_joined").await;
    let alice_ack = alice_socket.send_text(&room, "a-1", "hello bob").await;
    let bob_ack = bob_socket.send_text(&room, "b-1", "hello alice").await;

    // Assert
    assert_eq!((alice_ack["type"].as_str(), bob_ack["type"].as_str()), (Some("ack"), Some("ack")));
    for socket in [&mut alice_socket, &mut bob_socket] {
        let mut texts = vec![socket.next_of("message").await, socket.next_of("message").await]
            .into_iter()
            .map(|m| m["message"]["text"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>();
        texts.sort();
        assert_eq!(texts, ["hello alice", "hello bob"]);
    }
}

async fn a_member_removed_without_any_node_hearing_it_stops_receiving_the_room() {
    // Arrange: bob follows a private room; his membership then vanishes from the store with no
    // event, as when the removal's publish failed or the bus dropped it.
    let app = TestApp::spawn_with(&[("CHAT_WS_RECONCILE_SECS", "1")]).await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = room_with(&app, &alice, &[&bob]).await;
    let mut alice_socket = app.socket_on(&alice, 0).await;
    let mut bob_socket = app.socket_on(&bob, 1).await;
    let ack = alice_socket.send_text(&room, "before", "bob can read this").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    bob_socket.next_of("message").await;
    app.remove_membership_behind_the_servers_back(&room, &bob.id).await;

    // Act: alice keeps talking until bob's node has read his rooms again (at most a few seconds).
    let mut n = 0;
    loop {
        n += 1;
        alice_socket.send_text(&room, &format!("probe-{n}"), "still there?").await;
        let heard = tokio::time::timeout(Duration::from_millis(500), bob_socket.next_of("message")).await;
        if heard.is_err() {
            break;
        }
        assert!(n < 40, "bob still receives the room after {n} messages, 10 s or more");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Assert: from then on, nothing of the room reaches bob.
    alice_socket.send_text(&room, "after", "bob cannot read this").await;
    bob_socket.expect_none_of("message", Duration::from_millis(500)).await;
}

/// The ids `GET /rooms/{room}/presence` lists as online, sorted.
async fn online_in(app: &TestApp, room: &str, asker: &TestUser) -> Vec<String> {
    let (status, body) = app.get(&format!("/rooms/{room}/presence"), &asker.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut online: Vec<String> =
        body["online"].as_array().expect("online").iter().map(|id| id.as_str().expect("id").to_owned()).collect();
    online.sort();
    online
}

async fn a_member_sees_who_in_the_room_is_online_on_any_node() {
    // Arrange: alice on one node, bob on the other, carol not connected.
    let app = TestApp::spawn().await;
    let (alice, bob, carol, eve) =
        (app.signup("alice").await, app.signup("bob").await, app.signup("carol").await, app.signup("eve").await);
    let room = room_with(&app, &alice, &[&bob, &carol]).await;
    let alice_socket = app.socket_on(&alice, 0).await;
    let _bob_socket = app.socket_on(&bob, 1).await;

    // Act
    let while_both = online_in(&app, &room, &carol).await;
    drop(alice_socket);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut after = online_in(&app, &room, &carol).await;
    while after.len() != 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = online_in(&app, &room, &carol).await;
    }
    let (stranger, _) = app.get(&format!("/rooms/{room}/presence"), &eve.access_token).await;

    // Assert
    let mut expected = vec![alice.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(while_both, expected);
    assert_eq!(after, vec![bob.id.clone()], "alice left");
    assert_eq!(stranger, StatusCode::NOT_FOUND, "a private room's presence is for its members");
}

async fn a_user_still_connected_on_another_node_is_not_announced_offline() {
    // Arrange: alice has a socket on each node; bob watches the room.
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.signup("alice").await, app.signup("bob").await);
    let room = room_with(&app, &alice, &[&bob]).await;
    let mut bob_socket = app.socket_on(&bob, 0).await;
    let first = app.socket_on(&alice, 0).await;
    let second = app.socket_on(&alice, 1).await;
    // Bob's own arrival may come in a frame of its own first.
    let mut online = bob_socket.next_of("presence").await;
    while !online["online"].as_array().unwrap().contains(&json!(alice.id)) {
        online = bob_socket.next_of("presence").await;
    }

    // Act / Assert: closing one socket says nothing; closing the last says offline.
    drop(first);
    bob_socket.expect_none_of("presence", Duration::from_millis(500)).await;
    drop(second);
    let offline = bob_socket.next_of("presence").await;
    assert_eq!((&offline["room_id"], &offline["offline"]), (&json!(room), &json!([alice.id])), "{offline}");
    assert_eq!(online_in(&app, &room, &bob).await, vec![bob.id.clone()]);
}

async fn room_with(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> String {
    app.create_room(owner, "private", members).await["id"].as_str().expect("room id").to_owned()
}

async fn a_handshake_without_a_valid_token_is_refused_with_401() {
    let app = TestApp::spawn().await;

    assert_eq!(app.handshake_status(0, None, None, None).await, 401);
    assert_eq!(app.handshake_status(0, Some("not.a.token"), None, None).await, 401);
    assert_eq!(app.handshake_status(0, None, Some("garbage"), None).await, 401);
}

async fn a_browser_may_pass_the_token_as_a_query_parameter() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;

    assert_eq!(app.handshake_status(0, None, Some(&alice.access_token), None).await, 101);
}

async fn an_expired_token_is_refused_with_401() {
    let app = TestApp::spawn_with(&[("CHAT_ACCESS_TOKEN_TTL_SECS", "1")]).await;
    let alice = app.signup("alice").await;

    // Past the token's one second and the verifier's five seconds of leeway.
    tokio::time::sleep(Duration::from_secs(7)).await;

    assert_eq!(app.handshake_status(0, Some(&alice.access_token), None, None).await, 401);
}

async fn a_foreign_origin_is_refused_with_403_and_an_allowed_one_is_accepted() {
    let app = TestApp::spawn_with(&[("CHAT_ALLOWED_ORIGINS", "https://chat.example")]).await;
    let alice = app.signup("alice").await;

    assert_eq!(app.handshake_status(0, Some(&alice.access_token), None, Some("https://evil.example")).await, 403);
    assert_eq!(app.handshake_status(0, Some(&alice.access_token), None, Some("https://chat.example")).await, 101);
}

async fn by_default_only_the_servers_own_origin_is_allowed() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let own = format!("http://{}", app.socket_addrs[0]);

    assert_eq!(app.handshake_status(0, Some(&alice.access_token), None, Some(&own)).await, 101);
    assert_eq!(app.handshake_status(0, Some(&alice.access_token), None, Some("http://elsewhere:1")).await, 403);
}

async fn more_sockets_than_the_per_user_limit_are_refused_with_429() {
    let app = TestApp::spawn_with(&[("CHAT_MAX_CONNECTIONS_PER_USER", "2")]).await;
    let alice = app.signup("alice").await;
    let _first = app.socket(&alice).await;
    let _second = app.socket(&alice).await;

    assert_eq!(app.handshake_status(0, Some(&alice.access_token), None, None).await, 429);
}

async fn two_members_both_receive_every_message_with_strictly_increasing_seqs() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = room_with(&app, &alice, &[&bob]).await;
    let mut a = app.socket(&alice).await;
    let mut b = app.socket(&bob).await;

    let mut acked = Vec::new();
    for i in 0..5 {
        let ack = a.send_text(&room, &format!("m{i}"), &format!("hello {i}")).await;
        acked.push(ack["message"]["seq"].as_u64().unwrap());
    }

    let mut received = Vec::new();
    for i in 0..5 {
        let frame = b.next_of("message").await;
        assert_eq!(frame["message"]["text"], format!("hello {i}"));
        assert_eq!(frame["message"]["sender"]["username"], alice.username.as_str());
        received.push(frame["message"]["seq"].as_u64().unwrap());
    }
    // The sender's own socket gets the broadcast too (acks were read first, so its copies wait in order).
    let own: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(a.next_of("message").await["message"]["seq"].as_u64().unwrap());
        }
        v
    };
    assert_eq!(acked, vec![1, 2, 3, 4, 5]);
    assert_eq!(received, acked);
    assert_eq!(own, acked);
}

async fn the_ack_carries_the_stored_message_in_the_shared_json_shape() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = room_with(&app, &alice, &[]).await;
    let mut socket = app.socket(&alice).await;

    let ack = socket.send_text(&room, "c1", "  hi there  ").await;

    assert_eq!(ack["client_msg_id"], "c1");
    let message = &ack["message"];
    assert_eq!(message["room_id"], room.as_str());
    assert_eq!(message["seq"], 1);
    assert_eq!(message["kind"], "text");
    assert_eq!(message["text"], "hi there");
    assert_eq!(message["sender"]["id"], alice.id.as_str());
    assert!(message["sent_at"].as_str().unwrap().ends_with('Z'));
    assert!(message.get("file").is_none());
}

/// Sync answers a non-member as history over HTTP does: the room is not there for them.
async fn a_non_member_finds_no_private_room_to_send_or_sync_to() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mallory = app.signup("mallory").await;
    let room = room_with(&app, &alice, &[]).await;
    let mut socket = app.socket(&mallory).await;

    let refused = socket.send_text(&room, "x1", "let me in").await;
    socket.send_json(json!({"type": "sync", "room_id": room, "after_seq": 0})).await;
    let sync_refused = socket.next_of("error").await;

    // A private room does not exist for a non-member, whatever they try.
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "not_found");
    assert_eq!(refused["client_msg_id"], "x1");
    assert_eq!(sync_refused["code"], "not_found");
    assert_eq!(sync_refused["message"], "room not found");
    assert_eq!(sync_refused["room_id"], room.as_str(), "the error names the room it is about");
    socket.send_json(json!({"type": "typing", "room_id": room})).await;
    let typing_refused = socket.next_of("error").await;
    assert_eq!(
        (typing_refused["code"].as_str(), typing_refused["room_id"].as_str()),
        (Some("not_found"), Some(room.as_str()))
    );
    let (_, history) = app.get(&format!("/rooms/{room}/messages"), &alice.access_token).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 0);
}

async fn a_resend_with_the_same_client_msg_id_acks_the_original_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = room_with(&app, &alice, &[]).await;
    let mut socket = app.socket(&alice).await;

    let first = socket.send_text(&room, "same-id", "once").await;
    let second = socket.send_text(&room, "same-id", "once").await;

    assert_eq!(first["message"]["id"], second["message"]["id"]);
    assert_eq!(second["message"]["seq"], 1);
    let (_, history) = app.get(&format!("/rooms/{room}/messages"), &alice.access_token).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 1);
}

async fn sync_after_reconnect_returns_exactly_the_missed_messages() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = room_with(&app, &alice, &[&bob]).await;
    let mut a = app.socket(&alice).await;
    let mut b = app.socket(&bob).await;
    a.send_text(&room, "m1", "seen").await;
    let seen = b.next_of("message").await["message"]["seq"].as_u64().unwrap();
    drop(b);

    for i in 2..=6 {
        a.send_text(&room, &format!("m{i}"), &format!("missed {i}")).await;
    }
    let mut b = app.socket(&bob).await;
    b.send_json(json!({"type": "sync", "room_id": room, "after_seq": seen})).await;

    let mut got = Vec::new();
    loop {
        let frame = b.next_json().await;
        match frame["type"].as_str().unwrap() {
            "message" => got.push(frame["message"]["seq"].as_u64().unwrap()),
            "synced" => {
                assert_eq!(frame["last_seq"], 6);
                assert_eq!(frame["has_more"], false);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(got, vec![2, 3, 4, 5, 6]);
}

async fn typing_is_relayed_to_others_and_throttled() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = room_with(&app, &alice, &[&bob]).await;
    let mut a = app.socket(&alice).await;
    let mut b = app.socket(&bob).await;

    a.send_json(json!({"type": "typing", "room_id": room})).await;
    let relayed = b.next_of("typing").await;
    a.send_json(json!({"type": "typing", "room_id": room})).await;

    assert_eq!(relayed["room_id"], room.as_str());
    assert_eq!(relayed["user"]["username"], alice.username.as_str());
    b.expect_none_of("typing", Duration::from_millis(800)).await;
    a.expect_none_of("typing", Duration::from_millis(100)).await;
}

async fn malformed_frames_get_a_bad_request_error_and_the_socket_stays_open() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut socket = app.socket(&alice).await;

    for raw in ["not json", r#"{"type":"shout"}"#, r#"{"type":"send","room_id":"x"}"#] {
        socket.stream.send(Message::Text(raw.to_owned().into())).await.unwrap();
        let error = socket.next_of("error").await;
        assert_eq!(error["code"], "bad_request", "{raw}");
    }
    socket.send_json(json!({"type": "ping"})).await;
    assert_eq!(socket.next_json().await["type"], "pong");
}

async fn a_text_frame_over_64_kib_is_refused_and_the_socket_stays_open() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = room_with(&app, &alice, &[]).await;
    let mut socket = app.socket(&alice).await;

    let huge = "x".repeat(70 * 1024);
    socket.send_json(json!({"type": "send", "room_id": room, "client_msg_id": "big", "text": huge})).await;

    assert_eq!(socket.next_of("error").await["code"], "too_large");
    socket.send_json(json!({"type": "ping"})).await;
    assert_eq!(socket.next_of("pong").await["type"], "pong");
}

async fn a_binary_frame_over_the_upload_limit_closes_the_socket_with_1009() {
    let app = TestApp::spawn_with(&[("CHAT_FILE_MAX_BYTES", "1024"), ("CHAT_IMAGE_MAX_BYTES", "1024")]).await;
    let alice = app.signup("alice").await;
    let room = room_with(&app, &alice, &[]).await;
    let mut socket = app.socket(&alice).await;

    let header = json!({"type": "send_file", "room_id": room, "client_msg_id": "f1", "name": "big.bin"}).to_string();
    let frame = adapter_http::ws::frames::encode_binary(&header, &vec![7u8; 64 * 1024]);
    let _ = socket.stream.send(Message::Binary(frame.into())).await;

    let (code, _) = socket.closed().await;
    assert_eq!(code, 1009);
}

async fn the_per_connection_rate_limit_answers_rate_limited() {
    let app = TestApp::spawn_with(&[("CHAT_WS_RATE_PER_SEC", "1"), ("CHAT_WS_BURST", "3")]).await;
    let alice = app.signup("alice").await;
    let mut socket = app.socket(&alice).await;

    for _ in 0..6 {
        socket.send_json(json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..6 {
        match socket.next_json().await["type"].as_str().unwrap() {
            "pong" => pongs += 1,
            "error" => limited += 1,
            _ => {}
        }
    }

    assert_eq!(pongs, 3);
    assert_eq!(limited, 3);
}

async fn an_expiring_access_token_closes_the_socket_with_4001() {
    let app = TestApp::spawn_with(&[("CHAT_ACCESS_TOKEN_TTL_SECS", "2")]).await;
    let alice = app.signup("alice").await;
    let mut socket = app.socket(&alice).await;

    let (code, reason) = socket.closed().await;

    assert_eq!(code, 4001);
    assert_eq!(reason, "token_expired");
}

async fn a_member_who_joins_starts_receiving_the_rooms_messages_live() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = app.create_room(&alice, "public", &[]).await["id"].as_str().unwrap().to_owned();
    let mut b = app.socket(&bob).await;
    let mut a = app.socket(&alice).await;

    let (status, _) = app.post(&format!("/rooms/{room}/join"), &bob.access_token, json!({})).await;
    assert_eq!(status, 200);
    let joined = a.next_of("member_joined").await;
    a.send_text(&room, "w1", "welcome").await;

    assert_eq!(joined["user"]["id"], bob.id.as_str());
    assert_eq!(b.next_of("message").await["message"]["text"], "welcome");
}

async fn a_message_sent_through_one_socket_node_reaches_sockets_on_the_other() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = room_with(&app, &alice, &[&bob]).await;
    let mut a = app.socket_on(&alice, 0).await;
    let mut b = app.socket_on(&bob, 1).await;

    let ack = a.send_text(&room, "x1", "across nodes").await;

    let delivered = b.next_of("message").await;
    assert_eq!(delivered["message"]["id"], ack["message"]["id"]);
    assert_eq!(delivered["message"]["text"], "across nodes");
}

async fn membership_changes_made_through_the_api_reach_sockets_on_every_node() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = room_with(&app, &alice, &[]).await;
    let mut b = app.socket_on(&bob, 1).await;
    let mut a = app.socket_on(&alice, 0).await;

    let (status, _) =
        app.post(&format!("/rooms/{room}/members"), &alice.access_token, json!({"user_id": bob.id})).await;
    assert_eq!(status, 201);
    a.next_of("member_joined").await;
    a.send_text(&room, "hello-bob", "welcome bob").await;

    assert_eq!(b.next_of("message").await["message"]["text"], "welcome bob");
}

async fn a_logout_closes_the_users_sockets_on_every_node() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut first = app.socket_on(&alice, 0).await;
    let mut second = app.socket_on(&alice, 1).await;

    let (status, _) = app.post("/auth/logout", &alice.access_token, json!({})).await;

    assert_eq!(status, 204);
    assert_eq!(first.closed().await, (4001, "logged_out".to_owned()));
    assert_eq!(second.closed().await, (4001, "logged_out".to_owned()));
}

/// A socket whose peer reads nothing, with a tiny receive buffer so the server's writes back up fast.
pub(crate) async fn socket_that_never_reads(
    app: &TestApp,
    user: &TestUser,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures::StreamExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let tcp = socket.connect(app.socket_addrs[0]).await.expect("connect");
    let mut request = app.ws_url(0).into_client_request().expect("ws request");
    request.headers_mut().insert("authorization", format!("Bearer {}", user.access_token).parse().expect("header"));
    let (mut stream, _) = tokio_tungstenite::client_async(request, tcp).await.expect("handshake");
    let ready = stream.next().await.expect("a frame").expect("ready");
    assert!(ready.to_text().expect("text").contains("ready"), "{ready:?}");
    stream
}

async fn a_socket_that_stops_reading_is_closed_instead_of_blocking_its_task_forever() {
    // Arrange: ada's socket reads nothing; bob fills the room with 4000-character messages.
    let settings =
        [("CHAT_WS_WRITE_TIMEOUT_MS", "300"), ("CHAT_WS_RATE_PER_SEC", "100000"), ("CHAT_WS_BURST", "100000")];
    let app = TestApp::spawn_with(&settings).await;
    let (ada, bob) = (app.signup("ada").await, app.signup("bob").await);
    let room = room_with(&app, &ada, &[&bob]).await;
    let _stalled = socket_that_never_reads(&app, &ada).await;
    let mut sender = app.socket(&bob).await;
    let text = "x".repeat(4000);
    for i in 0..1000 {
        sender
            .send_json(json!({"type": "send", "room_id": room, "client_msg_id": format!("c{i}"), "text": text}))
            .await;
    }
    for _ in 0..1000 {
        sender.next_of("ack").await;
    }

    // Act: without ada reading a byte, watch the socket node's live sockets.
    let metrics = format!("http://{}/metrics", app.socket_addrs[0]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut live = f64::NAN;
    while tokio::time::Instant::now() < deadline {
        let text = reqwest::get(&metrics).await.expect("metrics").text().await.expect("text");
        live = text.lines().find_map(|l| l.strip_prefix("chat_live_sockets ")?.parse().ok()).expect("gauge");
        if live <= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Assert: the server ended ada's socket on its own; only bob's is left.
    assert_eq!(live, 1.0, "the socket that stopped reading is still held open");
}

/// Writes `bytes` straight onto the socket's connection, under the client's codec, so a frame can
/// go out in part or with a header that claims more than follows.
async fn write_raw(socket: &mut e2e::Socket, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = socket.stream.get_mut() else {
        panic!("the tests speak plain TCP");
    };
    tcp.write_all(bytes).await.expect("raw bytes written");
}

/// The header of a masked client frame; with a mask of zeros the payload goes out as it is.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 | opcode } else { opcode }, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    header
}

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;

async fn a_text_frame_over_64_kib_is_answered_too_large_from_its_header_and_the_socket_stays_open() {
    // Arrange
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut socket = app.socket(&alice).await;

    // Act: a text frame of 1 MiB whose first kilobyte alone has been sent.
    write_raw(&mut socket, &frame_header(true, TEXT, 1 << 20)).await;
    write_raw(&mut socket, &[b' '; 1024]).await;
    let error = socket.next_of("error").await;

    // Assert: the answer comes before the rest, and the socket serves on once the rest has passed.
    assert_eq!(error["code"], "too_large");
    assert_eq!(error["message"], "text frames are limited to 65536 bytes");
    write_raw(&mut socket, &vec![b' '; (1 << 20) - 1024]).await;
    socket.send_json(json!({"type": "ping"})).await;
    assert_eq!(socket.next_of("pong").await["type"], "pong");
}

async fn a_fragmented_text_message_growing_past_64_kib_closes_the_socket_with_1009() {
    // Arrange: a first fragment within the limit.
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut socket = app.socket(&alice).await;
    let first = 64 * 1024 - 10;
    write_raw(&mut socket, &frame_header(false, TEXT, first as u64)).await;
    write_raw(&mut socket, &vec![b' '; first]).await;

    // Act: a continuation that takes the message past 64 KiB.
    write_raw(&mut socket, &frame_header(true, CONTINUATION, 20)).await;
    write_raw(&mut socket, &[b' '; 20]).await;

    // Assert
    assert_eq!(socket.closed().await, (1009, "too_large".to_owned()));
}

async fn a_text_frame_claiming_more_than_the_upload_limit_closes_the_socket_with_1009() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut socket = app.socket(&alice).await;

    write_raw(&mut socket, &frame_header(true, TEXT, 1 << 40)).await;

    assert_eq!(socket.closed().await, (1009, "too_large".to_owned()));
}

async fn a_client_that_closes_gets_the_servers_close_frame_back() {
    // Arrange
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut socket = app.socket(&alice).await;

    // Act
    socket.stream.send(Message::Close(None)).await.expect("close sent");

    // Assert: the handshake completes (RFC 6455 §5.5.1), not a dropped connection (1006).
    let answer = tokio::time::timeout(e2e::FRAME_WAIT, futures::StreamExt::next(&mut socket.stream)).await;
    assert!(matches!(answer, Ok(Some(Ok(Message::Close(_))))), "{answer:?}");
}

e2e::on_both_shapes!(
    a_client_that_closes_gets_the_servers_close_frame_back,
    a_member_sees_who_in_the_room_is_online_on_any_node,
    a_user_still_connected_on_another_node_is_not_announced_offline,
    a_member_removed_without_any_node_hearing_it_stops_receiving_the_room,
    a_room_created_while_connected_is_followed_live_by_its_creator_and_members,
    a_socket_that_stops_reading_is_closed_instead_of_blocking_its_task_forever,
    a_message_sent_through_one_socket_node_reaches_sockets_on_the_other,
    membership_changes_made_through_the_api_reach_sockets_on_every_node,
    a_logout_closes_the_users_sockets_on_every_node,
    a_handshake_without_a_valid_token_is_refused_with_401,
    a_browser_may_pass_the_token_as_a_query_parameter,
    an_expired_token_is_refused_with_401,
    a_foreign_origin_is_refused_with_403_and_an_allowed_one_is_accepted,
    by_default_only_the_servers_own_origin_is_allowed,
    more_sockets_than_the_per_user_limit_are_refused_with_429,
    two_members_both_receive_every_message_with_strictly_increasing_seqs,
    the_ack_carries_the_stored_message_in_the_shared_json_shape,
    a_non_member_finds_no_private_room_to_send_or_sync_to,
    a_resend_with_the_same_client_msg_id_acks_the_original_and_creates_nothing,
    sync_after_reconnect_returns_exactly_the_missed_messages,
    typing_is_relayed_to_others_and_throttled,
    malformed_frames_get_a_bad_request_error_and_the_socket_stays_open,
    a_text_frame_over_64_kib_is_refused_and_the_socket_stays_open,
    a_text_frame_over_64_kib_is_answered_too_large_from_its_header_and_the_socket_stays_open,
    a_fragmented_text_message_growing_past_64_kib_closes_the_socket_with_1009,
    a_text_frame_claiming_more_than_the_upload_limit_closes_the_socket_with_1009,
    a_binary_frame_over_the_upload_limit_closes_the_socket_with_1009,
    the_per_connection_rate_limit_answers_rate_limited,
    an_expiring_access_token_closes_the_socket_with_4001,
    a_member_who_joins_starts_receiving_the_rooms_messages_live,
);
