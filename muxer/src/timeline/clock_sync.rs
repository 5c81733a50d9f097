//! Mapping the agent's monotonic clock onto UTC from NTP-style exchanges on the media
//! connection. Each exchange gives four timestamps: the agent sends at `t1` (agent clock),
//! the server receives at `t2` and answers at `t3` (UTC), the agent receives at `t4`. Its
//! offset estimate `((t2 − t1) + (t3 − t4)) / 2` is exact when both directions take equally
//! long; queueing makes them unequal, and the error is at most half the round trip. So only
//! the exchanges with the shortest round trips are kept, and a straight line through their
//! offsets over agent time gives the offset and the skew (the device's clock rate error).

use super::{TimelineError, UtcNanos};

/// Beyond this a device clock is broken, not drifting.
const MAX_PLAUSIBLE_SKEW_PPM: f64 = 1_000.0;
/// Share of exchanges (by shortest round trip) the fit uses.
const KEEP_FRACTION: f64 = 0.25;
/// The fit never uses fewer exchanges than this, when there are that many; a skew needs at
/// least this many.
const MIN_KEPT: usize = 4;
/// Student's t at which a fitted skew is told from noise (two-sided, 1 %), by degrees of
/// freedom (`n − 2`); beyond 120, 2.576.
const T_1_PERCENT: [(usize, f64); 14] = [
    (1, 63.66),
    (2, 9.925),
    (3, 5.841),
    (4, 4.604),
    (5, 4.032),
    (6, 3.707),
    (7, 3.499),
    (8, 3.355),
    (10, 3.169),
    (12, 3.055),
    (15, 2.947),
    (20, 2.845),
    (30, 2.750),
    (120, 2.617),
];

/// One clock-sync exchange, as stored with the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSample {
    /// `t1`: agent clock when the agent sent the ping (ns).
    pub agent_sent: i64,
    /// `t2`: UTC when the server received it.
    pub server_received: UtcNanos,
    /// `t3`: UTC when the server sent the pong.
    pub server_sent: UtcNanos,
    /// `t4`: agent clock when the agent received the pong (ns).
    pub agent_received: i64,
}

impl SyncSample {
    fn round_trip(&self) -> i64 {
        (self.agent_received - self.agent_sent) - (self.server_sent.0 - self.server_received.0)
    }

    fn offset(&self) -> f64 {
        ((self.server_received.0 - self.agent_sent) as f64
            + (self.server_sent.0 - self.agent_received) as f64)
            / 2.0
    }

    fn agent_mid(&self) -> f64 {
        (self.agent_sent as f64 + self.agent_received as f64) / 2.0
    }

    fn is_well_formed(&self) -> bool {
        self.agent_received >= self.agent_sent
            && self.server_sent >= self.server_received
            && self.round_trip() >= 0
    }
}

/// `utc = agent + offset + skew · (agent − reference)`: the agent clock on the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockMapping {
    reference: f64,
    offset_ns: f64,
    skew: f64,
    /// Exchanges the fit used.
    pub samples_used: usize,
    /// The shortest round trip seen (ns): half of it bounds the error of the best exchange.
    pub min_round_trip_ns: i64,
    /// RMS distance of the used exchanges from the line (ns): how well the line fits.
    pub residual_ns: f64,
}

