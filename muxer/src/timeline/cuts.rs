//! In and out points. By default in = the latest track start and out = the earliest track
//! end, so every track covers the whole output; explicit points (CLI flags or the session's
//! verification marks) override either, within what the tracks cover. Audio is then cut
//! sample-exact and video frame-exact, and no frame is moved to make the first one start at
//! zero: a cut between two frames keeps each remaining frame at its true time.

use std::ops::Range;

use super::{TimelineError, UtcNanos};

/// The time one track covers on the shared timeline, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackSpan {
    /// First instant of the track.
    pub start: UtcNanos,
    /// Instant just after its last sample or frame.
    pub end: UtcNanos,
}

/// Where the output starts and ends on the shared timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutPoints {
    /// First instant kept.
    pub in_point: UtcNanos,
    /// First instant no longer kept.
    pub out_point: UtcNanos,
}

impl CutPoints {
    /// Latest start to earliest end of `spans`, unless `in_point`/`out_point` say otherwise.
    /// An explicit point must lie where at least one track has data (an output that begins
    /// or ends in nothing at all is a mistake) and out must follow in.
    ///
    /// # Errors
    /// [`TimelineError::NoOverlap`] or [`TimelineError::BadCut`].
    pub fn choose(
        spans: &[TrackSpan],
        in_point: Option<UtcNanos>,
        out_point: Option<UtcNanos>,
    ) -> Result<Self, TimelineError> {
        let (Some(latest_start), Some(earliest_end)) = (
            spans.iter().map(|s| s.start).max(),
            spans.iter().map(|s| s.end).min(),
        ) else {
            return Err(TimelineError::NoOverlap("no tracks".into()));
        };
        let first = spans.iter().map(|s| s.start).min().expect("non-empty");
        let last = spans.iter().map(|s| s.end).max().expect("non-empty");
        let in_point = in_point.unwrap_or(latest_start);
        let out_point = out_point.unwrap_or(earliest_end);
        if in_point >= out_point {
            return Err(if in_point == latest_start && out_point == earliest_end {
                TimelineError::NoOverlap(format!(
                    "the last track starts {} s after the first one ends",
                    seconds(latest_start.0 - earliest_end.0)
                ))
            } else {
                TimelineError::BadCut(format!(
                    "out point is {} s before the in point",
                    seconds(in_point.0 - out_point.0)
                ))
            });
        }
        if in_point < first || out_point > last {
            return Err(TimelineError::BadCut(format!(
                "the cut [{}, {}] reaches outside the recorded [{}, {}]",
                in_point.to_datetime(),
                out_point.to_datetime(),
                first.to_datetime(),
                last.to_datetime()
            )));
        }
        Ok(Self {
            in_point,
            out_point,
        })
    }

    /// The output's duration in nanoseconds.
    #[must_use]
    pub fn duration(&self) -> i64 {
        self.out_point.0 - self.in_point.0
    }

    /// The samples of an audio track (sample 0 at `track_start`, `rate_hz` samples per second
    /// of the shared timeline) that fall in `[in, out)`: sample `k` is kept iff its instant
    /// `track_start + k/rate` is in the cut, so the first kept sample is at most one sample
    /// period after the in point. Clamped to the `samples` the track has.
    #[must_use]
    pub fn audio_samples(&self, track_start: UtcNanos, rate_hz: f64, samples: u64) -> Range<u64> {
        let index_at = |t: UtcNanos| -> u64 {
            let exact = (t.0 - track_start.0) as f64 * rate_hz / UtcNanos::SECOND as f64;
            // Round up: the first sample at or after `t` (with a guard against float noise).
            let k = (exact - 1e-6).ceil();
            if k <= 0.0 { 0 } else { (k as u64).min(samples) }
        };
        index_at(self.in_point)..index_at(self.out_point)
    }

    /// The frames (given by their presentation instants, ascending) shown inside the cut: a
    /// frame is shown from its instant until the next one's, so the frame on screen at the in
    /// point is kept (it is what the viewer sees at the first instant) and so is every frame
    /// that starts before the out point. Indices into `frame_times`.
    #[must_use]
    pub fn video_frames(&self, frame_times: &[UtcNanos]) -> Range<usize> {
        let first_after_in = frame_times.partition_point(|&t| t <= self.in_point);
        let start = first_after_in.saturating_sub(1);
        let end = frame_times.partition_point(|&t| t < self.out_point);
        start..end.max(start)
    }
}

