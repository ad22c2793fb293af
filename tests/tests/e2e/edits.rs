//! e2e: editing, deleting and reacting to messages — live frames, history, exact replay on
//! resume, the rules that refuse a change, the archive in the split shape, and a deleted file.

use std::time::Duration;

use e2e::{Socket, TestApp, TestUser};
use futures::SinkExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// A private room of `owner` with `members`, and its id.
async fn room_of(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> String {
    app.create_room(owner, "private", members).await["id"].as_str().expect("a room id").to_owned()
}

/// Sends `texts` over a fresh socket of `user`, in order.
async fn send_texts(app: &TestApp, user: &TestUser, room: &str, texts: &[&str]) {
    let mut socket = app.socket(user).await;
    for (n, text) in texts.iter().enumerate() {
        let ack = socket.send_text(room, &format!("{}-{n}", user.username), text).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
}

/// Sends a change frame and returns its `ack` or `error`.
async fn change(socket: &mut Socket, frame: Value) -> Value {
    socket.send_json(frame).await;
    loop {
        let frame = socket.next_json().await;
        if frame["type"] == "ack" || frame["type"] == "error" {
            return frame;
        }
    }
}

async fn history(app: &TestApp, user: &TestUser, room: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/rooms/{room}/messages"), &user.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().expect("items").clone()
}

async fn edit(app: &TestApp, user: &TestUser, room: &str, seq: u64, text: &str) -> (StatusCode, Value) {
    app.call(
        Method::PATCH,
        &format!("/rooms/{room}/messages/{seq}"),
        Some(&user.access_token),
        Some(json!({"text": text})),
    )
    .await
}

async fn delete(app: &TestApp, user: &TestUser, room: &str, seq: u64) -> (StatusCode, Value) {
    app.delete(&format!("/rooms/{room}/messages/{seq}"), &user.access_token).await
}

/// `PUT` (`added`) or `DELETE` of `user`'s reaction `emoji` to message `seq`.
async fn react(app: &TestApp, user: &TestUser, room: &str, seq: u64, emoji: &str, added: bool) -> (StatusCode, Value) {
    let method = if added { Method::PUT } else { Method::DELETE };
    let emoji = utf8_percent(emoji);
    app.call(method, &format!("/rooms/{room}/messages/{seq}/reactions/{emoji}"), Some(&user.access_token), None).await
}

/// Percent-encodes every byte of `raw`, as a client puts an emoji in a path.
fn utf8_percent(raw: &str) -> String {
    raw.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn an_edit_reaches_the_room_live_and_history_shows_the_new_text_with_edited_at() {
    // Arrange
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.signup("alice").await, app.signup("bob").await);
    let room = room_of(&app, &alice, &[&bob]).await;
    let mut listener = app.socket_on(&bob, 1).await;
    let mut socket = app.socket(&alice).await;
    assert_eq!(socket.send_text(&room, "c1", "helo").await["type"], "ack");

    // Act
    let ack =
        change(&mut socket, json!({"type": "edit", "room_id": room, "client_msg_id": "e1", "seq": 1, "text": "hello"}))
            .await;
    let again =
        change(&mut socket, json!({"type": "edit", "room_id": room, "client_msg_id": "e1", "seq": 1, "text": "hello"}))
            .await;

    // Assert
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!((ack["change_seq"].as_u64(), ack["message"]["seq"].as_u64()), (Some(2), Some(1)), "{ack}");
    assert_eq!(ack["message"]["text"], "hello");
    assert_eq!(again["change_seq"], 2, "a resent edit is stored once: {again}");
    let live = listener.next_of("message_edited").await;
    assert_eq!((live["seq"].as_u64(), live["target_seq"].as_u64()), (Some(2), Some(1)), "{live}");
    assert_eq!((live["text"].as_str(), live["user"]["id"].as_str()), (Some("hello"), Some(alice.id.as_str())));
    let items = history(&app, &bob, &room).await;
    assert_eq!(items.len(), 1, "history shows messages, not the edit entry: {items:?}");
    assert_eq!(items[0]["text"], "hello");
    assert_eq!(items[0]["edited_at"], live["at"]);
}

async fn a_deleted_message_is_a_tombstone_in_history_and_live() {
    // Arrange
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.signup("alice").await, app.signup("bob").await);
    let room = room_of(&app, &alice, &[&bob]).await;
    send_texts(&app, &alice, &room, &["secret", "kept"]).await;
    let mut listener = app.socket_on(&bob, 1).await;

    // Act
    let (status, body) = delete(&app, &alice, &room, 1).await;
    let (twice, twice_body) = delete(&app, &alice, &room, 1).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!((twice, twice_body["code"].as_str()), (StatusCode::CONFLICT, Some("message_deleted")));
    let live = listener.next_of("message_deleted").await;
    assert_eq!((live["seq"].as_u64(), live["target_seq"].as_u64()), (Some(3), Some(1)), "{live}");
    let items = history(&app, &bob, &room).await;
    let seqs: Vec<u64> = items.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(e2e::field_names(&items[0]), ["deleted_at", "id", "kind", "room_id", "sender", "sent_at", "seq"]);
    assert_eq!(items[0]["deleted_at"], live["at"]);
    assert_eq!(items[1]["text"], "kept");
}

async fn a_resumed_socket_replays_edits_deletes_and_reactions_exactly_once_in_seq_order() {
    // Arrange: 1 and 2 sent, 3 edits 1, 4 deletes 2, 5 reacts to 1.
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.signup("alice").await, app.signup("bob").await);
    let room = room_of(&app, &alice, &[&bob]).await;
    send_texts(&app, &alice, &room, &["one", "two"]).await;
    assert_eq!(edit(&app, &alice, &room, 1, "one, edited").await.0, StatusCode::OK);
    assert_eq!(delete(&app, &alice, &room, 2).await.0, StatusCode::NO_CONTENT);
    assert_eq!(react(&app, &bob, &room, 1, "👍", true).await.0, StatusCode::OK);

    // Act: from the start, then from the middle, on the other node.
    let replay = |after: u64, node: usize| {
        let (app, bob, room) = (&app, &bob, room.clone());
        async move {
            let mut socket = Socket::open(&format!("{}?resume", app.ws_url(node)), bob).await;
            socket.send_json(json!({"type": "resume", "rooms": {room.as_str(): after}})).await;
            let mut frames = Vec::new();
            loop {
                let frame = socket.next_json().await;
                if frame["type"] == "synced" {
                    assert_eq!(frame["last_seq"], 5, "{frame}");
                    socket.expect_none_of("message_edited", Duration::from_millis(300)).await;
                    return frames;
                }
                frames.push(frame);
            }
        }
    };
    let all = replay(0, 0).await;
    let rest = replay(3, 1).await;

    // Assert
    let kinds = |frames: &[Value]| -> Vec<(String, u64)> {
        frames
            .iter()
            .map(|f| {
                let seq = f["seq"].as_u64().or_else(|| f["message"]["seq"].as_u64()).expect("a seq");
                (f["type"].as_str().expect("a type").to_owned(), seq)
            })
            .collect()
    };
    let expected =
        [("message", 1), ("message", 2), ("message_edited", 3), ("message_deleted", 4), ("reaction_added", 5)];
    let expected: Vec<(String, u64)> = expected.iter().map(|(k, s)| ((*k).to_owned(), *s)).collect();
    assert_eq!(kinds(&all), expected);
    assert_eq!(kinds(&rest), expected[3..]);
    assert_eq!(all[0]["message"]["text"], "one, edited", "a replayed message shows its current state");
    assert_eq!(all[0]["message"]["reactions"], json!([{"emoji": "👍", "count": 1, "users": [bob.id]}]));
    assert!(all[1]["message"].get("text").is_none() && all[1]["message"]["deleted_at"].is_string());
    assert_eq!((all[2]["target_seq"].as_u64(), all[2]["text"].as_str()), (Some(1), Some("one, edited")));
}

