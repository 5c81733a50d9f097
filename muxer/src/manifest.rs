//! The manifest sealed with every muxed recording: enough to check where each byte came
//! from (SHA-256 of every input), how the clocks were put together (mapping, offset, drift,
//! confidence), where it was cut and what is missing in it (gaps), and what made it.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::timeline::UtcNanos;

/// The manifest's own format version.
pub const MANIFEST_VERSION: u32 = 1;

/// Which input or output track something is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackRole {
    /// The customer's camera.
    Camera,
    /// The customer's screen.
    Screen,
    /// The call centre's recording of the call.
    CtiAudio,
    /// The camera composited over the screen (`--layout pip`).
    Composite,
    /// The agent's microphone, recorded on the agent's clock: places the CTI audio on the
    /// timeline, never muxed.
    MicReference,
}

impl From<crate::video::VideoRole> for TrackRole {
    fn from(role: crate::video::VideoRole) -> Self {
        match role {
            crate::video::VideoRole::Camera => Self::Camera,
            crate::video::VideoRole::Screen => Self::Screen,
        }
    }
}

/// An RFC 3339 UTC instant with nanoseconds, as the manifest writes them.
#[must_use]
pub fn rfc3339(t: UtcNanos) -> String {
    t.to_datetime()
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.0.to_string())
}

/// A stretch of the output where a track has nothing: a hole kept in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// The track with the hole.
    pub track: TrackRole,
    /// Where the hole starts (UTC).
    pub from: String,
    /// Where it ends (UTC).
    pub to: String,
    /// Where it starts in the output, seconds from the in point.
    pub output_from_s: f64,
    /// Its length, seconds.
    pub seconds: f64,
    /// What fills it: `silence`, `held frame`.
    pub filled_with: &'static str,
    #[serde(skip)]
    from_utc: UtcNanos,
}

impl Gap {
    /// A hole in `track` over `[from, to)`, filled with `filled_with`.
    #[must_use]
    pub fn new(track: TrackRole, from: UtcNanos, to: UtcNanos, filled_with: &'static str) -> Self {
        Self {
            track,
            from: rfc3339(from),
            to: rfc3339(to),
            output_from_s: 0.0,
            seconds: (to.0 - from.0) as f64 / 1e9,
            filled_with,
            from_utc: from,
        }
    }

    /// Fills in the output position relative to `in_point`.
    #[must_use]
    pub fn relative_to(mut self, in_point: UtcNanos) -> Self {
        self.output_from_s = (self.from_utc.0 - in_point.0) as f64 / 1e9;
        self
    }
}

/// One input (a file, or a stream of video frames), identified.
#[derive(Debug, Clone, Serialize)]
pub struct InputRecord {
    /// Camera, screen or CTI audio.
    pub role: TrackRole,
    /// File name (no directories: those say nothing about the content), or a frame source's
    /// label.
    pub file: String,
    /// Size in bytes (a frame source: the frames' bytes).
    pub bytes: u64,
    /// SHA-256 of the whole file, hex; for a frame source, of every frame's bytes
    /// concatenated in decode order (see [`crate::input::fingerprint_video`]).
    pub sha256: String,
    /// Codec as read.
    pub codec: String,
    /// When it starts on the timeline (as given: for the CTI audio, by the call record).
    pub start: String,
    /// When it ends on the timeline (as given, or as computed).
    pub end: String,
    /// Video frames or audio sample frames in the file.
    pub units: u64,
}

/// How the CTI recording's clock was put on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct ClockRecord {
    /// How the mapping was found.
    pub method: String,
    /// Nominal sample rate of the recording (`null`: video only).
    pub nominal_rate_hz: Option<u32>,
    /// Samples per second of UTC, as measured (`null`: video only).
    pub effective_rate_hz: Option<f64>,
    /// Drift of the recorder's clock (+ = fast), ppm; `null` without an end time.
    pub drift_ppm: Option<f64>,
    /// Audio start minus camera start, seconds, as muxed (after any refinement); `null`:
    /// video only.
    pub audio_offset_s: Option<f64>,
    /// The correction applied to the call record's audio start, milliseconds (+ = later):
    /// 0 when the microphone reference was not confident enough; `null` without one.
    pub refined_by_ms: Option<f64>,
    /// The correction the microphone reference points at, milliseconds, applied or not;
    /// `null` without a reference, or when it overlaps the call too little or is silent.
    pub reference_correction_ms: Option<f64>,
    /// Confidence of the reference's estimate in [0, 1] (GCC-PHAT peak prominence: 1 −
    /// runner-up ÷ peak); applied from 0.5. `null` without a reference: the call record is
    /// then taken as is.
    pub confidence: Option<f64>,
    /// The agent clock's mapping, when the video came from a live session (not for files).
    pub agent_clock: Option<AgentClockRecord>,
}

/// How the agent's monotonic clock was put on UTC (see `timeline::ClockMapping`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentClockRecord {
    /// Clock-sync exchanges stored with the session.
    pub samples: usize,
    /// Exchanges the fit used (the shortest round trips).
    pub samples_used: usize,
    /// The shortest round trip, milliseconds: half of it bounds the offset's error.
    pub min_round_trip_ms: f64,
    /// RMS distance of the used exchanges from the fitted line, milliseconds.
    pub residual_ms: f64,
    /// The agent clock's rate error, ppm.
    pub skew_ppm: f64,
}

/// The in and out points.
#[derive(Debug, Clone, Serialize)]
pub struct CutRecord {
    /// First instant kept (UTC).
    pub r#in: String,
    /// First instant no longer kept (UTC).
    pub out: String,
    /// `out − in`, seconds.
    pub duration_s: f64,
    /// Why these: `latest start` / `earliest end` or `requested`.
    pub in_chosen_by: &'static str,
    /// Why the out point.
    pub out_chosen_by: &'static str,
}

/// One track of the output file.
#[derive(Debug, Clone, Serialize)]
pub struct TrackRecord {
    /// Index of the stream in the container.
    pub index: usize,
    /// What it carries.
    pub role: TrackRole,
    /// Output codec.
    pub codec: String,
    /// How it was made: `passthrough`, `passthrough, first GOP re-encoded (N frames)`,
    /// `transcoded`, `resampled …`.
    pub made_by: String,
    /// Video frames or audio samples in the output.
    pub units: u64,
}

/// The whole manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// `mux`.
    pub kind: &'static str,
    /// [`MANIFEST_VERSION`].
    pub manifest_version: u32,
    /// `idv x.y.z`.
    pub tool: String,
    /// The GStreamer the mux ran on.
    pub gstreamer: String,
    /// Container of the sealed payload.
    pub container: &'static str,
    /// No CTI recording was muxed (it had not arrived by its deadline): video tracks only.
    pub video_only: bool,
    /// Every input.
    pub inputs: Vec<InputRecord>,
    /// The clock mapping.
    pub clock: ClockRecord,
    /// The cut.
    pub cuts: CutRecord,
    /// The output's tracks.
    pub tracks: Vec<TrackRecord>,
    /// Holes in any track.
    pub gaps: Vec<Gap>,
    /// When the mux finished.
    pub muxed_at: String,
}
