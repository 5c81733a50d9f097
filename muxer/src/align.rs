//! The CTI recording's offset refined against the agent's microphone reference.
//!
//! A call record's start can be seconds off (PBX clocks are set by hand). The agent can send a
//! low-rate recording of the customer's microphone made on its own clock — the camera's — so
//! the reference starts where it says it does. The customer's voice is in both: the delay
//! between them is what the call record got wrong.
//!
//! * **Grid.** Both recordings are read onto one analysis grid on the timeline, 8 kHz mono
//!   (channels averaged): the CTI through its [`CtiClock`] — call-record start, drift from
//!   length against end − start — and the reference from its start at its nominal rate. The
//!   reading is the mux's own windowed-sinc interpolator ([`Resampler`]): the grid sees the
//!   CTI exactly where the mux would put it, and its low-pass at 0.94 × 4 kHz is the
//!   decimation filter (telephone audio holds nothing above anyway).
//! * **Windows.** Up to 8 windows of 20 s of reference, spread evenly over where the two
//!   recordings overlap by the call record (shorter when the overlap is), each paired with
//!   the CTI from 10 s before to 10 s after it: delays up to ±10 s are searched. Memory stays
//!   bounded however long the call: 8 × 20 s of reference, 8 × 40 s of CTI (15 MB) and one
//!   transform (8 MB). Decoding stops after the last window.
//! * **Estimate.** [`xcorr`]: GCC-PHAT per window, the functions summed, the peak to a
//!   fraction of a sample, confidence = 1 − runner-up ÷ peak.
//! * **Applied** when the confidence reaches 0.5: the clock (start and end, drift kept) moves
//!   by minus the delay before the cuts are chosen. Below, the call record stands, and the
//!   manifest says so with the confidence found.
//!
//! The reference only places the CTI; it is never muxed.

use crate::input::bytes::InputBytes;

use crate::audio::resample::Resampler;
use crate::error::Result;
use crate::input::audio::{AudioFile, AudioInfo};
use crate::timeline::xcorr::{self, Band, Combined, LagEstimate};
use crate::timeline::{CtiClock, TrackSpan, UtcNanos};

/// The agent's microphone reference track: a recording of the customer's side made on the
/// agent's clock (the camera's), in any format [`AudioFile`] reads, mono or stereo.
#[derive(Debug, Clone)]
pub struct ReferenceInput {
    /// The recording.
    pub bytes: InputBytes,
    /// When its first sample was captured, on the timeline.
    pub start: UtcNanos,
}

/// How the search is run. [`Default`] is what the muxer uses.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignSettings {
    /// The analysis grid's rate.
    pub analysis_rate_hz: u32,
    /// Length of a reference window.
    pub window_s: f64,
    /// At most this many windows.
    pub max_windows: usize,
    /// Delays up to ± this are searched.
    pub max_lag_s: f64,
    /// Less overlap than this between reference and CTI: nothing is estimated.
    pub min_overlap_s: f64,
    /// The estimate is applied from this confidence on.
    pub threshold: f64,
}

impl Default for AlignSettings {
    fn default() -> Self {
        Self {
            analysis_rate_hz: 8000,
            window_s: 20.0,
            max_windows: 8,
            max_lag_s: 10.0,
            min_overlap_s: 1.0,
            threshold: 0.5,
        }
    }
}

/// What the reference said about the CTI's offset.
#[derive(Debug, Clone)]
pub struct Alignment {
    /// The reference as read.
    pub reference: AudioInfo,
    /// Where it lies on the timeline.
    pub reference_span: TrackSpan,
    /// The combined estimate; `None` without enough overlap, or when either side is silent.
    pub estimate: Option<LagEstimate>,
    /// Windows that went into it.
    pub windows: usize,
    /// Of those, windows whose own peak lies within 1 ms of the combined one.
    pub agreeing: usize,
    /// The confidence needed for the estimate to be applied.
    pub threshold: f64,
    /// The correction applied to the call record's start, nanoseconds (+ = later); 0 when the
    /// estimate was not confident enough.
    pub applied_ns: i64,
}

impl Alignment {
    /// The correction the reference points at, nanoseconds (+ = the audio belongs later),
    /// whether applied or not.
    #[must_use]
    pub fn found_ns(&self) -> Option<i64> {
        self.estimate.map(|e| (-e.delay_s * 1e9).round() as i64)
    }

    /// The estimate's confidence, 0 without one.
    #[must_use]
    pub fn confidence(&self) -> f64 {
        self.estimate.map_or(0.0, |e| e.confidence)
    }

