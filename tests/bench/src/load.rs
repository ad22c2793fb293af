//! The traffic engine behind fanout, rooms, relay and burst-archive: opens the sockets, runs the
//! senders, waits for deliveries to drain, then checks every socket's seqs against what was acked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::api::Api;
use super::conn::{self, client_msg_id, Answer, Conn, Kind, Outgoing, Routes, Seen, Shared, Ws};
use super::util::{self, cpu_seconds, histogram, micros, payload, rss_kib, unix_nanos, Cpu, Latency, Memory};

/// A send not answered within this long is given up on (counted as unanswered).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Most sends in flight per sender in open-loop mode, so a stalled server cannot grow memory.
const OPEN_LOOP_INFLIGHT: usize = 10_000;

/// Sockets whose missing messages are looked for with `sync` after the run.
const RESYNC_SOCKETS: usize = 200;

/// One socket to open.
#[derive(Debug, Clone)]
pub struct SocketSpec {
    /// Bearer token (chat).
    pub token: Option<String>,
    /// Streams it should receive: room numbers (chat) or sender numbers (relay).
    pub follows: Vec<usize>,
    /// Where this socket connects, when not the plan's `url` (`--senders-ws`: senders on another
    /// socket node than the subscribers).
    pub url: Option<String>,
}

/// One sender: which socket it writes through and which room it sends to.
#[derive(Debug, Clone, Copy)]
pub struct SenderSpec {
    pub socket: usize,
    pub room: usize,
}

/// Everything one load run needs.
pub struct Plan {
    /// `chat` or `relay`, for the report.
    pub target: &'static str,
    pub kind: Kind,
    pub url: String,
    pub sockets: Vec<SocketSpec>,
    /// Room ids by room number (chat); empty for the relay.
    pub room_ids: Vec<String>,
    /// A member's token per room, to page its history after the run (chat).
    pub room_tokens: Vec<String>,
    pub senders: Vec<SenderSpec>,
    /// Messages per second per sender; zero sends as fast as answers come, `window` in flight.
    pub rate: f64,
    pub window: usize,
    pub duration: Duration,
    /// Total messages over all senders.
    pub messages: Option<u64>,
    pub size: usize,
    /// Resend messages refused with `rate_limited` (after a pause) instead of counting them.
    pub retry_rate_limited: bool,
    /// With `rate` zero, free a window slot when the sender's own copy comes back through the
    /// room's fan-out (as the relay's echo does) rather than at the ack, so senders cannot outrun
    /// delivery and get slow sockets closed with 1013.
    pub pace_on_echo: bool,
    pub drain: Duration,
    pub server_pid: Option<u32>,
    pub connect_concurrency: usize,
    /// Handshakes started per second (0: as fast as `connect_concurrency` allows). Every first
    /// socket of a user sends presence to all its rooms' sockets, so opening a 1000-member room
    /// at once is a million frames.
    pub connect_rate: f64,
    pub progress: bool,
    /// Page every room's history after the run and check it against the acks (chat).
    pub log_check: Option<Api>,
}

/// What one sender did.
#[derive(Default)]
struct SenderResult {
    sent: u64,
    /// (room, seq) of every acked message.
    acked: Vec<(usize, u64)>,
    refused: BTreeMap<String, u64>,
    retried: u64,
    unanswered: u64,
    ack_latency: Option<hdrhistogram::Histogram<u64>>,
    last_answer: Option<Instant>,
}

/// A room's history read back over HTTP after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogCheck {
    pub rooms: usize,
    pub messages: u64,
    /// Acked seqs the history does not have.
    pub missing_acked: u64,
    /// Seqs that appear more than once.
    pub duplicate_seqs: u64,
    /// Bench messages (same sender and number) stored under more than one seq.
    pub duplicate_texts: u64,
    /// Seqs absent between 1 and the highest seq.
    pub seq_gaps: u64,
    /// Rooms whose history could not be read to the end.
    pub unreadable_rooms: usize,
}

impl LogCheck {
    pub fn clean(&self) -> bool {
        self.missing_acked == 0 && self.duplicate_seqs == 0 && self.duplicate_texts == 0 && self.unreadable_rooms == 0
    }
}

