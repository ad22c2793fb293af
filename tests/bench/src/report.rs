//! The results table, and how each scenario's results fill it.

use std::fmt::Write as _;

use super::load::{LoadReport, Resync};

/// A plain text table: a header row and rows of cells, columns padded to their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<String>) -> Self {
        Self { rows: vec![header] }
    }

    pub fn row(&mut self, name: &str, cells: Vec<String>) {
        let mut row = vec![name.to_owned()];
        row.extend(cells);
        self.rows.push(row);
    }

    /// Each row as its name and cells, the header first.
    pub fn rows(&self) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
        self.rows.iter().map(|r| (r.first().cloned().unwrap_or_default(), r.iter().skip(1).cloned().collect()))
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> =
                row.iter().enumerate().map(|(c, cell)| format!("{cell:<w$}", w = widths[c])).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
            }
        }
        out
    }
}

fn map_cell<T: std::fmt::Display>(map: &std::collections::BTreeMap<String, T>) -> String {
    if map.is_empty() {
        return "0".to_owned();
    }
    map.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
}

/// One column per run, e.g. chat and relay side by side.
pub fn load_table(reports: &[LoadReport]) -> Table {
    let mut t =
        Table::new(std::iter::once("metric".to_owned()).chain(reports.iter().map(|r| r.target.clone())).collect());
    let col = |f: &dyn Fn(&LoadReport) -> String| reports.iter().map(f).collect::<Vec<_>>();
    t.row(
        "sockets open / asked",
        col(&|r| {
            let mut cell = format!("{} / {}", r.sockets_opened, r.sockets);
            if let Some(e) = &r.first_connect_error {
                let _ = write!(cell, " (first failure: {e})");
            }
            cell
        }),
    );
    t.row("connect time", col(&|r| format!("{:.1} s", r.connect_seconds)));
    t.row(
        "frames / sockets ended before sending",
        col(&|r| format!("{} / {}", r.frames_before_send, r.ended_before_send)),
    );
    t.row("rooms / senders", col(&|r| format!("{} / {}", r.rooms, r.senders)));
    t.row(
        "offered load",
        col(&|r| match r.window {
            Some(w) => format!("closed loop: {w} in flight per sender, freed by {}", r.paced_on.unwrap_or("ack")),
            None => format!("{} msg/s per sender, {} B", r.rate_per_sender, r.message_bytes),
        }),
    );
    t.row("send time", col(&|r| format!("{:.1} s", r.send_seconds)));
    t.row("sent / accepted", col(&|r| format!("{} / {}", r.sent, r.acked)));
    t.row("accepted msg/s", col(&|r| format!("{:.0}", r.acked_per_sec)));
    t.row("refused", col(&|r| map_cell(&r.refused)));
    t.row("rate_limited, resent", col(&|r| r.retried_rate_limited.to_string()));
    t.row("unanswered sends", col(&|r| r.unanswered.to_string()));
    t.row("deliveries / expected", col(&|r| format!("{} / {}", r.deliveries, r.expected_deliveries)));
    t.row("deliveries/s", col(&|r| format!("{:.0}", r.deliveries_per_sec)));
    t.row("latency p50/p95/p99/max ms", col(&|r| r.latency.cell()));
    t.row("ack latency p50/p95/p99/max ms", col(&|r| r.ack_latency.cell()));
    t.row("missing at drain end / late", col(&|r| format!("{} / {}", r.missing_at_drain_end, r.late)));
    t.row("lost (open sockets)", col(&|r| r.lost.to_string()));
    t.row("duplicated", col(&|r| r.duplicated.to_string()));
    t.row("delivered, never acked", col(&|r| r.unexpected.to_string()));
    t.row("sockets ended by server", col(&|r| map_cell(&r.ended_sockets)));
    t.row("missed by ended sockets", col(&|r| r.missed_by_ended_sockets.to_string()));
    t.row("lost: sync on same socket", col(&|r| r.lost_resync.as_ref().map_or_else(|| "-".to_owned(), Resync::cell)));
    t.row(
        "missed: sync after reconnect",
        col(&|r| r.ended_resync.as_ref().map_or_else(|| "-".to_owned(), Resync::cell)),
    );
    t.row(
        "history check",
        col(&|r| match &r.log_check {
            Some(c) => format!(
                "{} rooms, {} msgs: {} acked missing, {} dup seqs, {} dup texts, {} gaps, {} unreadable",
                c.rooms,
                c.messages,
                c.missing_acked,
                c.duplicate_seqs,
                c.duplicate_texts,
                c.seq_gaps,
                c.unreadable_rooms
            ),
            None => "-".to_owned(),
        }),
    );
    t.row("CPU while sending", col(&|r| r.cpu.cell()));
    t.row("load average at start", col(&|r| r.loadavg_at_start.clone().unwrap_or_default()));
    t.row("server RSS", col(&|r| r.memory.as_ref().map_or_else(|| "-".to_owned(), super::util::Memory::cell)));
    if let [chat, relay] = reports {
        if relay.deliveries_per_sec > 0.0 {
            let mut cells = vec![format!("{:.0} %", 100.0 * chat.deliveries_per_sec / relay.deliveries_per_sec)];
            cells.push(String::new());
            t.row("deliveries/s vs relay", cells);
        }
    }
    t
}
