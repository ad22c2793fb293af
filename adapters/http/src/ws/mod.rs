//! The socket app: `GET /ws` handshake checks, and one task per connection speaking the protocol.

pub mod frames;
pub mod hub;

use std::sync::Arc;
use std::time::{Duration, Instant};

use application::accounts::Authenticated;
use application::messaging::{SendFileError, SendText};
use application::ports::EventBus;
use domain::{ClientMsgId, FileName, MessageText, RoomId};
use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream};
use poem::web::Data;
use poem::{handler, IntoResponse, Request, Response};

use self::frames::{BinaryHeader, ClientFrame, ServerFrame, UserRef};
use self::hub::{close, Hub};
use crate::bearer::caller;
use crate::dto::MessageDto;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Origins allowed to open sockets; empty means only the server's own origin.
    pub allowed_origins: Vec<String>,
    pub max_connections_per_user: usize,
    /// Sustained client frames per second per connection.
    pub rate_per_sec: f64,
    /// Frames a connection may send in a burst.
    pub burst: f64,
    /// Frames waiting for a slow reader before it is dropped.
    pub outbound_queue: usize,
    pub ping_interval: Duration,
    /// A peer silent this long is considered dead.
    pub idle_timeout: Duration,
    /// A write that cannot finish this long means the peer stopped reading: the socket is closed
    /// with 1013, so one stalled reader never holds its task (and its pings) forever.
    pub write_timeout: Duration,
    pub max_text_bytes: usize,
    /// Largest binary frame: the largest upload plus its header.
    pub max_binary_bytes: usize,
    pub typing_every: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_connections_per_user: 10,
            rate_per_sec: 20.0,
            burst: 40.0,
            outbound_queue: 256,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(10),
            max_text_bytes: 64 << 10,
            max_binary_bytes: (30 << 20) + 4 + frames::MAX_FILE_HEADER_BYTES,
            typing_every: Duration::from_secs(2),
        }
    }
}

/// The socket app's shared parts.
#[derive(Clone)]
pub struct SocketApp {
    pub hub: Arc<Hub>,
    pub config: Arc<WsConfig>,
}

impl SocketApp {
    pub fn new(config: WsConfig) -> Self {
        let hub = Hub::new(config.outbound_queue, config.typing_every);
        Self { hub, config: Arc::new(config) }
    }

    /// Starts delivering this node's bus events to its sockets.
    ///
    /// # Errors
    /// When the bus cannot be subscribed to.
    pub async fn start(&self, bus: &Arc<dyn EventBus>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let events = bus.subscribe().await?;
        Ok(tokio::spawn(self.hub.clone().run(events)))
    }

    /// Closes every socket with `1001 going_away` and waits, at most `within`, until each has
    /// finished its current frame; false when some were still open at the deadline.
    pub async fn drain(&self, within: std::time::Duration) -> bool {
        self.hub.drain(within).await
    }
}

#[handler]
pub async fn ws_handler(req: &Request, ws: WebSocket, state: Data<&AppState>, app: Data<&SocketApp>) -> Response {
    if let Err(refusal) = check_origin(req, &app.config.allowed_origins) {
        return refusal.into_response();
    }
    let caller = match caller(req, &state.accounts).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let Some(reservation) = app.hub.reserve(caller.user.id, app.config.max_connections_per_user) else {
        return ApiError::rate_limited(5).into_response();
    };
    let state = state.clone();
    let app = app.clone();
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(app.config.max_binary_bytes.max(1 << 20))
        .max_message_size(Some(app.config.max_binary_bytes))
        .max_frame_size(Some(app.config.max_binary_bytes));
    ws.config(config)
        .on_upgrade(move |socket| async move {
            let _reservation = reservation;
            Connection::serve(socket, state, app, caller).await;
        })
        .into_response()
}

fn check_origin(req: &Request, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get("origin").and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let ok = if allowed.is_empty() {
        let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
        origin.split_once("://").is_some_and(|(_, rest)| rest == host)
    } else {
        allowed.iter().any(|a| a == origin)
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("origin {origin} is not allowed")))
    }
}

/// A token bucket: `rate` per second, up to `burst`.
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self { tokens: burst, last: Instant::now(), rate, burst }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Connection {
    state: AppState,
    app: SocketApp,
    caller: Authenticated,
    sink: futures::stream::SplitSink<WebSocketStream, Message>,
    /// Set when a write hit the write timeout: the peer stopped reading.
    stalled: bool,
}

