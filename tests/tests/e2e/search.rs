//! e2e: search: only the rooms one belongs to, newest first, in pages; never a removed member's
//! former rooms, never expired messages; bounded queries.
//!
//! In the split shape a message is searchable once archived. MongoDB answers through its text
//! index; a server without text indexes (SecantusDB, which the tests use when no MongoDB is at
//! hand) makes search answer 503 `search_unavailable`, and these scenarios then check that answer
//! and stop: see `searched`.

use std::time::Duration;

use e2e::{Socket, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::Value;

async fn room_of(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> String {
    app.create_room(owner, "private", members).await["id"].as_str().expect("an id").to_owned()
}

async fn say(socket: &mut Socket, room: &str, id: &str, text: &str) -> Value {
    let ack = socket.send_text(room, id, text).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["message"].clone()
}

/// `GET /search?{query}` as `user`: the page, or `None` when this deployment's store has no text
/// index, after checking that it says so with a 503 `search_unavailable`.
async fn searched(app: &TestApp, user: &TestUser, query: &str) -> Option<Value> {
    let (status, body) = app.get(&format!("/search?{query}"), &user.access_token).await;
    if status == StatusCode::SERVICE_UNAVAILABLE && app.shape.is_split() {
        assert_eq!(body["code"], "search_unavailable", "{body}");
        eprintln!("search: this MongoDB-compatible server has no text index; checked the 503 and stopped");
        return None;
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    Some(body)
}

fn texts(page: &Value) -> Vec<&str> {
    page["items"].as_array().expect("items").iter().map(|m| m["text"].as_str().expect("a text")).collect()
}

/// Messages become searchable once archived: at once embedded, after the worker's pass split.
async fn archived(app: &TestApp, count: u64) {
    if app.shape.is_split() {
        app.wait_until_archived(count).await;
    }
}

async fn search_finds_only_the_messages_of_ones_rooms_newest_first_in_pages() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let ours = room_of(&app, &ada, &[&bob]).await;
    let other = room_of(&app, &ada, &[]).await;
    let theirs = room_of(&app, &carol, &[]).await;
    let mut ada_socket = app.socket(&ada).await;
    let mut carol_socket = app.socket(&carol).await;
    say(&mut ada_socket, &ours, "a1", "Deploy the release today").await;
    say(&mut ada_socket, &ours, "a2", "lunch?").await;
    say(&mut ada_socket, &other, "a3", "deploy notes, private to ada").await;
    say(&mut ada_socket, &ours, "a4", "the DEPLOY went fine").await;
    say(&mut carol_socket, &theirs, "c1", "carol deploys elsewhere: deploy").await;
    archived(&app, 5).await;

    // Act
    let Some(bobs) = searched(&app, &bob, "q=deploy").await else { return };
    let adas = searched(&app, &ada, "q=deploy").await.expect("available");
    let first = searched(&app, &ada, "q=deploy&limit=2").await.expect("available");
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second = searched(&app, &ada, &format!("q=deploy&limit=2&cursor={cursor}")).await.expect("available");
    let in_one_room = searched(&app, &ada, &format!("q=deploy&room_id={ours}")).await.expect("available");
    let both_words = searched(&app, &ada, "q=deploy%20release").await.expect("available");

    // Assert
    assert_eq!(texts(&bobs), ["the DEPLOY went fine", "Deploy the release today"]);
    assert_eq!(texts(&adas), ["the DEPLOY went fine", "deploy notes, private to ada", "Deploy the release today"]);
    assert_eq!(texts(&first), ["the DEPLOY went fine", "deploy notes, private to ada"]);
    assert_eq!(texts(&second), ["Deploy the release today"]);
    assert_eq!(second.get("next_cursor"), None, "the last page");
    assert_eq!(texts(&in_one_room), ["the DEPLOY went fine", "Deploy the release today"]);
    assert_eq!(texts(&both_words), ["Deploy the release today"]);
    assert_eq!(adas["items"][0]["room_id"], ours.as_str());
    assert_eq!(adas["items"][0]["sender"]["username"], ada.username.as_str());
}

async fn a_removed_member_finds_nothing_of_the_room_any_more() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let room = room_of(&app, &ada, &[&bob]).await;
    let mut ada_socket = app.socket(&ada).await;
    say(&mut ada_socket, &room, "a1", "budget figures for march").await;
    archived(&app, 1).await;
    let Some(before) = searched(&app, &bob, "q=budget").await else { return };

    // Act
    let (removed, _) = app.delete(&format!("/rooms/{room}/members/{}", bob.id), &ada.access_token).await;
    say(&mut ada_socket, &room, "a2", "budget figures for april").await;
    archived(&app, 2).await;
    let after = searched(&app, &bob, "q=budget").await.expect("available");
    let (in_room, _) = app.get(&format!("/search?q=budget&room_id={room}"), &bob.access_token).await;

    // Assert
    assert_eq!(texts(&before), ["budget figures for march"]);
    assert_eq!(removed, StatusCode::NO_CONTENT);
    assert!(texts(&after).is_empty(), "{after}");
    assert_eq!(in_room, StatusCode::NOT_FOUND);
}

async fn expired_messages_are_not_found() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room = room_of(&app, &ada, &[]).await;
    let mut socket = app.socket(&ada).await;
    say(&mut socket, &room, "a1", "an old invoice").await;
    say(&mut socket, &room, "a2", "a new invoice").await;
    archived(&app, 2).await;

    // Act: the first is older than the 30 days messages are kept, and not purged yet.
    app.backdate_messages(&room, 1, Duration::from_secs(31 * 24 * 3600)).await;
    let Some(found) = searched(&app, &ada, "q=invoice").await else { return };

    // Assert
    assert_eq!(texts(&found), ["a new invoice"]);
}

async fn a_query_or_page_outside_its_bounds_is_a_400_that_names_the_parameter() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let long = "a".repeat(201);

    // Act and assert
    for (query, named) in [
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("q=***", "q"),
        (&format!("q={long}") as &str, "q"),
        ("q=ok&limit=0", "limit"),
        ("q=ok&limit=51", "limit"),
        ("q=ok&cursor=nonsense", "cursor"),
        ("", "q"),
    ] {
        let (status, body) = app.get(&format!("/search?{query}"), &ada.access_token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(named), "{query} should name {named}: {body}");
    }
    let (status, _) = app.get(&format!("/search?q=ok&room_id={}", uuid::Uuid::now_v7()), &ada.access_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown room is no room");
}

e2e::on_both_shapes!(
    search_finds_only_the_messages_of_ones_rooms_newest_first_in_pages,
    a_removed_member_finds_nothing_of_the_room_any_more,
    expired_messages_are_not_found,
    a_query_or_page_outside_its_bounds_is_a_400_that_names_the_parameter,
);
