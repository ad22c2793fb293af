//! One client socket: a task that reads every frame, records the seq and latency of each message,
//! routes acks back to the senders it hosts, and writes the frames they hand it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::util::{histogram, parse_stamp, unix_nanos};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a handshake, or a wait for one expected frame, may take.
const WAIT: Duration = Duration::from_secs(30);

/// Latency histograms are sharded so receivers rarely wait on one another's lock.
const SHARDS: usize = 16;

/// Highest seq a socket tracks; a larger one is counted as stray instead of growing memory.
const MAX_SEQ: u64 = 10_000_000;

/// What the other end speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The chat protocol: bearer handshake, `ready`, `send`/`ack`, `message` frames with a seq.
    Chat,
    /// The bare relay: every text frame is echoed to every socket; the stamp's `n` is the seq.
    Relay,
}

/// Opens a socket (with the bearer token, for chat) and waits for `ready`.
///
/// # Errors
/// When the handshake is refused (e.g. `429` over `CHAT_MAX_CONNECTIONS_PER_USER`), times out,
/// or no `ready` frame comes.
pub async fn connect(url: &str, token: Option<&str>, kind: Kind) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
    }
    // A small read buffer: ten thousand sockets at tungstenite's default 128 KiB would be 1.3 GB.
    let config = WebSocketConfig::default().read_buffer_size(16 << 10);
    let (mut ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async_with_config(request, Some(config), true))
            .await
            .context("handshake timed out")??;
    if kind == Kind::Chat {
        // `ready` is the first frame the server sends; a few others at most may race it.
        for frames in 0.. {
            anyhow::ensure!(frames < 100, "no ready frame among the first 100");
            let frame = tokio::time::timeout(WAIT, ws.next()).await.context("no ready frame")?;
            match frame {
                Some(Ok(Message::Text(text))) if text.contains("\"ready\"") => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("socket closed before ready"),
            }
        }
    }
    Ok(ws)
}

/// Counters and histograms every socket task adds to.
pub struct Shared {
    pub kind: Kind,
    /// Room id to stream number (chat).
    pub rooms: HashMap<String, usize>,
    latency: Vec<Mutex<Histogram<u64>>>,
    /// Stamped messages received, over all sockets.
    pub deliveries: AtomicU64,
    /// Every text frame received, to tell when a storm of presence frames has settled.
    pub frames: AtomicU64,
    /// Unix nanos of the latest delivery.
    pub last_delivery: AtomicU64,
    /// Send frames handed to sockets, for the progress bar.
    pub sent: AtomicU64,
}