/// The results of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub target: String,
    pub sockets: usize,
    pub sockets_opened: usize,
    pub connect_failures: usize,
    pub first_connect_error: Option<String>,
    pub connect_seconds: f64,
    /// Frames (ready, presence) received while the sockets opened and settled.
    pub frames_before_send: u64,
    /// Sockets the server had already ended before sending began (e.g. 1013 in a presence storm).
    pub ended_before_send: usize,
    pub rooms: usize,
    pub senders: usize,
    /// Per sender; 0 means closed loop with `window` in flight.
    pub rate_per_sender: f64,
    pub window: Option<usize>,
    /// What frees a window slot in closed loop: `echo` (own copy delivered) or `ack`.
    pub paced_on: Option<&'static str>,
    pub message_bytes: usize,
    pub send_seconds: f64,
    pub sent: u64,
    pub acked: u64,
    pub acked_per_sec: f64,
    pub refused: BTreeMap<String, u64>,
    pub retried_rate_limited: u64,
    pub unanswered: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    /// Deliveries over the time from the first send to the last delivery.
    pub deliveries_per_sec: f64,
    /// End-to-end: send time in the text to receipt on another socket.
    pub latency: Latency,
    /// Send to ack (chat) or to the sender's own echo (relay).
    pub ack_latency: Latency,
    /// Acked messages an open socket had not received when the drain ended.
    pub missing_at_drain_end: u64,
    /// Of those, how many arrived on the same socket afterwards (slow, not lost).
    pub late: u64,
    /// Acked messages an open socket never received live.
    pub lost: u64,
    /// Extra copies of a seq on one socket.
    pub duplicated: u64,
    /// Deliveries of seqs that were never acked, or to sockets not in the room.
    pub unexpected: u64,
    pub stray_frames: u64,
    /// Sockets the server ended during the run, by reason (e.g. `close 1013 too_slow`).
    pub ended_sockets: BTreeMap<String, u64>,
    /// Acked messages the ended sockets did not get before they ended.
    pub missed_by_ended_sockets: u64,
    /// Messages lost on open sockets, asked for again with `sync` on the same socket.
    pub lost_resync: Option<Resync>,
    /// Messages missed by ended sockets, asked for with `sync` on a new socket, as a client
    /// reconnecting after `1013 too_slow` would.
    pub ended_resync: Option<Resync>,
    pub log_check: Option<LogCheck>,
    pub memory: Option<Memory>,
    /// CPU over sending and draining.
    pub cpu: Cpu,
    /// Machine load averages when sending began (other work on the shared cores shows here).
    pub loadavg_at_start: Option<String>,
    #[serde(skip)]
    pub last_answer: Option<Instant>,
    #[serde(skip)]
    pub send_started: Option<Instant>,
    /// Acked seqs by room number, for a history check the caller runs later.
    #[serde(skip)]
    pub acked_by_room: HashMap<usize, Vec<u64>>,
}

/// Missing messages looked for with `sync` after the run, on up to `RESYNC_SOCKETS` sockets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resync {
    pub sockets_checked: usize,
    pub sockets_failed: usize,
    pub missing_checked: u64,
    pub recovered: u64,
}

impl Resync {
    pub fn cell(&self) -> String {
        format!(
            "{} of {} recovered ({} sockets{})",
            self.recovered,
            self.missing_checked,
            self.sockets_checked,
            if self.sockets_failed > 0 { format!(", {} failed", self.sockets_failed) } else { String::new() }
        )
    }
}

impl LoadReport {
    /// No acked message was lost or duplicated: open sockets got every one exactly once, ended
    /// sockets could get what they missed by syncing, and the history holds each once.
    pub fn clean(&self) -> bool {
        let ended_ok = self.missed_by_ended_sockets == 0
            || self.ended_resync.as_ref().is_some_and(|r| r.recovered == r.missing_checked && r.sockets_failed == 0);
        self.lost == 0 && self.duplicated == 0 && self.log_check.as_ref().is_none_or(LogCheck::clean) && ended_ok
    }
}

