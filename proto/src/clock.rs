//! NTP-style clock sync on the media connection. Four timestamps make one exchange:
//!
//! * `t1` — agent monotonic ns, `Ping { t1 }` sent;
//! * `t2` — server UTC ns (since the Unix epoch), ping received;
//! * `t3` — server UTC ns, `Pong { t1, t2, t3 }` sent;
//! * `t4` — agent monotonic ns, pong received.
//!
//! Only the agent ever holds all four, so it reports each completed exchange back as
//! [`crate::AgentControl::ClockSample`]; the server checks `t1..t3` against the pong it sent
//! and stores the [`ClockSample`] as it came. The muxer fits the mapping (min-RTT filtering,
//! linear fit for skew) over many samples; this module owns the one-sample arithmetic.

use serde::{Deserialize, Serialize};

use crate::error::{ProtoError, Result};

/// One completed clock-sync exchange, as stored with the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClockSample {
    /// Agent monotonic ns when the ping was sent.
    pub t1: i64,
    /// Server UTC ns when the ping arrived.
    pub t2: i64,
    /// Server UTC ns when the pong was sent.
    pub t3: i64,
    /// Agent monotonic ns when the pong arrived.
    pub t4: i64,
}

/// What one sample says about the two clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClockEstimate {
    /// `server UTC ns ≈ agent monotonic ns + offset_ns`, assuming symmetric paths:
    /// `((t2 − t1) + (t3 − t4)) / 2`, rounded toward −∞.
    pub offset_ns: i64,
    /// Time on the network: `(t4 − t1) − (t3 − t2)`. The offset's error is at most half
    /// of it, which is why the fit prefers the samples with the smallest delay.
    pub round_trip_ns: i64,
}

impl ClockSample {
    /// The sample completed by a pong's three timestamps and the arrival time `t4`.
    #[must_use]
    pub fn from_pong(t1: i64, t2: i64, t3: i64, t4: i64) -> Self {
        Self { t1, t2, t3, t4 }
    }

    /// Offset and round-trip delay from this one sample.
    ///
    /// # Errors
    /// [`ProtoError::BadClockSample`] when the timestamps cannot come from one real
    /// exchange: the pong arrived before the ping left (`t4 < t1`), the server answered
    /// before it received (`t3 < t2`), the server held the ping longer than the whole round
    /// trip took (negative delay), or the offset does not fit 64 bits.
    pub fn estimate(&self) -> Result<ClockEstimate> {
        let (t1, t2, t3, t4) = (
            i128::from(self.t1),
            i128::from(self.t2),
            i128::from(self.t3),
            i128::from(self.t4),
        );
        if t4 < t1 {
            return Err(ProtoError::BadClockSample(
                "the pong arrived before the ping was sent (t4 < t1)",
            ));
        }
        if t3 < t2 {
            return Err(ProtoError::BadClockSample(
                "the server sent the pong before it received the ping (t3 < t2)",
            ));
        }
        let round_trip = (t4 - t1) - (t3 - t2);
        if round_trip < 0 {
            return Err(ProtoError::BadClockSample(
                "the server's hold time exceeds the round trip (negative delay)",
            ));
        }
        let offset = ((t2 - t1) + (t3 - t4)).div_euclid(2);
        let offset_ns = i64::try_from(offset).map_err(|_| {
            ProtoError::BadClockSample("the clock offset does not fit in 64-bit nanoseconds")
        })?;
        // round_trip ≤ t4 − t1 < 2⁶⁴, and it is ≥ 0; it fits unless t4 − t1 itself does not.
        let round_trip_ns = i64::try_from(round_trip).map_err(|_| {
            ProtoError::BadClockSample("the round trip does not fit in 64-bit nanoseconds")
        })?;
        Ok(ClockEstimate {
            offset_ns,
            round_trip_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn symmetric_paths_give_the_exact_offset() {
        // Agent clock reads 5 s when UTC is 1_700_000_000 s; 10 ms each way, 1 ms hold.
        let offset = 1_700_000_000 * SEC - 5 * SEC;
        let t1 = 5 * SEC;
        let t2 = t1 + 10_000_000 + offset;
        let t3 = t2 + 1_000_000;
        let t4 = t3 - offset + 10_000_000;
        let e = ClockSample::from_pong(t1, t2, t3, t4).estimate().unwrap();
        assert_eq!(e.offset_ns, offset);
        assert_eq!(e.round_trip_ns, 20_000_000);
    }

    #[test]
    fn asymmetry_errs_by_half_the_difference() {
        // 30 ms out, 10 ms back: the estimate is 10 ms late.
        let (t1, offset) = (0, 1000 * SEC);
        let t2 = t1 + 30_000_000 + offset;
        let t3 = t2;
        let t4 = t3 - offset + 10_000_000;
        let e = ClockSample::from_pong(t1, t2, t3, t4).estimate().unwrap();
        assert_eq!(e.offset_ns, offset + 10_000_000);
        assert_eq!(e.round_trip_ns, 40_000_000);
    }

    #[test]
    fn rounding_is_toward_negative_infinity() {
        let e = ClockSample::from_pong(0, -1, -1, 0).estimate().unwrap();
        assert_eq!(e.offset_ns, -1);
        let e = ClockSample::from_pong(0, 1, 1, 1).estimate().unwrap();
        assert_eq!(e.offset_ns, 0);
    }

    #[test]
    fn impossible_samples_are_refused() {
        let bad = [
            ClockSample::from_pong(10, 0, 0, 9),
            ClockSample::from_pong(0, 10, 9, 20),
            ClockSample::from_pong(0, 0, 30, 20),
            ClockSample::from_pong(i64::MIN, i64::MAX, i64::MAX, i64::MIN),
            ClockSample::from_pong(i64::MIN, 0, 0, i64::MAX),
        ];
        for s in bad {
            assert!(
                matches!(s.estimate(), Err(ProtoError::BadClockSample(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn extreme_but_consistent_samples_do_not_overflow() {
        let e = ClockSample::from_pong(i64::MAX, i64::MAX, i64::MAX, i64::MAX)
            .estimate()
            .unwrap();
        assert_eq!(
            e,
            ClockEstimate {
                offset_ns: 0,
                round_trip_ns: 0
            }
        );
        let e = ClockSample::from_pong(0, i64::MAX, i64::MAX, 0)
            .estimate()
            .unwrap();
        assert_eq!(e.offset_ns, i64::MAX);
    }
}
