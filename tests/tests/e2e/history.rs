//! e2e: message history: the newest page, paging backwards with `before` and forwards with `after`,
//! `has_more`, limits, paging across the boundary between the hot cache and the archive, and
//! paging (and `sync`) past expired messages the purge has not deleted yet.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Socket, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A room of `owner`'s holding `count` text messages `message 1`, `message 2`, ..., sent over the socket.
async fn room_with_messages(app: &TestApp, owner: &TestUser, count: u64) -> String {
    let room = app.create_room(owner, "private", &[]).await;
    let room_id = room["id"].as_str().expect("a room id").to_owned();
    let mut socket = app.socket(owner).await;
    for n in 1..=count {
        let ack = socket.send_text(&room_id, &format!("c{n}"), &format!("message {n}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["message"]["seq"], n, "{ack}");
    }
    room_id
}

/// One history page: its seqs in the order given, and `has_more`.
async fn page(app: &TestApp, user: &TestUser, room_id: &str, query: &str) -> (Vec<u64>, bool) {
    let (status, body) = app.get(&format!("/rooms/{room_id}/messages{query}"), &user.access_token).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    (seqs(&body), body["has_more"].as_bool().expect("has_more"))
}

fn seqs(body: &Value) -> Vec<u64> {
    body["items"].as_array().expect("items").iter().map(|m| m["seq"].as_u64().expect("seq")).collect()
}

async fn without_paging_parameters_the_newest_messages_come_in_ascending_seq() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 12).await;

    // Act
    let newest_five = page(&app, &ada, &room_id, "?limit=5").await;
    let default_limit = page(&app, &ada, &room_id, "").await;

    // Assert
    assert_eq!(newest_five, (vec![8, 9, 10, 11, 12], true));
    assert_eq!(default_limit, ((1..=12).collect(), false));
}

async fn a_message_in_history_has_the_shape_the_socket_protocol_uses() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 1).await;

    // Act
    let (_, body) = app.get(&format!("/rooms/{room_id}/messages"), &ada.access_token).await;

    // Assert
    let message = &body["items"][0];
    let fields = e2e::field_names(message);
    assert_eq!(fields, ["id", "kind", "room_id", "sender", "sent_at", "seq", "text"]);
    assert_eq!(message["room_id"], room_id.as_str());
    assert_eq!(message["seq"], 1);
    assert_eq!(message["kind"], "text");
    assert_eq!(message["text"], "message 1");
    assert_eq!(message["sender"]["id"], ada.id.as_str());
    assert_eq!(message["sender"]["username"], ada.username.as_str());
    assert!(message["sent_at"].as_str().unwrap().ends_with('Z'), "{message}");
}

async fn before_pages_backwards_until_has_more_turns_false() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 12).await;

    // Act
    let first = page(&app, &ada, &room_id, "?before=8&limit=5").await;
    let second = page(&app, &ada, &room_id, "?before=3&limit=5").await;
    let past_the_start = page(&app, &ada, &room_id, "?before=1&limit=5").await;

    // Assert
    assert_eq!(first, (vec![3, 4, 5, 6, 7], true));
    assert_eq!(second, (vec![1, 2], false));
    assert_eq!(past_the_start, (vec![], false));
}

async fn after_pages_forwards_until_has_more_turns_false() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 12).await;

    // Act
    let first = page(&app, &ada, &room_id, "?after=2&limit=5").await;
    let second = page(&app, &ada, &room_id, "?after=7&limit=5").await;
    let at_the_end = page(&app, &ada, &room_id, "?after=12&limit=5").await;

    // Assert
    assert_eq!(first, (vec![3, 4, 5, 6, 7], true));
    assert_eq!(second, (vec![8, 9, 10, 11, 12], false));
    assert_eq!(at_the_end, (vec![], false));
}

async fn after_zero_pages_forwards_from_the_first_message() {
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 12).await;

    let from_start = page(&app, &ada, &room_id, "?after=0&limit=5").await;
    let before_zero = page(&app, &ada, &room_id, "?before=0&limit=5").await;

    assert_eq!(from_start, (vec![1, 2, 3, 4, 5], true));
    assert_eq!(before_zero, (vec![], false));
}

async fn bounds_past_the_largest_seq_page_to_nothing_or_everything_not_to_an_error() {
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 3).await;

    let after_max = page(&app, &ada, &room_id, "?after=18446744073709551615&limit=5").await;
    let before_max = page(&app, &ada, &room_id, "?before=18446744073709551615&limit=5").await;

    assert_eq!(after_max, (vec![], false));
    assert_eq!(before_max, (vec![1, 2, 3], false));
}

async fn has_more_is_false_when_exactly_a_page_remains() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 10).await;

    // Act
    let newest = page(&app, &ada, &room_id, "?limit=10").await;
    let backwards = page(&app, &ada, &room_id, "?before=6&limit=5").await;
    let forwards = page(&app, &ada, &room_id, "?after=5&limit=5").await;

    // Assert
    assert_eq!(newest, ((1..=10).collect(), false));
    assert_eq!(backwards, (vec![1, 2, 3, 4, 5], false));
    assert_eq!(forwards, (vec![6, 7, 8, 9, 10], false));
}

