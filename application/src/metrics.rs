//! Prometheus metrics every layer may report through: requests by route, latency histograms, sockets, archive lag.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    live_sockets: AtomicI64,
    /// Sockets closed, by the reason of the close frame (`gone` when the peer left first). The
    /// callers pass `&'static str` reasons from a fixed set, so the labels cannot grow.
    sockets_closed: Mutex<BTreeMap<&'static str, u64>>,
    /// Age in milliseconds of the oldest message not yet archived, as last seen by the worker.
    archive_lag_ms: AtomicU64,
    archived_total: AtomicU64,
    dead_letters: AtomicU64,
    purged_messages_total: AtomicU64,
    purged_files_total: AtomicU64,
}

impl Metrics {
    /// Counts a request under `route`, which the caller bounds: a template from its route table,
    /// never a raw path, so the label set cannot grow with what clients send.
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let route = route.to_owned();
        *self.requests.lock().entry((method.to_owned(), route.clone(), status)).or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock();
        let h = latency.entry(route).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn socket_opened(&self) {
        self.live_sockets.fetch_add(1, Ordering::Relaxed);
    }

    /// A socket is closing, for `reason`: counted when the close is decided, not when the last
    /// byte has gone, so an operator sees a burst of closes as it happens.
    pub fn socket_closed(&self, reason: &'static str) {
        self.live_sockets.fetch_sub(1, Ordering::Relaxed);
        *self.sockets_closed.lock().entry(reason).or_default() += 1;
    }

    pub fn live_sockets(&self) -> i64 {
        self.live_sockets.load(Ordering::Relaxed)
    }

    pub fn set_archive_lag(&self, lag: Duration) {
        self.archive_lag_ms.store(u64::try_from(lag.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn set_dead_letters(&self, n: u64) {
        self.dead_letters.store(n, Ordering::Relaxed);
    }

    pub fn add_archived(&self, n: u64) {
        self.archived_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_purged(&self, messages: u64, files: u64) {
        self.purged_messages_total.fetch_add(messages, Ordering::Relaxed);
        self.purged_files_total.fetch_add(files, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# TYPE http_requests_total counter\n");
        for ((method, route, status), n) in self.requests.lock().iter() {
            let _ =
                writeln!(out, "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().iter() {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        out.push_str("# TYPE chat_sockets_closed_total counter\n");
        for (reason, n) in self.sockets_closed.lock().iter() {
            let _ = writeln!(out, "chat_sockets_closed_total{{reason=\"{reason}\"}} {n}");
        }
        let gauges = [
            ("chat_live_sockets", "gauge", self.live_sockets.load(Ordering::Relaxed).to_string()),
            (
                "chat_archive_lag_seconds",
                "gauge",
                format!("{}", self.archive_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0),
            ),
            ("chat_messages_archived_total", "counter", self.archived_total.load(Ordering::Relaxed).to_string()),
            ("chat_archive_dead_letters", "gauge", self.dead_letters.load(Ordering::Relaxed).to_string()),
            ("chat_messages_purged_total", "counter", self.purged_messages_total.load(Ordering::Relaxed).to_string()),
            ("chat_files_purged_total", "counter", self.purged_files_total.load(Ordering::Relaxed).to_string()),
        ];
        for (name, kind, value) in gauges {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_one_route_count_in_one_series() {
        let m = Metrics::default();
        m.record_request("GET", "/rooms/:room_id", 200, Duration::from_millis(3));
        m.record_request("GET", "/rooms/:room_id", 200, Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("http_requests_total{method=\"GET\",route=\"/rooms/:room_id\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("http_request_duration_seconds_count{route=\"/rooms/:room_id\"} 2"));
    }

    #[test]
    fn live_sockets_go_up_and_down() {
        let m = Metrics::default();
        m.socket_opened();
        m.socket_opened();
        m.socket_closed("gone");
        assert!(m.render().contains("chat_live_sockets 1"));
    }

    #[test]
    fn closed_sockets_are_counted_by_reason() {
        let m = Metrics::default();
        for reason in ["too_slow", "gone", "too_slow"] {
            m.socket_opened();
            m.socket_closed(reason);
        }
        let text = m.render();
        assert!(text.contains("chat_sockets_closed_total{reason=\"too_slow\"} 2"), "{text}");
        assert!(text.contains("chat_sockets_closed_total{reason=\"gone\"} 1"), "{text}");
    }
}