    /// Whether the correction was applied.
    #[must_use]
    pub fn applied(&self) -> bool {
        self.estimate
            .is_some_and(|e| e.confidence >= self.threshold)
    }
}

/// How the CTI clock was put on the timeline, for the manifest: the call record, and what
/// the reference did to it.
#[must_use]
pub fn clock_method(drift_from_end: bool, alignment: Option<&Alignment>) -> String {
    let record = if drift_from_end {
        "call record: start, and drift from length vs end − start"
    } else {
        "call record: start only (nominal rate)"
    };
    match alignment {
        None => record.to_owned(),
        Some(a) if a.applied() => format!(
            "{record}; offset refined by GCC-PHAT against the agent's microphone reference \
             ({} windows, {} agreeing within 1 ms)",
            a.windows, a.agreeing
        ),
        Some(a) if a.estimate.is_some() => format!(
            "{record}; GCC-PHAT against the agent's microphone reference below the {} \
             confidence threshold ({} windows, {} agreeing within 1 ms): call record kept",
            a.threshold, a.windows, a.agreeing
        ),
        Some(_) => format!(
            "{record}; the agent's microphone reference overlaps the call too little or is silent: call record kept"
        ),
    }
}

/// Estimates the CTI's offset against `reference` and returns `clock` corrected by it (when
/// confident) with what was found.
///
/// # Errors
/// [`crate::MuxError::Input`] when the reference or the CTI recording cannot be read.
pub fn refine(
    reference: &ReferenceInput,
    cti: &InputBytes,
    clock: CtiClock,
    settings: &AlignSettings,
) -> Result<(CtiClock, Alignment)> {
    let mut reference_file = AudioFile::open(reference.bytes.clone())?;
    let info = reference_file.info.clone();
    let reference_span = TrackSpan {
        start: reference.start,
        end: reference.start.plus(
            (info.frames as f64 * UtcNanos::SECOND as f64 / f64::from(info.rate_hz)).round() as i64,
        ),
    };
    let mut alignment = Alignment {
        reference: info,
        reference_span,
        estimate: None,
        windows: 0,
        agreeing: 0,
        threshold: settings.threshold,
        applied_ns: 0,
    };
    let cti_span = clock.span();
    let overlap = TrackSpan {
        start: reference_span.start.max(cti_span.start),
        end: reference_span.end.min(cti_span.end),
    };
    let fs = f64::from(settings.analysis_rate_hz);
    let overlap_samples = ((overlap.end.0 - overlap.start.0) as f64 * fs / 1e9).floor();
    if overlap_samples < settings.min_overlap_s * fs {
        return Ok((clock, alignment));
    }
    let max_lag = (settings.max_lag_s * fs).round() as usize;
    let window = ((settings.window_s * fs).round() as usize).min(overlap_samples as usize);
    let starts = window_starts(overlap_samples as usize, window, settings.max_windows);

    // Grid sample 0 is `max_lag` before the overlap: every CTI window starts at or after it.
    let origin = overlap
        .start
        .plus(-((max_lag as f64 * 1e9 / fs).round() as i64));
    let reference_map = GridMap::new(
        origin,
        reference.start,
        f64::from(alignment.reference.rate_hz),
        fs,
    );
    let cti_map = GridMap::new(origin, clock.start, clock.effective_rate_hz(), fs);
    let reference_segments: Vec<Segment> = starts
        .iter()
        .map(|&s| Segment {
            first: (s + max_lag) as u64,
            len: window,
        })
        .collect();
    let cti_segments: Vec<Segment> = starts
        .iter()
        .map(|&s| Segment {
            first: s as u64,
            len: window + 2 * max_lag,
        })
        .collect();

    let (reference_windows, cti_windows) = std::thread::scope(|scope| {
        let cti_reader = scope.spawn(|| {
            let mut file = AudioFile::open(cti.clone())?;
            read_segments(&mut file, cti_map, &cti_segments)
        });
        let reference_windows =
            read_segments(&mut reference_file, reference_map, &reference_segments);
        let cti_windows = cti_reader.join().expect("the CTI reader does not panic");
        Ok::<_, crate::MuxError>((reference_windows?, cti_windows?))
    })?;

    let mut combined = Combined::default();
    let mut each = Vec::new();
    for (r, c) in reference_windows.iter().zip(&cti_windows) {
        if let Some(gcc) = xcorr::gcc_phat(r, c, max_lag, fs, Band::SPEECH) {
            each.extend(LagEstimate::from_gcc(&gcc, max_lag, fs));
            combined.add(&gcc);
        }
    }
    alignment.windows = combined.windows();
    alignment.estimate = LagEstimate::from_gcc(&combined.mean(), max_lag, fs);
    if let Some(found) = alignment.estimate {
        alignment.agreeing = each
            .iter()
            .filter(|e| (e.delay_s - found.delay_s).abs() <= 0.001)
            .count();
    }
    let clock = if alignment.applied() {
        alignment.applied_ns = alignment.found_ns().unwrap_or(0);
        clock.shifted(alignment.applied_ns)
    } else {
        clock
    };
    tracing::info!(
        estimate = ?alignment.estimate,
        windows = alignment.windows,
        agreeing = alignment.agreeing,
        applied_ns = alignment.applied_ns,
        "CTI offset against the microphone reference"
    );
    Ok((clock, alignment))
}

