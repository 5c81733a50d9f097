//! Counters the server exposes at `/metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters (monotonic) and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests answered.
    pub requests: AtomicU64,
    /// Requests refused for missing or wrong credentials.
    pub unauthorised: AtomicU64,
    /// Sessions created.
    pub sessions_created: AtomicU64,
    /// Agent connections open now.
    pub agents_connected: AtomicU64,
    /// Media frames stored durably and acknowledged.
    pub frames_acknowledged: AtomicU64,
    /// Media frames refused (malformed, wrong key, replayed, too large).
    pub frames_refused: AtomicU64,
    /// Journal syncs (each makes every connection's waiting batch durable).
    pub journal_syncs: AtomicU64,
    /// Journal checkpoints started (track logs synced, a generation removed).
    pub journal_checkpoints: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 8] = [
            (
                "idv_http_requests_total",
                "counter",
                "HTTP requests answered",
                &self.requests,
            ),
            (
                "idv_http_unauthorised_total",
                "counter",
                "requests refused for credentials",
                &self.unauthorised,
            ),
            (
                "idv_sessions_created_total",
                "counter",
                "sessions created",
                &self.sessions_created,
            ),
            (
                "idv_agents_connected",
                "gauge",
                "agent connections open",
                &self.agents_connected,
            ),
            (
                "idv_frames_acknowledged_total",
                "counter",
                "media frames stored and acknowledged",
                &self.frames_acknowledged,
            ),
            (
                "idv_frames_refused_total",
                "counter",
                "media frames refused",
                &self.frames_refused,
            ),
            (
                "idv_journal_syncs_total",
                "counter",
                "journal syncs (group commits)",
                &self.journal_syncs,
            ),
            (
                "idv_journal_checkpoints_total",
                "counter",
                "journal checkpoints started",
                &self.journal_checkpoints,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
