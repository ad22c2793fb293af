//! e2e: direct rooms: one per pair however both sides open it, listed under the other's name,
//! closed to joins, invites, leaving, removal and deletion, and carrying messages as any room.

use e2e::{TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn open(app: &TestApp, by: &TestUser, body: Value) -> (StatusCode, Value) {
    app.post("/dms", &by.access_token, body).await
}

async fn dm_between(app: &TestApp, a: &TestUser, b: &TestUser) -> String {
    let (status, room) = open(app, a, json!({"user_id": b.id})).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}: {room}");
    room["id"].as_str().expect("a room id").to_owned()
}

async fn concurrent_opens_from_both_sides_return_one_room() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;

    // Act: both sides, by id and by name, all at once.
    let opens = (0..12).map(|n| {
        let (by, other) = if n % 2 == 0 { (&ada, &bob) } else { (&bob, &ada) };
        let body = if n % 3 == 0 { json!({"username": other.username}) } else { json!({"user_id": other.id}) };
        open(&app, by, body)
    });
    let answers = futures::future::join_all(opens).await;

    // Assert
    let created = answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
    let existing = answers.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    assert_eq!((created, existing), (1, 11), "{answers:?}");
    let ids: std::collections::HashSet<&str> = answers.iter().map(|(_, room)| room["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one room for the pair: {ids:?}");
    for (user, other) in [(&ada, &bob), (&bob, &ada)] {
        let (_, mine) = app.get("/rooms", &user.access_token).await;
        let items = mine["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{mine}");
        assert_eq!(items[0]["kind"], "direct");
        assert_eq!(items[0]["name"], other.username.as_str(), "listed under the other's name");
        assert_eq!(items[0]["direct_with"], json!({"id": other.id, "username": other.username}));
        assert_eq!(items[0]["visibility"], "private");
    }
}

async fn a_direct_room_cannot_be_joined_invited_to_left_or_deleted() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let room = dm_between(&app, &ada, &bob).await;

    // Act
    let (join, _) = app.post(&format!("/rooms/{room}/join"), &carol.access_token, json!({})).await;
    let (invite, invited) =
        app.post(&format!("/rooms/{room}/members"), &ada.access_token, json!({"user_id": carol.id})).await;
    let (leave, left) = app.post(&format!("/rooms/{room}/leave"), &bob.access_token, json!({})).await;
    let (remove, removed) = app.delete(&format!("/rooms/{room}/members/{}", bob.id), &ada.access_token).await;
    let (delete, deleted) = app.delete(&format!("/rooms/{room}"), &ada.access_token).await;

    // Assert
    assert_eq!(join, StatusCode::NOT_FOUND, "to anyone else a direct room does not exist");
    for (status, body) in [(invite, invited), (leave, left), (remove, removed), (delete, deleted)] {
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "direct_room", "{body}");
    }
    let (status, kept) = app.get(&format!("/rooms/{room}"), &bob.access_token).await;
    assert_eq!(status, StatusCode::OK);
    let members: Vec<&str> =
        kept["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap()).collect();
    assert_eq!(members, [ada.id.as_str(), bob.id.as_str()]);
    let (status, _) = app.get(&format!("/rooms/{room}"), &carol.access_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_direct_room_with_oneself_or_nobody_is_a_400_that_names_the_field() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    // Act
    let (with_self, self_body) = open(&app, &ada, json!({"user_id": ada.id})).await;
    let (by_own_name, own_name_body) = open(&app, &ada, json!({"username": ada.username})).await;
    let (ghost, ghost_body) = open(&app, &ada, json!({"username": "nobodyatall"})).await;
    let (unknown_id, unknown_id_body) = open(&app, &ada, json!({"user_id": uuid::Uuid::now_v7().to_string()})).await;
    let (neither, neither_body) = open(&app, &ada, json!({})).await;

    // Assert
    for (status, body) in [(with_self, &self_body), (by_own_name, &own_name_body)] {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "direct_with_self");
    }
    assert_eq!((ghost, ghost_body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_user")));
    assert!(ghost_body["message"].as_str().unwrap().starts_with("username"), "{ghost_body}");
    assert_eq!((unknown_id, unknown_id_body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_user")));
    assert!(unknown_id_body["message"].as_str().unwrap().starts_with("user_id"), "{unknown_id_body}");
    assert_eq!(neither, StatusCode::BAD_REQUEST, "{neither_body}");
    let (_, mine) = app.get("/rooms", &ada.access_token).await;
    assert_eq!(mine["items"], json!([]), "nothing was opened");
}

async fn a_direct_room_carries_messages_to_both_users_live() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let mut bob_socket = app.socket_on(&bob, 1).await;
    let mut ada_socket = app.socket_on(&ada, 0).await;

    // Act: the room is opened while both are connected; their sockets follow it at once.
    let room = dm_between(&app, &ada, &bob).await;
    bob_socket.next_of("member_joined").await;
    ada_socket.next_of("member_joined").await;
    let ack = ada_socket.send_text(&room, "dm-1", "just between us").await;

    // Assert
    assert_eq!(ack["type"], "ack", "{ack}");
    let heard = bob_socket.next_of("message").await;
    assert_eq!(heard["message"]["text"], "just between us");
    assert_eq!(heard["message"]["room_id"], room.as_str());
}

e2e::on_both_shapes!(
    concurrent_opens_from_both_sides_return_one_room,
    a_direct_room_cannot_be_joined_invited_to_left_or_deleted,
    a_direct_room_with_oneself_or_nobody_is_a_400_that_names_the_field,
    a_direct_room_carries_messages_to_both_users_live,
);
