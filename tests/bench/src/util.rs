//! Small shared pieces: message stamps, latency histograms, process memory, progress bars.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Wall-clock nanoseconds; sender and receiver are the same process, so clocks agree.
pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What a message text carries so a receiver can check it: send time, sender and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_nanos: u64,
    pub sender: usize,
    pub n: u64,
}

/// `t=<unix nanos>;s=<sender>;n=<n>;` padded with `x` to `size` bytes.
pub fn payload(size: usize, sender: usize, n: u64) -> String {
    let mut text = format!("t={};s={sender};n={n};", unix_nanos());
    let pad = size.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', pad));
    text
}

pub fn parse_stamp(text: &str) -> Option<Stamp> {
    let mut parts = text.splitn(4, ';');
    let sent_nanos = parts.next()?.strip_prefix("t=")?.parse().ok()?;
    let sender = parts.next()?.strip_prefix("s=")?.parse().ok()?;
    let n = parts.next()?.strip_prefix("n=")?.parse().ok()?;
    Some(Stamp { sent_nanos, sender, n })
}

/// A latency histogram in microseconds, from 1 µs to an hour at 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    /// `p50 / p95 / p99 / max` for a table cell.
    pub fn cell(&self) -> String {
        if self.count == 0 {
            return "-".to_owned();
        }
        format!("{:.2} / {:.2} / {:.2} / {:.1}", self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms)
    }
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The resident set of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Samples a process's RSS on a timer until stopped, keeping the highest value: a peak that
/// lasts less than the period can be missed.
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Option<u64>>,
}

impl PeakRss {
    /// Starts sampling `pid` every `period`, the first sample at once.
    pub fn sample(pid: u32, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut peak = None;
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                peak = peak.max(rss_kib(pid));
            }
            peak
        });
        Self { stop, task }
    }

    /// Stops sampling; the highest RSS seen in KiB, `None` when the process could not be read.
    pub async fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.ok().flatten()
    }
}

/// KiB to MiB, signed: RSS can end below where it began.
pub fn mib_between(before_kib: u64, after_kib: u64) -> f64 {
    (after_kib as f64 - before_kib as f64) / 1024.0
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`; `None` for this process.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which may hold spaces but ends at the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name and state.
    Some((ticks(11)? + ticks(12)?) / CLOCK_TICKS)
}

/// The 1, 5 and 15 minute load averages, to tell a quiet machine from one busy compiling.
pub fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Linux reports CPU time in clock ticks of 1/100 s (`getconf CLK_TCK`) on every common platform.
const CLOCK_TICKS: f64 = 100.0;

/// CPU used by the server and by chat-bench itself over the sending and draining, to tell which
/// side of the shared cores was the bottleneck.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub wall_seconds: f64,
    pub server_seconds: Option<f64>,
    pub bench_seconds: Option<f64>,
}

impl Cpu {
    pub fn cell(&self) -> String {
        let share = |s: Option<f64>| {
            s.map_or_else(|| "-".to_owned(), |s| format!("{:.2} cores", s / self.wall_seconds.max(1e-9)))
        };
        format!("server {}, bench {}", share(self.server_seconds), share(self.bench_seconds))
    }
}

/// Server memory before and after the sockets were opened.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub pid: u32,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub connections: usize,
    /// (after - before) / connections.
    pub bytes_per_connection: u64,
}

impl Memory {
    pub fn between(pid: u32, before: Option<u64>, after: Option<u64>, connections: usize) -> Option<Self> {
        let (before, after) = (before?, after?);
        let grown = after.saturating_sub(before) * 1024;
        let per = grown.checked_div(u64::try_from(connections).unwrap_or(u64::MAX)).unwrap_or(0);
        Some(Self { pid, rss_before_kib: before, rss_after_kib: after, connections, bytes_per_connection: per })
    }

    pub fn cell(&self) -> String {
        format!(
            "{:.1} KiB/conn ({} -> {} MiB)",
            self.bytes_per_connection as f64 / 1024.0,
            self.rss_before_kib / 1024,
            self.rss_after_kib / 1024
        )
    }
}

/// A progress bar on stderr, or a hidden one with `--no-progress`.
pub fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} {msg}")
    {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_has_the_asked_size_and_reads_back_its_stamp() {
        let text = payload(100, 7, 42);

        assert_eq!(text.len(), 100);
        let stamp = parse_stamp(&text).unwrap();
        assert_eq!((stamp.sender, stamp.n), (7, 42));
        assert!(stamp.sent_nanos > 0);
    }

    #[test]
    fn texts_without_a_stamp_are_not_counted() {
        assert_eq!(parse_stamp("hello"), None);
        assert_eq!(parse_stamp("t=1;s=x;n=2;"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin: u64 = (0..2_000_000u64).map(|i| i ^ (i >> 3)).sum();

        assert!(spin > 0);
        assert!(cpu_seconds(None).is_some_and(|s| s >= 0.0));
    }

    #[tokio::test]
    async fn the_peak_sampler_reads_this_processs_rss_and_holds_the_highest() {
        let pid = std::process::id();
        let sampler = PeakRss::sample(pid, Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(50)).await;

        let peak = sampler.stop().await;

        assert!(peak.is_some_and(|kib| kib > 0), "got {peak:?}");
        assert_eq!(PeakRss::sample(u32::MAX, Duration::from_millis(10)).stop().await, None);
    }

    #[test]
    fn growth_in_mib_is_signed() {
        assert!((mib_between(1024, 3072) - 2.0).abs() < f64::EPSILON);
        assert!((mib_between(3072, 1024) + 2.0).abs() < f64::EPSILON);
    }

    #[test]
    fn memory_per_connection_is_the_growth_divided_by_the_sockets() {
        let m = Memory::between(1, Some(1000), Some(1100), 10).unwrap();

        assert_eq!(m.bytes_per_connection, 100 * 1024 / 10);
    }
}
