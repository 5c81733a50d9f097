//! The CTI recorder's clock. The call record gives start and (usually) end on the PBX clock;
//! the file gives a sample count at a nominal rate. If the recorder's sample clock runs fast
//! or slow, the count does not match the span: the **effective rate** `samples ÷ (end −
//! start)` is what each sample is really worth on the timeline, and the drift in ppm is how
//! far it is from nominal. The muxer resamples by that ratio — audio is corrected, video
//! frames are never dropped for it.

use super::cuts::TrackSpan;
use super::{TimelineError, UtcNanos};

/// Beyond this the call record and the audio are not the same call (or the end is wrong).
const MAX_PLAUSIBLE_DRIFT_PPM: f64 = 10_000.0;

/// A CTI recording placed on the timeline by its call record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CtiClock {
    /// Call start (first sample), on the shared timeline.
    pub start: UtcNanos,
    /// Call end (just after the last sample), when the call record has one.
    pub end: Option<UtcNanos>,
    /// Samples per channel in the recording.
    pub samples: u64,
    /// The rate the file claims (8000, 16000, 44100, 48000).
    pub nominal_rate_hz: u32,
}

impl CtiClock {
    /// Checks the call record against the audio.
    ///
    /// # Errors
    /// [`TimelineError::BadCallRecord`] when end ≤ start, the file is empty, or the implied
    /// drift is beyond 1 % (a wrong end time or a wrong file).
    pub fn new(
        start: UtcNanos,
        end: Option<UtcNanos>,
        samples: u64,
        nominal_rate_hz: u32,
    ) -> Result<Self, TimelineError> {
        if samples == 0 || nominal_rate_hz == 0 {
            return Err(TimelineError::BadCallRecord(
                "the recording has no samples".into(),
            ));
        }
        if end.is_some_and(|end| end <= start) {
            return Err(TimelineError::BadCallRecord(
                "the call ends before it starts".into(),
            ));
        }
        let clock = Self {
            start,
            end,
            samples,
            nominal_rate_hz,
        };
        if let Some(ppm) = clock.drift_ppm()
            && ppm.abs() > MAX_PLAUSIBLE_DRIFT_PPM
        {
            return Err(TimelineError::BadCallRecord(format!(
                "the call record spans {:.3} s but the audio holds {:.3} s ({ppm:+.0} ppm): wrong end time or wrong file",
                clock.record_seconds().unwrap_or_default(),
                clock.nominal_seconds()
            )));
        }
        Ok(clock)
    }

    fn nominal_seconds(&self) -> f64 {
        self.samples as f64 / f64::from(self.nominal_rate_hz)
    }

    fn record_seconds(&self) -> Option<f64> {
        self.end
            .map(|end| (end.0 - self.start.0) as f64 / UtcNanos::SECOND as f64)
    }

    /// How much faster (+) or slower (−) than nominal the recorder's clock ran, in parts per
    /// million; `None` without an end time (then nominal is all we can assume).
    #[must_use]
    pub fn drift_ppm(&self) -> Option<f64> {
        Some((self.effective_rate_hz() / f64::from(self.nominal_rate_hz) - 1.0) * 1e6)
            .filter(|_| self.end.is_some())
    }

    /// Samples per second of the shared timeline.
    #[must_use]
    pub fn effective_rate_hz(&self) -> f64 {
        match self.record_seconds() {
            Some(seconds) => self.samples as f64 / seconds,
            None => f64::from(self.nominal_rate_hz),
        }
    }

    /// The instant of sample `k`.
    #[must_use]
    pub fn instant_of(&self, k: u64) -> UtcNanos {
        let nanos = k as f64 * UtcNanos::SECOND as f64 / self.effective_rate_hz();
        self.start.plus(nanos.round() as i64)
    }

    /// The same recording moved `nanos` later on the timeline (earlier if negative), start
    /// and end alike: a corrected offset, with the drift measured from the call record kept.
    #[must_use]
    pub fn shifted(self, nanos: i64) -> Self {
        Self {
            start: self.start.plus(nanos),
            end: self.end.map(|end| end.plus(nanos)),
            ..self
        }
    }

    /// What the recording covers on the timeline.
    #[must_use]
    pub fn span(&self) -> TrackSpan {
        TrackSpan {
            start: self.start,
            end: self.end.unwrap_or_else(|| self.instant_of(self.samples)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = UtcNanos::SECOND;

    #[test]
    fn drift_comes_from_length_against_the_call_record() {
        // 600 s at 8 kHz nominal, but the recorder ran 150 ppm fast: 4_800_720 samples.
        let start = UtcNanos(1_000 * S);
        let clock = CtiClock::new(start, Some(start.plus(600 * S)), 4_800_720, 8000).unwrap();
        assert!((clock.drift_ppm().unwrap() - 150.0).abs() < 0.01);
        assert!((clock.effective_rate_hz() - 8001.2).abs() < 1e-9);
        // The last sample lands at the call's end, not 72 ms late as nominal would put it.
        assert_eq!(clock.instant_of(4_800_720), start.plus(600 * S));
        assert_eq!(clock.span().end, start.plus(600 * S));
        // Slow clock.
        let slow = CtiClock::new(start, Some(start.plus(600 * S)), 4_799_040, 8000).unwrap();
        assert!((slow.drift_ppm().unwrap() + 200.0).abs() < 0.01);
    }

    #[test]
    fn a_shift_moves_start_and_end_and_keeps_the_drift() {
        let start = UtcNanos(1_000 * S);
        let clock = CtiClock::new(start, Some(start.plus(600 * S)), 4_800_720, 8000).unwrap();
        let moved = clock.shifted(-730_000_000);
        assert_eq!(moved.start, start.plus(-730_000_000));
        assert_eq!(moved.span().end, start.plus(600 * S - 730_000_000));
        assert_eq!(moved.effective_rate_hz(), clock.effective_rate_hz());
        let open = CtiClock::new(start, None, 8000, 8000).unwrap().shifted(S);
        assert_eq!((open.start, open.end), (start.plus(S), None));
    }

    #[test]
    fn without_an_end_the_nominal_rate_is_assumed() {
        let clock = CtiClock::new(UtcNanos(0), None, 16_000 * 30, 16_000).unwrap();
        assert_eq!(clock.drift_ppm(), None);
        assert_eq!(clock.span().end, UtcNanos(30 * S));
    }

    #[test]
    fn call_records_that_do_not_fit_the_audio_are_refused() {
        let start = UtcNanos(0);
        assert!(CtiClock::new(start, Some(start), 8000, 8000).is_err());
        assert!(CtiClock::new(start, Some(start.plus(S)), 0, 8000).is_err());
        // 60 s of audio against a 75 s call record: 20 % off.
        let err = CtiClock::new(start, Some(start.plus(75 * S)), 480_000, 8000).unwrap_err();
        assert!(
            err.to_string().contains("wrong end time or wrong file"),
            "{err}"
        );
    }
}
