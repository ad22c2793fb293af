//! `kill -9` of the real `chat` binary: every acknowledged message survives, exactly once, and
//! seqs and client message ids are never handed out again.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::{signal, start_chat, wait_for_exit};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

const PASSWORD: &str = "correct horse battery staple";
const SOCKETS: usize = 5;
const PER_SOCKET: usize = 50;
/// Lifts the per-socket rate limit so the sends arrive as one burst.
const SETTINGS: &[(&str, &str)] = &[("CHAT_WS_RATE_PER_SEC", "10000"), ("CHAT_WS_BURST", "10000")];

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What an ack said: the message id and its seq.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Acked {
    id: String,
    seq: u64,
}

struct Client {
    http: reqwest::Client,
    base: String,
    addr: String,
}

impl Client {
    fn new(addr: &str) -> Self {
        Self { http: reqwest::Client::new(), base: format!("http://{addr}"), addr: addr.to_owned() }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert!(response.status().is_success(), "POST {path}: {}", response.status());
        response.json().await.expect("JSON body")
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.expect("request");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("JSON body")
    }

    async fn login(&self, username: &str) -> String {
        let tokens = self.post("/auth/login", None, json!({"username": username, "password": PASSWORD})).await;
        tokens["access_token"].as_str().expect("access token").to_owned()
    }

    async fn socket(&self, token: &str) -> Socket {
        let mut request = format!("ws://{}/ws", self.addr).into_client_request().expect("ws request");
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("socket opens");
        let ready = next_json(&mut socket).await;
        assert_eq!(ready["type"], "ready", "{ready}");
        socket
    }