/// Opens the plan's sockets `concurrency` at a time, retrying refused handshakes a few times.
/// Returns the running sockets by index, the number of failures and the first failure.
pub async fn open_sockets(
    plan: &Plan,
    shared: &Arc<Shared>,
    routes: &Routes,
    stop: &watch::Receiver<bool>,
) -> (Vec<Option<Conn>>, usize, Option<String>) {
    let bar = util::bar(plan.progress, plan.sockets.len() as u64, "connect");
    let start = tokio::time::Instant::now();
    let opened: Vec<(usize, anyhow::Result<Conn>)> = futures::stream::iter(plan.sockets.iter().enumerate())
        .map(|(i, spec)| {
            let bar = bar.clone();
            async move {
                if plan.connect_rate > 0.0 {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / plan.connect_rate)).await;
                }
                let mut last = Err(anyhow::anyhow!("not tried"));
                for attempt in 0..4u64 {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                    }
                    let url = spec.url.as_deref().unwrap_or(&plan.url);
                    last = conn::connect(url, spec.token.as_deref(), plan.kind).await;
                    if last.is_ok() {
                        break;
                    }
                }
                bar.inc(1);
                (i, last.map(|ws| conn::spawn(i, ws, shared.clone(), routes.clone(), stop.clone())))
            }
        })
        .buffer_unordered(plan.connect_concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let mut conns: Vec<Option<Conn>> = (0..plan.sockets.len()).map(|_| None).collect();
    let (mut failures, mut first_error) = (0, None);
    for (i, result) in opened {
        match result {
            Ok(conn) => conns[i] = Some(conn),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    (conns, failures, first_error)
}

/// Waits until no frame has arrived for `quiet` (e.g. presence storms after connecting), at most `max`.
pub async fn settle(shared: &Shared, quiet: Duration, max: Duration) {
    let deadline = Instant::now() + max;
    let mut last = shared.frames.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = shared.frames.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

struct SendConfig {
    /// Makes this run's `client_msg_id`s new to the server.
    nonce: Arc<str>,
    rate: f64,
    window: usize,
    deadline: Instant,
    quota: u64,
    size: usize,
    retry_rate_limited: bool,
    pace_on_echo: bool,
    /// Delay before the first send, so senders at the same rate take turns instead of all
    /// sending at the same instants.
    phase: Duration,
    room_id: Option<String>,
    kind: Kind,
}

/// One sender: sends on schedule (or as answers free the window) until its deadline or quota,
/// then waits for the answers still due.
async fn run_sender(
    index: usize,
    out: mpsc::Sender<Outgoing>,
    mut answers: mpsc::UnboundedReceiver<Answer>,
    cfg: SendConfig,
    shared: Arc<Shared>,
) -> SenderResult {
    let mut result = SenderResult { ack_latency: Some(histogram()), ..SenderResult::default() };
    let mut inflight: std::collections::VecDeque<(u64, Instant)> = std::collections::VecDeque::new();
    // Sent and not yet seen back through the fan-out, when pacing on echoes.
    let mut unechoed: std::collections::VecDeque<(u64, Instant)> = std::collections::VecDeque::new();
    let mut retry: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    let mut next_n: u64 = 1;
    let max_inflight = if cfg.rate > 0.0 { OPEN_LOOP_INFLIGHT } else { cfg.window.max(1) };
    let interval = (cfg.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / cfg.rate));
    let mut next_at = tokio::time::Instant::now() + cfg.phase;
    let mut paused_until = tokio::time::Instant::now();
    let give_up = cfg.deadline + ANSWER_TIMEOUT;
    loop {
        let now = Instant::now();
        while inflight.front().is_some_and(|(_, at)| now.duration_since(*at) > ANSWER_TIMEOUT) {
            inflight.pop_front();
            result.unanswered += 1;
        }
        while unechoed.front().is_some_and(|(_, at)| now.duration_since(*at) > ANSWER_TIMEOUT) {
            unechoed.pop_front();
        }
        let has_work = now < cfg.deadline && (next_n <= cfg.quota || !retry.is_empty());
        if !has_work && inflight.is_empty() {
            break;
        }
        if now >= give_up {
            result.unanswered += inflight.len() as u64;
            break;
        }
        let may_send =
            has_work && inflight.len() < max_inflight && (!cfg.pace_on_echo || unechoed.len() < cfg.window.max(1));
        let wake = next_at.max(paused_until);
        tokio::select! {
            answer = answers.recv() => {
                let Some(answer) = answer else { break };
                result.last_answer = Some(Instant::now());
                match answer {
                    Answer::Echoed { n } => {
                        if let Some(pos) = unechoed.iter().position(|(m, _)| *m == n) {
                            unechoed.remove(pos);
                        }
                    }
                    Answer::Acked { n, room, seq } => {
                        if let Some(pos) = inflight.iter().position(|(m, _)| *m == n) {
                            if let (Some((_, at)), Some(h)) = (inflight.remove(pos), result.ack_latency.as_mut()) {
                                h.saturating_record(micros(at.elapsed()));
                            }
                        }
                        result.acked.push((room, seq));
                    }
                    Answer::Refused { n, code } => {
                        let pos = match n {
                            Some(n) => inflight.iter().position(|(m, _)| *m == n),
                            None if inflight.is_empty() => None,
                            None => Some(0),
                        };
                        let refused = pos.and_then(|p| inflight.remove(p)).map(|(m, _)| m);
                        if let Some(p) = refused.and_then(|m| unechoed.iter().position(|(e, _)| *e == m)) {
                            unechoed.remove(p);
                        }
                        if code == "rate_limited" && cfg.retry_rate_limited {
                            if let Some(m) = refused {
                                retry.push_back(m);
                                result.retried += 1;
                            }
                            paused_until = tokio::time::Instant::now() + Duration::from_millis(100);
                        } else {
                            *result.refused.entry(code).or_default() += 1;
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(wake), if may_send => {
                let n = match retry.pop_front() {
                    Some(n) => n,
                    None => {
                        next_n += 1;
                        next_n - 1
                    }
                };
                let text = payload(cfg.size, index, n);
                let frame = match (&cfg.kind, &cfg.room_id) {
                    (Kind::Chat, Some(room_id)) => serde_json::json!({
                        "type": "send", "room_id": room_id, "client_msg_id": client_msg_id(&cfg.nonce, index, n), "text": text,
                    })
                    .to_string(),
                    _ => text,
                };
                if out.send(Outgoing { sender: index, frame }).await.is_err() {
                    break;
                }
                inflight.push_back((n, Instant::now()));
                if cfg.pace_on_echo {
                    unechoed.push_back((n, Instant::now()));
                }
                result.sent += 1;
                shared.sent.fetch_add(1, Ordering::Relaxed);
                if let Some(interval) = interval {
                    next_at += interval;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    result.unanswered += inflight.len() as u64;
    result
}

/// Per socket, the acked seqs of each followed stream it did not get.
type Missing = Vec<(usize, HashMap<usize, HashSet<u64>>)>;

/// A socket's view at the end: what it saw, and the socket itself while it is still open.
type SeenSockets = Vec<Option<(Seen, Option<Ws>)>>;

/// The sockets, open and settled, and what opening them cost.
struct Connected {
    conns: Vec<Option<Conn>>,
    opened: usize,
    connect_failures: usize,
    first_connect_error: Option<String>,
    connect_seconds: f64,
    memory: Option<Memory>,
    frames_before_send: u64,
    ended_before_send: usize,
}

/// What the senders did, and when.
struct Sending {
    results: Vec<(usize, SenderResult)>,
    send_started: Instant,
    started_unix_nanos: u64,
    loadavg_at_start: Option<String>,
    /// CPU seconds of the server and of the bench when sending began.
    cpu_before: (Option<f64>, Option<f64>),
    send_seconds: f64,
}

/// Every socket checked against the acks of the streams it follows.
#[derive(Default)]
struct Verified {
    duplicated: u64,
    unexpected: u64,
    stray: u64,
    ended: BTreeMap<String, u64>,
    live_missing: Missing,
    ended_missing: Missing,
}

/// The senders' results summed.
struct Totals {
    sent: u64,
    acked: u64,
    retried: u64,
    unanswered: u64,
    refused: BTreeMap<String, u64>,
    ack_latency: hdrhistogram::Histogram<u64>,
    last_answer: Option<Instant>,
}

/// Runs the plan: connect, send, drain, verify, look for what went missing, then report.
///
/// # Errors
/// Only when nothing could be measured (no socket opened).
pub async fn run(plan: Plan) -> anyhow::Result<LoadReport> {
    let rooms: HashMap<String, usize> = plan.room_ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
    let shared = Arc::new(Shared::new(plan.kind, rooms));
    let (answer_txs, answer_rxs): (Vec<_>, Vec<_>) = plan.senders.iter().map(|_| mpsc::unbounded_channel()).unzip();
    let routes: Routes = Arc::new(answer_txs);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut connected = connect(&plan, &shared, &routes, &stop_rx).await?;

    let bar = util::bar(plan.progress, expected_sends(&plan), "send");
    let sending = send(&plan, &shared, &connected.conns, answer_rxs);
    let ticker = {
        let (bar, shared) = (bar.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(shared.sent.load(Ordering::Relaxed));
                bar.set_message(format!("{} delivered", shared.deliveries.load(Ordering::Relaxed)));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let sending = sending.await;

    let expected_by_stream = expected_by_stream(&plan, &sending.results);
    let followers = |stream: usize| {
        plan.sockets.iter().zip(&connected.conns).filter(|(s, c)| c.is_some() && s.follows.contains(&stream)).count()
            as u64
    };
    let expected_deliveries: u64 = expected_by_stream.iter().map(|(s, seqs)| seqs.len() as u64 * followers(*s)).sum();

    bar.set_prefix("drain");
    drain(&shared, plan.drain, expected_deliveries).await;
    ticker.abort();
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    let used = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
    let cpu = Cpu {
        wall_seconds: sending.send_started.elapsed().as_secs_f64(),
        server_seconds: used(sending.cpu_before.0, plan.server_pid.and_then(|p| cpu_seconds(Some(p)))),
        bench_seconds: used(sending.cpu_before.1, cpu_seconds(None)),
    };
    let mut seen = stop_sockets(&mut connected.conns).await;

    let mut verified = verify(&plan, &seen, &expected_by_stream);
    let missing_at_drain_end: u64 = verified.live_missing.iter().map(|(_, m)| count(m)).sum();
    let late = catch_up(&plan, &shared, &mut seen, &mut verified).await;
    let lost: u64 = verified.live_missing.iter().map(|(_, m)| count(m)).sum();
    let missed_by_ended: u64 = verified.ended_missing.iter().map(|(_, m)| count(m)).sum();
    let lost_resync = resync_lost(&plan, &mut seen, std::mem::take(&mut verified.live_missing)).await;
    drop(seen);
    let ended_resync = resync_ended(&plan, std::mem::take(&mut verified.ended_missing)).await;
    let log_check = match (&plan.log_check, plan.kind) {
        (Some(api), Kind::Chat) => {
            Some(check_log(api, &plan.room_ids, &plan.room_tokens, &expected_by_stream, plan.progress).await)
        }
        _ => None,
    };

    let mut totals = tally(&sending.results);
    if plan.kind == Kind::Relay {
        // The relay has no acks: a message counts as accepted once written.
        totals.acked = totals.sent;
    }
    let send_seconds = sending.send_seconds;
    let deliveries = shared.deliveries.load(Ordering::Relaxed);
    let delivery_span =
        shared.last_delivery.load(Ordering::Relaxed).saturating_sub(sending.started_unix_nanos) as f64 / 1e9;
    Ok(LoadReport {
        target: plan.target.to_owned(),
        sockets: plan.sockets.len(),
        sockets_opened: connected.opened,
        connect_failures: connected.connect_failures,
        first_connect_error: connected.first_connect_error,
        connect_seconds: connected.connect_seconds,
        frames_before_send: connected.frames_before_send,
        ended_before_send: connected.ended_before_send,
        rooms: plan.room_ids.len(),
        senders: plan.senders.len(),
        rate_per_sender: plan.rate,
        window: (plan.rate <= 0.0).then_some(plan.window),
        paced_on: (plan.rate <= 0.0).then_some(if plan.pace_on_echo || plan.kind == Kind::Relay {
            "echo"
        } else {
            "ack"
        }),
        message_bytes: plan.size,
        send_seconds,
        sent: totals.sent,
        acked: totals.acked,
        acked_per_sec: if send_seconds > 0.0 { totals.acked as f64 / send_seconds } else { 0.0 },
        refused: totals.refused,
        retried_rate_limited: totals.retried,
        unanswered: totals.unanswered,
        deliveries,
        expected_deliveries,
        deliveries_per_sec: if delivery_span > 0.0 { deliveries as f64 / delivery_span } else { 0.0 },
        latency: Latency::of(&shared.latency()),
        ack_latency: Latency::of(&totals.ack_latency),
        missing_at_drain_end,
        late,
        lost,
        duplicated: verified.duplicated,
        unexpected: verified.unexpected,
        stray_frames: verified.stray,
        ended_sockets: verified.ended,
        missed_by_ended_sockets: missed_by_ended,
        lost_resync,
        ended_resync,
        log_check,
        memory: connected.memory,
        cpu,
        loadavg_at_start: sending.loadavg_at_start,
        last_answer: totals.last_answer,
        send_started: Some(sending.send_started),
        acked_by_room: if plan.kind == Kind::Chat { expected_by_stream } else { HashMap::new() },
    })
}

fn count(missing: &HashMap<usize, HashSet<u64>>) -> u64 {
    missing.values().map(|s| s.len() as u64).sum()
}

/// Opens the sockets and waits for the frames of connecting (ready, presence) to stop.
async fn connect(
    plan: &Plan,
    shared: &Arc<Shared>,
    routes: &Routes,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Connected> {
    let rss_before = plan.server_pid.and_then(rss_kib);
    let connect_started = Instant::now();
    let (conns, connect_failures, first_connect_error) = open_sockets(plan, shared, routes, stop).await;
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let opened = conns.iter().filter(|c| c.is_some()).count();
    anyhow::ensure!(opened > 0, "no socket opened: {}", first_connect_error.unwrap_or_default());
    settle(shared, Duration::from_secs(1), Duration::from_secs(60)).await;
    let rss_after = plan.server_pid.and_then(rss_kib);
    let memory = plan.server_pid.and_then(|pid| Memory::between(pid, rss_before, rss_after, opened));
    let frames_before_send = shared.frames.load(Ordering::Relaxed);
    let ended_before_send = conns.iter().flatten().filter(|c| c.task.is_finished()).count();
    Ok(Connected {
        conns,
        opened,
        connect_failures,
        first_connect_error,
        connect_seconds,
        memory,
        frames_before_send,
        ended_before_send,
    })
}

/// How many sends the whole run should make, for the progress bar.
fn expected_sends(plan: &Plan) -> u64 {
    let quota_total = plan.messages.unwrap_or(u64::MAX);
    if plan.rate > 0.0 {
        ((plan.rate * plan.duration.as_secs_f64()) as u64).saturating_mul(plan.senders.len() as u64).min(quota_total)
    } else {
        quota_total.min(1_000_000_000)
    }
}

/// Starts every sender now, and returns a future that ends when they have all finished.
fn send(
    plan: &Plan,
    shared: &Arc<Shared>,
    conns: &[Option<Conn>],
    answer_rxs: Vec<mpsc::UnboundedReceiver<Answer>>,
) -> impl std::future::Future<Output = Sending> {
    let senders = plan.senders.len() as u64;
    let quota_total = plan.messages.unwrap_or(u64::MAX);
    let send_started = Instant::now();
    let started_unix_nanos = unix_nanos();
    let loadavg_at_start = util::loadavg();
    let cpu_before = (plan.server_pid.and_then(|p| cpu_seconds(Some(p))), cpu_seconds(None));
    let deadline = send_started + plan.duration;
    let nonce: Arc<str> = format!("{:08x}", rand::random::<u32>()).into();
    let mut handles = Vec::new();
    for ((index, spec), answers) in plan.senders.iter().enumerate().zip(answer_rxs) {
        let Some(Some(conn)) = conns.get(spec.socket) else { continue };
        let quota = quota_total / senders + u64::from((index as u64) < quota_total % senders);
        let cfg = SendConfig {
            nonce: nonce.clone(),
            rate: plan.rate,
            window: plan.window,
            deadline,
            quota,
            size: plan.size,
            retry_rate_limited: plan.retry_rate_limited,
            pace_on_echo: plan.pace_on_echo && plan.rate <= 0.0 && plan.kind == Kind::Chat,
            phase: if plan.rate > 0.0 {
                Duration::from_secs_f64(index as f64 / (plan.rate * senders as f64))
            } else {
                Duration::ZERO
            },
            room_id: plan.room_ids.get(spec.room).cloned(),
            kind: plan.kind,
        };
        handles.push((index, tokio::spawn(run_sender(index, conn.out.clone(), answers, cfg, shared.clone()))));
    }
    async move {
        let mut results = Vec::new();
        for (index, handle) in handles {
            results.push((index, handle.await.unwrap_or_default()));
        }
        let send_seconds = send_started.elapsed().as_secs_f64();
        Sending { results, send_started, started_unix_nanos, loadavg_at_start, cpu_before, send_seconds }
    }
}

/// Expected deliveries: every acked (chat) or sent (relay) message, by stream, ascending.
fn expected_by_stream(plan: &Plan, results: &[(usize, SenderResult)]) -> HashMap<usize, Vec<u64>> {
    let mut expected: HashMap<usize, Vec<u64>> = HashMap::new();
    for (sender, r) in results {
        match plan.kind {
            Kind::Chat => {
                for (acked_room, seq) in &r.acked {
                    expected.entry(*acked_room).or_default().push(*seq);
                }
            }
            Kind::Relay => expected.entry(*sender).or_default().extend(1..=r.sent),
        }
    }
    for seqs in expected.values_mut() {
        seqs.sort_unstable();
    }
    expected
}

/// Waits until everything expected arrived, nothing arrived for 3 s, or `max` is up.
async fn drain(shared: &Shared, max: Duration, expected_deliveries: u64) {
    let drain_deadline = Instant::now() + max;
    let mut last = shared.deliveries.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while Instant::now() < drain_deadline {
        let now = shared.deliveries.load(Ordering::Relaxed);
        if now >= expected_deliveries {
            break;
        }
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops every socket's task and takes back what it saw, and the socket if still open.
async fn stop_sockets(conns: &mut [Option<Conn>]) -> SeenSockets {
    let mut seen: SeenSockets = Vec::with_capacity(conns.len());
    for conn in conns {
        match conn.take() {
            Some(c) => {
                drop(c.out);
                seen.push(c.task.await.ok());
            }
            None => seen.push(None),
        }
    }
    seen
}

/// Checks every socket against the acks of the streams it follows.
fn verify(plan: &Plan, seen: &SeenSockets, expected_by_stream: &HashMap<usize, Vec<u64>>) -> Verified {
    let acked_sets: HashMap<usize, HashSet<u64>> =
        expected_by_stream.iter().map(|(s, seqs)| (*s, seqs.iter().copied().collect())).collect();
    let mut v = Verified::default();
    for (i, entry) in seen.iter().enumerate() {
        let Some((s, _)) = entry else { continue };
        v.stray += s.stray;
        if let Some(reason) = &s.ended {
            *v.ended.entry(reason.clone()).or_default() += 1;
        }
        let follows = &plan.sockets[i].follows;
        let mut socket_missing: HashMap<usize, HashSet<u64>> = HashMap::new();
        for &stream in follows {
            let counts = s.counts.get(&stream).map_or(&[][..], Vec::as_slice);
            let mut missing = HashSet::new();
            for &seq in expected_by_stream.get(&stream).map_or(&[][..], Vec::as_slice) {
                match counts.get(usize::try_from(seq).unwrap_or(usize::MAX)).copied().unwrap_or(0) {
                    0 => {
                        missing.insert(seq);
                    }
                    c => v.duplicated += u64::from(c - 1),
                }
            }
            let acked = acked_sets.get(&stream);
            for (seq, &c) in counts.iter().enumerate() {
                if c > 0 && !acked.is_some_and(|a| a.contains(&(seq as u64))) {
                    v.unexpected += 1;
                    v.duplicated += u64::from(c - 1);
                }
            }
            if !missing.is_empty() {
                socket_missing.insert(stream, missing);
            }
        }
        for (stream, counts) in &s.counts {
            if !follows.contains(stream) {
                v.unexpected += counts.iter().filter(|&&c| c > 0).count() as u64;
            }
        }
        if socket_missing.is_empty() {
            continue;
        }
        if s.ended.is_some() {
            v.ended_missing.push((i, socket_missing));
        } else {
            v.live_missing.push((i, socket_missing));
        }
    }
    v
}

/// Still in flight when the drain ended? Reads on until each socket goes quiet or ends, and
/// returns how many missing messages arrived late. Sockets that end meanwhile move to the ended.
async fn catch_up(plan: &Plan, shared: &Shared, seen: &mut SeenSockets, v: &mut Verified) -> u64 {
    let mut late = 0;
    if v.live_missing.is_empty() {
        return late;
    }
    let bar = util::bar(plan.progress, v.live_missing.len() as u64, "catch up");
    let jobs: Vec<_> = v
        .live_missing
        .drain(..)
        .filter_map(|(i, missing)| Some((i, missing, seen.get_mut(i)?.as_mut()?.1.take()?)))
        .collect();
    let rooms = &shared.rooms;
    let done: Vec<_> = futures::stream::iter(jobs)
        .map(|(i, mut missing, mut ws)| {
            let bar = bar.clone();
            async move {
                let outcome = conn::catch_up(&mut ws, plan.kind, rooms, &mut missing).await;
                bar.inc(1);
                (i, missing, ws, outcome)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    bar.finish_and_clear();
    for (i, missing, ws, outcome) in done {
        match outcome {
            Ok(n) => {
                late += n;
                if let Some(Some(entry)) = seen.get_mut(i) {
                    entry.1 = Some(ws);
                }
                if count(&missing) > 0 {
                    v.live_missing.push((i, missing));
                }
            }
            Err(reason) => {
                *v.ended.entry(format!("{reason} (after the drain)")).or_default() += 1;
                v.ended_missing.push((i, missing));
            }
        }
    }
    late
}

/// Lost on a live socket: is it in the log (the live delivery dropped it) or gone?
async fn resync_lost(plan: &Plan, seen: &mut SeenSockets, live_missing: Missing) -> Option<Resync> {
    if plan.kind != Kind::Chat || live_missing.is_empty() {
        return None;
    }
    let mut r = Resync::default();
    for (i, missing) in live_missing.into_iter().take(RESYNC_SOCKETS) {
        let Some(Some((_, Some(ws)))) = seen.get_mut(i) else { continue };
        r.sockets_checked += 1;
        for (stream, seqs) in missing {
            let Some(room_id) = plan.room_ids.get(stream) else { continue };
            let after = seqs.iter().min().copied().unwrap_or(1).saturating_sub(1);
            r.missing_checked += seqs.len() as u64;
            match conn::resync(ws, room_id, after, &seqs).await {
                Ok(found) => r.recovered += found.len() as u64,
                Err(_) => r.sockets_failed += 1,
            }
        }
    }
    Some(r)
}

/// Missed by a socket the server ended: a client reconnects and syncs; can it get them all?
async fn resync_ended(plan: &Plan, ended_missing: Missing) -> Option<Resync> {
    if plan.kind != Kind::Chat || ended_missing.is_empty() {
        return None;
    }
    let bar = util::bar(plan.progress, ended_missing.len().min(RESYNC_SOCKETS) as u64, "resync");
    let room_ids = plan.room_ids.as_slice();
    let checked: Vec<Resync> = futures::stream::iter(ended_missing.into_iter().take(RESYNC_SOCKETS))
        .map(|(i, missing)| {
            let bar = bar.clone();
            let token = plan.sockets.get(i).and_then(|s| s.token.clone());
            let url = plan.sockets.get(i).and_then(|s| s.url.as_deref()).unwrap_or(&plan.url);
            async move {
                let mut r = Resync { sockets_checked: 1, ..Resync::default() };
                match conn::connect(url, token.as_deref(), Kind::Chat).await {
                    Ok(mut ws) => {
                        for (stream, seqs) in missing {
                            let Some(room_id) = room_ids.get(stream) else { continue };
                            let after = seqs.iter().min().copied().unwrap_or(1).saturating_sub(1);
                            r.missing_checked += seqs.len() as u64;
                            match conn::resync(&mut ws, room_id, after, &seqs).await {
                                Ok(found) => r.recovered += found.len() as u64,
                                Err(_) => r.sockets_failed = 1,
                            }
                        }
                    }
                    Err(_) => {
                        r.sockets_failed = 1;
                        r.missing_checked = count(&missing);
                    }
                }
                bar.inc(1);
                r
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    bar.finish_and_clear();
    Some(checked.into_iter().fold(Resync::default(), |mut all, r| {
        all.sockets_checked += r.sockets_checked;
        all.sockets_failed += r.sockets_failed;
        all.missing_checked += r.missing_checked;
        all.recovered += r.recovered;
        all
    }))
}

/// Sums what the senders did.
fn tally(results: &[(usize, SenderResult)]) -> Totals {
    let mut t = Totals {
        sent: 0,
        acked: 0,
        retried: 0,
        unanswered: 0,
        refused: BTreeMap::new(),
        ack_latency: histogram(),
        last_answer: None,
    };
    for (_, r) in results {
        t.sent += r.sent;
        t.acked += r.acked.len() as u64;
        t.retried += r.retried;
        t.unanswered += r.unanswered;
        for (code, n) in &r.refused {
            *t.refused.entry(code.clone()).or_default() += n;
        }
        if let Some(h) = &r.ack_latency {
            let _ = t.ack_latency.add(h);
        }
        t.last_answer = t.last_answer.max(r.last_answer);
    }
    t
}

/// Pages every room's history forward from the start and compares it with the acks.
pub async fn check_log(
    api: &Api,
    room_ids: &[String],
    room_tokens: &[String],
    expected: &HashMap<usize, Vec<u64>>,
    progress: bool,
) -> LogCheck {
    let bar = util::bar(progress, room_ids.len() as u64, "log check");
    let per_room: Vec<LogCheck> = futures::stream::iter(room_ids.iter().zip(room_tokens).enumerate())
        .map(|(r, (room_id, token))| {
            let bar = bar.clone();
            async move {
                let acked = expected.get(&r).map_or(&[][..], Vec::as_slice);
                let found = read_history(api, token, room_id, acked.last().copied().unwrap_or(0)).await;
                bar.inc(1);
                let Some(items) = found else {
                    return LogCheck { rooms: 1, unreadable_rooms: 1, ..LogCheck::default() };
                };
                let mut seqs: HashMap<u64, u64> = HashMap::new();
                // The whole stamp, send time included: senders and numbers repeat across runs.
                let mut texts: HashMap<(u64, usize, u64), u64> = HashMap::new();
                for (seq, text) in &items {
                    *seqs.entry(*seq).or_default() += 1;
                    if let Some(stamp) = text.as_deref().and_then(util::parse_stamp) {
                        *texts.entry((stamp.sent_nanos, stamp.sender, stamp.n)).or_default() += 1;
                    }
                }
                let max = seqs.keys().max().copied().unwrap_or(0);
                LogCheck {
                    rooms: 1,
                    messages: items.len() as u64,
                    missing_acked: acked.iter().filter(|s| !seqs.contains_key(s)).count() as u64,
                    duplicate_seqs: seqs.values().map(|c| c - 1).sum(),
                    duplicate_texts: texts.values().map(|c| c - 1).sum(),
                    seq_gaps: max - seqs.len() as u64,
                    unreadable_rooms: 0,
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    bar.finish_and_clear();
    per_room.into_iter().fold(LogCheck::default(), |mut all, room| {
        all.rooms += room.rooms;
        all.messages += room.messages;
        all.missing_acked += room.missing_acked;
        all.duplicate_seqs += room.duplicate_seqs;
        all.duplicate_texts += room.duplicate_texts;
        all.seq_gaps += room.seq_gaps;
        all.unreadable_rooms += room.unreadable_rooms;
        all
    })
}

/// Every message of a room, (seq, text), paging forward 100 at a time; `None` if a page fails.
pub async fn read_history(api: &Api, token: &str, room_id: &str, max_seq: u64) -> Option<Vec<(u64, Option<String>)>> {
    let mut items = Vec::new();
    let mut after = 0u64;
    // Bounded: enough pages for every acked message, plus slack for unacked ones.
    for _ in 0..(max_seq / 100 + 20) {
        let (status, page) = api.history(token, room_id, &format!("?after={after}&limit=100")).await.ok()?;
        if !status.is_success() {
            return None;
        }
        let page_items = page["items"].as_array()?;
        for item in page_items {
            let seq = item["seq"].as_u64()?;
            items.push((seq, item["text"].as_str().map(str::to_owned)));
            after = after.max(seq);
        }
        if page["has_more"] != true || page_items.is_empty() {
            return Some(items);
        }
    }
    None
}
