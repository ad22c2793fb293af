//! The socket app: `GET /ws` handshake checks, and one task per connection speaking the protocol.

pub mod frames;
pub mod guard;
pub mod hub;
pub mod outbox;
pub mod resume;
pub mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use application::accounts::Authenticated;
use application::messaging::{ChangeRequest, SendFileError, SendText, Wanted};
use application::metrics::Metrics;
use application::ports::{ByteStream, EventBus, HealthCheck};
use application::presence::Presence;
use application::rooms::Rooms;
use bytes::Bytes;
use domain::{ClientMsgId, Emoji, FileName, MessageText, RoomId};
use futures::StreamExt;
use poem::http::{header, Method, StatusCode};
use poem::web::Data;
use poem::{handler, Body, IntoResponse, Request, Response, Upgraded};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use self::frames::{entry_json, BinaryHeader, ClientFrame, ServerFrame, UserRef};
use self::guard::{FrameGuard, GuardLimits, Skipped};
use self::hub::{close, Hub};
use self::outbox::{Closing, Outbox};
use self::resume::Claim;
use self::writer::{Gather, Writer};
use crate::bearer::caller;
use crate::dto::MessageDto;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// A server socket: the codec over the read guard over the write gatherer over the upgraded connection.
type Socket = WebSocketStream<FrameGuard<Gather<Upgraded>>>;

/// The pieces an uploaded file's bytes go to storage in; each is copied out of the frame as the
/// store asks for it, so the frame is the only whole copy.
const UPLOAD_CHUNK_BYTES: usize = 64 << 10;

/// How long message frames wait after `ready` for the client's first frame, which may be a
/// `resume` that must come before them; with `/ws?resume`, until that frame comes.
const EARLY_WINDOW: Duration = Duration::from_millis(300);
/// Most rooms one `resume` frame may name.
const MAX_RESUMED_ROOMS: usize = 1000;
/// Reads of the log that found nothing new, while live frames wait behind a missing seq,
/// before that seq counts as one the log will never have.
const HOLE_READS: u32 = 3;
/// How long live frames of a resumed room may wait behind a missing seq before it is read from
/// the log: across nodes, a later message's event can overtake an earlier one's by a little.
const GAP_GRACE: Duration = Duration::from_millis(100);

