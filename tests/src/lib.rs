//! Test harness: boots the apps in-process on port 0 and talks to them over real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod browser;
pub mod proxy;
pub mod services;

use bootstrap::{AppKind, Application, Config};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::services::Cleanup;

/// A password every test user can have: long enough and not on the common list.
pub const PASSWORD: &str = "correct horse battery staple";

/// How long a test waits for a frame that should come.
pub const FRAME_WAIT: Duration = Duration::from_secs(5);

/// Which composition a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `chat`: every app in one process on SQLite, memory and local files.
    Embedded,
    /// api, file, two socket nodes and a worker, as separate servers sharing Redis and MongoDB.
    Split,
    /// The split shape on a 3-master Redis Cluster (`CHAT_REDIS_MODE=cluster`).
    Cluster,
}

impl Shape {
    /// Whether the apps run as separate servers sharing Redis and MongoDB.
    pub fn is_split(self) -> bool {
        self != Self::Embedded
    }
}

tokio::task_local! {
    /// The shape of the test running on this task; `Embedded` when unset.
    pub static SHAPE: Shape;
}

/// The shape the current test asked for.
pub fn current_shape() -> Shape {
    SHAPE.try_with(|s| *s).unwrap_or(Shape::Embedded)
}

/// Runs the listed scenario functions once per shape: `embedded::name` always, `split::name` when
/// Redis and MongoDB are there (ignored under a plain `cargo test`, run by `scripts/test.sh`).
#[macro_export]
macro_rules! on_both_shapes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::SHAPE.scope($crate::Shape::Embedded, super::$name()).await
                }
            )*
        }
        mod split {
            $(
                #[tokio::test]
                #[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
                async fn $name() {
                    $crate::SHAPE.scope($crate::Shape::Split, super::$name()).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test]
                #[ignore = "needs a Redis Cluster and MongoDB (scripts/test.sh)"]
                async fn $name() {
                    $crate::SHAPE.scope($crate::Shape::Cluster, super::$name()).await
                }
            )*
        }
    };
}

