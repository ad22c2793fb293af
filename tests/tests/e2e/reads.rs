//! e2e: read markers and receipts: unread counts and last messages in the room list, markers that
//! only move forward, `read` events for the other members unless turned off, and the limits.

use std::time::Duration;

use e2e::{Socket, TestApp, TestUser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn room_of(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> String {
    app.create_room(owner, "private", members).await["id"].as_str().expect("an id").to_owned()
}

/// The caller's entry for `room` in their room list.
async fn listed(app: &TestApp, user: &TestUser, room: &str) -> Value {
    let (status, page) = app.get("/rooms", &user.access_token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().iter().find(|r| r["id"] == room).cloned().expect("the room is listed")
}

async fn send(socket: &mut Socket, room: &str, n: u32) -> u64 {
    let ack = socket.send_text(room, &format!("c-{n}"), &format!("message number {n}")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["message"]["seq"].as_u64().expect("a seq")
}

async fn mark(app: &TestApp, user: &TestUser, room: &str, seq: u64) -> (StatusCode, Value) {
    app.post(&format!("/rooms/{room}/read"), &user.access_token, json!({"seq": seq})).await
}

async fn the_room_list_shows_each_rooms_unread_count_and_last_message() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let busy = room_of(&app, &ada, &[&bob]).await;
    let quiet = room_of(&app, &ada, &[&bob]).await;
    let mut ada_socket = app.socket(&ada).await;
    for n in 1..=3 {
        send(&mut ada_socket, &busy, n).await;
    }

    // Act
    let before = listed(&app, &bob, &busy).await;
    let (status, marked) = mark(&app, &bob, &busy, 2).await;
    let after = listed(&app, &bob, &busy).await;
    let empty = listed(&app, &bob, &quiet).await;

    // Assert
    assert_eq!((before["unread_count"].as_u64(), before["last_read_seq"].as_u64()), (Some(3), Some(0)), "{before}");
    assert_eq!(before["last_message"]["text"], "message number 3");
    assert_eq!(before["last_message"]["seq"], 3);
    assert_eq!(status, StatusCode::OK, "{marked}");
    assert_eq!(marked, json!({"room_id": busy, "last_read_seq": 2}));
    assert_eq!((after["unread_count"].as_u64(), after["last_read_seq"].as_u64()), (Some(1), Some(2)), "{after}");
    assert_eq!((empty["unread_count"].as_u64(), empty.get("last_message")), (Some(0), None), "{empty}");
    assert_eq!(empty["last_seq"], 0);
}

async fn markers_only_move_forward_and_the_other_members_hear_each_move() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let room = room_of(&app, &ada, &[&bob]).await;
    let mut ada_socket = app.socket_on(&ada, 0).await;
    let mut bob_socket = app.socket_on(&bob, 1).await;
    for n in 1..=4 {
        send(&mut ada_socket, &room, n).await;
    }

    // Act: forward over REST, back over REST, forward again over the socket.
    let (_, first) = mark(&app, &bob, &room, 3).await;
    let heard = ada_socket.next_of("read").await;
    let (status, back) = mark(&app, &bob, &room, 1).await;
    bob_socket.send_json(json!({"type": "read", "room_id": room, "seq": 4})).await;
    let heard_again = ada_socket.next_of("read").await;

    // Assert
    assert_eq!(first["last_read_seq"], 3);
    assert_eq!(
        heard,
        json!({"type": "read", "room_id": room, "user": {"id": bob.id, "username": bob.username}, "seq": 3})
    );
    assert_eq!(status, StatusCode::OK, "a lower seq is no error");
    assert_eq!(back["last_read_seq"], 3, "and moves nothing back");
    assert_eq!(heard_again["seq"], 4, "the socket's read frame moved it: {heard_again}");
    ada_socket.expect_none_of("read", Duration::from_millis(300)).await;
    assert_eq!(listed(&app, &bob, &room).await["last_read_seq"], 4);
    assert_eq!(listed(&app, &bob, &room).await["unread_count"], 0);
}

async fn a_user_who_turns_read_receipts_off_reads_unannounced() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let room = room_of(&app, &ada, &[&bob]).await;
    let mut ada_socket = app.socket(&ada).await;
    send(&mut ada_socket, &room, 1).await;
    let (status, defaults) = app.get("/users/me/settings", &bob.access_token).await;
    assert_eq!((status, defaults), (StatusCode::OK, json!({"send_read_receipts": true})));

    // Act
    let (status, settings) = app
        .call(Method::PUT, "/users/me/settings", Some(&bob.access_token), Some(json!({"send_read_receipts": false})))
        .await;
    let (marked, _) = mark(&app, &bob, &room, 1).await;

    // Assert
    assert_eq!((status, settings), (StatusCode::OK, json!({"send_read_receipts": false})));
    assert_eq!(marked, StatusCode::OK);
    ada_socket.expect_none_of("read", Duration::from_millis(500)).await;
    assert_eq!(listed(&app, &bob, &room).await["unread_count"], 0, "the marker moved all the same");
    let (_, kept) = app.get("/users/me/settings", &bob.access_token).await;
    assert_eq!(kept, json!({"send_read_receipts": false}));
    let (bad, body) = app
        .call(Method::PUT, "/users/me/settings", Some(&bob.access_token), Some(json!({"send_read_receipts": "no"})))
        .await;
    assert_eq!(bad, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("send_read_receipts"), "{body}");
}

async fn a_seq_past_the_last_message_or_a_room_one_is_not_in_is_refused_with_a_4xx() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let room = room_of(&app, &ada, &[&bob]).await;
    let mut ada_socket = app.socket(&ada).await;
    send(&mut ada_socket, &room, 1).await;
    let mut bob_socket = app.socket(&bob).await;

    // Act
    let (past, past_body) = mark(&app, &bob, &room, 2).await;
    let (stranger, _) = mark(&app, &carol, &room, 1).await;
    let (negative, negative_body) =
        app.post(&format!("/rooms/{room}/read"), &bob.access_token, json!({"seq": -1})).await;
    bob_socket.send_json(json!({"type": "read", "room_id": room, "seq": 9})).await;
    let frame = bob_socket.next_of("error").await;
    let (owner_removes, _) = app.delete(&format!("/rooms/{room}/members/{}", bob.id), &ada.access_token).await;
    let (removed, _) = mark(&app, &bob, &room, 1).await;

    // Assert
    assert_eq!((past, past_body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_seq")), "{past_body}");
    assert!(past_body["message"].as_str().unwrap().starts_with("seq: "), "{past_body}");
    assert_eq!(stranger, StatusCode::NOT_FOUND);
    assert_eq!(negative, StatusCode::BAD_REQUEST, "{negative_body}");
    assert_eq!(
        (frame["code"].as_str(), frame["room_id"].as_str()),
        (Some("invalid_seq"), Some(room.as_str())),
        "{frame}"
    );
    assert_eq!(owner_removes, StatusCode::NO_CONTENT);
    assert_eq!(removed, StatusCode::NOT_FOUND, "a removed member has no marker to move");
    assert_eq!(listed(&app, &ada, &room).await["unread_count"], 1, "ada never marked her own message read");
}

async fn unread_counts_take_in_messages_only_the_archive_still_holds() {
    // Arrange: a hot cache of 2 per room, so in the split shape most of the 8 messages are only
    // in the archive once archived.
    let app = TestApp::spawn_with(&[("CHAT_HOT_CACHE_PER_ROOM", "2")]).await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let room = room_of(&app, &ada, &[&bob]).await;
    let mut ada_socket = app.socket(&ada).await;
    for n in 1..=8 {
        send(&mut ada_socket, &room, n).await;
    }
    if app.shape.is_split() {
        app.wait_until_archived(8).await;
    }
    mark(&app, &bob, &room, 1).await;

    // Act
    let entry = listed(&app, &bob, &room).await;

    // Assert
    assert_eq!(entry["unread_count"], 7, "{entry}");
    assert_eq!(entry["last_message"]["seq"], 8);
    assert_eq!(entry["last_seq"], 8);
}

e2e::on_both_shapes!(
    the_room_list_shows_each_rooms_unread_count_and_last_message,
    markers_only_move_forward_and_the_other_members_hear_each_move,
    a_user_who_turns_read_receipts_off_reads_unannounced,
    a_seq_past_the_last_message_or_a_room_one_is_not_in_is_refused_with_a_4xx,
    unread_counts_take_in_messages_only_the_archive_still_holds,
);
