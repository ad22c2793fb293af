//! The worker's loops: archive batches from the message log, and purge on a cron schedule.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use adapter_http::Metrics;
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

/// Archives until `stop` turns true; each pass drains what is queued, in batches.
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
            match archiver.archive_batch(&config.consumer, config.batch).await {
                Ok(report) => {
                    metrics.add_archived(report.inserted);
                    if report.claimed < config.batch {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = ?e, "archive batch failed; it stays queued and is retried");
                    break;
                }
            }
        }
        match archiver.lag().await {
            Ok(lag) => metrics.set_archive_lag(lag.to_std().unwrap_or_default()),
            Err(e) => tracing::warn!(error = ?e, "could not read the archive lag"),
        }
    }
}

/// Purges at every time the cron expression names, until `stop` turns true.
pub async fn purge_loop(archiver: Archiver, cron: String, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
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
    }
}
