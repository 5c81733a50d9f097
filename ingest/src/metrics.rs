//! Counters the server exposes at `/metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// How long each group commit took, from its batches' write to the end of the sync: what
    /// every acknowledgement in it waited for the disk.
    pub journal_commit_seconds: Histogram,
    /// How long each checkpoint took to sync the logs its generation covered.
    pub journal_checkpoint_seconds: Histogram,
    /// Journaled frames written into their track logs.
    pub journal_applied_records: AtomicU64,
    /// How long each round of writing journaled frames into their logs took.
    pub journal_apply_seconds: Histogram,
}

/// Upper bounds of [`Histogram`]'s buckets, seconds (the last bucket is `+Inf`).
const BOUNDS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A Prometheus histogram of durations: cumulative buckets, sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut below = 0;
        for (bound, bucket) in BOUNDS.iter().zip(&self.buckets) {
            below += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {below}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
        // Not part of a Prometheus histogram: the longest one seen, as its own gauge.
        let max = self.max_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "# HELP {name}_max the longest since start");
        let _ = writeln!(out, "# TYPE {name}_max gauge");
        let _ = writeln!(out, "{name}_max {max}");
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 9] = [
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
            (
                "idv_journal_applied_records_total",
                "counter",
                "journaled frames written into their track logs",
                &self.journal_applied_records,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        self.journal_commit_seconds.render(
            &mut out,
            "idv_journal_commit_seconds",
            "group commits: journal write and sync",
        );
        self.journal_checkpoint_seconds.render(
            &mut out,
            "idv_journal_checkpoint_seconds",
            "checkpoints: the covered track logs synced",
        );
        self.journal_apply_seconds.render(
            &mut out,
            "idv_journal_apply_seconds",
            "rounds of writing journaled frames into their track logs",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_into_cumulative_buckets() {
        let metrics = Metrics::default();
        for ms in [0, 3, 3, 40, 7000] {
            metrics
                .journal_commit_seconds
                .observe(Duration::from_millis(ms));
        }
        let text = metrics.render();
        for line in [
            "idv_journal_commit_seconds_bucket{le=\"0.0005\"} 1",
            "idv_journal_commit_seconds_bucket{le=\"0.002\"} 1",
            "idv_journal_commit_seconds_bucket{le=\"0.005\"} 3",
            "idv_journal_commit_seconds_bucket{le=\"0.05\"} 4",
            "idv_journal_commit_seconds_bucket{le=\"5\"} 4",
            "idv_journal_commit_seconds_bucket{le=\"+Inf\"} 5",
            "idv_journal_commit_seconds_sum 7.046",
            "idv_journal_commit_seconds_count 5",
            "idv_journal_commit_seconds_max 7",
            "idv_journal_checkpoint_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
