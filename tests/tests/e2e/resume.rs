//! e2e: a client that reconnects again and again during a steady stream, resuming each time from
//! the last seq it saw, gets every message exactly once and in seq order, with no bookkeeping
//! beyond that one number.

use e2e::{Socket, TestApp, TestUser};
use serde_json::json;

const MESSAGES: u64 = 2000;

/// `count` sends by `user` on socket node `node`, each waiting for its ack.
async fn send_steadily(app: &TestApp, user: &TestUser, node: usize, room: &str, count: u64) {
    let mut socket = app.socket_on(user, node).await;
    for n in 0..count {
        let ack = socket.send_text(room, &format!("{}-{n}", user.username), "steady").await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
}

/// Reads the room through socket after socket, alternating nodes, each resuming from the last
/// seq seen and dropped after a varying number of messages, until it has seen `MESSAGES`.
/// Every message must be the next seq: none skipped, none twice, none early.
async fn read_with_reconnects(app: &TestApp, user: &TestUser, room: &str) -> usize {
    let mut last = 0;
    let mut sockets = 0;
    let mut lengths = [37, 113, 5, 260, 71, 1, 150].iter().cycle();
    while last < MESSAGES {
        // `?resume`: the room's messages wait for the resume frame, however late it comes.
        let mut socket = Socket::open(&format!("{}?resume", app.ws_url(sockets)), user).await;
        sockets += 1;
        socket.send_json(json!({"type": "resume", "rooms": {room: last}})).await;
        let stop_at = last + lengths.next().copied().unwrap_or(50);
        while last < stop_at.min(MESSAGES) {
            let frame = socket.next_json().await;
            match frame["type"].as_str() {
                Some("message") => {
                    let seq = frame["message"]["seq"].as_u64().expect("seq");
                    assert_eq!(seq, last + 1, "after {last}, on socket {sockets}: {frame}");
                    last = seq;
                }
                Some("error") => panic!("on socket {sockets}: {frame}"),
                _ => {}
            }
        }
        // Dropped without a word, as a lost network does.
    }
    sockets
}

async fn resumed_reconnects(settings: &[(&str, &str)]) {
    // Arrange: two senders on different nodes (split), so live events can overtake each other.
    let mut all = vec![("CHAT_WS_RATE_PER_SEC", "100000"), ("CHAT_WS_BURST", "100000")];
    all.extend_from_slice(settings);
    let app = TestApp::spawn_with(&all).await;
    let (alice, carol, bob) = (app.signup("alice").await, app.signup("carol").await, app.signup("bob").await);
    let room = app.create_room(&alice, "private", &[&carol, &bob]).await["id"].as_str().unwrap().to_owned();

    // Act
    let sending = async {
        tokio::join!(
            send_steadily(&app, &alice, 0, &room, MESSAGES / 2),
            send_steadily(&app, &carol, 1, &room, MESSAGES / 2)
        )
    };
    let (_, sockets) = tokio::join!(sending, read_with_reconnects(&app, &bob, &room));

    // Assert: the reader's checks held over every message; it did reconnect many times.
    assert!(sockets >= 10, "only {sockets} sockets");
}

async fn a_client_resuming_across_reconnects_gets_every_message_once_in_order() {
    resumed_reconnects(&[]).await;
}

async fn resuming_crosses_from_the_archive_to_the_cache_to_live_exactly() {
    // A hot cache of 20 per room: most of what a resume reads comes from the archive.
    resumed_reconnects(&[("CHAT_HOT_CACHE_PER_ROOM", "20"), ("CHAT_ARCHIVE_INTERVAL_MS", "20")]).await;
}

async fn a_resume_older_than_retention_is_told_where_history_now_starts() {
    // Arrange: 30 messages, the oldest 10 expired.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room = app.create_room(&ada, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let mut sender = app.socket(&ada).await;
    for n in 0..30 {
        sender.send_text(&room, &format!("m{n}"), "old").await;
    }
    app.wait_until_archived(30).await;
    app.backdate_messages(&room, 10, std::time::Duration::from_secs(40 * 24 * 3600)).await;

    // Act
    let mut socket = app.socket(&ada).await;
    socket.send_json(json!({"type": "resume", "rooms": {&room: 3}})).await;

    // Assert: an explicit error naming the oldest seq kept, then 11 to 30.
    let error = socket.next_of("error").await;
    assert_eq!((error["code"].as_str(), error["oldest_seq"].as_u64()), (Some("history_truncated"), Some(11)));
    assert_eq!(error["room_id"], room.as_str());
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        seqs.push(socket.next_of("message").await["message"]["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (11..=30).collect::<Vec<_>>());
    assert_eq!(socket.next_of("synced").await["last_seq"], 30);
}

e2e::on_both_shapes!(
    a_client_resuming_across_reconnects_gets_every_message_once_in_order,
    resuming_crosses_from_the_archive_to_the_cache_to_live_exactly,
    a_resume_older_than_retention_is_told_where_history_now_starts,
);
