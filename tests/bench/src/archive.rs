//! The burst-archive scenario: messages sent as fast as the server accepts them, then the time
//! until the archive holds every one (`chat_messages_archived_total` on the worker), and a read of
//! every room's history from the start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::api::Api;
use super::args::Args;
use super::load::{self, check_log, LoadReport};
use super::report::Table;
use super::traffic::{fill_plan, layout_for, populate};
use super::util;

/// When it was read, `chat_messages_archived_total`, `chat_archive_lag_seconds`.
type Sample = (Instant, f64, Option<f64>);

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    pub messages_asked: u64,
    pub accepted: u64,
    pub send_seconds: f64,
    pub accepted_per_sec: f64,
    /// `chat_messages_archived_total` before the burst and when the wait ended.
    pub archived_before: f64,
    pub archived_after: f64,
    /// From the first send until the counter had grown by every accepted message.
    pub archived_all_after_first_send_s: Option<f64>,
    /// From the last ack until then: how far the archive trails the burst.
    pub archived_all_after_last_ack_s: Option<f64>,
    /// Largest `chat_archive_lag_seconds` seen while polling.
    pub max_archive_lag_s: Option<f64>,
    pub burst: LoadReport,
}

/// # Errors
/// When setting up fails, no socket opens, or `/metrics` has no archive counter.
pub async fn burst_archive(args: &Args) -> anyhow::Result<(ArchiveReport, f64)> {
    let api = Api::new(&args.url, &args.metrics_url)?;
    let (users, layout) = layout_for(args);
    let pop = populate(&api, args, users, layout).await?;
    let archived_before = api.metric("chat_messages_archived_total").await?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}/metrics has no chat_messages_archived_total: point --metrics-url at the worker",
            args.metrics_url
        )
    })?;

    // Poll the counter throughout, so the moment it reaches the target is known to 100 ms.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let (target_tx, mut target_rx) = watch::channel::<Option<f64>>(None);
    let poller = {
        let (api, samples) = (api.clone(), samples.clone());
        let limit = args.duration + args.archive_timeout + Duration::from_secs(60);
        tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < limit {
                if let Ok(Some(value)) = api.metric("chat_messages_archived_total").await {
                    let lag = api.metric("chat_archive_lag_seconds").await.ok().flatten();
                    if let Ok(mut s) = samples.lock() {
                        s.push((Instant::now(), value, lag));
                    }
                    if target_rx.borrow_and_update().is_some_and(|t| value >= t) {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let messages = args.messages.unwrap_or(100_000);
    let mut plan = fill_plan(args, &pop, 1, args.senders, messages, &api);
    plan.log_check = None;
    let mut burst = load::run(plan).await?;
    let target = archived_before + burst.acked as f64;
    let _ = target_tx.send(Some(target));
    let bar = util::bar(args.progress, burst.acked, "archive");
    let wait_until = Instant::now() + args.archive_timeout;
    while !poller.is_finished() && Instant::now() < wait_until {
        if let Some(last) = samples.lock().ok().and_then(|s| s.last().map(|l| l.1)) {
            bar.set_position((last - archived_before).max(0.0) as u64);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    poller.abort();
    bar.finish_and_clear();

    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let done_at = samples.iter().find(|(_, v, _)| *v >= target).map(|(at, _, _)| *at);
    let since = |from: Option<Instant>| Some(done_at?.saturating_duration_since(from?).as_secs_f64());
    let archived_after = samples.last().map_or(archived_before, |s| s.1);
    let max_archive_lag_s = samples.iter().filter_map(|s| s.2).reduce(f64::max);

    if args.log_check {
        let check = check_log(&api, &pop.room_ids, &pop.room_tokens(), &burst.acked_by_room, args.progress).await;
        burst.log_check = Some(check);
    }
    Ok((
        ArchiveReport {
            messages_asked: messages,
            accepted: burst.acked,
            send_seconds: burst.send_seconds,
            accepted_per_sec: burst.acked_per_sec,
            archived_before,
            archived_after,
            archived_all_after_first_send_s: since(burst.send_started),
            archived_all_after_last_ack_s: since(burst.last_answer),
            max_archive_lag_s,
            burst,
        },
        pop.setup_seconds,
    ))
}

pub fn archive_table(r: &ArchiveReport) -> Table {
    let secs = |s: Option<f64>| s.map_or_else(|| "not within the timeout".to_owned(), |s| format!("{s:.1} s"));
    let mut t = Table::new(vec!["metric".to_owned(), "chat".to_owned()]);
    t.row("messages asked / accepted", vec![format!("{} / {}", r.messages_asked, r.accepted)]);
    t.row("send time", vec![format!("{:.1} s ({:.0} msg/s accepted)", r.send_seconds, r.accepted_per_sec)]);
    t.row("archived counter before / after", vec![format!("{:.0} / {:.0}", r.archived_before, r.archived_after)]);
    t.row("all archived, from first send", vec![secs(r.archived_all_after_first_send_s)]);
    t.row("all archived, after last ack", vec![secs(r.archived_all_after_last_ack_s)]);
    t.row(
        "max chat_archive_lag_seconds",
        vec![r.max_archive_lag_s.map_or_else(|| "-".to_owned(), |l| format!("{l:.1} s"))],
    );
    t
}