async fn before_and_after_together_bound_the_page_on_both_sides() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 12).await;

    // Act
    let between = page(&app, &ada, &room_id, "?after=3&before=7").await;

    // Assert
    assert_eq!(between, (vec![4, 5, 6], false));
}

async fn a_history_limit_outside_1_to_100_is_a_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 1).await;

    for query in ["?limit=0", "?limit=101", "?before=-1", "?after=x"] {
        // Act
        let (status, body) = app.get(&format!("/rooms/{room_id}/messages{query}"), &ada.access_token).await;

        // Assert
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "invalid_request");
    }
    let (status, _) = app.get(&format!("/rooms/{room_id}/messages?limit=100"), &ada.access_token).await;
    assert_eq!(status, StatusCode::OK);
}

async fn history_pages_cross_the_cache_archive_boundary_with_every_seq_exactly_once() {
    // Arrange: the hot cache keeps five messages per room; the other 25 live only in the archive.
    let app = TestApp::spawn_with(&[("CHAT_HOT_CACHE_PER_ROOM", "5")]).await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 30).await;
    app.wait_until_archived(30).await;

    // Act: page backwards from the newest, then forwards from the oldest message that walk found.
    let mut backwards: Vec<u64> = Vec::new();
    let mut query = "?limit=7".to_owned();
    loop {
        let (seqs, has_more) = page(&app, &ada, &room_id, &query).await;
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ascending within a page: {seqs:?}");
        backwards.extend(seqs.iter().rev());
        if !has_more {
            break;
        }
        query = format!("?limit=7&before={}", seqs[0]);
    }
    let oldest = *backwards.last().expect("some messages");
    let mut forwards: Vec<u64> = vec![oldest];
    let mut after = oldest;
    loop {
        let (seqs, has_more) = page(&app, &ada, &room_id, &format!("?limit=7&after={after}")).await;
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ascending within a page: {seqs:?}");
        forwards.extend(&seqs);
        if !has_more {
            break;
        }
        after = *seqs.last().expect("a full page");
    }

    // Assert
    assert_eq!(backwards, (1..=30).rev().collect::<Vec<u64>>());
    assert_eq!(forwards, (1..=30).collect::<Vec<u64>>());
    let (_, body) = app.get(&format!("/rooms/{room_id}/messages?before=28&limit=10"), &ada.access_token).await;
    let texts: BTreeMap<u64, String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["seq"].as_u64().unwrap(), m["text"].as_str().unwrap().to_owned()))
        .collect();
    let expected: BTreeMap<u64, String> = (18..=27).map(|n| (n, format!("message {n}"))).collect();
    assert_eq!(texts, expected, "a page straddling the boundary has each message once, with its own text");
}

/// Past the default 30-day message retention.
const EXPIRED_AGE: Duration = Duration::from_secs(40 * 24 * 3600);

/// Sends `count` texts to `room_id` in bursts, without waiting for each ack: a thousand messages
/// take a second, not half a minute. Each burst is drained, its acks and the sender's own copies,
/// before the next, so the socket's outbound queue (256) never holds more than one burst.
async fn send_texts(socket: &mut Socket, room_id: &str, count: u64) {
    const BURST: u64 = 100;
    let mut sent = 0;
    while sent < count {
        let burst = BURST.min(count - sent);
        for n in sent + 1..=sent + burst {
            let frame = json!({"type": "send", "room_id": room_id, "client_msg_id": format!("c{n}"), "text": format!("message {n}")});
            socket.send_json(frame).await;
        }
        let (mut acked, mut echoed) = (0, 0);
        while acked < burst || echoed < burst {
            let frame = socket.next_json().await;
            match frame["type"].as_str() {
                Some("ack") => acked += 1,
                Some("message") => echoed += 1,
                // The sender's own arrival, which presence frames include.
                Some("presence") => {}
                _ => panic!("unexpected frame while sending: {frame}"),
            }
        }
        sent += burst;
    }
}

/// Pages forwards with `after` from 0 until `has_more` turns false: every page's seqs and `has_more`.
async fn pages_forwards(app: &TestApp, user: &TestUser, room_id: &str, limit: u32) -> Vec<(Vec<u64>, bool)> {
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let (seqs, has_more) = page(app, user, room_id, &format!("?after={after}&limit={limit}")).await;
        after = seqs.last().copied().unwrap_or(after);
        pages.push((seqs, has_more));
        if !has_more {
            return pages;
        }
    }
}