/// How long a new socket waits for the bus to hear its rooms before it gives up.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame the codec is handed: the guard cuts longer binary frames into fragments of
/// this size, so the codec's read buffer never grows to an upload's size and stays so.
const CODEC_FRAME_BYTES: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Origins allowed to open sockets; empty means only the server's own origin.
    pub allowed_origins: Vec<String>,
    pub max_connections_per_user: usize,
    /// Sustained client frames per second per connection.
    pub rate_per_sec: f64,
    /// Frames a connection may send in a burst.
    pub burst: f64,
    /// Bytes of frames a socket may have queued or being written before it counts as too slow
    /// and is closed with 1013: a burst of a few seconds fits, a peer that stopped reading does not.
    pub outbound_queue_bytes: usize,
    pub ping_interval: Duration,
    /// A peer silent this long is considered dead.
    pub idle_timeout: Duration,
    /// A write that cannot finish this long means the peer stopped reading: the socket is closed
    /// with 1013, so one stalled reader never holds its task (and its pings) forever.
    pub write_timeout: Duration,
    /// Largest text message: the read guard refuses a larger one from its header, unbuffered.
    pub max_text_bytes: usize,
    /// Largest binary frame: the largest upload plus its header.
    pub max_binary_bytes: usize,
    pub typing_every: Duration,
    /// How often every socket's rooms are read again from the store, for membership changes
    /// whose event was never heard; a gap in the bus does it at once.
    pub reconcile_every: Duration,
    /// How often this node renews its word that its users are online (a third of the lapse).
    pub presence_every: Duration,
    /// Presence changes are gathered this long and sent as one frame per room.
    pub presence_window: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_connections_per_user: 10,
            rate_per_sec: 20.0,
            burst: 40.0,
            outbound_queue_bytes: 1 << 20,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(10),
            max_text_bytes: 64 << 10,
            max_binary_bytes: (30 << 20) + 4 + frames::MAX_FILE_HEADER_BYTES,
            typing_every: Duration::from_secs(2),
            reconcile_every: Duration::from_secs(30),
            presence_every: Duration::from_secs(20),
            presence_window: Duration::from_millis(250),
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
        let hub = Hub::new(config.outbound_queue_bytes, config.typing_every);
        Self { hub, config: Arc::new(config) }
    }

    /// Part of `/health/ready` on a socket node: failing once shutdown begins, so a proxy stops
    /// sending it new sockets before it stops listening.
    pub fn readiness(&self) -> Arc<dyn HealthCheck> {
        Arc::new(Accepting(self.hub.clone()))
    }

    /// Starts delivering this node's bus events to its sockets.
    ///
    /// # Errors
    /// When the bus cannot be subscribed to.
    pub async fn start(
        &self,
        bus: &Arc<dyn EventBus>,
        rooms: Rooms,
        presence: Presence,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let subscription = bus.subscribe().await?;
        self.hub.attach(subscription.rooms);
        let events = subscription.events;
        let hub = self.hub.clone();
        let (reconcile_every, presence_every) = (self.config.reconcile_every, self.config.presence_every);
        let presence_window = self.config.presence_window;
        Ok(tokio::spawn(async move {
            tokio::join!(
                hub.clone().run(events, rooms, reconcile_every, presence_window, metrics),
                keep_online(hub, presence, presence_every)
            );
        }))
    }

    /// Closes every socket with `1001 going_away` and waits, at most `within`, until each has
    /// finished its current frame; false when some were still open at the deadline.
    pub async fn drain(&self, within: std::time::Duration) -> bool {
        self.hub.drain(within).await
    }
}

struct Accepting(Arc<Hub>);

#[async_trait::async_trait]
impl HealthCheck for Accepting {
    fn name(&self) -> &'static str {
        "sockets"
    }

    async fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.0.is_draining(), "shutting down: new sockets go to other nodes");
        Ok(())
    }
}

#[handler]
pub async fn ws_handler(req: &Request, state: Data<&AppState>, app: Data<&SocketApp>) -> Response {
    let key = match handshake_key(req) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = check_origin(req, &app.config.allowed_origins) {
        return refusal.into_response();
    }
    let caller = match caller(req, &state.accounts).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let reservation = match app.hub.reserve(caller.user.id, app.config.max_connections_per_user) {
        Ok(reservation) => reservation,
        Err(hub::Refusal::TooMany) => return ApiError::rate_limited(5).into_response(),
        // A proxy takes the 503 as a sign to send the reconnect to another node.
        Err(hub::Refusal::Draining) => return ApiError::shutting_down().into_response(),
    };
    let Ok(upgrade) = req.take_upgrade() else {
        return ApiError::bad_request("invalid_request", "the connection cannot be upgraded").into_response();
    };
    // `/ws?resume`: the client sends `resume` first, so its rooms' messages wait for it.
    let resuming = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "resume" || p.starts_with("resume=")));
    let state = state.clone();
    let app = app.clone();
    tokio::spawn(async move {
        let _reservation = reservation;
        let Ok(upgraded) = upgrade.await else { return };
        let skipped = Arc::new(Skipped::default());
        let limits = GuardLimits {
            max_text: app.config.max_text_bytes as u64,
            max_frame: app.config.max_binary_bytes as u64,
            piece: CODEC_FRAME_BYTES.max(app.config.max_text_bytes) as u64,
        };
        let io = FrameGuard::new(Gather::new(upgraded), limits, skipped.clone());
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(codec_config(&app.config))).await;
        Connection::serve(socket, skipped, state, app, caller, resuming).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .body(Body::empty())
}

