//! e2e: users, rooms and acknowledged messages survive a graceful restart of the embedded app.

use e2e::{TestApp, PASSWORD};
use reqwest::StatusCode;

#[tokio::test]
async fn users_rooms_and_acknowledged_messages_survive_a_restart_and_seqs_continue() {
    // Arrange: a user, a room, and three acknowledged messages.
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let mut socket = app.socket(&alice).await;
    for i in 1..=3 {
        let ack = socket.send_text(&room_id, &format!("c{i}"), &format!("message {i}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    drop(socket);

    // Act: shut down as on SIGTERM, then start again on the same data directory.
    let data_dir = app.stop().await;
    let app = TestApp::spawn_in(data_dir, &[]).await;

    // Assert: the account, the room and the messages are all there, and seqs carry on.
    let (status, tokens) = app.login(&alice.username, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let token = tokens["access_token"].as_str().unwrap();
    let (status, fetched) = app.get(&format!("/rooms/{room_id}"), token).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["last_seq"], 3);
    let (_, history) = app.get(&format!("/rooms/{room_id}/messages"), token).await;
    let texts: Vec<&str> = history["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["message 1", "message 2", "message 3"]);

    let alice = e2e::TestUser { access_token: token.to_owned(), ..alice };
    let mut socket = app.socket(&alice).await;
    let ack = socket.send_text(&room_id, "c4", "after restart").await;
    assert_eq!(ack["message"]["seq"], 4, "{ack}");
}