/// Syncs from 0 until `has_more` turns false: every answer's seqs, `last_seq` and `has_more`, and
/// the `oldest_seq` of each `history_truncated` error on the way.
async fn syncs_from_zero(socket: &mut Socket, room_id: &str) -> (Vec<(Vec<u64>, u64, bool)>, Vec<u64>) {
    let (mut answers, mut truncated) = (Vec::new(), Vec::new());
    let mut after_seq = 0;
    loop {
        socket.send_json(json!({"type": "sync", "room_id": room_id, "after_seq": after_seq})).await;
        let mut seqs = Vec::new();
        let synced = loop {
            let frame = socket.next_json().await;
            match frame["type"].as_str() {
                Some("message") => seqs.push(frame["message"]["seq"].as_u64().expect("seq")),
                Some("synced") => break frame,
                Some("presence") => {}
                Some("error") if frame["code"] == "history_truncated" => {
                    truncated.push(frame["oldest_seq"].as_u64().expect("oldest_seq"));
                }
                _ => panic!("unexpected frame while syncing: {frame}"),
            }
        };
        let (last_seq, has_more) = (synced["last_seq"].as_u64().expect("last_seq"), synced["has_more"] == true);
        answers.push((seqs, last_seq, has_more));
        if !has_more {
            return (answers, truncated);
        }
        after_seq = last_seq;
    }
}

async fn paging_and_sync_past_expired_messages_return_every_live_message_once_in_order() {
    // Arrange: 1200 messages, the oldest 150 expired but not purged. The hot cache keeps 100 per
    // room, so in the split shape 151 to 1100 are live and only in the archive, between the
    // expired ones and the cache; embedded, the log and the archive are one table.
    let settings =
        [("CHAT_HOT_CACHE_PER_ROOM", "100"), ("CHAT_WS_RATE_PER_SEC", "100000"), ("CHAT_WS_BURST", "100000")];
    let app = TestApp::spawn_with(&settings).await;
    let ada = app.signup("ada").await;
    let room_id = app.create_room(&ada, "private", &[]).await["id"].as_str().expect("a room id").to_owned();
    send_texts(&mut app.socket(&ada).await, &room_id, 1200).await;
    app.wait_until_archived(1200).await;
    app.backdate_messages(&room_id, 150, EXPIRED_AGE).await;

    // Act
    let pages = pages_forwards(&app, &ada, &room_id, 100).await;
    let (syncs, truncated) = syncs_from_zero(&mut app.socket(&ada).await, &room_id).await;

    // Assert
    let live: Vec<u64> = (151..=1200).collect();
    assert_eq!(pages.iter().flat_map(|(seqs, _)| seqs.clone()).collect::<Vec<_>>(), live, "history skips none");
    let shape: Vec<(usize, bool)> = pages.iter().map(|(seqs, more)| (seqs.len(), *more)).collect();
    assert_eq!(shape, [vec![(100, true); 10], vec![(50, false)]].concat(), "full pages; no more only at the end");
    assert_eq!(syncs.iter().flat_map(|(seqs, _, _)| seqs.clone()).collect::<Vec<_>>(), live, "sync skips none");
    let synced: Vec<(u64, bool)> = syncs.iter().map(|(_, last_seq, more)| (*last_seq, *more)).collect();
    assert_eq!(synced, [(1200, false)], "one sync answers it all: the server pages");
    assert_eq!(truncated, [151], "asking from 0 is told the oldest 150 are gone");
}

async fn expired_messages_still_in_the_hot_cache_are_left_out_too() {
    // Arrange: 30 messages, all in the hot cache and the archive alike; the oldest 10 expired.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let room_id = room_with_messages(&app, &ada, 30).await;
    app.wait_until_archived(30).await;
    app.backdate_messages(&room_id, 10, EXPIRED_AGE).await;

    // Act
    let first = page(&app, &ada, &room_id, "?after=0&limit=5").await;
    let newest = page(&app, &ada, &room_id, "?limit=25").await;
    let back = page(&app, &ada, &room_id, "?before=14&limit=5").await;
    let (syncs, truncated) = syncs_from_zero(&mut app.socket(&ada).await, &room_id).await;

    // Assert
    assert_eq!(first, (vec![11, 12, 13, 14, 15], true));
    assert_eq!(newest, ((11..=30).collect(), false), "only expired messages are older");
    assert_eq!(back, (vec![11, 12, 13], false));
    assert_eq!(syncs, [((11..=30).collect(), 30, false)]);
    assert_eq!(truncated, [11]);
}

e2e::on_both_shapes!(
    without_paging_parameters_the_newest_messages_come_in_ascending_seq,
    a_message_in_history_has_the_shape_the_socket_protocol_uses,
    before_pages_backwards_until_has_more_turns_false,
    after_pages_forwards_until_has_more_turns_false,
    after_zero_pages_forwards_from_the_first_message,
    bounds_past_the_largest_seq_page_to_nothing_or_everything_not_to_an_error,
    has_more_is_false_when_exactly_a_page_remains,
    before_and_after_together_bound_the_page_on_both_sides,
    a_history_limit_outside_1_to_100_is_a_400,
    history_pages_cross_the_cache_archive_boundary_with_every_seq_exactly_once,
    paging_and_sync_past_expired_messages_return_every_live_message_once_in_order,
    expired_messages_still_in_the_hot_cache_are_left_out_too,
);