/// Where `count` windows of `window` samples start in an overlap of `overlap` samples:
/// as many as it takes to cover it, at most `max`, spread evenly from its start to its end
/// (one window: centred).
fn window_starts(overlap: usize, window: usize, max: usize) -> Vec<usize> {
    let window = window.min(overlap);
    if window == 0 || max == 0 {
        return Vec::new();
    }
    let count = overlap.div_ceil(window).clamp(1, max);
    let room = overlap - window;
    if count == 1 {
        return vec![room / 2];
    }
    (0..count).map(|i| room * i / (count - 1)).collect()
}

/// A stretch of the analysis grid: `len` samples from grid sample `first`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    first: u64,
    len: usize,
}

/// Where grid sample `m` lies in a file: input frame `x0 + m·step`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GridMap {
    x0: f64,
    step: f64,
}

impl GridMap {
    /// For a grid starting at `origin` at `grid_hz`, and a file whose frame 0 is at `start`
    /// and whose frames are worth `rate_hz` per second of the timeline.
    fn new(origin: UtcNanos, start: UtcNanos, rate_hz: f64, grid_hz: f64) -> Self {
        Self {
            x0: (origin.0 - start.0) as f64 / 1e9 * rate_hz,
            step: rate_hz / grid_hz,
        }
    }
}

/// Input frames pushed before a segment's first position: more than the interpolator's
/// half-width, so its first sample sees all its taps.
const LEAD_FRAMES: i64 = 32;

