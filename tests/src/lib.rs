//! Test harness: boots the apps in-process on port 0 and talks to them over real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bootstrap::{Application, Config, Role};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A password every test user can have: long enough and not on the common list.
pub const PASSWORD: &str = "correct horse battery staple";

/// How long a test waits for a frame that should come.
pub const FRAME_WAIT: Duration = Duration::from_secs(5);

/// One running `chat` (embedded shape) with its own data directory.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub data_dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A signed-up user with fresh tokens.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        bootstrap::telemetry::init(bootstrap::config::LogFormat::Text, "info");
    }
}

impl TestApp {
    /// A fresh app on a fresh data directory.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// A fresh app with extra `CHAT_*` settings.
    pub async fn spawn_with(settings: &[(&str, &str)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::spawn_in(dir, settings).await
    }

    /// An app over an existing data directory, as after a restart.
    pub async fn spawn_in(data_dir: Arc<TempDir>, settings: &[(&str, &str)]) -> Self {
        init_logs();
        let mut vars: Vec<(String, String)> = vec![
            ("CHAT_ADDR".into(), "127.0.0.1:0".into()),
            ("CHAT_DATA_DIR".into(), data_dir.path().display().to_string()),
            ("CHAT_ARCHIVE_INTERVAL_MS".into(), "100".into()),
        ];
        vars.extend(settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::from_vars(vars).expect("test config");
        let app = Application::build(config, Role::All).await.expect("app builds");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            data_dir,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts down gracefully (as on SIGTERM) and hands back the data directory.
    pub async fn stop(mut self) -> Arc<TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        task.await.expect("app task").expect("clean shutdown");
        self.data_dir.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let json =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn register(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.call(Method::POST, "/auth/register", None, Some(json!({"username": username, "password": password}))).await
    }

    pub async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.call(Method::POST, "/auth/login", None, Some(json!({"username": username, "password": password}))).await
    }

    /// Registers and logs in a user with a unique name starting with `prefix`.
    pub async fn signup(&self, prefix: &str) -> TestUser {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(12).collect();
        let username = format!("{prefix}{suffix}");
        let (status, user) = self.register(&username, PASSWORD).await;
        assert_eq!(status, StatusCode::CREATED, "register {username}: {user}");
        let (status, tokens) = self.login(&username, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "login {username}: {tokens}");
        TestUser {
            id: user["id"].as_str().expect("id").to_owned(),
            username,
            access_token: tokens["access_token"].as_str().expect("access").to_owned(),
            refresh_token: tokens["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// Creates a room owned by `owner` with the given members; returns the room JSON.
    pub async fn create_room(&self, owner: &TestUser, visibility: &str, members: &[&TestUser]) -> Value {
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let (status, room) = self
            .post("/rooms", &owner.access_token, json!({"name": "room", "visibility": visibility, "member_ids": ids}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "create room: {room}");
        room
    }

    /// Opens a socket with the bearer header and waits for `ready`.
    pub async fn socket(&self, user: &TestUser) -> Socket {
        let mut request = format!("ws://{}/ws", self.addr).into_client_request().expect("ws request");
        request.headers_mut().insert("authorization", format!("Bearer {}", user.access_token).parse().expect("header"));
        let (stream, _) = tokio_tungstenite::connect_async(request).await.expect("socket opens");
        let mut socket = Socket { stream, pending: std::collections::VecDeque::new() };
        let ready = socket.next_of("ready").await;
        assert_eq!(ready["user"]["id"], user.id.as_str());
        socket
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client socket speaking the JSON protocol.
pub struct Socket {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for another kind; handed out first, in order.
    pending: std::collections::VecDeque<Value>,
}

impl Socket {
    pub async fn send_json(&mut self, frame: Value) {
        self.stream.send(Message::Text(frame.to_string().into())).await.expect("frame sent");
    }

    /// The next text frame, failing the test after `FRAME_WAIT`.
    pub async fn next_json(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        self.read_json().await
    }

    async fn read_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(FRAME_WAIT, self.stream.next())
                .await
                .expect("a frame within the wait")
                .expect("socket still open")
                .expect("frame read");
            match msg {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next frame of type `kind`; frames of other kinds are kept for later reads.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|f| f["type"] == kind) {
            if let Some(frame) = self.pending.remove(i) {
                return frame;
            }
        }
        loop {
            let frame = self.read_json().await;
            if frame["type"] == kind {
                return frame;
            }
            self.pending.push_back(frame);
        }
    }

    /// Sends text and returns the ack.
    pub async fn send_text(&mut self, room_id: &str, client_msg_id: &str, text: &str) -> Value {
        self.send_json(json!({"type": "send", "room_id": room_id, "client_msg_id": client_msg_id, "text": text})).await;
        loop {
            let frame = self.read_json().await;
            if frame["type"] == "ack" || frame["type"] == "error" {
                return frame;
            }
            self.pending.push_back(frame);
        }
    }

    /// Asserts that no frame of `kind` arrives within `wait`.
    pub async fn expect_none_of(&mut self, kind: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    assert_ne!(frame["type"], kind, "unexpected {kind} frame: {frame}");
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// Waits for the server's close frame and returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let msg = tokio::time::timeout(FRAME_WAIT, self.stream.next()).await.expect("close within the wait");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frame.reason.to_string()),
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before close: {e}"),
            }
        }
    }
}

/// A whole answer, for tests that look at headers or at bodies that are not JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON; a JSON string when it is not JSON; null when empty.
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// Sends a request built on `self.http` and keeps status, headers and body.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let resp = request.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, headers, body }
    }

    /// A GET with `authorization` as the raw `Authorization` header, or none at all.
    pub async fn get_authorized(&self, path: &str, authorization: Option<&str>) -> Reply {
        let mut request = self.http.get(self.url(path));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        self.send(request).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh_token}))).await
    }

    /// The value of an unlabelled metric in `/metrics`, e.g. `chat_messages_archived_total`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Waits until the worker has archived at least `count` messages, failing the test after 10 s.
    pub async fn wait_until_archived(&self, count: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let archived = self.metric("chat_messages_archived_total").await.unwrap_or(0.0);
            if archived >= count as f64 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "only {archived} of {count} messages archived in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The field names of a JSON object, sorted, to compare shapes whatever order the server wrote them in.
pub fn field_names(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    names.sort_unstable();
    names
}