/// One server of a running shape.
struct Node {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A running shape with its own data: a temp directory, and in the split shape its own Redis key
/// prefix and MongoDB database, removed when the app is dropped.
pub struct TestApp {
    /// The api app (the only server, embedded).
    pub addr: SocketAddr,
    pub base: String,
    /// The file app.
    pub files_addr: SocketAddr,
    /// Socket nodes: one embedded, two split.
    pub socket_addrs: Vec<SocketAddr>,
    /// The node running the worker, whose `/metrics` count archived messages.
    pub worker_addr: SocketAddr,
    pub shape: Shape,
    pub http: reqwest::Client,
    pub data_dir: Arc<TempDir>,
    nodes: Vec<Node>,
    cleanup: Option<Cleanup>,
    /// The one origin every request and socket goes through, once `behind` a proxy.
    front: Option<String>,
}

/// A signed-up user with fresh tokens.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// A collection of the split app's MongoDB database.
async fn shared_collection(cleanup: &Cleanup, name: &str) -> mongodb::Collection<mongodb::bson::Document> {
    let client = mongodb::Client::with_uri_str(&cleanup.mongo).await.expect("MongoDB client");
    client.database(&cleanup.database).collection(name)
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        bootstrap::telemetry::init(bootstrap::config::LogFormat::Text, "info");
    }
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn start(vars: &[(String, String)], kind: AppKind) -> (SocketAddr, Node) {
    try_start(vars, kind).await.expect("app builds")
}

async fn try_start(vars: &[(String, String)], kind: AppKind) -> anyhow::Result<(SocketAddr, Node)> {
    let config = Config::from_vars(vars.to_vec()).expect("test config");
    let app = Application::build(config, kind).await?;
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Ok((addr, Node { stop: Some(stop), task }))
}

/// A port that was free a moment ago, for a server whose address others must know before it starts.
fn probably_free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

impl TestApp {
    /// A fresh app of the current test's shape.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// A fresh app with extra `CHAT_*` settings.
    pub async fn spawn_with(settings: &[(&str, &str)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        match current_shape() {
            Shape::Embedded => Self::spawn_in(dir, settings).await,
            Shape::Split | Shape::Cluster => Self::spawn_split(dir, settings).await,
        }
    }

    /// An embedded app over an existing data directory, as after a restart.
    pub async fn spawn_in(data_dir: Arc<TempDir>, settings: &[(&str, &str)]) -> Self {
        init_logs();
        let mut vars: Vec<(String, String)> = vec![
            ("CHAT_ADDR".into(), "127.0.0.1:0".into()),
            ("CHAT_DATA_DIR".into(), data_dir.path().display().to_string()),
            ("CHAT_ARCHIVE_INTERVAL_MS".into(), "100".into()),
            // Tests sign many users up from 127.0.0.1; the limit's own tests set it.
            ("CHAT_REGISTRATIONS_PER_ADDRESS".into(), "0".into()),
        ];
        vars.extend(settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let (addr, node) = start(&vars, AppKind::All).await;
        Self::assemble(Shape::Embedded, addr, addr, vec![addr], addr, data_dir, vec![node], None)
    }

    /// api, file, two socket nodes and a worker sharing Redis and MongoDB.
    pub async fn spawn_split(data_dir: Arc<TempDir>, settings: &[(&str, &str)]) -> Self {
        Self::try_spawn_split(data_dir, settings, None).await.expect("the api binds port 0")
    }

    /// A fresh app whose web client works in a browser. In the split shape the page's origin (the
    /// api) is allowed on the file app and the socket nodes, so the api's port is chosen first;
    /// should another process take it meanwhile, the whole shape starts again.
    pub async fn spawn_for_browser(settings: &[(&str, &str)]) -> Self {
        if current_shape() == Shape::Embedded {
            return Self::spawn_with(settings).await;
        }
        for _ in 0..5 {
            let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
            if let Some(app) = Self::try_spawn_split(dir, settings, Some(probably_free_port())).await {
                return app;
            }
        }
        panic!("no free port for the api in five tries");
    }

    /// The split shape; with `api_port`, the api listens there and is the one allowed origin.
    async fn try_spawn_split(data_dir: Arc<TempDir>, settings: &[(&str, &str)], api_port: Option<u16>) -> Option<Self> {
        init_logs();
        let id = random_hex();
        let shape = if current_shape() == Shape::Cluster { Shape::Cluster } else { Shape::Split };
        let (redis_url, mongo_url) = if shape == Shape::Cluster {
            (services::redis_cluster_url(), services::mongo_url_for_cluster_shape())
        } else {
            (services::redis_url(), services::mongo_url())
        };
        let cleanup = Cleanup {
            prefix: format!("test:{id}:"),
            database: format!("e2e_{id}"),
            mongo: mongo_url.clone(),
            redis: redis_url.split(',').map(str::to_owned).collect(),
        };
        let mut vars: Vec<(String, String)> = vec![
            ("CHAT_ADDR".into(), "127.0.0.1:0".into()),
            ("CHAT_DATA_DIR".into(), data_dir.path().display().to_string()),
            ("CHAT_ARCHIVE_INTERVAL_MS".into(), "100".into()),
            // Tests sign many users up from 127.0.0.1; the limit's own tests set it.
            ("CHAT_REGISTRATIONS_PER_ADDRESS".into(), "0".into()),
            ("CHAT_REDIS_URL".into(), redis_url),
            ("CHAT_REDIS_MODE".into(), if shape == Shape::Cluster { "cluster" } else { "standalone" }.into()),
            ("CHAT_REDIS_PREFIX".into(), cleanup.prefix.clone()),
            ("CHAT_MONGODB_URL".into(), services::url_with_database(&mongo_url, &cleanup.database)),
            ("CHAT_JWT_SECRET".into(), format!("{}{}", random_hex(), random_hex())),
            ("CHAT_INTERNAL_TOKEN".into(), random_hex()),
            ("CHAT_WORKER_NAME".into(), format!("worker-{id}")),
        ];
        if let Some(port) = api_port {
            vars.push(("CHAT_ALLOWED_ORIGINS".into(), format!("http://127.0.0.1:{port}")));
        }
        vars.extend(settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let (files_addr, file_node) = start(&vars, AppKind::File).await;
        vars.push(("CHAT_FILE_URL".into(), format!("http://{files_addr}")));
        let (socket_a, socket_node_a) = start(&vars, AppKind::Socket).await;
        let (socket_b, socket_node_b) = start(&vars, AppKind::Socket).await;
        let (worker_addr, worker_node) = start(&vars, AppKind::Worker).await;
        // The api serves the web client, which must know where the other apps are.
        let mut api_vars = vars.clone();
        api_vars.push(("CHAT_WEB_SOCKET_URLS".into(), format!("ws://{socket_a}/ws,ws://{socket_b}/ws")));
        api_vars.push(("CHAT_WEB_FILES_URL".into(), format!("http://{files_addr}")));
        if let Some(port) = api_port {
            api_vars.push(("CHAT_ADDR".into(), format!("127.0.0.1:{port}")));
        }
        let (api_addr, api_node) = try_start(&api_vars, AppKind::Api).await.ok()?;
        let nodes = vec![api_node, file_node, socket_node_a, socket_node_b, worker_node];
        Some(Self::assemble(
            shape,
            api_addr,
            files_addr,
            vec![socket_a, socket_b],
            worker_addr,
            data_dir,
            nodes,
            Some(cleanup),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        shape: Shape,
        addr: SocketAddr,
        files_addr: SocketAddr,
        socket_addrs: Vec<SocketAddr>,
        worker_addr: SocketAddr,
        data_dir: Arc<TempDir>,
        nodes: Vec<Node>,
        cleanup: Option<Cleanup>,
    ) -> Self {
        Self {
            addr,
            base: format!("http://{addr}"),
            files_addr,
            socket_addrs,
            worker_addr,
            shape,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            data_dir,
            nodes,
            cleanup,
            front: None,
        }
    }

    /// From now on every request and socket of this app goes through `origin` (a reverse
    /// proxy's), as a browser's would; `socket_addrs` still reach the nodes themselves.
    pub fn behind(&mut self, origin: &str) {
        self.base = origin.to_owned();
        self.front = Some(origin.to_owned());
    }

    /// The `ws://` URL of socket node `node` (0 or 1; embedded has one).
    pub fn ws_url(&self, node: usize) -> String {
        if let Some(front) = &self.front {
            return format!("{}/ws", front.replacen("http", "ws", 1));
        }
        format!("ws://{}/ws", self.socket_addrs[node % self.socket_addrs.len()])
    }

    /// Shuts down gracefully (as on SIGTERM) and hands back the data directory.
    pub async fn stop(mut self) -> Arc<TempDir> {
        for node in &mut self.nodes {
            if let Some(stop) = node.stop.take() {
                let _ = stop.send(());
            }
        }
        for node in std::mem::take(&mut self.nodes) {
            node.task.await.expect("app task").expect("clean shutdown");
        }
        self.data_dir.clone()
    }

    /// The URL of `path` on the app that serves it.
    pub fn url(&self, path: &str) -> String {
        if self.front.is_some() {
            return format!("{}{path}", self.base);
        }
        if path.starts_with("/files") || path.starts_with("/internal/files") {
            format!("http://{}{path}", self.files_addr)
        } else {
            format!("{}{path}", self.base)
        }
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
        self.socket_on(user, 0).await
    }

    /// The embedded app's SQLite database, opened beside the app as a second connection.
    pub fn embedded_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_dir.path().join("chat.db")).expect("open chat.db")
    }

    /// Deletes `user_id`'s membership of `room_id` straight from the store, as a removal whose
    /// event no node heard would leave it.
    pub async fn remove_membership_behind_the_servers_back(&self, room_id: &str, user_id: &str) {
        match &self.cleanup {
            None => {
                let db = self.embedded_db();
                let deleted = db
                    .execute("DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2", [room_id, user_id])
                    .expect("delete the membership");
                assert_eq!(deleted, 1, "the membership existed");
            }
            Some(cleanup) => {
                let memberships = shared_collection(cleanup, "memberships").await;
                let filter = mongodb::bson::doc! { "room_id": room_id, "user_id": user_id };
                let deleted = memberships.delete_one(filter).await.expect("delete the membership").deleted_count;
                assert_eq!(deleted, 1, "the membership existed");
            }
        }
    }

    /// How many messages of `room_id` the archive holds (SQLite embedded, MongoDB split).
    pub async fn archived_messages(&self, room_id: &str) -> u64 {
        match &self.cleanup {
            None => {
                let db = self.embedded_db();
                db.query_row("SELECT COUNT(*) FROM messages WHERE room_id = ?1", [room_id], |row| row.get(0))
                    .expect("count messages")
            }
            Some(cleanup) => {
                let messages = shared_collection(cleanup, "messages").await;
                messages.count_documents(mongodb::bson::doc! { "room_id": room_id }).await.expect("count messages")
            }
        }
    }

    /// Moves the `sent_at` of `room_id`'s messages with seq 1 to `through` to `age` ago, wherever
    /// they are stored (SQLite; MongoDB and the Redis hot cache), as if they had been sent then:
    /// expired, yet not purged. Wait until they are archived first (`wait_until_archived`).
    pub async fn backdate_messages(&self, room_id: &str, through: u64, age: Duration) {
        let sent_at = std::time::SystemTime::now() - age;
        let millis = i64::try_from(sent_at.duration_since(std::time::UNIX_EPOCH).expect("after the epoch").as_millis())
            .expect("in range");
        let seq = i64::try_from(through).expect("in range");
        match &self.cleanup {
            None => {
                let db = self.embedded_db();
                let updated = db
                    .execute(
                        "UPDATE messages SET sent_at = ?1 WHERE room_id = ?2 AND seq <= ?3",
                        rusqlite::params![millis, room_id, seq],
                    )
                    .expect("backdate the messages");
                assert_eq!(updated as u64, through, "every message up to {through} is stored");
            }
            Some(cleanup) => {
                let date = mongodb::bson::DateTime::from_millis(millis);
                let messages = shared_collection(cleanup, "messages").await;
                let filter = mongodb::bson::doc! { "room_id": room_id, "seq": { "$lte": seq } };
                let update = mongodb::bson::doc! { "$set": { "sent_at": date } };
                let matched = messages.update_many(filter, update).await.expect("backdate the archive").matched_count;
                assert_eq!(matched, through, "every message up to {through} is archived");
                let sent_at = date.try_to_rfc3339_string().expect("a date");
                backdate_cached(cleanup, room_id, through, &sent_at).await;
            }
        }
    }

    /// Tries a handshake on node `node` and returns the HTTP status of the refusal, or 101 when
    /// it was accepted.
    pub async fn handshake_status(
        &self,
        node: usize,
        token: Option<&str>,
        query_token: Option<&str>,
        origin: Option<&str>,
    ) -> u16 {
        let url = match query_token {
            Some(t) => format!("{}?access_token={t}", self.ws_url(node)),
            None => self.ws_url(node),
        };
        let mut request = url.into_client_request().expect("ws request");
        if let Some(token) = token {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().expect("header"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("unexpected handshake error: {e}"),
        }
    }

    /// Opens a socket on node `node` (split shape: 0 or 1) and waits for `ready`.
    pub async fn socket_on(&self, user: &TestUser, node: usize) -> Socket {
        Socket::open(&self.ws_url(node), user).await
    }

    /// Stops socket node `node` of the split shape as SIGTERM does: its sockets get `1001`.
    pub async fn stop_socket_node(&mut self, node: usize) {
        assert!(self.shape.is_split(), "only the split shape has socket nodes of their own");
        // api, file, socket 0, socket 1, worker: see `spawn_split`.
        let node = &mut self.nodes[2 + node];
        if let Some(stop) = node.stop.take() {
            let _ = stop.send(());
        }
        (&mut node.task).await.expect("socket node task").expect("clean shutdown");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(stop) = node.stop.take() {
                let _ = stop.send(());
            }
            node.task.abort();
        }
        drop(self.cleanup.take());
    }
}

/// Rewrites the `sent_at` of the hot cache's copies of messages 1 to `through`.
async fn backdate_cached(cleanup: &Cleanup, room_id: &str, through: u64, sent_at: &str) {
    let cache = format!("{}room:{{{room_id}}}:cache", cleanup.prefix);
    if cleanup.redis.len() > 1 {
        let client = redis::cluster::ClusterClient::new(cleanup.redis.clone()).expect("cluster URLs");
        let mut conn = client.get_async_connection().await.expect("Redis Cluster connection");
        backdate_cache(&mut conn, &cache, through, sent_at).await;
    } else {
        let mut conn = redis::Client::open(cleanup.redis[0].as_str())
            .expect("Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis connection");
        backdate_cache(&mut conn, &cache, through, sent_at).await;
    }
}

async fn backdate_cache(conn: &mut impl redis::aio::ConnectionLike, cache: &str, through: u64, sent_at: &str) {
    let cached: Vec<(String, u64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(cache)
        .arg("-inf")
        .arg(through)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .expect("read the hot cache");
    for (json, seq) in cached {
        let message: Value = serde_json::from_str(&json).expect("cached JSON");
        let old = message["sent_at"].as_str().expect("a cached sent_at");
        let backdated = json.replacen(&format!(r#""sent_at":"{old}""#), &format!(r#""sent_at":"{sent_at}""#), 1);
        assert_ne!(backdated, json, "the cached message names its sent_at as serialised");
        redis::pipe()
            .atomic()
            .zrem(cache, &json)
            .zadd(cache, &backdated, seq)
            .query_async::<()>(conn)
            .await
            .expect("backdate a cached message");
    }
}

/// A client socket speaking the JSON protocol.
pub struct Socket {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for another kind; handed out first, in order.
    pending: std::collections::VecDeque<Value>,
}

impl Socket {
    /// Opens a socket at `url` as `user` and waits for `ready`.
    pub async fn open(url: &str, user: &TestUser) -> Self {
        Self::try_open(url, user).await.expect("socket opens")
    }

    /// As `open`, and the handshake's error when it fails (a node shutting down answers 503).
    pub async fn try_open(url: &str, user: &TestUser) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert("authorization", format!("Bearer {}", user.access_token).parse().expect("header"));
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        let mut socket = Socket { stream, pending: std::collections::VecDeque::new() };
        let ready = socket.next_of("ready").await;
        assert_eq!(ready["user"]["id"], user.id.as_str());
        Ok(socket)
    }

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

    /// The next text frame, or the close code when the server ended the socket (1006 for an end
    /// without a close frame). Waits as long as it takes: the caller bounds the wait.
    pub async fn next_or_close(&mut self) -> Result<Value, u16> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).expect("JSON frame")),
                Some(Ok(Message::Close(frame))) => return Err(frame.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(1006),
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
        let url = format!("http://{}/metrics", self.worker_addr);
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
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