/// Reads `segments` (in order of `first`) of the grid `map` places on `file`, channels
/// averaged; positions outside the recording read silence. Streams the file once, keeping
/// only the segments, and stops after the last.
fn read_segments(
    file: &mut AudioFile,
    map: GridMap,
    segments: &[Segment],
) -> Result<Vec<Vec<f32>>> {
    enum State {
        Waiting,
        Reading(Resampler),
        Done,
    }
    let channels = usize::from(file.info.channels.max(1));
    let position = |s: &Segment| map.x0 + s.first as f64 * map.step;
    let begins: Vec<i64> = segments
        .iter()
        .map(|s| (position(s).floor() as i64 - LEAD_FRAMES).max(0))
        .collect();
    let mut states: Vec<State> = segments.iter().map(|_| State::Waiting).collect();
    let mut out: Vec<Vec<f32>> = segments.iter().map(|s| Vec::with_capacity(s.len)).collect();
    let (mut block, mut mono, mut made) = (Vec::new(), Vec::new(), Vec::new());
    let mut at = 0i64; // input frame of the block's first
    let take = |resampler: &mut Resampler, made: &mut Vec<i16>, out: &mut Vec<f32>, len: usize| {
        made.clear();
        resampler.produce(made, len - out.len());
        out.extend(made.iter().map(|&s| f32::from(s) / 32768.0));
        out.len() == len
    };
    while states.iter().any(|s| !matches!(s, State::Done)) {
        let frames = file.read(&mut block)?;
        if frames == 0 {
            break;
        }
        mono.clear();
        mono.extend(
            block
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        let end = at + mono.len() as i64;
        for (i, segment) in segments.iter().enumerate() {
            if matches!(states[i], State::Waiting) && begins[i] < end {
                let skip = (begins[i] - at).max(0);
                let mut resampler =
                    Resampler::new(1, position(segment) - (at + skip) as f64, map.step);
                resampler.push(&mono[skip as usize..]);
                states[i] = State::Reading(resampler);
            } else if let State::Reading(resampler) = &mut states[i] {
                resampler.push(&mono);
            }
            if let State::Reading(resampler) = &mut states[i]
                && take(resampler, &mut made, &mut out[i], segment.len)
            {
                states[i] = State::Done;
            }
        }
        at = end;
    }
    // The end of the recording: what is left reads silence.
    for ((state, segment), out) in states.iter_mut().zip(segments).zip(&mut out) {
        match state {
            State::Reading(resampler) => {
                resampler.finish();
                while !take(resampler, &mut made, out, segment.len) {}
            }
            State::Waiting => out.resize(segment.len, 0.0),
            State::Done => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_overlap_up_to_the_limit() {
        // 60 s at 8 kHz in 20 s windows: three, at the start, middle and end.
        assert_eq!(
            window_starts(480_000, 160_000, 8),
            vec![0, 160_000, 320_000]
        );
        // A 60-minute call: eight, spread from start to end.
        let starts = window_starts(28_800_000, 160_000, 8);
        assert_eq!(starts.len(), 8);
        assert_eq!((starts[0], starts[7]), (0, 28_800_000 - 160_000));
        // Shorter than a window: one window, the whole overlap.
        assert_eq!(window_starts(100_000, 160_000, 8), vec![0]);
        assert_eq!(window_starts(0, 160_000, 8), Vec::<usize>::new());
    }

    #[test]
    fn segments_are_read_onto_the_grid_in_mono_with_silence_outside() {
        // 2.05 s of 16 kHz stereo: 440 Hz on the left, the same at half level on the right.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ref.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let tone = |t: f64| (2.0 * std::f64::consts::PI * 440.0 * t).sin() * 0.5;
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for n in 0..32_800 {
            let x = tone(f64::from(n) / 16_000.0);
            w.write_sample((x * 32767.0).round() as i16).unwrap();
            w.write_sample((x * 0.5 * 32767.0).round() as i16).unwrap();
        }
        w.finalize().unwrap();
        // The grid starts 1 s before the file: grid sample m is t = m / 8000 − 1 s.
        let map = GridMap::new(UtcNanos(0), UtcNanos(1_000_000_000), 16_000.0, 8000.0);
        let segments = [
            Segment {
                first: 4000,
                len: 8000,
            },
            Segment {
                first: 24_000,
                len: 800,
            },
        ];
        let mut file = AudioFile::open(&path).unwrap();
        let read = read_segments(&mut file, map, &segments).unwrap();
        assert_eq!((read[0].len(), read[1].len()), (8000, 800));
        for (segment, samples) in segments.iter().zip(&read) {
            for (i, &x) in samples.iter().enumerate() {
                let t = (segment.first as f64 + i as f64) / 8000.0 - 1.0;
                let expected = if (0.002..2.048).contains(&t) {
                    0.75 * tone(t)
                } else if !(-0.002..2.052).contains(&t) {
                    0.0
                } else {
                    continue; // the interpolator's edges
                };
                assert!(
                    (f64::from(x) - expected).abs() < 0.01,
                    "t = {t}: {x} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn the_manifest_says_whether_the_call_record_was_kept() {
        let estimate = |confidence| LagEstimate {
            delay_s: 0.73,
            peak: 0.5,
            runner_up: 0.5 * (1.0 - confidence),
            confidence,
        };
        let mut a = Alignment {
            reference: AudioInfo {
                rate_hz: 16_000,
                channels: 1,
                frames: 16_000,
                codec: "flac".into(),
            },
            reference_span: TrackSpan {
                start: UtcNanos(0),
                end: UtcNanos(1_000_000_000),
            },
            estimate: Some(estimate(0.9)),
            windows: 3,
            agreeing: 3,
            threshold: 0.5,
            applied_ns: -730_000_000,
        };
        // A delay of +0.73 s: the call record was late, the correction is −730 ms.
        assert_eq!(a.found_ns(), Some(-730_000_000));
        assert!(a.applied());
        assert!(clock_method(true, Some(&a)).ends_with(
            "offset refined by GCC-PHAT against the agent's microphone reference \
             (3 windows, 3 agreeing within 1 ms)"
        ));
        a.estimate = Some(estimate(0.49));
        assert!(!a.applied());
        assert!(clock_method(false, Some(&a)).ends_with("call record kept"));
        a.estimate = None;
        assert_eq!(a.confidence(), 0.0);
        assert!(clock_method(true, Some(&a)).contains("overlaps the call too little"));
        assert_eq!(
            clock_method(false, None),
            "call record: start only (nominal rate)"
        );
    }

    #[test]
    fn the_grid_maps_through_the_clock() {
        // A 16 kHz file starting 2 s after the grid: grid sample 8000 (1 s) lies 1 s before
        // the file, at input frame −16 000; every grid sample is 2 input frames.
        let map = GridMap::new(UtcNanos(0), UtcNanos(2_000_000_000), 16_000.0, 8000.0);
        assert_eq!(map.x0 + 8000.0 * map.step, -16_000.0);
        assert_eq!(map.step, 2.0);
    }
}
