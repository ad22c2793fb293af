//! The worker's loops: archive batches from the message log (or count what the embedded log committed), and purge on a cron schedule.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use application::accounts::Accounts;
use application::archive::{ArchiveReport, Claimed};
use application::metrics::Metrics;
use application::Archiver;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in the archive queue, so its unacknowledged batches come back to it.
    pub consumer: String,
    pub batch: usize,
    pub interval: Duration,
    pub purge_cron: String,
}

/// The longest pause between retries of a batch the archive refused.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Archives until `stop` turns true; each pass drains what is queued, in batches. A batch the
/// archive refuses is kept and retried with backoff, not claimed again: every claim counts
/// towards dead-lettering, and an archive outage must not dead-letter healthy messages.
pub async fn archive_loop(
    archiver: Archiver,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        loop {
            let claimed = match archiver.claim(&config.consumer, config.batch).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::error!(error = ?e, "could not claim messages to archive");
                    break;
                }
            };
            let Some(report) = store_with_retries(&archiver, &claimed, config.interval, &mut stop).await else {
                return;
            };
            metrics.add_archived(report.inserted);
            if report.claimed < config.batch {
                break;
            }
        }
        match archiver.lag().await {
            Ok(lag) => metrics.set_archive_lag(lag.to_std().unwrap_or_default()),
            Err(e) => tracing::warn!(error = ?e, "could not read the archive lag"),
        }
        match archiver.dead_lettered().await {
            Ok(n) => metrics.set_dead_letters(n),
            Err(e) => tracing::warn!(error = ?e, "could not count dead letters"),
        }
    }
}

/// Reports what the embedded log committed as archived, every `interval` until `stop` turns true:
/// that log writes each message into the archive as it commits it, so there is nothing to move.
pub async fn count_committed(
    log: adapter_sqlite::SqliteMessageLog,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut reported = 0;
    loop {
        let committed = log.committed();
        metrics.add_archived(committed - reported);
        reported = committed;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Stores `claimed`, retrying with doubling pauses; `None` when told to stop first.
async fn store_with_retries(
    archiver: &Archiver,
    claimed: &Claimed,
    first_pause: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Option<ArchiveReport> {
    let mut pause = first_pause;
    loop {
        match archiver.store(claimed).await {
            Ok(report) => return Some(report),
            Err(e) => {
                tracing::error!(error = ?e, messages = claimed.len(), retry_in = ?pause, "archive write failed; the batch stays queued and is retried")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return None,
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

/// Purges at every time the cron expression names, until `stop` turns true: expired messages and
/// files, then expired refresh tokens and session revocations.
pub async fn purge_loop(
    archiver: Archiver,
    accounts: Accounts,
    cron: String,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let schedule = match cron::Schedule::from_str(&cron) {
        Ok(schedule) => schedule,
        Err(e) => {
            tracing::error!(error = %e, cron, "invalid purge schedule; purging disabled");
            return;
        }
    };
    loop {
        let Some(next) = schedule.upcoming(chrono::Utc).next() else { return };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        match archiver.purge().await {
            Ok(report) => {
                metrics.add_purged(report.messages, report.files);
                tracing::info!(messages = report.messages, files = report.files, "purge finished");
            }
            Err(e) => tracing::error!(error = ?e, "purge failed; it runs again at the next scheduled time"),
        }
        match accounts.purge_expired_sessions().await {
            Ok(deleted) => tracing::info!(deleted, "expired refresh tokens and revocations purged"),
            Err(e) => {
                tracing::error!(error = ?e, "purging expired sessions failed; it runs again at the next scheduled time")
            }
        }
    }
}