/// The codec's limits: a message may carry the largest upload, in frames the guard made no
/// longer than `CODEC_FRAME_BYTES` (or the text limit). The codec hands each frame on at once:
/// `Gather` below it keeps them until the flush.
fn codec_config(config: &WsConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(config.max_binary_bytes))
        .max_frame_size(Some(CODEC_FRAME_BYTES.max(config.max_text_bytes)))
}

/// The `Sec-WebSocket-Key` of a valid upgrade request (RFC 6455 §4.2.1).
fn handshake_key(req: &Request) -> Result<String, ApiError> {
    let headers = req.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let upgrade = text(header::UPGRADE).eq_ignore_ascii_case("websocket");
    let connection = text(header::CONNECTION).split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let version = text(header::SEC_WEBSOCKET_VERSION) == "13";
    let key = text(header::SEC_WEBSOCKET_KEY);
    if req.method() != Method::GET || !upgrade || !connection || !version || key.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "not a WebSocket handshake"));
    }
    Ok(key.to_owned())
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
    /// Where replies go; the writer task sends them.
    outbox: Arc<Outbox>,
    /// Text messages the guard dropped for their size, still to be answered.
    skipped: Arc<Skipped>,
    /// When the frame being handled was read, for the ack latency.
    received: Instant,
    /// This socket's id in the hub.
    id: u64,
    /// Opened as `/ws?resume`: message frames wait for the first frame, however long.
    resuming: bool,
}

/// How recovering a resumed room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Sent up to where live delivery takes over.
    Done,
    /// The caller may not read the room; told so with an `error` frame.
    Refused,
    /// The socket is gone.
    Gone,
}

