//! Prometheus metrics every layer reports through (prometheus-client, one registry per app):
//! requests by route, sockets, deliveries, the bus, store calls, the archive.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 5.0];
/// Upper bounds of the socket queue buckets, in bytes: 1 KiB to 16 MiB.
const QUEUE_BUCKETS: [f64; 8] = [1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 4_194_304.0, 16_777_216.0];

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
    op: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RouteLabels>,
    live_sockets: Gauge,
    sockets_closed: Family<ReasonLabels, Counter>,
    messages_accepted: Counter,
    ack_seconds: Histogram,
    frames_delivered: Counter,
    queue_bytes: Histogram,
    bus_events: Counter,
    bus_gaps: Counter,
    store_seconds: Histograms<StoreLabels>,
    archive_lag_seconds: Gauge<f64, AtomicU64>,
    archived: Counter,
    dead_letters: Gauge,
    purged_messages: Counter,
    purged_files: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route template and status", requests.clone());
        let request_seconds: Histograms<RouteLabels> = Family::new_with_constructor(latency);
        registry.register("http_request_duration_seconds", "HTTP request latency by route", request_seconds.clone());
        let live_sockets = Gauge::default();
        registry.register("chat_live_sockets", "Open WebSocket connections", live_sockets.clone());
        let sockets_closed = Family::<ReasonLabels, Counter>::default();
        registry.register("chat_sockets_closed", "Sockets closed, by reason", sockets_closed.clone());
        let messages_accepted = Counter::default();
        registry.register("chat_messages_accepted", "Messages stored and acked", messages_accepted.clone());
        let ack_seconds = latency();
        registry.register("chat_ack_latency_seconds", "From a send frame read to its ack queued", ack_seconds.clone());
        let frames_delivered = Counter::default();
        registry.register("chat_frames_delivered", "Frames written to sockets", frames_delivered.clone());
        let queue_bytes = Histogram::new(QUEUE_BUCKETS);
        registry.register(
            "chat_socket_queue_bytes",
            "Bytes queued for a socket, seen at each write",
            queue_bytes.clone(),
        );
        let bus_events = Counter::default();
        registry.register("chat_bus_events", "Events this node received from the bus", bus_events.clone());
        let bus_gaps = Counter::default();
        registry.register(
            "chat_bus_gaps",
            "Times events were lost (lag, reconnect) and rooms reloaded",
            bus_gaps.clone(),
        );
        let store_seconds: Histograms<StoreLabels> = Family::new_with_constructor(latency);
        registry.register(
            "chat_store_call_seconds",
            "Redis and MongoDB call latency by operation",
            store_seconds.clone(),
        );
        let archive_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "chat_archive_lag_seconds",
            "Age of the oldest message not yet archived",
            archive_lag_seconds.clone(),
        );
        let archived = Counter::default();
        registry.register("chat_messages_archived", "Messages written to the archive", archived.clone());
        let dead_letters = Gauge::default();
        registry.register("chat_archive_dead_letters", "Messages the archiver gave up on", dead_letters.clone());
        let purged_messages = Counter::default();
        registry.register("chat_messages_purged", "Messages deleted by retention", purged_messages.clone());
        let purged_files = Counter::default();
        registry.register("chat_files_purged", "Files deleted by expiry", purged_files.clone());
        Self {
            registry,
            requests,
            request_seconds,
            live_sockets,
            sockets_closed,
            messages_accepted,
            ack_seconds,
            frames_delivered,
            queue_bytes,
            bus_events,
            bus_gaps,
            store_seconds,
            archive_lag_seconds,
            archived,
            dead_letters,
            purged_messages,
            purged_files,
        }
    }
}

impl Metrics {
    /// Counts a request under `route`, which the caller bounds: a template from its route table,
    /// never a raw path, so the label set cannot grow with what clients send.
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&RouteLabels { route: labels.route }).observe(elapsed.as_secs_f64());
    }

    pub fn socket_opened(&self) {
        self.live_sockets.inc();
    }

    /// A socket is closing, for `reason` from a fixed set (`too_slow`, `going_away`, `gone`…):
    /// counted when the close is decided, so an operator sees a burst of closes as it happens.
    pub fn socket_closed(&self, reason: &'static str) {
        self.live_sockets.dec();
        self.sockets_closed.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    pub fn live_sockets(&self) -> i64 {
        self.live_sockets.get()
    }

    /// A message stored and acked, `elapsed` after its send frame was read.
    pub fn message_accepted(&self, elapsed: Duration) {
        self.messages_accepted.inc();
        self.ack_seconds.observe(elapsed.as_secs_f64());
    }

    /// `frames` written to one socket at once, with `queued` bytes waiting when the write began.
    pub fn frames_written(&self, frames: u64, queued: usize) {
        self.frames_delivered.inc_by(frames);
        self.queue_bytes.observe(queued as f64);
    }

    pub fn bus_event(&self) {
        self.bus_events.inc();
    }

    pub fn bus_gap(&self) {
        self.bus_gaps.inc();
    }

    /// One call to a store: `store` and `op` come from fixed sets in the adapters.
    pub fn store_call(&self, store: &'static str, op: &str, elapsed: Duration) {
        let labels = StoreLabels { store: store.to_owned(), op: op.to_owned() };
        self.store_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn set_archive_lag(&self, lag: Duration) {
        self.archive_lag_seconds.set(lag.as_secs_f64());
    }

    pub fn set_dead_letters(&self, n: u64) {
        self.dead_letters.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn add_archived(&self, n: u64) {
        self.archived.inc_by(n);
    }

    pub fn add_purged(&self, messages: u64, files: u64) {
        self.purged_messages.inc_by(messages);
        self.purged_files.inc_by(files);
    }

    /// The OpenMetrics text format, which Prometheus reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
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
        assert!(text.contains("http_request_duration_seconds_count{route=\"/rooms/:room_id\"} 2"), "{text}");
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
    fn deliveries_acks_and_store_calls_are_counted_with_their_latency() {
        let m = Metrics::default();
        m.message_accepted(Duration::from_millis(2));
        m.frames_written(3, 2048);
        m.socket_opened();
        m.socket_closed("too_slow");
        m.store_call("redis", "append", Duration::from_micros(300));
        let text = m.render();
        for line in [
            "chat_messages_accepted_total 1",
            "chat_ack_latency_seconds_count 1",
            "chat_frames_delivered_total 3",
            "chat_socket_queue_bytes_bucket{le=\"4096.0\"} 1",
            "chat_sockets_closed_total{reason=\"too_slow\"} 1",
            "chat_store_call_seconds_count{store=\"redis\",op=\"append\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