async fn edits_are_refused_to_others_after_the_window_and_on_deleted_or_unknown_messages() {
    // Arrange: a one-second edit window.
    let app = TestApp::spawn_with(&[("CHAT_MESSAGE_EDIT_WINDOW_SECS", "1")]).await;
    let (alice, bob, eve) = (app.signup("alice").await, app.signup("bob").await, app.signup("eve").await);
    let room = room_of(&app, &alice, &[&bob]).await;
    send_texts(&app, &alice, &room, &["first", "second"]).await;

    // Act
    let by_bob = edit(&app, &bob, &room, 1, "mine now").await;
    let by_outsider = edit(&app, &eve, &room, 1, "hi").await;
    let blank = edit(&app, &alice, &room, 1, "   ").await;
    let unknown = edit(&app, &alice, &room, 99, "where").await;
    let in_time = edit(&app, &alice, &room, 1, "first!").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let too_late = edit(&app, &alice, &room, 1, "first!!").await;
    delete(&app, &alice, &room, 2).await;
    let of_deleted = edit(&app, &alice, &room, 2, "second!").await;
    let mut socket = app.socket(&alice).await;
    let over_socket =
        change(&mut socket, json!({"type": "edit", "room_id": room, "client_msg_id": "late", "seq": 1, "text": "x"}))
            .await;

    // Assert
    let code = |reply: &(StatusCode, Value)| (reply.0, reply.1["code"].as_str().unwrap_or_default().to_owned());
    assert_eq!(code(&by_bob), (StatusCode::FORBIDDEN, "forbidden".to_owned()), "{:?}", by_bob.1);
    assert_eq!(by_outsider.0, StatusCode::NOT_FOUND, "a private room stays hidden: {:?}", by_outsider.1);
    assert_eq!(blank.0, StatusCode::BAD_REQUEST);
    assert!(blank.1["message"].as_str().unwrap().starts_with("text:"), "{:?}", blank.1);
    assert_eq!(code(&unknown), (StatusCode::NOT_FOUND, "not_found".to_owned()));
    assert_eq!(in_time.0, StatusCode::OK, "{:?}", in_time.1);
    assert_eq!(code(&too_late), (StatusCode::CONFLICT, "edit_window_passed".to_owned()));
    assert_eq!(code(&of_deleted), (StatusCode::CONFLICT, "message_deleted".to_owned()));
    assert_eq!(
        (over_socket["code"].as_str(), over_socket["client_msg_id"].as_str()),
        (Some("edit_window_passed"), Some("late"))
    );
    let items = history(&app, &alice, &room).await;
    assert_eq!(items[0]["text"], "first!", "only the edit made in time took");
}

