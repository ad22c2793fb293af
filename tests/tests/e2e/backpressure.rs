//! e2e: fan-out under pressure — a socket that stops reading is closed with 1013 and told so, while the room and fast senders go on.

use std::time::Duration;

use e2e::{TestApp, TestUser};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::socket::socket_that_never_reads;

/// Rate limits out of the way: these tests send as fast as a client can.
const UNLIMITED: [(&str, &str); 2] = [("CHAT_WS_RATE_PER_SEC", "100000"), ("CHAT_WS_BURST", "100000")];

/// What one socket saw.
#[derive(Debug, Default)]
struct Traffic {
    acks: usize,
    messages: usize,
    errors: Vec<String>,
    /// The close frame's code and reason; 1006 when the connection ended without one.
    closed: Option<(u16, String)>,
}

/// Sends `sends` texts into `room` without waiting for their acks, while reading everything the
/// socket receives, until every ack and `messages` messages are in (or the socket ends).
async fn pipeline(
    socket: e2e::Socket,
    room: String,
    tag: String,
    sends: usize,
    text: String,
    messages: usize,
) -> Traffic {
    let (mut tx, mut rx) = socket.stream.split();
    let sending = async move {
        for i in 0..sends {
            let frame = json!({"type": "send", "room_id": room, "client_msg_id": format!("{tag}-{i}"), "text": text});
            if tx.send(Message::Text(frame.to_string().into())).await.is_err() {
                break;
            }
        }
        tx
    };
    let reading = async move {
        let mut seen = Traffic::default();
        while seen.acks < sends || seen.messages < messages {
            let next = tokio::time::timeout(Duration::from_secs(60), rx.next()).await.expect("a frame within 60 s");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: serde_json::Value = serde_json::from_str(&text).expect("JSON frame");
                    match frame["type"].as_str() {
                        Some("ack") => seen.acks += 1,
                        Some("message") => seen.messages += 1,
                        Some("error") => seen.errors.push(frame["code"].to_string()),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    seen.closed = Some(frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string())));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    seen.closed = Some((1006, e.to_string()));
                    break;
                }
                None => {
                    seen.closed = Some((1006, "end of stream".into()));
                    break;
                }
            }
        }
        seen
    };
    let (_tx, seen) = tokio::join!(sending, reading);
    seen
}

fn start(
    socket: e2e::Socket,
    user: &TestUser,
    room: &str,
    sends: usize,
    text: &str,
    messages: usize,
) -> tokio::task::JoinHandle<Traffic> {
    tokio::spawn(pipeline(socket, room.to_owned(), user.username.clone(), sends, text.to_owned(), messages))
}

async fn a_subscriber_that_stops_reading_is_closed_with_1013_and_gets_the_close_frame_while_the_room_goes_on() {
    // Arrange: in one room, ada stops reading, carol reads everything on the same node, and bob
    // sends 600 messages of 16 KB, about 10 MB: more than the kernel's buffers and ada's 1 MiB queue.
    let app = TestApp::spawn_with(&UNLIMITED).await;
    let (ada, bob, carol) = (app.signup("ada").await, app.signup("bob").await, app.signup("carol").await);
    let room = app.create_room(&ada, "private", &[&bob, &carol]).await["id"].as_str().expect("room id").to_owned();
    let mut stalled = socket_that_never_reads(&app, &ada).await;
    let healthy = start(app.socket_on(&carol, 0).await, &carol, &room, 0, "", 600);
    let text = "😀".repeat(4000);

    // Act
    let sender = start(app.socket_on(&bob, 1).await, &bob, &room, 600, &text, 600);
    let (sender, healthy) = (sender.await.expect("bob's socket"), healthy.await.expect("carol's socket"));
    // Ada still says something before she reads again: input the server must not leave unread.
    stalled.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.expect("ada's ping");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ada_closed = None;
    while let Some(frame) =
        tokio::time::timeout(Duration::from_secs(30), stalled.next()).await.expect("ada's next frame")
    {
        match frame {
            Ok(Message::Close(frame)) => {
                ada_closed = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("ada's socket ended without its close frame: {e}"),
        }
    }

    // Assert
    assert_eq!(ada_closed, Some((1013, "too_slow".to_owned())), "ada is told why");
    assert_eq!((healthy.messages, healthy.closed), (600, None), "carol keeps everything");
    assert_eq!((sender.acks, sender.messages, sender.closed), (600, 600, None), "bob keeps everything");
    let metrics = reqwest::get(format!("http://{}/metrics", app.socket_addrs[0])).await.expect("metrics");
    let metrics = metrics.text().await.expect("metrics text");
    assert!(metrics.contains("chat_sockets_closed_total{reason=\"too_slow\"} 1"), "{metrics}");
}

async fn senders_pipelining_into_a_busy_room_are_never_closed_for_their_own_input() {
    // Arrange: four members of one room, on both nodes.
    let app = TestApp::spawn_with(&UNLIMITED).await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dov"] {
        users.push(app.signup(name).await);
    }
    let others: Vec<&TestUser> = users[1..].iter().collect();
    let room = app.create_room(&users[0], "private", &others).await["id"].as_str().expect("room id").to_owned();

    let mut sockets = Vec::new();
    for (i, user) in users.iter().enumerate() {
        sockets.push(app.socket_on(user, i).await);
    }

    // Act: each sends 500 messages without waiting for acks, reading all the while.
    let sockets: Vec<_> = sockets
        .into_iter()
        .zip(&users)
        .map(|(socket, user)| start(socket, user, &room, 500, "hello everyone", 2000))
        .collect();
    let mut seen = Vec::new();
    for socket in sockets {
        seen.push(socket.await.expect("socket task"));
    }

    // Assert: every socket stayed open and got every ack and every message of the room.
    for (user, traffic) in users.iter().zip(&seen) {
        assert_eq!(
            (traffic.acks, traffic.messages, &traffic.closed, &traffic.errors),
            (500, 2000, &None, &Vec::new()),
            "{}",
            user.username
        );
    }
}

e2e::on_both_shapes!(
    a_subscriber_that_stops_reading_is_closed_with_1013_and_gets_the_close_frame_while_the_room_goes_on,
    senders_pipelining_into_a_busy_room_are_never_closed_for_their_own_input,
);