impl ClockMapping {
    /// Fits the mapping to `samples` (any order). One usable exchange gives an offset with
    /// no skew; more give both.
    ///
    /// # Errors
    /// [`TimelineError::NoClockSync`] when no exchange is well formed, or the skew found is
    /// beyond what a working clock does.
    pub fn fit(samples: &[SyncSample]) -> Result<Self, TimelineError> {
        let mut usable: Vec<&SyncSample> = samples.iter().filter(|s| s.is_well_formed()).collect();
        if usable.is_empty() {
            return Err(TimelineError::NoClockSync(format!(
                "none of {} exchanges is well formed",
                samples.len()
            )));
        }
        usable.sort_by_key(|s| s.round_trip());
        let min_round_trip_ns = usable[0].round_trip();
        let keep = ((usable.len() as f64 * KEEP_FRACTION).ceil() as usize)
            .max(MIN_KEPT)
            .min(usable.len());
        let kept = &usable[..keep];

        let n = kept.len() as f64;
        let mean_x = kept.iter().map(|s| s.agent_mid()).sum::<f64>() / n;
        let mean_y = kept.iter().map(|s| s.offset()).sum::<f64>() / n;
        let sxx: f64 = kept.iter().map(|s| (s.agent_mid() - mean_x).powi(2)).sum();
        let sxy: f64 = kept
            .iter()
            .map(|s| (s.agent_mid() - mean_x) * (s.offset() - mean_y))
            .sum();
        // Exchanges bunched in time say nothing about skew; nor do exchanges whose offsets
        // (each known only to within half its round trip) could lean the line by more than a
        // working clock drifts over the time they span — a short session's few exchanges on
        // a busy machine. Then the offset alone is claimed.
        let span = kept.iter().map(|s| s.agent_mid()).fold(f64::MIN, f64::max)
            - kept.iter().map(|s| s.agent_mid()).fold(f64::MAX, f64::min);
        let worst_round_trip = kept.iter().map(|s| s.round_trip()).max().unwrap_or(0) as f64;
        let resolvable = span > 0.0 && worst_round_trip / span * 1e6 < MAX_PLAUSIBLE_SKEW_PPM;
        // And a lean that the exchanges' own errors could give is not claimed either: a few
        // exchanges over a few seconds, each a millisecond off, lean a line by hundreds of
        // ppm, and a skew that wrong smears a call's alignment by milliseconds. Claimed: a
        // lean beyond what any errors within half of each round trip could give, or one
        // significant against the exchanges' scatter about the line (Student's t at 1 %).
        let fitted = sxy / sxx;
        let worst_error = worst_round_trip / 2.0;
        let leverage: f64 = kept.iter().map(|s| (s.agent_mid() - mean_x).abs()).sum();
        let certain = fitted.abs() > worst_error * leverage / sxx;
        let scatter: f64 = kept
            .iter()
            .map(|s| (s.offset() - (mean_y + fitted * (s.agent_mid() - mean_x))).powi(2))
            .sum();
        let dof = kept.len().saturating_sub(2);
        let significant = dof > 0 && {
            let standard_error = (scatter / dof as f64 / sxx).sqrt();
            fitted.abs() > t_1_percent(dof) * standard_error
        };
        let significant = kept.len() >= MIN_KEPT && (certain || significant);
        let skew = if sxx > (UtcNanos::SECOND as f64).powi(2) && resolvable && significant {
            fitted
        } else {
            0.0
        };
        if skew.abs() * 1e6 > MAX_PLAUSIBLE_SKEW_PPM {
            return Err(TimelineError::NoClockSync(format!(
                "the agent clock's rate is off by {:+.0} ppm, beyond any working clock",
                skew * 1e6
            )));
        }
        let residual_ns = (kept
            .iter()
            .map(|s| (s.offset() - (mean_y + skew * (s.agent_mid() - mean_x))).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        Ok(Self {
            reference: mean_x,
            offset_ns: mean_y,
            skew,
            samples_used: keep,
            min_round_trip_ns,
            residual_ns,
        })
    }

    /// The instant an agent timestamp stands for.
    #[must_use]
    pub fn to_utc(&self, agent_ns: i64) -> UtcNanos {
        let offset = self.offset_ns + self.skew * (agent_ns as f64 - self.reference);
        UtcNanos(agent_ns + offset.round() as i64)
    }

    /// The agent clock's rate error in ppm (positive: the agent clock runs slow, so UTC
    /// gains on it).
    #[must_use]
    pub fn skew_ppm(&self) -> f64 {
        self.skew * 1e6
    }

    /// What the manifest records of the mapping, fitted from `samples` exchanges.
    #[must_use]
    pub fn record(&self, samples: usize) -> crate::manifest::AgentClockRecord {
        crate::manifest::AgentClockRecord {
            samples,
            samples_used: self.samples_used,
            min_round_trip_ms: self.min_round_trip_ns as f64 / 1e6,
            residual_ms: self.residual_ns / 1e6,
            skew_ppm: self.skew_ppm(),
        }
    }
}

/// [`T_1_PERCENT`] for `dof` degrees of freedom (the nearest tabled value below).
fn t_1_percent(dof: usize) -> f64 {
    if dof > 120 {
        return 2.576;
    }
    T_1_PERCENT
        .iter()
        .rev()
        .find(|&&(d, _)| d <= dof)
        .map_or(f64::INFINITY, |&(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const S: i64 = UtcNanos::SECOND;

    /// A deterministic stream of numbers in [0, 1).
    fn noise(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// UTC = agent + 3.2 s + 150 ppm · agent; one-way delays 10 ms plus random queueing up to
    /// 150 ms, different each way — the asymmetry that makes a naive average wrong.
    fn exchanges(count: usize) -> (Vec<SyncSample>, impl Fn(i64) -> i64) {
        let truth = |agent: i64| agent + 3_200 * MS + (agent as f64 * 150e-6) as i64;
        let mut seed = 42;
        let samples = (0..count)
            .map(|i| {
                let t1 = 60 * S + i as i64 * 5 * S;
                let up = 10 * MS + (noise(&mut seed) * 150.0 * MS as f64) as i64;
                let down = 10 * MS + (noise(&mut seed) * 150.0 * MS as f64) as i64;
                let t2 = truth(t1) + up;
                let t3 = t2 + MS / 2;
                // Invert `truth` for t4 (agent clock when the pong arrives).
                let t4 = ((t3 + down - 3_200 * MS) as f64 / (1.0 + 150e-6)) as i64;
                SyncSample {
                    agent_sent: t1,
                    server_received: UtcNanos(t2),
                    server_sent: UtcNanos(t3),
                    agent_received: t4,
                }
            })
            .collect();
        (samples, truth)
    }

    /// `count` exchanges `every` apart from 5 s on, on a clock 3.2 s behind UTC and running
    /// at its rate; each way takes `least` plus up to `queueing`, at random from `seed`.
    fn unskewed(seed: u64, count: i64, every: i64, least: i64, queueing: i64) -> Vec<SyncSample> {
        let mut seed = seed;
        (0..count)
            .map(|i| {
                let t1 = 5 * S + i * every;
                let up = least + (noise(&mut seed) * queueing as f64) as i64;
                let down = least + (noise(&mut seed) * queueing as f64) as i64;
                let t2 = t1 + 3_200 * MS + up;
                SyncSample {
                    agent_sent: t1,
                    server_received: UtcNanos(t2),
                    server_sent: UtcNanos(t2),
                    agent_received: t1 + up + down,
                }
            })
            .collect()
    }

    #[test]
    fn min_round_trip_fit_recovers_offset_and_skew_over_a_long_session() {
        let (samples, truth) = exchanges(360); // 30 minutes, one exchange every 5 s
        let mapping = ClockMapping::fit(&samples).unwrap();
        assert!(
            (mapping.skew_ppm() - 150.0).abs() < 5.0,
            "skew {}",
            mapping.skew_ppm()
        );
        let worst = (0..=36)
            .map(|k| 60 * S + k * 50 * S)
            .map(|agent| (mapping.to_utc(agent).0 - truth(agent)).abs())
            .max()
            .unwrap();
        assert!(
            worst < 5 * MS,
            "worst mapping error {} ms",
            worst as f64 / MS as f64
        );
        assert_eq!(mapping.samples_used, 90);
    }

    #[test]
    fn a_single_exchange_gives_an_offset_within_half_its_round_trip() {
        let (samples, truth) = exchanges(1);
        let mapping = ClockMapping::fit(&samples).unwrap();
        assert_eq!(mapping.skew_ppm(), 0.0);
        let err = (mapping.to_utc(samples[0].agent_sent).0 - truth(samples[0].agent_sent)).abs();
        assert!(err <= mapping.min_round_trip_ns / 2 + MS, "error {err} ns");
    }

    #[test]
    fn malformed_or_absent_exchanges_are_refused() {
        assert!(ClockMapping::fit(&[]).is_err());
        let backwards = SyncSample {
            agent_sent: 10 * S,
            server_received: UtcNanos(5 * S),
            server_sent: UtcNanos(5 * S),
            agent_received: 9 * S,
        };
        assert!(matches!(
            ClockMapping::fit(&[backwards]),
            Err(TimelineError::NoClockSync(_))
        ));
    }

    #[test]
    fn a_short_sessions_jittery_exchanges_claim_an_offset_and_no_skew() {
        // Ten exchanges over 3 s on a busy machine: 1–20 ms of queueing each way. A line
        // through them would lean by thousands of ppm; none can be told from the noise.
        let samples = unskewed(7, 10, 300 * MS, MS, 20 * MS);
        let mapping = ClockMapping::fit(&samples).unwrap();
        assert_eq!(mapping.skew_ppm(), 0.0);
        let err = (mapping.to_utc(6 * S).0 - (6 * S + 3_200 * MS)).abs();
        assert!(err <= 21 * MS, "offset error {} ms", err as f64 / MS as f64);
    }

    #[test]
    fn a_few_seconds_of_exchanges_a_millisecond_off_claim_no_skew() {
        // Seven exchanges over 6 s on one machine (no true skew), each direction 0.2–1.7 ms:
        // what a short session's agent sends. The line through the best four leans by
        // hundreds of ppm, which the scatter cannot tell from nothing.
        let mut leaned = 0;
        for seed in 0..50 {
            let samples = unskewed(seed, 7, S, MS / 5, 3 * MS / 2);
            let mapping = ClockMapping::fit(&samples).unwrap();
            if mapping.skew_ppm() != 0.0 {
                leaned += 1;
            }
            let err = (mapping.to_utc(8 * S).0 - (8 * S + 3_200 * MS)).abs();
            assert!(err <= 2 * MS, "offset error {} ms", err as f64 / MS as f64);
        }
        assert!(leaned <= 2, "{leaned} of 50 short sessions claimed a skew");
    }

    #[test]
    fn an_impossible_skew_is_refused() {
        // The agent clock runs 2 % slow: no working clock does that.
        let samples: Vec<SyncSample> = (0..20)
            .map(|i| {
                let t1 = i * 10 * S;
                let utc = (t1 as f64 * 1.02) as i64;
                SyncSample {
                    agent_sent: t1,
                    server_received: UtcNanos(utc),
                    server_sent: UtcNanos(utc),
                    agent_received: t1,
                }
            })
            .collect();
        assert!(matches!(
            ClockMapping::fit(&samples),
            Err(TimelineError::NoClockSync(_))
        ));
    }
}