/// How the reader ended the connection, for the close frame.
enum End {
    Close(u16, &'static str),
    Gone,
}

impl From<End> for Closing {
    fn from(end: End) -> Self {
        match end {
            End::Close(code, reason) => Self::Frame(code, reason),
            End::Gone => Self::Gone,
        }
    }
}

impl Connection {
    /// Reads on this task while a writer task of its own sends: handling a client's frames never
    /// stops its queue from draining.
    async fn serve(
        socket: Socket,
        skipped: Arc<Skipped>,
        state: AppState,
        app: SocketApp,
        caller: Authenticated,
        resuming: bool,
    ) {
        let (sink, mut stream) = socket.split();
        let user = caller.user.clone();
        // Registered before its rooms are read, so a change made meanwhile is heard, not missed.
        let mut reg = app.hub.register(user.id, caller.claims.session, resuming);
        let rooms = match state.rooms.subscriptions(user.id).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::error!(error = ?e, "could not load subscriptions");
                app.hub.unregister(reg.id);
                return;
            }
        };
        // The bus hears the socket's rooms before `ready`, so whatever the client reads from the
        // log after it, live delivery carries on from there.
        match tokio::time::timeout(FOLLOW_TIMEOUT, app.hub.follow(reg.id, rooms.clone())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = ?e, "could not follow the socket's rooms on the bus");
                app.hub.unregister(reg.id);
                return;
            }
            Err(_) => {
                tracing::error!("the bus did not follow the socket's rooms in time");
                app.hub.unregister(reg.id);
                return;
            }
        }
        state.metrics.socket_opened();
        let writer = Writer {
            outbox: reg.outbox.clone(),
            closing: reg.outbox.closing(),
            user: user.id,
            ping_interval: app.config.ping_interval,
            write_timeout: app.config.write_timeout,
            metrics: state.metrics.clone(),
        };
        let writing = tokio::spawn(writer.run(sink));
        let mut conn = Connection {
            state,
            app,
            caller,
            outbox: reg.outbox.clone(),
            skipped,
            received: Instant::now(),
            id: reg.id,
            resuming,
        };
        if reg.first_for_user {
            conn.presence(true, rooms).await;
        }
        let ready = ServerFrame::Ready {
            user: UserRef { id: user.id.to_string(), username: user.username.to_string() },
            connection_id: reg.id.to_string(),
        };
        let end = if conn.send(ready.to_json()).await { conn.run(&mut stream, &mut reg).await } else { End::Gone };
        conn.outbox.close(end.into());
        let closing = (*reg.closing.borrow()).unwrap_or(Closing::Gone);
        conn.state.metrics.socket_closed(closing.reason());
        // Reads on until the peer answers the close (or goes), for at most the write timeout:
        // input left unread would turn the close into a reset that loses the close frame.
        let answered = async {
            while let Some(Ok(msg)) = stream.next().await {
                if msg.is_close() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(conn.app.config.write_timeout, answered).await;
        // Tungstenite answers a peer's close and ends without flushing: its answer still sits in
        // the gatherer, so drain it, else the client sees the connection drop (1006).
        if let Ok(sink) = writing.await {
            if let Ok(mut socket) = sink.reunite(stream) {
                let _ = tokio::time::timeout(conn.app.config.write_timeout, socket.get_mut().shutdown()).await;
            }
        }
        let last = conn.app.hub.unregister(reg.id);
        if last {
            let rooms = conn.state.rooms.subscriptions(user.id).await.unwrap_or_default();
            conn.presence(false, rooms).await;
        }
    }

    /// Handles the client's frames until the connection ends, on either side.
    async fn run(&mut self, stream: &mut futures::stream::SplitStream<Socket>, reg: &mut hub::Registration) -> End {
        let mut bucket = Bucket::new(self.app.config.rate_per_sec, self.app.config.burst);
        let mut idle_check = tokio::time::interval(self.app.config.ping_interval);
        idle_check.tick().await;
        let mut last_seen = Instant::now();
        let expires_in = (self.caller.claims.expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        let early = tokio::time::sleep(EARLY_WINDOW);
        tokio::pin!(early);
        let mut released = self.resuming;
        loop {
            tokio::select! {
                incoming = stream.next() => {
                    last_seen = Instant::now();
                    // A message the guard dropped came before this one: answer it first.
                    if !self.answer_skipped(&mut bucket).await { return End::Gone; }
                    match incoming {
                        None => return End::Gone,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "socket read failed");
                            return if is_too_large(&e) { End::Close(close::MESSAGE_TOO_BIG, "too_large") } else { End::Gone };
                        }
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Ok(msg)) => {
                            if !bucket.take() {
                                if !self.error("rate_limited", "too many frames; slow down".into(), None, None).await { return End::Gone; }
                                continue;
                            }
                            // Boxed: the state of handling a frame exists only while one is handled,
                            // not inside every idle socket's task.
                            if let Some(end) = Box::pin(self.handle(msg)).await { return end; }
                        }
                    }
                }
                () = self.skipped.wait() => {
                    last_seen = Instant::now();
                    if !self.answer_skipped(&mut bucket).await { return End::Gone; }
                }
                // Asked to close by the hub or the writer: the first request stands.
                changed = reg.closing.changed() => {
                    if changed.is_err() || reg.closing.borrow().is_some() { return End::Gone; }
                }
                _ = idle_check.tick() => {
                    if last_seen.elapsed() > self.app.config.idle_timeout { return End::Gone; }
                }
                () = &mut expiry => return End::Close(close::SESSION_ENDED, "token_expired"),
                () = &mut early, if !released => {
                    released = true;
                    self.app.hub.release_early(self.id);
                }
                // Live frames of a resumed room wait behind a seq that has not come: give it a
                // moment, then read what is still missing from the log.
                () = reg.gaps.notified() => {
                    tokio::time::sleep(GAP_GRACE).await;
                    for room in self.app.hub.gapped(self.id) {
                        if Box::pin(self.recover_reporting(room, &room.to_string())).await == Recovery::Gone {
                            return End::Gone;
                        }
                    }
                }
            }
        }
    }

    /// Answers each text message the guard dropped for its size, like any frame a client sends:
    /// within the rate. False when the socket is gone.
    async fn answer_skipped(&mut self, bucket: &mut Bucket) -> bool {
        for _ in 0..self.skipped.take() {
            let limit = self.app.config.max_text_bytes;
            let (code, message) = if bucket.take() {
                ("too_large", format!("text frames are limited to {limit} bytes"))
            } else {
                ("rate_limited", "too many frames; slow down".to_owned())
            };
            if !self.error(code, message, None, None).await {
                return false;
            }
        }
        true
    }

    /// Handles one client frame; `Some` ends the connection.
    async fn handle(&mut self, msg: Message) -> Option<End> {
        self.received = Instant::now();
        match msg {
            // The guard let no text message over `max_text_bytes` through.
            Message::Text(text) => {
                let ok = match frames::parse_text(&text) {
                    Ok(frame) => {
                        // A resume holds its rooms first, and then lets the rest go.
                        if !matches!(frame, ClientFrame::Sync { .. } | ClientFrame::Resume { .. }) {
                            self.app.hub.release_early(self.id);
                        }
                        self.on_frame(frame).await
                    }
                    Err(e) => {
                        self.app.hub.release_early(self.id);
                        self.error("bad_request", e.to_string(), None, None).await
                    }
                };
                (!ok).then_some(End::Gone)
            }
            Message::Binary(bytes) => {
                self.app.hub.release_early(self.id);
                self.on_binary(bytes).await
            }
            _ => None,
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> bool {
        let user = self.caller.user.clone();
        match frame {
            ClientFrame::Ping => self.send(ServerFrame::Pong.to_json()).await,
            ClientFrame::Send { room_id, client_msg_id, text, file_id } => {
                let Ok(cid) = ClientMsgId::new(&client_msg_id) else {
                    return self
                        .error("bad_request", "client_msg_id must be 1 to 64 characters".into(), None, None)
                        .await;
                };
                let Some(room_id) = parse_room(&room_id) else {
                    return self.problem(Problem::room_not_found(), Some(&client_msg_id), None).await;
                };
                let sent = match (text, file_id) {
                    (Some(text), None) => {
                        let text = match MessageText::new(&text) {
                            Ok(text) => text,
                            Err(e) => {
                                return self
                                    .error("bad_request", format!("text: {e}"), Some(&client_msg_id), None)
                                    .await
                            }
                        };
                        let request = SendText { room_id, client_msg_id: Some(cid), text };
                        self.state.messaging.send_text(&user, request).await.map_err(Problem::from)
                    }
                    (None, Some(file_id)) => match file_id.parse() {
                        Ok(file_id) => self
                            .state
                            .messaging
                            .send_uploaded(&user, room_id, Some(cid), file_id)
                            .await
                            .map_err(Problem::from),
                        Err(_) => Err(Problem::from(SendFileError::UnknownFile)),
                    },
                    _ => {
                        let message = "give exactly one of text and file_id".to_owned();
                        return self.error("bad_request", message, Some(&client_msg_id), None).await;
                    }
                };
                match sent {
                    Ok(sent) => self.ack(&client_msg_id, &MessageDto::from(&sent.message)).await,
                    Err(problem) => self.problem(problem, Some(&client_msg_id), None).await,
                }
            }
            ClientFrame::Edit { room_id, client_msg_id, seq, text } => {
                let wanted = MessageText::new(&text).map(Wanted::Edit).map_err(|e| format!("text: {e}"));
                self.change(room_id, client_msg_id, seq, wanted).await
            }
            ClientFrame::Delete { room_id, client_msg_id, seq } => {
                self.change(room_id, client_msg_id, seq, Ok(Wanted::Delete)).await
            }
            ClientFrame::React { room_id, client_msg_id, seq, emoji } => {
                let wanted = reaction(&emoji, true);
                self.change(room_id, client_msg_id, seq, wanted).await
            }
            ClientFrame::Unreact { room_id, client_msg_id, seq, emoji } => {
                let wanted = reaction(&emoji, false);
                self.change(room_id, client_msg_id, seq, wanted).await
            }
            ClientFrame::Sync { room_id, after_seq } => self.resume(vec![(room_id, after_seq)]).await,
            ClientFrame::Resume { rooms } => {
                if rooms.len() > MAX_RESUMED_ROOMS {
                    self.app.hub.release_early(self.id);
                    let message = format!("rooms: at most {MAX_RESUMED_ROOMS} per resume frame");
                    return self.error("bad_request", message, None, None).await;
                }
                self.resume(rooms.into_iter().collect()).await
            }
            ClientFrame::Read { room_id, seq } => {
                let Some(room) = parse_room(&room_id) else {
                    return self.problem(Problem::room_not_found(), None, Some(&room_id)).await;
                };
                match self.state.rooms.mark_read(&user, room, seq).await {
                    Ok(_) => true,
                    Err(e) => self.problem(e.into(), None, Some(&room_id)).await,
                }
            }
            ClientFrame::Typing { room_id } => {
                let Some(room) = parse_room(&room_id) else {
                    return self.problem(Problem::room_not_found(), None, Some(&room_id)).await;
                };
                if !self.app.hub.allow_typing(user.id, room) {
                    return true;
                }
                match self.state.messaging.typing(&user, room).await {
                    Ok(()) => true,
                    Err(e) => self.problem(e.into(), None, Some(&room_id)).await,
                }
            }
        }
    }

    async fn on_binary(&mut self, frame: Bytes) -> Option<End> {
        let (header, body_len) = match frames::parse_binary(&frame) {
            Ok((header, body)) => (header, body.len()),
            Err(e) => return (!self.error("bad_request", e.to_string(), None, None).await).then_some(End::Gone),
        };
        let BinaryHeader::SendFile { room_id, client_msg_id, name } = header;
        let Ok(cid) = ClientMsgId::new(&client_msg_id) else {
            let ok = self.error("bad_request", "client_msg_id must be 1 to 64 characters".into(), None, None).await;
            return (!ok).then_some(End::Gone);
        };
        let Some(room) = parse_room(&room_id) else {
            return (!self.problem(Problem::room_not_found(), Some(&client_msg_id), None).await).then_some(End::Gone);
        };
        // The body is a view of the frame, not a copy of it.
        let body = frame.slice(frame.len() - body_len..);
        drop(frame);
        let size = body.len() as u64;
        let data = chunked(body);
        let user = self.caller.user.clone();
        let name = FileName::sanitize(&name);
        let result = self.state.messaging.send_file(&user, room, Some(cid), name, data, Some(size)).await;
        let ok = match result {
            Ok(sent) => self.ack(&client_msg_id, &MessageDto::from(&sent.message)).await,
            Err(e) => {
                // Over the limit for its kind the socket closes too: the client sent far too much.
                let close = matches!(e, SendFileError::TooLarge { .. });
                let ok = self.problem(e.into(), Some(&client_msg_id), None).await;
                if close {
                    return Some(End::Close(close::MESSAGE_TOO_BIG, "too_large"));
                }
                ok
            }
        };
        (!ok).then_some(End::Gone)
    }

    /// The client has each room up to its seq: from here the socket gets each later message
    /// once, in seq order: first what the log has (paged here, however much), then live ones,
    /// which the hub holds meanwhile. Each room ends with `synced`. False once the socket is gone.
    async fn resume(&mut self, rooms: Vec<(String, u64)>) -> bool {
        let rooms: Vec<(String, u64, Option<RoomId>)> = rooms
            .into_iter()
            .map(|(room_id, after)| {
                let room = parse_room(&room_id);
                (room_id, after, room)
            })
            .collect();
        // Every room held before anything else goes out, so none is sent ahead of its recovery.
        for (_, after_seq, room) in &rooms {
            if let Some(room) = room {
                self.app.hub.resume_begin(self.id, *room, *after_seq);
            }
        }
        self.app.hub.release_early(self.id);
        for (room_id, after_seq, room) in rooms {
            let Some(room) = room else {
                if !self.problem(Problem::room_not_found(), None, Some(&room_id)).await {
                    return false;
                }
                continue;
            };
            match self.recover_reporting(room, &room_id).await {
                Recovery::Done => {}
                Recovery::Refused => continue,
                Recovery::Gone => return false,
            }
            let last_seq = self.app.hub.resume_next(self.id, room).map_or(after_seq, |next| next - 1);
            if !self.send(ServerFrame::Synced { room_id, last_seq, has_more: false }.to_json()).await {
                return false;
            }
        }
        true
    }

    /// `recover`; a refusal (the room is not the caller's to read) goes back to plain delivery
    /// and is told to the client.
    async fn recover_reporting(&mut self, room: RoomId, room_id: &str) -> Recovery {
        match self.recover(room, room_id).await {
            Ok(true) => Recovery::Done,
            Ok(false) => Recovery::Gone,
            Err(problem) => {
                self.app.hub.resume_end(self.id, room);
                if self.problem(problem, None, Some(room_id)).await {
                    Recovery::Refused
                } else {
                    Recovery::Gone
                }
            }
        }
    }

    /// Sends what the log has of a resumed room past what the socket got, until the held live
    /// frames follow on. `Ok(false)` once the socket is gone.
    async fn recover(&mut self, room: RoomId, room_id: &str) -> Result<bool, Problem> {
        let user = self.caller.user.clone();
        // Reads that found nothing new while a seq is still missing: the log will not get it.
        let mut idle_reads = 0;
        loop {
            let Some(next) = self.app.hub.resume_next(self.id, room) else { return Ok(true) };
            let page = self.state.messaging.sync(&user, room, next - 1).await.map_err(Problem::from)?;
            let mut progressed = false;
            for message in &page.items {
                let claim = self.app.hub.resume_claim(self.id, room, message.seq.get());
                if let Claim::Truncated { oldest } = claim {
                    let message = format!("messages before seq {oldest} are no longer kept");
                    let frame = ServerFrame::Error {
                        code: "history_truncated",
                        message,
                        client_msg_id: None,
                        room_id: Some(room_id),
                        oldest_seq: Some(oldest),
                    };
                    if !self.send(frame.to_json()).await {
                        return Ok(false);
                    }
                }
                if claim != Claim::Skip {
                    progressed = true;
                    if !self.send(entry_json(message)).await {
                        return Ok(false);
                    }
                }
            }
            if page.has_more {
                continue;
            }
            idle_reads = if progressed { 0 } else { idle_reads + 1 };
            if self.app.hub.resume_settle(self.id, room, idle_reads >= HOLE_READS) {
                return Ok(true);
            }
            if idle_reads > 0 {
                tokio::time::sleep(GAP_GRACE).await;
            }
        }
    }

    /// An `edit`, `delete`, `react` or `unreact`: answered with an `ack` carrying the message as
    /// the change left it, or an `error` naming the client message id. `wanted` is what the
    /// frame asks for, or why it is malformed.
    async fn change(
        &mut self,
        room_id: String,
        client_msg_id: String,
        seq: u64,
        wanted: Result<Wanted, String>,
    ) -> bool {
        let Ok(cid) = ClientMsgId::new(&client_msg_id) else {
            return self.error("bad_request", "client_msg_id must be 1 to 64 characters".into(), None, None).await;
        };
        let wanted = match wanted {
            Ok(wanted) => wanted,
            Err(message) => return self.error("bad_request", message, Some(&client_msg_id), None).await,
        };
        let Some(room_id) = parse_room(&room_id) else {
            return self.problem(Problem::room_not_found(), Some(&client_msg_id), None).await;
        };
        let user = self.caller.user.clone();
        let request = ChangeRequest { room_id, seq, client_msg_id: Some(cid), what: wanted };
        match self.state.messaging.change(&user, request).await {
            Ok(changed) => {
                let message = MessageDto::from(&changed.message);
                let change_seq = changed.change.map(|c| c.seq.get());
                let ack = ServerFrame::Ack { client_msg_id: &client_msg_id, message: &message, change_seq };
                self.send(ack.to_json()).await
            }
            Err(e) => self.problem(e.into(), Some(&client_msg_id), None).await,
        }
    }

    async fn ack(&mut self, client_msg_id: &str, message: &MessageDto) -> bool {
        self.state.metrics.message_accepted(self.received.elapsed());
        self.send(ServerFrame::Ack { client_msg_id, message, change_seq: None }.to_json()).await
    }

    /// An `error` frame naming the message (`client_msg_id`) or room (`room_id`) it is about.
    async fn error(&mut self, code: &str, message: String, client_msg_id: Option<&str>, room_id: Option<&str>) -> bool {
        self.send(ServerFrame::Error { code, message, client_msg_id, room_id, oldest_seq: None }.to_json()).await
    }

    /// A use-case error, in the same words REST uses for it.
    async fn problem(&mut self, problem: Problem, client_msg_id: Option<&str>, room_id: Option<&str>) -> bool {
        self.error(problem.code, problem.message, client_msg_id, room_id).await
    }

    /// Queues a reply behind what the writer has; false once the socket is closing.
    async fn send(&mut self, json: String) -> bool {
        self.outbox.reply(json.into()).await
    }

    async fn presence(&self, online: bool, rooms: Vec<RoomId>) {
        if online {
            self.state.presence.came_online(&self.caller.user, rooms).await;
        } else {
            self.state.presence.went_offline(&self.caller.user, rooms).await;
        }
    }
}

/// Renews, every `every`, this node's word that its users are online, so other nodes keep
/// counting them, and stop within the registry's lapse if this node dies.
async fn keep_online(hub: Arc<Hub>, presence: Presence, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = presence.still_online(&hub.users()).await {
            tracing::warn!(error = ?e, "could not renew presence; other nodes may count these users offline");
        }
    }
}

