//! The logins scenario: a flood of sign-ups and logins, and what password hashing leaves in the
//! server's resident memory once it is over (issue 13, item 1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use serde::Serialize;

use super::api::Api;
use super::args::Args;
use super::report::Table;
use super::util::{self, histogram, mib_between, micros, rss_kib, Latency, PeakRss};

/// How often the server's RSS is read for the peak.
const SAMPLE_PERIOD: Duration = Duration::from_millis(100);

/// How long the server is left alone after the last answer before its RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

/// Tries per request, retries included, so a server that never stops refusing ends the run.
const TRIES: u32 = 30;

/// The longest `Retry-After` honoured. The login limiter answers 429 with the rest of its
/// 15-minute window, though the slot frees as soon as a login in flight ends.
const WAIT_MAX_SECS: u64 = 10;

/// What one phase (all sign-ups, or all logins) met.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub asked: usize,
    pub done: usize,
    /// `503 busy` answers, each retried after its `Retry-After`.
    pub busy_503: u64,
    /// `429 rate_limited` answers, each retried after its `Retry-After` (at most 10 s).
    pub rate_limited_429: u64,
    /// The longest `Retry-After` a 503 or 429 asked for, before the cap.
    pub retry_after_max_secs: Option<u64>,
    /// Requests given up: another status, a failure below HTTP, or still refused after 30 tries.
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub done_per_sec: f64,
    /// From the first try to the success, waits for `Retry-After` included.
    pub latency: Latency,
}

/// The server's RSS around the flood, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Serialize)]
pub struct FloodMemory {
    pub pid: u32,
    /// Before the first request: the idle baseline.
    pub baseline_kib: u64,
    /// The highest sample, read every 100 ms from the first request to the last answer.
    pub peak_kib: Option<u64>,
    /// 2 s after the last answer: what the flood left behind.
    pub end_kib: u64,
    pub end_minus_baseline_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginsReport {
    pub users: usize,
    pub concurrency: usize,
    pub signups: Phase,
    pub logins: Phase,
    /// From the first sign-up to the last login answer.
    pub wall_seconds: f64,
    pub memory: Option<FloodMemory>,
}

#[derive(Debug, Clone, Copy)]
enum Call {
    Register,
    Login,
}

impl Call {
    const fn succeeded(self) -> StatusCode {
        match self {
            Self::Register => StatusCode::CREATED,
            Self::Login => StatusCode::OK,
        }
    }
}

/// The counts one phase's requests share.
struct Tally {
    busy: AtomicU64,
    rate_limited: AtomicU64,
    /// Zero until a refusal carries `Retry-After`.
    retry_after_max: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency: Mutex<Histogram<u64>>,
}

impl Tally {
    fn new() -> Self {
        Self {
            busy: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            retry_after_max: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latency: Mutex::new(histogram()),
        }
    }

    fn fail(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
    }
}

/// How long to wait before retrying after `Retry-After: secs`: one second when the header is
/// missing or zero, and never more than the cap.
fn retry_wait(secs: Option<u64>) -> Duration {
    Duration::from_secs(secs.unwrap_or(1).clamp(1, WAIT_MAX_SECS))
}

/// Sends `call` for `name` until it succeeds, retrying 503 and 429 after their `Retry-After`.
async fn until_done(api: &Api, call: Call, name: &str, tally: &Tally) -> bool {
    let started = Instant::now();
    for _ in 0..TRIES {
        let answer = match call {
            Call::Register => api.register_once(name).await,
            Call::Login => api.login_once(name).await,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tally.fail(format!("{e:#}"));
                return false;
            }
        };
        let refusals = match answer.status {
            s if s == call.succeeded() => {
                if let Ok(mut latency) = tally.latency.lock() {
                    latency.saturating_record(micros(started.elapsed()));
                }
                return true;
            }
            StatusCode::SERVICE_UNAVAILABLE => &tally.busy,
            StatusCode::TOO_MANY_REQUESTS => &tally.rate_limited,
            status => {
                tally.fail(format!("{call:?} {name}: {status} {}", answer.body));
                return false;
            }
        };
        refusals.fetch_add(1, Ordering::Relaxed);
        if let Some(secs) = answer.retry_after {
            tally.retry_after_max.fetch_max(secs, Ordering::Relaxed);
        }
        tokio::time::sleep(retry_wait(answer.retry_after)).await;
    }
    tally.fail(format!("{call:?} {name}: still refused after {TRIES} tries"));
    false
}

