//! Video tracks: which frames are kept between the cuts, how they reach the muxer, and the
//! gaps they leave.
//!
//! Frames keep their true times: output PTS = capture instant − in point, and the frame on
//! screen at the in point is shown from 0 (shortened, never moved). Three ways in:
//! * **passthrough** — the kept frames start on a keyframe: bytes are copied;
//! * **passthrough with a re-encoded head** — the in point falls inside a GOP: the frames
//!   from the one on screen at the in point up to the next keyframe are decoded (from the GOP's
//!   keyframe) and re-encoded, the rest is copied. For H.264 the track is then `avc3`, each
//!   keyframe carrying its parameter sets, so decoders switch cleanly between the two;
//! * **transcode** — the codec does not fit the container (H.264 into WebM, VP8 into MP4) or
//!   frames are stored out of order (B-frames): every kept frame is decoded and re-encoded.
//!   JPEG stills (screenshots) are always transcoded, each held until the next
//!   ([`stills`]).
//!
//! A hole between frames (lost network, paused sharing) stays a hole: the last frame before
//! it is held on screen until the next, and the hole is listed in the manifest.

pub mod avc;
mod encode;
pub mod feed;
pub mod pip;
pub mod stills;

pub use encode::{Reencoder, encoder_for};
pub use feed::{feed, feed_decoded, transcoder};
pub use pip::{PipBranch, PipLayout};

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::input::frames::FrameSource;
use crate::input::tiles;
use crate::input::video::{VideoCodec, VideoScan, VideoSource};
use crate::manifest::Gap;
use crate::timeline::{CutPoints, TrackSpan, UtcNanos};

/// Which picture a video track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoRole {
    /// The customer's camera.
    Camera,
    /// The customer's screen.
    Screen,
}

/// A video input (a file or a frame stream) and the instant its first frame was captured.
#[derive(Debug, Clone)]
pub struct VideoInput {
    /// Camera or screen.
    pub role: VideoRole,
    /// Where its frames come from.
    pub source: VideoSource,
    /// When its first frame was captured.
    pub start: UtcNanos,
}

impl VideoInput {
    /// A container file whose first frame was captured at `start`.
    #[must_use]
    pub fn file(role: VideoRole, path: impl Into<PathBuf>, start: UtcNanos) -> Self {
        Self {
            role,
            source: VideoSource::File(path.into()),
            start,
        }
    }

    /// Encoded frames whose first was captured at `start`.
    #[must_use]
    pub fn frames(role: VideoRole, frames: Arc<dyn FrameSource>, start: UtcNanos) -> Self {
        Self {
            role,
            source: VideoSource::Frames(frames),
            start,
        }
    }

    /// The file's path or the frame source's label (for errors and the manifest).
    #[must_use]
    pub fn label(&self) -> PathBuf {
        self.source.label()
    }
}

/// How a track's frames reach the muxer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoMode {
    /// Copied as they are.
    Passthrough,
    /// The first `frames` frames re-encoded, the rest copied.
    ReencodedHead {
        /// Frames re-encoded (from the one on screen at the in point to the next keyframe).
        frames: usize,
    },
    /// Decoded and re-encoded to `VideoCodec`.
    Transcode(VideoCodec),
}

/// One video track of the output, planned.
#[derive(Debug, Clone)]
pub struct VideoTrack {
    /// Where it comes from.
    pub input: VideoInput,
    /// What the first pass learned.
    pub scan: VideoScan,
    /// Frames kept, as indices in decode order (= presentation order unless transcoding).
    pub kept: Range<usize>,
    /// How the frames reach the muxer.
    pub mode: VideoMode,
    /// Where the picture is held because frames are missing.
    pub gaps: Vec<Gap>,
    /// The in and out points.
    pub cuts: CutPoints,
}

impl VideoTrack {
    /// What the file covers on the timeline.
    #[must_use]
    pub fn span(scan: &VideoScan, start: UtcNanos) -> TrackSpan {
        TrackSpan {
            start,
            end: start.plus(scan.end()),
        }
    }

    /// Plans the track for `cuts`, to be muxed as `codec` (what the container takes).
    #[must_use]
    pub fn plan(input: VideoInput, scan: VideoScan, cuts: CutPoints, codec: VideoCodec) -> Self {
        let times: Vec<UtcNanos> = scan
            .sorted_pts()
            .iter()
            .map(|&p| input.start.plus(p))
            .collect();
        let shown = cuts.video_frames(&times);
        let gaps = find_gaps(
            &times[shown.clone()],
            scan.frame_duration,
            &cuts,
            input.role,
        );
        let (kept, mode) = if scan.reordered || scan.codec != codec {
            (shown, VideoMode::Transcode(codec))
        } else if scan.keyframes[shown.start] {
            (shown, VideoMode::Passthrough)
        } else {
            let next_key = (shown.start..shown.end)
                .find(|&i| scan.keyframes[i])
                .unwrap_or(shown.end);
            let frames = next_key - shown.start;
            (shown, VideoMode::ReencodedHead { frames })
        };
        Self {
            input,
            scan,
            kept,
            mode,
            gaps,
            cuts,
        }
    }

    /// The in point relative to the file's first frame, nanoseconds.
    #[must_use]
    pub fn in_rel(&self) -> i64 {
        self.cuts.in_point.0 - self.input.start.0
    }

    /// The out point relative to the file's first frame, nanoseconds.
    #[must_use]
    pub fn out_rel(&self) -> i64 {
        self.cuts.out_point.0 - self.input.start.0
    }

    /// How the track was made, for the manifest.
    #[must_use]
    pub fn made_by(&self) -> String {
        match self.mode {
            VideoMode::Passthrough => "passthrough".into(),
            VideoMode::ReencodedHead { frames } => format!(
                "passthrough; the first {frames} frames (partial GOP at the in point) re-encoded"
            ),
            VideoMode::Transcode(_) if self.scan.codec.is_stills() => {
                let (width, height) = stills::canvas(self.scan.size);
                format!(
                    "transcoded from {}, each held until the next, as {} fps video at \
                     {width}×{height}",
                    if self.input.label().ends_with(tiles::LABEL_SUFFIX) {
                        "the screen codec's changed screens"
                    } else {
                        "screenshots: JPEG stills"
                    },
                    stills::STILLS_FPS
                )
            }
            VideoMode::Transcode(_) => "transcoded".into(),
        }
    }

    /// The keyframe decoding must start from to show frame `first` (decode order).
    #[must_use]
    pub fn keyframe_before(&self, first: usize) -> usize {
        if self.scan.reordered {
            return 0;
        }
        (0..=first)
            .rev()
            .find(|&i| self.scan.keyframes[i])
            .unwrap_or(0)
    }
}

/// Holes between shown frames longer than 2.5 frame durations (and at least 100 ms): the
/// picture is held from one frame past the last before the hole until the next frame.
fn find_gaps(times: &[UtcNanos], frame: i64, cuts: &CutPoints, role: VideoRole) -> Vec<Gap> {
    let threshold = (frame * 5 / 2).max(100_000_000);
    let mut gaps: Vec<Gap> = times
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > threshold)
        .map(|w| Gap::new(role.into(), w[0].plus(frame), w[1], "held frame"))
        .collect();
    if let Some(&last) = times.last()
        && cuts.out_point.0 - last.0 > threshold
    {
        gaps.push(Gap::new(
            role.into(),
            last.plus(frame),
            cuts.out_point,
            "held frame",
        ));
    }
    gaps
}
