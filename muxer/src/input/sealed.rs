//! A track of a live session as the ingest server stored it: the agent's frames, still sealed
//! under the session media key, in [`storage::track_log`] records — the local log, or the
//! segments it was rolled into in the blob store, read in order. Each pass reads them record by
//! record and opens each frame in memory — with the session id and the frame header as
//! associated data, so a frame of another session or a tampered one stops the mux with one
//! line — and the plaintext never reaches a disk. Frames flagged `paused` carry no media and
//! are skipped: the pause stays a hole on the timeline, shown as the held last picture.
//!
//! With a [`ClockMapping`] the frames come out stamped in UTC nanoseconds (the agent's
//! monotonic clock mapped through the session's clock-sync exchanges, skew included), so the
//! track's first frame time is its start on the timeline.

use proto::{FrameFlags, SessionCipher, SessionKey, Track};
use storage::track_log::Records;
use uuid::Uuid;

use super::bytes::InputBytes;
use super::frames::{FrameFormat, FrameIter, FrameSource, RawFrame};
use crate::error::{MuxError, Result};
use crate::timeline::ClockMapping;

/// A sealed track log, read as a [`FrameSource`].
pub struct SealedTrack {
    /// The log's segments, in order (a local log is one).
    pub segments: Vec<InputBytes>,
    /// The session it belongs to (the frames' associated data).
    pub session: Uuid,
    /// Which track it holds.
    pub track: Track,
    /// The session media key.
    pub key: SessionKey,
    /// The codec the agent sent.
    pub format: FrameFormat,
    /// The largest frame payload accepted.
    pub max_payload: usize,
    /// Maps the agent's clock onto UTC; `None` leaves the agent's timestamps as they are.
    pub clock: Option<ClockMapping>,
}

impl SealedTrack {
    fn input_error(&self, reason: impl Into<String>) -> MuxError {
        MuxError::input(std::path::Path::new(&self.label()), reason)
    }
}

impl FrameSource for SealedTrack {
    fn label(&self) -> String {
        format!("session {}/{}", self.session, self.track.name())
    }

    fn format(&self) -> FrameFormat {
        self.format
    }

    fn frames(&self) -> Result<FrameIter<'_>> {
        let mut readers = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            readers.push((segment.name(), segment.open()?));
        }
        let records = readers
            .into_iter()
            .flat_map(|(name, reader)| Records::from_reader(name, reader));
        let cipher = SessionCipher::new(&self.key, self.session);
        Ok(Box::new(records.filter_map(move |record| {
            let record = match record {
                Ok(r) => r,
                Err(e) => return Some(Err(self.input_error(e.to_string()))),
            };
            let (header, data) = match cipher.open(&record.frame, self.max_payload) {
                Ok(opened) => opened,
                Err(e) => {
                    return Some(Err(self.input_error(format!("frame {}: {e}", record.seq))));
                }
            };
            if header.track != self.track || header.seq != record.seq {
                return Some(Err(self.input_error(format!(
                    "frame {} is stored under the wrong track or sequence number",
                    record.seq
                ))));
            }
            if header.flags.contains(FrameFlags::PAUSED) {
                return None;
            }
            let captured = header.captured_at_ns;
            Some(Ok(RawFrame {
                pts_ns: self.clock.map_or(captured, |c| c.to_utc(captured).0),
                keyframe: header.flags.contains(FrameFlags::KEYFRAME),
                data,
            }))
        })))
    }
}