fn seconds(nanos: i64) -> String {
    format!("{:.3}", nanos as f64 / UtcNanos::SECOND as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = UtcNanos::SECOND;
    fn at(seconds: f64) -> UtcNanos {
        UtcNanos((seconds * S as f64).round() as i64)
    }
    fn span(a: f64, b: f64) -> TrackSpan {
        TrackSpan {
            start: at(a),
            end: at(b),
        }
    }

    #[test]
    fn default_cut_is_latest_start_to_earliest_end() {
        let cuts = CutPoints::choose(&[span(0.0, 100.0), span(4.5, 120.0)], None, None).unwrap();
        assert_eq!((cuts.in_point, cuts.out_point), (at(4.5), at(100.0)));
        assert_eq!(cuts.duration(), 95 * S + S / 2);
    }

    #[test]
    fn explicit_points_override_within_the_recording() {
        let spans = [span(0.0, 100.0), span(4.5, 120.0)];
        let cuts = CutPoints::choose(&spans, Some(at(10.0)), Some(at(110.0))).unwrap();
        assert_eq!((cuts.in_point, cuts.out_point), (at(10.0), at(110.0)));
        assert!(matches!(
            CutPoints::choose(&spans, Some(at(-1.0)), None),
            Err(TimelineError::BadCut(_))
        ));
        assert!(matches!(
            CutPoints::choose(&spans, Some(at(50.0)), Some(at(40.0))),
            Err(TimelineError::BadCut(_))
        ));
    }

    #[test]
    fn tracks_that_never_overlap_are_refused_with_the_gap() {
        let err = CutPoints::choose(&[span(0.0, 10.0), span(12.0, 20.0)], None, None).unwrap_err();
        assert_eq!(
            err,
            TimelineError::NoOverlap(
                "the last track starts 2.000 s after the first one ends".into()
            )
        );
        assert!(CutPoints::choose(&[], None, None).is_err());
    }

    #[test]
    fn audio_is_cut_sample_exact() {
        // 8 kHz track starting at 1.0 s; cut [1.5, 3.25): samples 4000..18000.
        let cuts = CutPoints {
            in_point: at(1.5),
            out_point: at(3.25),
        };
        assert_eq!(cuts.audio_samples(at(1.0), 8000.0, 100_000), 4000..18_000);
        // An in point between samples keeps the first sample after it.
        let cuts = CutPoints {
            in_point: at(1.500_01),
            out_point: at(3.25),
        };
        assert_eq!(cuts.audio_samples(at(1.0), 8000.0, 100_000).start, 4001);
        // Clamped to the track; a cut before the track starts keeps from sample 0.
        let cuts = CutPoints {
            in_point: at(0.0),
            out_point: at(50.0),
        };
        assert_eq!(cuts.audio_samples(at(1.0), 8000.0, 20_000), 0..20_000);
        // A drift-corrected rate is honoured: 8000 × (1 + 100 ppm).
        let cuts = CutPoints {
            in_point: at(11.0),
            out_point: at(12.0),
        };
        assert_eq!(
            cuts.audio_samples(at(1.0), 8000.8, 1_000_000),
            80_008..88_009
        );
    }

    #[test]
    fn video_is_cut_frame_exact_and_keeps_frames_at_their_true_times() {
        // 30 fps from 0: frame n at n/30 s.
        let frames: Vec<UtcNanos> = (0..300).map(|n| UtcNanos(n * S / 30)).collect();
        // In exactly on frame 30 (1.0 s): starts there.
        let cuts = CutPoints {
            in_point: at(1.0),
            out_point: at(2.0),
        };
        assert_eq!(cuts.video_frames(&frames), 30..60);
        // In between frames 30 and 31: frame 30 is on screen at the in point and is kept
        // (at its true time, before the in point), not shifted.
        let cuts = CutPoints {
            in_point: at(1.01),
            out_point: at(2.0),
        };
        assert_eq!(cuts.video_frames(&frames), 30..60);
        // Out between frames: the frame that starts before it is the last kept.
        let cuts = CutPoints {
            in_point: at(1.0),
            out_point: at(2.01),
        };
        assert_eq!(cuts.video_frames(&frames), 30..61);
        // A cut after the last frame keeps the frame still on screen (the held frame).
        let cuts = CutPoints {
            in_point: at(20.0),
            out_point: at(21.0),
        };
        assert_eq!(cuts.video_frames(&frames), 299..300);
    }
}
