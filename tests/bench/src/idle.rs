//! The idle scenario: many authenticated sockets held open without traffic, and what they cost
//! the server in resident memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::api::Api;
use super::args::Args;
use super::conn::{Kind, Shared};
use super::load::{open_sockets, settle, Plan, SocketSpec};
use super::report::Table;
use super::traffic::{layout_for, populate};
use super::util::{self, rss_kib, Memory};

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub target: String,
    pub sockets: usize,
    pub sockets_opened: usize,
    pub connect_failures: usize,
    pub first_connect_error: Option<String>,
    pub connect_seconds: f64,
    pub hold_seconds: f64,
    /// Sockets still open when the hold ended.
    pub open_after_hold: usize,
    /// Sockets the server ended during the hold, by reason.
    pub ended_sockets: BTreeMap<String, u64>,
    /// RSS before opening and once every socket was open and quiet.
    pub memory: Option<Memory>,
    pub rss_end_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    /// `chat_live_sockets` from `/metrics` while held (chat).
    pub live_sockets_metric: Option<f64>,
}

fn idle_plan(
    target: &'static str,
    kind: Kind,
    url: &str,
    sockets: Vec<SocketSpec>,
    pid: Option<u32>,
    args: &Args,
) -> Plan {
    Plan {
        target,
        kind,
        url: url.to_owned(),
        sockets,
        room_ids: Vec::new(),
        room_tokens: Vec::new(),
        senders: Vec::new(),
        rate: 0.0,
        window: 1,
        duration: Duration::ZERO,
        messages: Some(0),
        size: args.size,
        retry_rate_limited: false,
        pace_on_echo: true,
        drain: Duration::ZERO,
        server_pid: pid,
        connect_concurrency: args.connect_concurrency,
        connect_rate: args.connect_rate,
        progress: args.progress,
        log_check: None,
    }
}

async fn hold(plan: Plan, hold_for: Duration, api: Option<&Api>) -> anyhow::Result<IdleReport> {
    let shared = Arc::new(Shared::new(plan.kind, std::collections::HashMap::new()));
    let routes = Arc::new(Vec::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let rss_before = plan.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let (conns, connect_failures, first_connect_error) = open_sockets(&plan, &shared, &routes, &stop_rx).await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let opened = conns.iter().flatten().count();
    anyhow::ensure!(opened > 0, "no socket opened: {}", first_connect_error.unwrap_or_default());
    settle(&shared, Duration::from_secs(1), Duration::from_secs(60)).await;
    let rss_after = plan.server_pid.and_then(rss_kib);
    let mut rss_peak = rss_after;
    let live_sockets_metric = match api {
        Some(api) => api.metric("chat_live_sockets").await.ok().flatten(),
        None => None,
    };

    let secs = hold_for.as_secs();
    let bar = util::bar(plan.progress, secs, "hold");
    let held = Instant::now();
    while held.elapsed() < hold_for {
        tokio::time::sleep(Duration::from_secs(1).min(hold_for.saturating_sub(held.elapsed()))).await;
        bar.set_position(held.elapsed().as_secs());
        if let Some(rss) = plan.server_pid.and_then(rss_kib) {
            rss_peak = rss_peak.max(Some(rss));
            bar.set_message(format!("server RSS {} MiB", rss / 1024));
        }
    }
    bar.finish_and_clear();
    let hold_seconds = held.elapsed().as_secs_f64();
    let rss_end = plan.server_pid.and_then(rss_kib);
    let _ = stop_tx.send(true);
    let mut ended_sockets: BTreeMap<String, u64> = BTreeMap::new();
    let mut open_after_hold = 0;
    for conn in conns.into_iter().flatten() {
        drop(conn.out);
        if let Ok((seen, ws)) = conn.task.await {
            if let Some(reason) = seen.ended {
                *ended_sockets.entry(reason).or_default() += 1;
            }
            if ws.is_some() {
                open_after_hold += 1;
            }
        }
    }
    Ok(IdleReport {
        target: plan.target.to_owned(),
        sockets: plan.sockets.len(),
        sockets_opened: opened,
        connect_failures,
        first_connect_error,
        connect_seconds,
        hold_seconds,
        open_after_hold,
        ended_sockets,
        memory: plan.server_pid.and_then(|pid| Memory::between(pid, rss_before, rss_after, opened)),
        rss_end_kib: rss_end,
        rss_peak_kib: rss_peak,
        live_sockets_metric,
    })
}

/// Users in rooms of `--members`, `--conns-per-user` sockets each, held `--hold` seconds; then
/// the same number of sockets on the relay when `--baseline` is given.
///
/// # Errors
/// When setting up fails or no socket opens.
pub async fn idle(args: &Args) -> anyhow::Result<(Vec<IdleReport>, f64)> {
    let api = Api::new(&args.url, &args.metrics_url)?;
    let (users, layout) = layout_for(args);
    let pop = populate(&api, args, users, layout).await?;
    let sockets = pop.sockets(args.conns_per_user);
    let total = sockets.len();
    let mut reports = vec![
        hold(idle_plan("chat", Kind::Chat, &args.ws, sockets, args.server_pid, args), args.hold, Some(&api)).await?,
    ];
    if let Some(url) = &args.baseline {
        let relay_sockets = (0..total).map(|_| SocketSpec { token: None, follows: Vec::new(), url: None }).collect();
        reports.push(
            hold(idle_plan("relay", Kind::Relay, url, relay_sockets, args.baseline_pid, args), args.hold, None).await?,
        );
    }
    Ok((reports, pop.setup_seconds))
}

pub fn idle_table(reports: &[IdleReport]) -> Table {
    let mut t =
        Table::new(std::iter::once("metric".to_owned()).chain(reports.iter().map(|r| r.target.clone())).collect());
    let col = |f: &dyn Fn(&IdleReport) -> String| reports.iter().map(f).collect::<Vec<_>>();
    t.row(
        "sockets open / asked",
        col(&|r| match &r.first_connect_error {
            Some(e) => format!("{} / {} (first failure: {e})", r.sockets_opened, r.sockets),
            None => format!("{} / {}", r.sockets_opened, r.sockets),
        }),
    );
    t.row(
        "connect time",
        col(&|r| {
            format!("{:.1} s ({:.0}/s)", r.connect_seconds, r.sockets_opened as f64 / r.connect_seconds.max(1e-9))
        }),
    );
    t.row("held", col(&|r| format!("{:.0} s", r.hold_seconds)));
    t.row("still open after hold", col(&|r| r.open_after_hold.to_string()));
    t.row(
        "ended by server",
        col(&|r| {
            if r.ended_sockets.is_empty() {
                "0".to_owned()
            } else {
                r.ended_sockets.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
            }
        }),
    );
    t.row("server RSS per socket", col(&|r| r.memory.as_ref().map_or_else(|| "-".to_owned(), Memory::cell)));
    t.row(
        "server RSS end / peak",
        col(&|r| match (r.rss_end_kib, r.rss_peak_kib) {
            (Some(end), Some(peak)) => format!("{} / {} MiB", end / 1024, peak / 1024),
            _ => "-".to_owned(),
        }),
    );
    t.row("chat_live_sockets", col(&|r| r.live_sockets_metric.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))));
    t
}
