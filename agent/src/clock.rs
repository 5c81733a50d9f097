//! The agent's monotonic clock: nanoseconds since the agent started, from the OS monotonic
//! clock. Every frame is stamped with it and clock-sync pings carry it; the server maps it to
//! UTC with the samples (`proto::clock`), so it never needs to agree with any wall clock.

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Now, in agent monotonic ns.
#[must_use]
pub fn now_ns() -> i64 {
    i64::try_from(origin().elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// The wall-clock time (ns since the Unix epoch) of this clock's zero, as read now: for
/// diagnostics and measurements on one machine (the server never relies on it; it maps agent
/// time with the clock-sync samples).
#[must_use]
pub fn origin_unix_ns() -> i128 {
    let since_origin = i128::from(now_ns());
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    wall - since_origin
}

/// The agent time of something that happened `ago_ns` before now.
#[must_use]
pub fn ns_before(ago_ns: u64) -> i64 {
    now_ns().saturating_sub(i64::try_from(ago_ns).unwrap_or(i64::MAX))
}