fn parse_room(raw: &str) -> Option<RoomId> {
    raw.parse().ok()
}

/// A `react` (`added`) or `unreact` of `emoji`, or what is wrong with the emoji.
fn reaction(emoji: &str, added: bool) -> Result<Wanted, String> {
    Emoji::new(emoji).map(|emoji| Wanted::React { emoji, added }).map_err(|e| format!("emoji: {e}"))
}

/// Whether a read failed on a frame over its limit: the codec's for binary, the guard's for text.
fn is_too_large(e: &WsError) -> bool {
    match e {
        WsError::Capacity(_) => true,
        WsError::Io(io) => guard::is_refusal(io),
        _ => false,
    }
}

/// The body as a stream of copies of at most `UPLOAD_CHUNK_BYTES`, each made when it is asked for.
fn chunked(body: Bytes) -> ByteStream {
    futures::stream::unfold(body, |mut rest| async move {
        if rest.is_empty() {
            return None;
        }
        let piece = rest.split_to(rest.len().min(UPLOAD_CHUNK_BYTES));
        Some((Ok(piece.to_vec()), rest))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_frame_goes_to_storage_in_pieces_of_at_most_64_kib() {
        let body: Bytes = (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();

        let pieces: Vec<Vec<u8>> = chunked(body.clone()).map(|piece| piece.expect("a piece")).collect().await;

        assert!(
            pieces.iter().all(|p| p.len() <= UPLOAD_CHUNK_BYTES),
            "{:?}",
            pieces.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(pieces.concat(), body);
    }
}