    /// Every message of the room, oldest first, paging forward through history.
    async fn history(&self, token: &str, room_id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.get(&format!("/rooms/{room_id}/messages?after={after}&limit=100"), token).await;
            let items = page["items"].as_array().expect("items").clone();
            if let Some(last) = items.last() {
                after = last["seq"].as_u64().expect("seq");
            }
            all.extend(items);
            if page["has_more"] != true {
                return all;
            }
        }
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        match frame {
            Frame::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn send(socket: &mut Socket, room_id: &str, client_msg_id: &str, text: &str) {
    let frame = json!({"type": "send", "room_id": room_id, "client_msg_id": client_msg_id, "text": text});
    socket.send(Frame::Text(frame.to_string().into())).await.expect("frame sent");
}

/// Reads until the ack of each of `count` sends has arrived; returns them by client message id.
async fn acks(socket: &mut Socket, count: usize) -> HashMap<String, Acked> {
    let mut acked = HashMap::new();
    while acked.len() < count {
        let frame = next_json(socket).await;
        match frame["type"].as_str() {
            Some("ack") => {
                let message = &frame["message"];
                let ack = Acked {
                    id: message["id"].as_str().expect("id").to_owned(),
                    seq: message["seq"].as_u64().expect("seq"),
                };
                acked.insert(frame["client_msg_id"].as_str().expect("client_msg_id").to_owned(), ack);
            }
            Some("error") => panic!("a send was refused: {frame}"),
            _ => {}
        }
    }
    acked
}

/// A user, a room, and `SOCKETS` sockets that each burst `PER_SOCKET` sends; `chat` is killed
/// with SIGKILL as soon as the last ack arrives. Returns what was acked, and the data directory.
async fn burst_then_kill() -> (tempfile::TempDir, String, String, HashMap<String, Acked>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = start_chat(dir.path(), SETTINGS);
    let client = Client::new(&addr);
    let username = format!("crash{}", std::process::id());
    client.post("/auth/register", None, json!({"username": username, "password": PASSWORD})).await;
    let token = client.login(&username).await;
    let room = client.post("/rooms", Some(&token), json!({"name": "crash", "visibility": "private"})).await;
    let room_id = room["id"].as_str().expect("room id").to_owned();
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        sockets.push(client.socket(&token).await);
    }

    let bursts = sockets.into_iter().enumerate().map(|(n, mut socket)| {
        let room_id = room_id.clone();
        tokio::spawn(async move {
            for i in 0..PER_SOCKET {
                send(&mut socket, &room_id, &format!("s{n}-m{i}"), &format!("socket {n} message {i}")).await;
            }
            let acked = acks(&mut socket, PER_SOCKET).await;
            (socket, acked)
        })
    });
    let mut acked = HashMap::new();
    let mut sockets = Vec::new();
    for burst in futures::future::join_all(bursts).await {
        let (socket, from_one) = burst.expect("burst task");
        acked.extend(from_one);
        sockets.push(socket);
    }
    signal(&child, "-KILL");
    wait_for_exit(&mut child, Duration::from_secs(10));
    drop(sockets);
    (dir, username, room_id, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acked_message_survives_kill_9_exactly_once_and_new_seqs_follow_the_highest_acked() {
    // Arrange
    let (dir, username, room_id, acked) = burst_then_kill().await;
    assert_eq!(acked.len(), SOCKETS * PER_SOCKET);
    let highest = acked.values().map(|a| a.seq).max().expect("acks");

    // Act: restart on the same data, read the history, send more and sync from the highest ack.
    let (mut child, addr) = start_chat(dir.path(), SETTINGS);
    let client = Client::new(&addr);
    let token = client.login(&username).await;
    let history = client.history(&token, &room_id).await;
    let mut socket = client.socket(&token).await;
    for i in 0..3 {
        send(&mut socket, &room_id, &format!("after-{i}"), &format!("after restart {i}")).await;
    }
    // The sender hears its own messages live too, in any order with the acks; take both before syncing.
    let mut after = Vec::new();
    let mut live = 0;
    while after.len() < 3 || live < 3 {
        let frame = next_json(&mut socket).await;
        match frame["type"].as_str() {
            Some("ack") => after.push(frame["message"]["seq"].as_u64().expect("seq")),
            Some("message") => live += 1,
            Some("error") => panic!("a send was refused: {frame}"),
            _ => {}
        }
    }
    socket
        .send(Frame::Text(json!({"type": "sync", "room_id": room_id, "after_seq": highest}).to_string().into()))
        .await
        .expect("sync sent");
    let mut synced = Vec::new();
    loop {
        let frame = next_json(&mut socket).await;
        match frame["type"].as_str() {
            Some("message") if frame["message"]["room_id"] == room_id.as_str() => {
                synced.push(frame["message"]["seq"].as_u64().expect("seq"));
            }
            Some("synced") => break,
            _ => {}
        }
    }
    signal(&child, "-KILL");
    wait_for_exit(&mut child, Duration::from_secs(10));

    // Assert: every acked message is in history once, under its acked id and seq.
    let mut stored: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for message in &history {
        stored.entry(message["seq"].as_u64().expect("seq")).or_default().push(message["id"].as_str().unwrap().into());
    }
    let mut missing = Vec::new();
    for (client_msg_id, ack) in &acked {
        match stored.get(&ack.seq) {
            Some(ids) if ids == std::slice::from_ref(&ack.id) => {}
            other => missing.push(format!("{client_msg_id} acked as seq {} id {}: stored {other:?}", ack.seq, ack.id)),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acked messages are not stored as acked, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(3)]
    );
    let ids: Vec<&String> = stored.values().flatten().collect();
    assert_eq!(ids.len(), acked.len(), "nothing is stored twice or unacked");

    // Assert: new messages follow the highest acked seq, and sync from it returns exactly them.
    let mut new_seqs = after;
    new_seqs.sort_unstable();
    assert!(
        new_seqs[0] > highest,
        "seq {} was handed out again after the restart (highest acked {highest})",
        new_seqs[0]
    );
    assert_eq!(synced, new_seqs, "sync after the highest acked seq returns the new messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_of_an_acked_client_msg_id_after_kill_9_acks_the_original() {
    // Arrange
    let (dir, username, room_id, acked) = burst_then_kill().await;

    // Act: restart, then resend every acked client message id.
    let (mut child, addr) = start_chat(dir.path(), SETTINGS);
    let client = Client::new(&addr);
    let token = client.login(&username).await;
    let mut socket = client.socket(&token).await;
    for client_msg_id in acked.keys() {
        send(&mut socket, &room_id, client_msg_id, "resent after the crash").await;
    }
    let resent = acks(&mut socket, acked.len()).await;
    let history = client.history(&token, &room_id).await;
    signal(&child, "-KILL");
    wait_for_exit(&mut child, Duration::from_secs(10));

    // Assert: each resend acks the original message, and nothing new is stored.
    let differing: Vec<_> = acked.iter().filter(|(key, ack)| resent.get(*key) != Some(ack)).collect();
    assert!(
        differing.is_empty(),
        "{} resends did not ack the original, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(3)]
    );
    assert_eq!(history.len(), acked.len(), "no resend was stored again");
}