async fn the_owner_may_delete_a_members_message_and_another_member_may_not() {
    // Arrange
    let app = TestApp::spawn().await;
    let (alice, bob, carol) = (app.signup("alice").await, app.signup("bob").await, app.signup("carol").await);
    let room = room_of(&app, &alice, &[&bob, &carol]).await;
    send_texts(&app, &bob, &room, &["bob's"]).await;

    // Act
    let by_carol = delete(&app, &carol, &room, 1).await;
    let by_owner = delete(&app, &alice, &room, 1).await;

    // Assert
    assert_eq!((by_carol.0, by_carol.1["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    assert_eq!(by_owner.0, StatusCode::NO_CONTENT, "{:?}", by_owner.1);
    assert!(history(&app, &carol, &room).await[0]["deleted_at"].is_string());
}

async fn a_removed_member_can_change_nothing_more() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.signup("alice").await, app.signup("bob").await);
    let room = room_of(&app, &alice, &[&bob]).await;
    send_texts(&app, &bob, &room, &["bob's"]).await;
    let (status, body) = app.delete(&format!("/rooms/{room}/members/{}", bob.id), &alice.access_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let edited = edit(&app, &bob, &room, 1, "still here").await;
    let reacted = react(&app, &bob, &room, 1, "👍", true).await;

    assert_eq!((edited.0, reacted.0), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(history(&app, &alice, &room).await[0]["text"], "bob's");
}

async fn an_archived_message_is_edited_and_deleted_where_history_reads_it() {
    // Arrange: a hot cache of one message per room, so archived messages are read from the archive.
    let app = TestApp::spawn_with(&[("CHAT_HOT_CACHE_PER_ROOM", "1")]).await;
    let alice = app.signup("alice").await;
    let room = room_of(&app, &alice, &[]).await;
    send_texts(&app, &alice, &room, &["one", "two", "three"]).await;
    app.wait_until_archived(3).await;

    // Act
    let (status, body) = edit(&app, &alice, &room, 1, "one, edited late").await;
    let right_away = history(&app, &alice, &room).await;
    assert_eq!(delete(&app, &alice, &room, 2).await.0, StatusCode::NO_CONTENT);
    app.wait_until_archived(5).await;
    let archived = history(&app, &alice, &room).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["text"], "one, edited late");
    assert_eq!(right_away[0]["text"], "one, edited late", "before the edit entry is archived");
    assert_eq!(archived[0]["text"], "one, edited late");
    assert!(archived[0]["edited_at"].is_string());
    assert!(archived[1].get("text").is_none() && archived[1]["deleted_at"].is_string(), "{:?}", archived[1]);
    assert_eq!(archived[2]["text"], "three");
    assert_eq!(app.archived_messages(&room).await, 5, "the changes are archived as entries too");
}

async fn a_deleted_file_messages_download_answers_410_and_its_bytes_are_purged() {
    // Arrange: purge every second.
    let app = TestApp::spawn_with(&[("CHAT_PURGE_CRON", "* * * * * *")]).await;
    let alice = app.signup("alice").await;
    let room = room_of(&app, &alice, &[]).await;
    let mut socket = app.socket(&alice).await;
    let header = json!({"type": "send_file", "room_id": room, "client_msg_id": "f1", "name": "notes.bin"}).to_string();
    let frame = adapter_http::ws::frames::encode_binary(&header, b"some bytes");
    socket.stream.send(Message::Binary(frame.into())).await.expect("sent");
    let file = socket.next_of("ack").await["message"]["file"].clone();
    let url = file["url"].as_str().expect("a url").to_owned();
    let download = || app.http.get(app.url(&url)).bearer_auth(&alice.access_token).send();
    assert_eq!(download().await.expect("sent").status(), StatusCode::OK);

    // Act
    let deleted =
        change(&mut socket, json!({"type": "delete", "room_id": room, "client_msg_id": "d1", "seq": 1})).await;
    let gone = download().await.expect("sent").status();
    let files = app.data_dir.path().join("files");
    let stored = || walk(&files).into_iter().filter(|p| p.ends_with(file["id"].as_str().unwrap())).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Assert
    assert_eq!(deleted["type"], "ack", "{deleted}");
    assert!(deleted["message"].get("file").is_none(), "the tombstone keeps no file: {deleted}");
    assert_eq!(gone, StatusCode::GONE);
    assert_eq!(stored(), 0, "the purge deleted the bytes");
    assert_eq!(download().await.expect("sent").status(), StatusCode::GONE);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn reactions_are_shown_with_their_users_live_and_bounded_per_message() {
    // Arrange
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.signup("alice").await, app.signup("bob").await);
    let room = room_of(&app, &alice, &[&bob]).await;
    send_texts(&app, &alice, &room, &["react to me"]).await;
    let mut listener = app.socket_on(&alice, 1).await;

    // Act
    let first = react(&app, &alice, &room, 1, "👍", true).await;
    let second = react(&app, &bob, &room, 1, "👍", true).await;
    let again = react(&app, &bob, &room, 1, "👍", true).await;
    let mut socket = app.socket(&bob).await;
    let party =
        change(&mut socket, json!({"type": "react", "room_id": room, "client_msg_id": "r1", "seq": 1, "emoji": "🎉"}))
            .await;
    let taken_back = change(
        &mut socket,
        json!({"type": "unreact", "room_id": room, "client_msg_id": "r2", "seq": 1, "emoji": "🎉"}),
    )
    .await;
    let not_an_emoji = react(&app, &bob, &room, 1, "lol", true).await;
    let bad_frame =
        change(&mut socket, json!({"type": "react", "room_id": room, "client_msg_id": "r3", "seq": 1, "emoji": ""}))
            .await;
    let mut refusals = Vec::new();
    for n in 0..20_u32 {
        let emoji = char::from_u32(0x1F600 + n).expect("an emoji").to_string();
        refusals.push(react(&app, &alice, &room, 1, &emoji, true).await.0);
    }

    // Assert
    assert_eq!((first.0, second.0, again.0), (StatusCode::OK, StatusCode::OK, StatusCode::OK));
    assert_eq!(second.1["reactions"], json!([{"emoji": "👍", "count": 2, "users": [alice.id, bob.id]}]));
    assert_eq!(again.1["reactions"], second.1["reactions"], "a reaction already there changes nothing");
    assert_eq!(party["change_seq"], 4, "{party}");
    assert_eq!(taken_back["change_seq"], 5, "{taken_back}");
    assert_eq!(taken_back["message"]["reactions"], second.1["reactions"]);
    assert_eq!((not_an_emoji.0, not_an_emoji.1["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_emoji")));
    assert_eq!(bad_frame["code"], "bad_request");
    assert!(bad_frame["message"].as_str().unwrap().starts_with("emoji:"), "{bad_frame}");
    let added = refusals.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(added, 19, "👍 and 19 more make 20: {refusals:?}");
    assert_eq!(refusals.last(), Some(&StatusCode::CONFLICT));
    let seen: Vec<(String, u64)> = {
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let frame = listener.next_json().await;
            if let Some(kind @ ("reaction_added" | "reaction_removed")) = frame["type"].as_str() {
                seen.push((format!("{kind} {}", frame["emoji"].as_str().unwrap()), frame["seq"].as_u64().unwrap()));
            }
        }
        seen
    };
    assert_eq!(
        seen,
        [
            ("reaction_added 👍".to_owned(), 2),
            ("reaction_added 👍".to_owned(), 3),
            ("reaction_added 🎉".to_owned(), 4),
            ("reaction_removed 🎉".to_owned(), 5)
        ]
    );
    let shown = &history(&app, &bob, &room).await[0]["reactions"];
    assert_eq!(shown.as_array().map(Vec::len), Some(20));
    assert_eq!(shown[0], json!({"emoji": "👍", "count": 2, "users": [alice.id, bob.id]}));
}

e2e::on_both_shapes!(
    an_edit_reaches_the_room_live_and_history_shows_the_new_text_with_edited_at,
    a_deleted_message_is_a_tombstone_in_history_and_live,
    a_resumed_socket_replays_edits_deletes_and_reactions_exactly_once_in_seq_order,
    edits_are_refused_to_others_after_the_window_and_on_deleted_or_unknown_messages,
    the_owner_may_delete_a_members_message_and_another_member_may_not,
    a_removed_member_can_change_nothing_more,
    an_archived_message_is_edited_and_deleted_where_history_reads_it,
    a_deleted_file_messages_download_answers_410_and_its_bytes_are_purged,
    reactions_are_shown_with_their_users_live_and_bounded_per_message,
);