/// How a connection ended, for the close frame.
enum End {
    Close(u16, &'static str),
    Gone,
}

impl Connection {
    async fn serve(socket: WebSocketStream, state: AppState, app: SocketApp, caller: Authenticated) {
        let (sink, mut stream) = socket.split();
        let user = caller.user.clone();
        let rooms = match state.rooms.subscriptions(&user).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::error!(error = ?e, "could not load subscriptions");
                return;
            }
        };
        let mut reg = app.hub.register(user.id, rooms.clone());
        state.metrics.socket_opened();
        let mut conn = Connection { state, app, caller, sink, stalled: false };
        if reg.first_for_user {
            conn.presence(true, rooms).await;
        }
        let ready = ServerFrame::Ready {
            user: UserRef { id: user.id.to_string(), username: user.username.to_string() },
            connection_id: reg.id.to_string(),
        };
        let mut end = if conn.send(ready.to_json()).await { conn.run(&mut stream, &mut reg).await } else { End::Gone };
        if conn.stalled {
            end = End::Close(close::TRY_AGAIN_LATER, "too_slow");
        }
        if let End::Close(code, reason) = end {
            conn.write(Message::Close(Some((CloseCode::from(code), reason.to_owned())))).await;
        }
        let _ = tokio::time::timeout(conn.app.config.write_timeout, conn.sink.close()).await;
        let last = conn.app.hub.unregister(reg.id);
        conn.state.metrics.socket_closed();
        if last {
            let rooms = conn.state.rooms.subscriptions(&user).await.unwrap_or_default();
            conn.presence(false, rooms).await;
        }
    }

    async fn run(
        &mut self,
        stream: &mut futures::stream::SplitStream<WebSocketStream>,
        reg: &mut hub::Registration,
    ) -> End {
        let mut bucket = Bucket::new(self.app.config.rate_per_sec, self.app.config.burst);
        let mut ping = tokio::time::interval(self.app.config.ping_interval);
        ping.tick().await;
        let mut last_seen = Instant::now();
        let expires_in = (self.caller.claims.expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                incoming = stream.next() => {
                    last_seen = Instant::now();
                    match incoming {
                        None => return End::Gone,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "socket read failed");
                            return if is_capacity(&e) { End::Close(close::MESSAGE_TOO_BIG, "too_large") } else { End::Gone };
                        }
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(msg)) => {
                            if !bucket.take() {
                                if !self.error("rate_limited", "too many frames; slow down".into(), None).await { return End::Gone; }
                                continue;
                            }
                            if let Some(end) = self.handle(msg).await { return end; }
                        }
                    }
                }
                frame = reg.frames.recv() => match frame {
                    Some(json) => if !self.send(json.to_string()).await { return End::Gone },
                    None => return End::Gone,
                },
                changed = reg.close.changed() => {
                    if changed.is_err() { return End::Gone; }
                    if let Some((code, reason)) = *reg.close.borrow() { return End::Close(code, reason); }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > self.app.config.idle_timeout { return End::Gone; }
                    if !self.write(Message::Ping(Vec::new())).await { return End::Gone; }
                }
                () = &mut expiry => return End::Close(close::SESSION_ENDED, "token_expired"),
            }
        }
    }

    /// Handles one client frame; `Some` ends the connection.
    async fn handle(&mut self, msg: Message) -> Option<End> {
        match msg {
            Message::Text(text) => {
                if text.len() > self.app.config.max_text_bytes {
                    let limit = self.app.config.max_text_bytes;
                    let ok = self.error("too_large", format!("text frames are limited to {limit} bytes"), None).await;
                    return (!ok).then_some(End::Gone);
                }
                let ok = match frames::parse_text(&text) {
                    Ok(frame) => self.on_frame(frame).await,
                    Err(e) => self.error("bad_request", e.to_string(), None).await,
                };
                (!ok).then_some(End::Gone)
            }
            Message::Binary(bytes) => self.on_binary(bytes).await,
            _ => None,
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> bool {
        let user = self.caller.user.clone();
        match frame {
            ClientFrame::Ping => self.send(ServerFrame::Pong.to_json()).await,
            ClientFrame::Send { room_id, client_msg_id, text } => {
                let Ok(cid) = ClientMsgId::new(&client_msg_id) else {
                    return self.error("bad_request", "client_msg_id must be 1 to 64 characters".into(), None).await;
                };
                let Some(room_id) = parse_room(&room_id) else {
                    return self.problem(Problem::room_not_found(), Some(&client_msg_id)).await;
                };
                let text = match MessageText::new(&text) {
                    Ok(text) => text,
                    Err(e) => return self.error("bad_request", format!("text: {e}"), Some(&client_msg_id)).await,
                };
                let request = SendText { room_id, client_msg_id: Some(cid), text };
                match self.state.messaging.send_text(&user, request).await {
                    Ok(sent) => self.ack(&client_msg_id, &MessageDto::from(&sent.message)).await,
                    Err(e) => self.problem(e.into(), Some(&client_msg_id)).await,
                }
            }
            ClientFrame::Sync { room_id, after_seq } => {
                let Some(room) = parse_room(&room_id) else {
                    return self.problem(Problem::room_not_found(), None).await;
                };
                match self.state.messaging.sync(&user, room, after_seq).await {
                    Ok(page) => {
                        for message in &page.items {
                            let dto = MessageDto::from(message);
                            if !self.send(ServerFrame::Message { message: &dto }.to_json()).await {
                                return false;
                            }
                        }
                        let synced = ServerFrame::Synced { room_id, last_seq: page.last_seq, has_more: page.has_more };
                        self.send(synced.to_json()).await
                    }
                    Err(e) => self.problem(e.into(), None).await,
                }
            }
            ClientFrame::Typing { room_id } => {
                let Some(room) = parse_room(&room_id) else {
                    return self.problem(Problem::room_not_found(), None).await;
                };
                if !self.app.hub.allow_typing(user.id, room) {
                    return true;
                }
                match self.state.messaging.typing(&user, room).await {
                    Ok(()) => true,
                    Err(e) => self.problem(e.into(), None).await,
                }
            }
        }
    }

    async fn on_binary(&mut self, bytes: Vec<u8>) -> Option<End> {
        let (header, body) = match frames::parse_binary(&bytes) {
            Ok(parts) => parts,
            Err(e) => return (!self.error("bad_request", e.to_string(), None).await).then_some(End::Gone),
        };
        let BinaryHeader::SendFile { room_id, client_msg_id, name } = header;
        let Ok(cid) = ClientMsgId::new(&client_msg_id) else {
            let ok = self.error("bad_request", "client_msg_id must be 1 to 64 characters".into(), None).await;
            return (!ok).then_some(End::Gone);
        };
        let Some(room) = parse_room(&room_id) else {
            return (!self.problem(Problem::room_not_found(), Some(&client_msg_id)).await).then_some(End::Gone);
        };
        let size = body.len() as u64;
        let data = futures::stream::iter([Ok(body.to_vec())]).boxed();
        drop(bytes);
        let user = self.caller.user.clone();
        let name = FileName::sanitize(&name);
        let result = self.state.messaging.send_file(&user, room, Some(cid), name, data, Some(size)).await;
        let ok = match result {
            Ok(sent) => self.ack(&client_msg_id, &MessageDto::from(&sent.message)).await,
            Err(e) => {
                // Over the limit for its kind the socket closes too: the client sent far too much.
                let close = matches!(e, SendFileError::TooLarge { .. });
                let ok = self.problem(e.into(), Some(&client_msg_id)).await;
                if close {
                    return Some(End::Close(close::MESSAGE_TOO_BIG, "too_large"));
                }
                ok
            }
        };
        (!ok).then_some(End::Gone)
    }

    async fn ack(&mut self, client_msg_id: &str, message: &MessageDto) -> bool {
        self.send(ServerFrame::Ack { client_msg_id, message }.to_json()).await
    }

    async fn error(&mut self, code: &str, message: String, client_msg_id: Option<&str>) -> bool {
        self.send(ServerFrame::Error { code, message, client_msg_id }.to_json()).await
    }

    /// A use-case error, in the same words REST uses for it.
    async fn problem(&mut self, problem: Problem, client_msg_id: Option<&str>) -> bool {
        self.error(problem.code, problem.message, client_msg_id).await
    }

    async fn send(&mut self, json: String) -> bool {
        self.write(Message::Text(json)).await
    }

    /// Writes one frame, giving up after the write timeout; false when the socket is gone or stalled.
    async fn write(&mut self, message: Message) -> bool {
        match tokio::time::timeout(self.app.config.write_timeout, self.sink.send(message)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                self.stalled = true;
                false
            }
        }
    }

    async fn presence(&self, online: bool, rooms: Vec<RoomId>) {
        self.state.messaging.presence(&self.caller.user, online, rooms).await;
    }
}

fn parse_room(raw: &str) -> Option<RoomId> {
    raw.parse().ok()
}

fn is_capacity(e: &std::io::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("Capacity")
}
