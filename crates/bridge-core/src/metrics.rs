//! Prometheus metrics, served at `/metrics` on the appservice port.
//!
//! A handful of counters kept in atomics and rendered in the text exposition format; no
//! global registry: the [`Metrics`] value is created by the bridge and shared by `Arc`.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

/// Outcomes of a transaction pushed by the homeserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Stored; its new events are queued.
    Accepted,
    /// A retry of a transaction already stored.
    Duplicate,
    /// Missing or wrong `hs_token`.
    Unauthorized,
    /// Not JSON, or JSON of the wrong shape.
    Malformed,
    /// Could not be stored (the homeserver retries).
    Failed,
}

impl TxnOutcome {
    const ALL: [TxnOutcome; 5] = [Self::Accepted, Self::Duplicate, Self::Unauthorized, Self::Malformed, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Unauthorized => "unauthorized",
            Self::Malformed => "malformed",
            Self::Failed => "failed",
        }
    }
}

/// The bridge's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    transactions: [AtomicU64; 5],
    events_new: AtomicU64,
    events_duplicate: AtomicU64,
    events_handled: AtomicU64,
    events_failed: AtomicU64,
    event_handle_micros: AtomicU64,
    remote_events: AtomicU64,
    remote_parked: AtomicU64,
}

/// Values read at scrape time rather than counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Events stored but not handled yet.
    pub inbox_backlog: u64,
    /// Logins with a live client.
    pub logins: u64,
    /// Remote events waiting in the store for the homeserver.
    pub remote_backlog: u64,
    /// Portal actors running (portals with recent work).
    pub portal_actors: u64,
}

impl Metrics {
    /// Counts a transaction and, when stored, its new and duplicate events.
    pub fn transaction(&self, outcome: TxnOutcome, new_events: u64, duplicate_events: u64) {
        let index = TxnOutcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.transactions[index].fetch_add(1, Ordering::Relaxed);
        self.events_new.fetch_add(new_events, Ordering::Relaxed);
        self.events_duplicate.fetch_add(duplicate_events, Ordering::Relaxed);
    }

    /// Counts an event handed to the bridge, with how long it took.
    pub fn event_handled(&self, ok: bool, elapsed: std::time::Duration) {
        let counter = if ok { &self.events_handled } else { &self.events_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.event_handle_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts an event reported by a network.
    pub fn remote_event(&self) {
        self.remote_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a remote event parked while the homeserver was unreachable.
    pub fn remote_parked(&self) {
        self.remote_parked.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        header(&mut out, "bridge_transactions_total", "counter", "Transactions pushed by the homeserver, by outcome.");
        for (outcome, counter) in TxnOutcome::ALL.iter().zip(&self.transactions) {
            let _ = writeln!(out, "bridge_transactions_total{{outcome=\"{}\"}} {}", outcome.label(), get(counter));
        }
        header(&mut out, "bridge_matrix_events_received_total", "counter", "Events received in transactions, new or repeated.");
        let _ = writeln!(out, "bridge_matrix_events_received_total{{kind=\"new\"}} {}", get(&self.events_new));
        let _ = writeln!(out, "bridge_matrix_events_received_total{{kind=\"duplicate\"}} {}", get(&self.events_duplicate));
        header(&mut out, "bridge_matrix_events_handled_total", "counter", "Stored events handed to the bridge, by result.");
        let _ = writeln!(out, "bridge_matrix_events_handled_total{{result=\"ok\"}} {}", get(&self.events_handled));
        let _ = writeln!(out, "bridge_matrix_events_handled_total{{result=\"error\"}} {}", get(&self.events_failed));
        header(&mut out, "bridge_matrix_event_handle_seconds_total", "counter", "Time spent handling Matrix events.");
        let _ = writeln!(out, "bridge_matrix_event_handle_seconds_total {:.6}", get(&self.event_handle_micros) as f64 / 1e6);
        header(&mut out, "bridge_remote_events_total", "counter", "Events reported by the remote network.");
        let _ = writeln!(out, "bridge_remote_events_total {}", get(&self.remote_events));
        header(&mut out, "bridge_remote_events_parked_total", "counter", "Remote events that waited in the store for the homeserver.");
        let _ = writeln!(out, "bridge_remote_events_parked_total {}", get(&self.remote_parked));
        header(&mut out, "bridge_remote_backlog", "gauge", "Remote events waiting in the store for the homeserver.");
        let _ = writeln!(out, "bridge_remote_backlog {}", gauges.remote_backlog);
        header(&mut out, "bridge_inbox_backlog", "gauge", "Events stored but not yet handled.");
        let _ = writeln!(out, "bridge_inbox_backlog {}", gauges.inbox_backlog);
        header(&mut out, "bridge_portal_actors", "gauge", "Portals with a running actor (recent work).");
        let _ = writeln!(out, "bridge_portal_actors {}", gauges.portal_actors);
        header(&mut out, "bridge_logins", "gauge", "Logins with a live network client.");
        let _ = writeln!(out, "bridge_logins {}", gauges.logins);
        if let Some(rss) = resident_memory_bytes() {
            header(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The process's resident set size, from `/proc/self/statm` (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.transaction(TxnOutcome::Accepted, 3, 1);
        m.transaction(TxnOutcome::Unauthorized, 0, 0);
        m.event_handled(true, std::time::Duration::from_millis(5));
        let text = m.render(Gauges { inbox_backlog: 2, logins: 1, ..Gauges::default() });
        for line in [
            "bridge_transactions_total{outcome=\"accepted\"} 1",
            "bridge_transactions_total{outcome=\"unauthorized\"} 1",
            "bridge_matrix_events_received_total{kind=\"new\"} 3",
            "bridge_matrix_events_received_total{kind=\"duplicate\"} 1",
            "bridge_matrix_events_handled_total{result=\"ok\"} 1",
            "bridge_inbox_backlog 2",
            "bridge_logins 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