impl Shared {
    pub fn new(kind: Kind, rooms: HashMap<String, usize>) -> Self {
        Self {
            kind,
            rooms,
            latency: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
            deliveries: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            last_delivery: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Every socket's end-to-end latencies together.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.latency {
            if let Ok(h) = shard.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }

    fn record(&self, socket: usize, sent_nanos: u64) {
        let now = unix_nanos();
        if let Some(Ok(mut h)) = self.latency.get(socket % SHARDS).map(|m| m.lock()) {
            h.saturating_record((now.saturating_sub(sent_nanos) / 1000).max(1));
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.last_delivery.fetch_max(now, Ordering::Relaxed);
    }
}

/// A send frame for the socket to write, and which sender wrote it.
pub struct Outgoing {
    pub sender: usize,
    pub frame: String,
}

/// The server's answer to one send, routed back to its sender.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The sender's own message came back on its socket through the room's fan-out.
    Echoed {
        n: u64,
    },
    Acked {
        n: u64,
        room: usize,
        seq: u64,
    },
    /// An `error` frame; `n` is known when the frame names the `client_msg_id`.
    Refused {
        n: Option<u64>,
        code: String,
    },
}

/// What a socket saw, handed back when it stops.
#[derive(Debug, Default)]
pub struct Seen {
    /// Per stream (room, or relay sender): how often each seq arrived, indexed by seq.
    pub counts: HashMap<usize, Vec<u8>>,
    /// Why the socket ended before it was told to stop, e.g. `close 1013 too_slow`.
    pub ended: Option<String>,
    /// Message frames that could not be placed: unknown room, no stamp, absurd seq.
    pub stray: u64,
}

impl Seen {
    fn count(&mut self, stream: usize, seq: u64) {
        if seq > MAX_SEQ {
            self.stray += 1;
            return;
        }
        let i = usize::try_from(seq).unwrap_or(usize::MAX);
        let counts = self.counts.entry(stream).or_default();
        if counts.len() <= i {
            counts.resize(i + 1, 0);
        }
        counts[i] = counts[i].saturating_add(1);
    }
}

/// A running socket task.
pub struct Conn {
    pub out: mpsc::Sender<Outgoing>,
    pub task: tokio::task::JoinHandle<(Seen, Option<Ws>)>,
}

/// Where answers go: one channel per sender, indexed by sender number.
pub type Routes = Arc<Vec<mpsc::UnboundedSender<Answer>>>;

/// Starts the task of socket `index`; it runs until `stop` turns true or the socket ends.
pub fn spawn(index: usize, ws: Ws, shared: Arc<Shared>, routes: Routes, stop: watch::Receiver<bool>) -> Conn {
    let (out, out_rx) = mpsc::channel(64);
    let task = tokio::spawn(run(index, ws, shared, routes, out_rx, stop));
    Conn { out, task }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<Msg<'a>>,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    room_id: Cow<'a, str>,
    seq: u64,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// `<nonce>.<sender>.<n>`: unique per sender, and per user since every sender has its own
/// number; the nonce differs per run, because the server acks a `client_msg_id` it saw in the last
/// 24 hours with the original message (users reused with `--users-file` would otherwise be told
/// their new messages are old ones).
pub fn client_msg_id(nonce: &str, sender: usize, n: u64) -> String {
    format!("{nonce}.{sender}.{n}")
}

fn parse_client_msg_id(cid: &str) -> Option<(usize, u64)> {
    let mut parts = cid.rsplitn(3, '.');
    let n = parts.next()?.parse().ok()?;
    let sender = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((sender, n))
}

struct Reader {
    index: usize,
    shared: Arc<Shared>,
    routes: Routes,
    seen: Seen,
    /// Senders of the sends written and not yet answered, oldest first: the server answers a
    /// socket's frames in order, and `rate_limited` errors do not name the message.
    pending: VecDeque<usize>,
    /// Senders writing through this socket (relay: their own echo is their ack).
    hosts: HashSet<usize>,
}

impl Reader {
    fn route(&self, sender: usize, answer: Answer) {
        if let Some(tx) = self.routes.get(sender) {
            let _ = tx.send(answer);
        }
    }

    fn on_text(&mut self, text: &str) {
        self.shared.frames.fetch_add(1, Ordering::Relaxed);
        match self.shared.kind {
            Kind::Relay => self.on_relay(text),
            Kind::Chat => self.on_chat(text),
        }
    }

    fn on_relay(&mut self, text: &str) {
        let Some(stamp) = parse_stamp(text) else {
            self.seen.stray += 1;
            return;
        };
        self.seen.count(stamp.sender, stamp.n);
        self.shared.record(self.index, stamp.sent_nanos);
        if self.hosts.contains(&stamp.sender) {
            self.route(stamp.sender, Answer::Acked { n: stamp.n, room: stamp.sender, seq: stamp.n });
        }
    }

    fn on_chat(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
            self.seen.stray += 1;
            return;
        };
        match frame.kind.as_ref() {
            "message" => {
                let placed = frame.message.as_ref().and_then(|m| {
                    let room = *self.shared.rooms.get(m.room_id.as_ref())?;
                    let stamp = parse_stamp(m.text.as_deref()?)?;
                    Some((room, m.seq, stamp))
                });
                match placed {
                    Some((room, seq, stamp)) => {
                        self.seen.count(room, seq);
                        self.shared.record(self.index, stamp.sent_nanos);
                        if self.hosts.contains(&stamp.sender) {
                            self.route(stamp.sender, Answer::Echoed { n: stamp.n });
                        }
                    }
                    None => self.seen.stray += 1,
                }
            }
            "ack" => {
                let front = self.pending.pop_front();
                let named = frame.client_msg_id.as_deref().and_then(parse_client_msg_id);
                let (Some((sender, n)), Some(m)) = (named, frame.message) else { return };
                debug_assert!(front.is_none_or(|f| f == sender));
                let room = self.shared.rooms.get(m.room_id.as_ref()).copied().unwrap_or(usize::MAX);
                self.route(sender, Answer::Acked { n, room, seq: m.seq });
            }
            "error" => {
                let front = self.pending.pop_front();
                let named = frame.client_msg_id.as_deref().and_then(parse_client_msg_id);
                let code = frame.code.map_or_else(|| "error".to_owned(), Cow::into_owned);
                match (named, front) {
                    (Some((sender, n)), _) => self.route(sender, Answer::Refused { n: Some(n), code }),
                    (None, Some(sender)) => self.route(sender, Answer::Refused { n: None, code }),
                    (None, None) => {}
                }
            }
            _ => {}
        }
    }
}

async fn run(
    index: usize,
    mut ws: Ws,
    shared: Arc<Shared>,
    routes: Routes,
    mut out_rx: mpsc::Receiver<Outgoing>,
    mut stop: watch::Receiver<bool>,
) -> (Seen, Option<Ws>) {
    let mut reader =
        Reader { index, shared, routes, seen: Seen::default(), pending: VecDeque::new(), hosts: HashSet::new() };
    let mut writing = true;
    loop {
        tokio::select! {
            _ = stop.changed() => return (reader.seen, Some(ws)),
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => reader.on_text(text.as_str()),
                Some(Ok(Message::Close(frame))) => {
                    reader.seen.ended = Some(match frame {
                        Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
                        None => "close".to_owned(),
                    });
                    return (reader.seen, None);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    reader.seen.ended = Some(format!("error: {e}"));
                    return (reader.seen, None);
                }
                None => {
                    reader.seen.ended = Some("eof".to_owned());
                    return (reader.seen, None);
                }
            },
            out = out_rx.recv(), if writing => match out {
                Some(out) => {
                    reader.hosts.insert(out.sender);
                    if reader.shared.kind == Kind::Chat {
                        reader.pending.push_back(out.sender);
                    }
                    if let Err(e) = ws.send(Message::text(out.frame)).await {
                        reader.seen.ended = Some(format!("write error: {e}"));
                        return (reader.seen, None);
                    }
                }
                None => writing = false,
            },
        }
    }
}

