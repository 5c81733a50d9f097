//! Screenshots as video. When the agent cannot hold a stream it sends a JPEG of the screen
//! every few seconds (the `screenshot` track, one still per frame, on the screen's timeline);
//! the mux worker uses them as the screen track when no screen frames were stored. A still is
//! what was on screen from its capture instant until the next still's.
//!
//! Such a track is always transcoded (H.264 for MP4, VP8 for Matroska) into ordinary
//! constant-rate video at [`STILLS_FPS`] on a grid anchored at the in point: output frame *k*,
//! at `k / STILLS_FPS`, shows the latest still captured at or before that instant. A still
//! therefore appears at most one output frame after its capture and never before it; the last
//! frame is shortened to the out point, so the track lasts exactly `out − in` like any other.
//! Planning is the same as for other video (the nominal frame duration is the median interval
//! between stills: the last still counts as lasting that long, and a hole longer than 2.5
//! intervals is listed as a held frame).
//!
//! * **Feeding** ([`super::feed()`]): each still's JPEG is pushed again at every grid instant
//!   it covers (`Grid`) — a JPEG decodes on its own, so holding a picture is repeating its
//!   buffer (shared, not copied) — and the usual transcoding chain ([`super::Reencoder`])
//!   decodes (`jpegdec`), retimes and encodes them.
//! * **Picture size**: every still is scaled to the first one's size (rounded down to even
//!   numbers, which 4:2:0 encoders need), letterboxed when a later still has another shape,
//!   with square pixels, as I420 (so x264 never picks a 4:4:4 profile players refuse).
//! * **Why 5 fps**: at 1 fps a still would show up to a second after it was taken — long enough
//!   to see a click land after the customer says "now"; at 5 fps the lag is at most 200 ms.
//!   More frames add nothing (the picture changes every few seconds) but decoding and
//!   encoding work: a still taken every 5 s is decoded 25 times, which for 1080p JPEGs is a few
//!   milliseconds each, and unchanged frames cost encoders little.

use std::ops::Range;

use gstreamer as gst;

use crate::timeline::UtcNanos;

/// Frames per second of a stills track's output.
pub const STILLS_FPS: i32 = 5;

/// The output grid's step, nanoseconds.
pub(crate) const TICK_NS: i64 = UtcNanos::SECOND / STILLS_FPS as i64;

/// The size stills are encoded at: the first still's, rounded down to even numbers (at least
/// 2×2).
#[must_use]
pub fn canvas((width, height): (i32, i32)) -> (i32, i32) {
    ((width & !1).max(2), (height & !1).max(2))
}

/// The raw pictures a stills track is brought to before encoding.
pub(crate) fn canvas_caps(first_still: (i32, i32)) -> gst::Caps {
    let (width, height) = canvas(first_still);
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width)
        .field("height", height)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .field("framerate", gst::Fraction::new(STILLS_FPS, 1))
        .build()
}

/// The output grid of a stills track in file time (nanoseconds from the first still): frame
/// `k` at `in_rel + k × TICK_NS`, for every such instant before `out_rel`. Hands out each
/// frame once, in order, to the still on screen at its instant.
#[derive(Debug)]
pub(crate) struct Grid {
    in_rel: i64,
    out_rel: i64,
    /// The first frame not handed out yet.
    next: i64,
}

impl Grid {
    /// The grid of a track cut at `in_rel` and `out_rel` (file time).
    pub(crate) fn new(in_rel: i64, out_rel: i64) -> Self {
        Self {
            in_rel,
            out_rel,
            next: 0,
        }
    }

    /// The frames showing the still captured at `pts` when the next still comes at `until`
    /// (`None`: the last still, shown to the out point). Stills must be given in capture
    /// order; one stamped before an earlier one only gets frames not handed out yet.
    pub(crate) fn frames_of(&mut self, pts: i64, until: Option<i64>) -> Range<i64> {
        let until = until.map_or(self.out_rel, |u| u.min(self.out_rel));
        let first = ceil_div(pts - self.in_rel, TICK_NS).max(self.next);
        let end = ceil_div(until - self.in_rel, TICK_NS);
        if end <= first {
            return first..first;
        }
        self.next = end;
        first..end
    }

    /// Presentation time and duration of frame `k` (file time); the last is cut at the out
    /// point.
    pub(crate) fn frame(&self, k: i64) -> (i64, i64) {
        let pts = self.in_rel + k * TICK_NS;
        (pts, (pts + TICK_NS).min(self.out_rel) - pts)
    }
}

/// `a / b` rounded towards +∞ (`b` > 0).
fn ceil_div(a: i64, b: i64) -> i64 {
    -(-a).div_euclid(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn each_frame_shows_the_latest_still_taken_at_or_before_it() {
        // Cut from 700 ms to 3 s after the first still; stills at 0, 1.03 s, 2.1 s.
        let mut grid = Grid::new(700 * MS, 3_000 * MS);
        // On screen at the in point: frames at 0.7, 0.9 s (file time) until 1.03 s.
        assert_eq!(grid.frames_of(0, Some(1_030 * MS)), 0..2);
        // 1.03 s → first frame at or after it: 1.1 s (k = 2), up to 2.1 s exclusive.
        assert_eq!(grid.frames_of(1_030 * MS, Some(2_100 * MS)), 2..7);
        // 2.1 s is on the grid: shown from that frame; the last still runs to the out point.
        assert_eq!(grid.frames_of(2_100 * MS, None), 7..12);
        assert_eq!(grid.frame(7), (2_100 * MS, 200 * MS));
        // The last frame (2.9 s) is cut at 3 s.
        assert_eq!(grid.frame(11), (2_900 * MS, 100 * MS));
    }

    #[test]
    fn stills_between_two_frames_or_out_of_order_never_move_time_backwards() {
        let mut grid = Grid::new(0, 2_000 * MS);
        assert_eq!(grid.frames_of(0, Some(410 * MS)), 0..3);
        // Taken and replaced between two frames: never shown.
        assert_eq!(grid.frames_of(410 * MS, Some(450 * MS)), 3..3);
        assert_eq!(grid.frames_of(450 * MS, Some(1_000 * MS)), 3..5);
        // Stamped before the previous one: only frames not yet handed out.
        assert_eq!(grid.frames_of(300 * MS, Some(1_300 * MS)), 5..7);
        assert_eq!(grid.frames_of(1_300 * MS, Some(5_000 * MS)), 7..10);
        assert!(
            grid.frames_of(5_000 * MS, None).is_empty(),
            "after the out point"
        );
    }

    #[test]
    fn a_cut_before_the_first_still_starts_at_it() {
        // An explicit in point 0.5 s before the first still.
        let mut grid = Grid::new(-500 * MS, 1_000 * MS);
        assert_eq!(grid.frames_of(0, None), 3..8);
        assert_eq!(grid.frame(3).0, 100 * MS);
    }

    #[test]
    fn stills_are_encoded_at_even_sizes() {
        assert_eq!(canvas((1919, 1081)), (1918, 1080));
        assert_eq!(canvas((1, 1)), (2, 2));
        assert_eq!(TICK_NS, 200 * MS);
    }
}
