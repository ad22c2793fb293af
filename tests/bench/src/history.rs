//! The history scenario: fill a room, then time `GET /rooms/{id}/messages` under concurrency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use super::api::Api;
use super::args::Args;
use super::load::{self, LoadReport};
use super::report::Table;
use super::traffic::{fill_plan, layout_for, populate};
use super::util::{self, histogram, micros, Latency};

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub messages_in_room: u64,
    /// The archive counter when the reads began: how much was archived (the rest is in the log).
    pub archived_before_reads: Option<f64>,
    pub requests: u64,
    pub concurrency: usize,
    pub failures: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub latency: Latency,
    /// Newest page, `before` a random seq, `after` a random seq: 50 messages each.
    pub queries: &'static str,
    pub fill: LoadReport,
}

/// # Errors
/// When setting up or filling fails.
pub async fn history(args: &Args) -> anyhow::Result<(HistoryReport, f64)> {
    let api = Api::new(&args.url, &args.metrics_url)?;
    let (users, layout) = layout_for(args);
    let pop = populate(&api, args, users, layout).await?;
    let messages = args.messages.unwrap_or(2000);
    let mut plan = fill_plan(args, &pop, args.senders, args.senders, messages, &api);
    plan.log_check = None;
    // Every socket follows the room, and the server closes a socket with 1013 once 256 frames
    // wait for it. A socket's task does not drain that queue while it handles one of its own
    // sends, so pipelining many sends from sockets of one busy room gets them closed: two in flight.
    plan.window = plan.window.min(2);
    let fill = load::run(plan).await?;
    let max_seq = fill.acked;
    // Let the archiver catch up, so reads span the archive as well as the hot log.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut archived = api.metric("chat_messages_archived_total").await.ok().flatten();
    while archived.is_some_and(|a| a < max_seq as f64) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        archived = api.metric("chat_messages_archived_total").await.ok().flatten();
    }

    let token = pop.users.first().map(|u| u.token.clone()).unwrap_or_default();
    let room_id = pop.room_ids.first().cloned().unwrap_or_default();
    let issued = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(histogram()));
    let bar = util::bar(args.progress, args.requests, "history");
    let started = Instant::now();
    let stop_at = started + args.duration;
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (api, token, room_id) = (api.clone(), token.clone(), room_id.clone());
            let (issued, failures, latency, bar) = (issued.clone(), failures.clone(), latency.clone(), bar.clone());
            let total = args.requests;
            tokio::spawn(async move {
                let mut local = histogram();
                while issued.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < stop_at {
                    let query = {
                        let mut rng = rand::thread_rng();
                        let seq = rng.gen_range(1..=max_seq.max(1));
                        match rng.gen_range(0..3) {
                            0 => "?limit=50".to_owned(),
                            1 => format!("?before={}&limit=50", seq + 1),
                            _ => format!("?after={}&limit=50", seq.saturating_sub(1)),
                        }
                    };
                    let t = Instant::now();
                    let ok = matches!(api.history(&token, &room_id, &query).await, Ok((s, _)) if s.is_success());
                    local.saturating_record(micros(t.elapsed()));
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    bar.inc(1);
                }
                if let Ok(mut all) = latency.lock() {
                    let _ = all.add(&local);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let hist = latency.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram());
    let requests = hist.len();
    Ok((
        HistoryReport {
            messages_in_room: max_seq,
            archived_before_reads: archived,
            requests,
            concurrency: args.concurrency,
            failures: failures.load(Ordering::Relaxed),
            seconds,
            requests_per_sec: requests as f64 / seconds.max(1e-9),
            latency: Latency::of(&hist),
            queries: "newest 50; 50 before a random seq; 50 after a random seq (in turn, at random)",
            fill,
        },
        pop.setup_seconds,
    ))
}

pub fn history_table(r: &HistoryReport) -> Table {
    let mut t = Table::new(vec!["metric".to_owned(), "chat".to_owned()]);
    t.row("messages in the room", vec![r.messages_in_room.to_string()]);
    t.row(
        "archived when reads began",
        vec![r.archived_before_reads.map_or_else(|| "-".to_owned(), |a| format!("{a:.0} (process total)"))],
    );
    t.row("requests / failures", vec![format!("{} / {}", r.requests, r.failures)]);
    t.row("concurrency", vec![r.concurrency.to_string()]);
    t.row("requests/s", vec![format!("{:.0}", r.requests_per_sec)]);
    t.row("latency p50/p95/p99/max ms", vec![r.latency.cell()]);
    t.row("queries", vec![r.queries.to_owned()]);
    t.row("fill: accepted msg/s", vec![format!("{:.0}", r.fill.acked_per_sec)]);
    t
}