/// Reads what was still in flight on a socket when the drain ended, for up to 15 s and until 1 s
/// passes without a frame, removing each message that arrives from `missing` (stream to seqs).
/// Returns how many arrived late, or why the socket ended meanwhile.
///
/// # Errors
/// The socket's end: a close frame, a read error or end of stream, worded as in `Seen::ended`.
pub async fn catch_up(
    ws: &mut Ws,
    kind: Kind,
    rooms: &HashMap<String, usize>,
    missing: &mut HashMap<usize, HashSet<u64>>,
) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut late = 0;
    while missing.values().any(|m| !m.is_empty()) && tokio::time::Instant::now() < deadline {
        let text = match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(
                    frame.map_or_else(|| "close".to_owned(), |f| format!("close {} {}", u16::from(f.code), f.reason))
                )
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("error: {e}")),
            Ok(None) => return Err("eof".to_owned()),
        };
        let placed = match kind {
            Kind::Relay => parse_stamp(text.as_str()).map(|s| (s.sender, s.n)),
            Kind::Chat => serde_json::from_str::<Frame<'_>>(text.as_str())
                .ok()
                .filter(|f| f.kind == "message")
                .and_then(|f| f.message)
                .and_then(|m| Some((*rooms.get(m.room_id.as_ref())?, m.seq))),
        };
        if let Some((stream, seq)) = placed {
            if missing.get_mut(&stream).is_some_and(|m| m.remove(&seq)) {
                late += 1;
            }
        }
    }
    Ok(late)
}

/// Asks for everything after `after` in `room_id` (paging while `has_more`) and returns which of
/// `missing` came back.
///
/// # Errors
/// When the socket fails or a page does not finish within the wait.
pub async fn resync(ws: &mut Ws, room_id: &str, after: u64, missing: &HashSet<u64>) -> anyhow::Result<HashSet<u64>> {
    let mut found = HashSet::new();
    let mut after = after;
    // Live traffic may interleave with the pages; bound the whole exchange in time too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    for _ in 0..1000 {
        let frame = serde_json::json!({"type": "sync", "room_id": room_id, "after_seq": after});
        ws.send(Message::text(frame.to_string())).await?;
        let (last, more) = loop {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "sync did not finish within 300 s");
            let msg = tokio::time::timeout(WAIT, ws.next()).await.context("no synced frame")?;
            let text = match msg {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("socket closed during sync"),
            };
            let value: serde_json::Value = serde_json::from_str(text.as_str())?;
            match value["type"].as_str() {
                Some("message") if value["message"]["room_id"] == room_id => {
                    if let Some(seq) = value["message"]["seq"].as_u64().filter(|s| missing.contains(s)) {
                        found.insert(seq);
                    }
                }
                Some("synced") if value["room_id"] == room_id => {
                    break (value["last_seq"].as_u64().unwrap_or(after), value["has_more"] == true);
                }
                Some("error") => anyhow::bail!("sync refused: {value}"),
                _ => {}
            }
        };
        if !more || last <= after {
            break;
        }
        after = last;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_msg_ids_name_their_sender_and_number() {
        assert_eq!(parse_client_msg_id(&client_msg_id("a1b2", 12, 345)), Some((12, 345)));
        assert_eq!(parse_client_msg_id("12.345"), None);
    }

    #[test]
    fn seen_counts_each_seq_and_refuses_absurd_ones() {
        let mut seen = Seen::default();

        seen.count(0, 3);
        seen.count(0, 3);
        seen.count(0, MAX_SEQ + 1);

        assert_eq!(seen.counts[&0], vec![0, 0, 0, 2]);
        assert_eq!(seen.stray, 1);
    }
}
