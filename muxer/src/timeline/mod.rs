//! One timeline for every input: instants are nanoseconds of UTC ([`UtcNanos`]); each
//! track's own clock is mapped onto it — the agent's monotonic clock by clock-sync samples
//! ([`ClockMapping`]), the CTI's sample clock by its call record ([`CtiClock`]), refined
//! against a microphone reference by cross-correlation ([`xcorr`]) — and the cut points are
//! chosen on it ([`CutPoints`]).

mod clock_sync;
mod cuts;
mod drift;
pub mod xcorr;

pub use clock_sync::{ClockMapping, SyncSample};
pub use cuts::{CutPoints, TrackSpan};
pub use drift::CtiClock;

use time::OffsetDateTime;

/// An instant on the shared timeline: nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcNanos(pub i64);

impl UtcNanos {
    /// Nanoseconds per second.
    pub const SECOND: i64 = 1_000_000_000;

    /// The instant `t` names.
    ///
    /// # Errors
    /// [`TimelineError::OutOfRange`] beyond the year 2262.
    pub fn from_datetime(t: OffsetDateTime) -> Result<Self, TimelineError> {
        i64::try_from(t.unix_timestamp_nanos())
            .map(Self)
            .map_err(|_| TimelineError::OutOfRange)
    }

    /// Back to a calendar time.
    ///
    /// # Panics
    /// Never: every `i64` of nanoseconds is a valid `OffsetDateTime`.
    #[must_use]
    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .expect("i64 nanoseconds are always in range")
    }

    /// `self + nanos`.
    #[must_use]
    pub fn plus(self, nanos: i64) -> Self {
        Self(self.0 + nanos)
    }
}

/// The inputs cannot be put on one timeline.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TimelineError {
    /// The tracks share no time at all.
    #[error("the tracks do not overlap: {0}")]
    NoOverlap(String),
    /// A requested cut lies outside what the tracks cover, or out after in.
    #[error("cut points out of range: {0}")]
    BadCut(String),
    /// Not enough usable clock-sync samples to map the agent's clock.
    #[error("cannot map the agent clock: {0}")]
    NoClockSync(String),
    /// The call record contradicts the audio (end before start, absurd drift).
    #[error("the CTI call record does not fit the audio: {0}")]
    BadCallRecord(String),
    /// A time beyond what the timeline can represent.
    #[error("time out of range (before 1678 or after 2262)")]
    OutOfRange,
}