/// Sends `call` for every name, `concurrency` at a time; returns the phase and the names that
/// succeeded.
async fn phase(api: &Api, call: Call, names: &[String], args: &Args) -> (Phase, Vec<String>) {
    let tally = Tally::new();
    let what = match call {
        Call::Register => "sign-ups",
        Call::Login => "logins",
    };
    let bar = util::bar(args.progress, names.len() as u64, what);
    let started = Instant::now();
    let succeeded: Vec<String> = futures::stream::iter(names)
        .map(|name| {
            let (tally, bar) = (&tally, &bar);
            async move {
                let ok = until_done(api, call, name, tally).await;
                bar.inc(1);
                ok.then(|| name.clone())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .filter_map(std::future::ready)
        .collect()
        .await;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let latency = tally.latency.lock().map(|h| Latency::of(&h)).unwrap_or_default();
    let first_error = tally.first_error.lock().ok().and_then(|e| e.clone());
    let phase = Phase {
        asked: names.len(),
        done: succeeded.len(),
        busy_503: tally.busy.load(Ordering::Relaxed),
        rate_limited_429: tally.rate_limited.load(Ordering::Relaxed),
        retry_after_max_secs: Some(tally.retry_after_max.load(Ordering::Relaxed)).filter(|&s| s > 0),
        errors: tally.errors.load(Ordering::Relaxed),
        first_error,
        seconds,
        done_per_sec: succeeded.len() as f64 / seconds.max(1e-9),
        latency,
    };
    (phase, succeeded)
}

/// Signs up `--users` new users, then logs each one in, `--concurrency` requests in flight; with
/// `--server-pid`, reads the server's RSS before, during and 2 s after.
///
/// # Errors
/// When the HTTP client cannot be built, or no login succeeded.
pub async fn logins(args: &Args) -> anyhow::Result<LoginsReport> {
    let api = Api::new(&args.url, &args.metrics_url)?;
    let names: Vec<String> = (0..args.users).map(|i| format!("b{}u{i}", args.run_id)).collect();
    let baseline = args.server_pid.and_then(rss_kib);
    let sampler = args.server_pid.map(|pid| PeakRss::sample(pid, SAMPLE_PERIOD));
    let started = Instant::now();
    let (signups, registered) = phase(&api, Call::Register, &names, args).await;
    let (logins, _) = phase(&api, Call::Login, &registered, args).await;
    let wall_seconds = started.elapsed().as_secs_f64();
    let peak = match sampler {
        Some(sampler) => sampler.stop().await,
        None => None,
    };
    anyhow::ensure!(
        logins.done > 0,
        "no login succeeded; first failure: {}",
        logins.first_error.as_ref().or(signups.first_error.as_ref()).map_or("none", String::as_str)
    );
    tokio::time::sleep(SETTLE).await;
    let end = args.server_pid.and_then(rss_kib);
    let memory = match (args.server_pid, baseline, end) {
        (Some(pid), Some(baseline_kib), Some(end_kib)) => Some(FloodMemory {
            pid,
            baseline_kib,
            peak_kib: peak,
            end_kib,
            end_minus_baseline_mib: mib_between(baseline_kib, end_kib),
        }),
        _ => None,
    };
    Ok(LoginsReport { users: args.users, concurrency: args.concurrency, signups, logins, wall_seconds, memory })
}

pub fn logins_table(r: &LoginsReport) -> Table {
    let mut t = Table::new(vec!["metric".to_owned(), "sign-ups".to_owned(), "logins".to_owned()]);
    let both = |f: &dyn Fn(&Phase) -> String| vec![f(&r.signups), f(&r.logins)];
    t.row("done / asked", both(&|p| format!("{} / {}", p.done, p.asked)));
    t.row("503 busy, retried", both(&|p| p.busy_503.to_string()));
    t.row("429 rate_limited, retried", both(&|p| p.rate_limited_429.to_string()));
    t.row(
        "longest Retry-After asked",
        both(&|p| p.retry_after_max_secs.map_or_else(|| "-".to_owned(), |s| format!("{s} s"))),
    );
    t.row(
        "other errors",
        both(&|p| match &p.first_error {
            Some(e) => format!("{} (first: {e})", p.errors),
            None => p.errors.to_string(),
        }),
    );
    t.row("time", both(&|p| format!("{:.1} s", p.seconds)));
    t.row("done/s", both(&|p| format!("{:.1}", p.done_per_sec)));
    t.row("latency p50/p95/p99/max ms", both(&|p| p.latency.cell()));
    let whole = |cell: String| vec![cell, String::new()];
    t.row("concurrency", whole(r.concurrency.to_string()));
    t.row("wall time", whole(format!("{:.1} s", r.wall_seconds)));
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    match &r.memory {
        Some(m) => {
            t.row("server RSS before (idle baseline)", whole(mib(m.baseline_kib)));
            t.row("server RSS peak (every 100 ms)", whole(m.peak_kib.map_or_else(|| "-".to_owned(), mib)));
            t.row("server RSS end (2 s after)", whole(mib(m.end_kib)));
            t.row("server RSS end - baseline", whole(format!("{:+.1} MiB", m.end_minus_baseline_mib)));
        }
        None => t.row("server RSS", whole("- (give --server-pid)".to_owned())),
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_up_to_the_cap_and_a_missing_one_means_one_second() {
        assert_eq!(retry_wait(Some(3)), Duration::from_secs(3));
        assert_eq!(retry_wait(Some(900)), Duration::from_secs(WAIT_MAX_SECS));
        assert_eq!(retry_wait(None), Duration::from_secs(1));
        assert_eq!(retry_wait(Some(0)), Duration::from_secs(1));
    }
}
