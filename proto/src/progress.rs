//! Per-track sequence bookkeeping, the one place the ack/resume rules live so the agent and
//! the server cannot read them differently:
//!
//! * The agent numbers the frames it *sends* on each track 1, 2, 3, … with no holes (media
//!   lost before sending is marked with the gap flag on the next frame, not by skipping).
//! * Acks are cumulative per track: `Ack { track, seq }` means every frame ≤ `seq` is durable.
//! * Receiving is idempotent by seq: a frame at or below the highest seq already taken is a
//!   resend — acknowledged again (once durable), never stored twice. A frame beyond the next
//!   expected seq means frames went missing, which is a protocol error.
//! * After a reconnect the agent resends every track from the server's `acked + 1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::frame::Track;

/// A sequence number per track, e.g. the last ack (absent or 0: nothing yet). Serialized as
/// a JSON object keyed by track name: `{"camera": 120, "screen": 7}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackSeqs(BTreeMap<Track, u64>);

/// How a received frame's seq relates to what the receiver already took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next frame of the track: store it.
    Next,
    /// A resend of a frame already taken: acknowledge, do not store again.
    Duplicate,
    /// Frames between were never received; `expected` is the seq that should have come.
    Skipped {
        /// The seq the receiver expected.
        expected: u64,
    },
}

impl TrackSeqs {
    /// Nothing for any track.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The seq for `track`, 0 if none.
    #[must_use]
    pub fn get(&self, track: Track) -> u64 {
        self.0.get(&track).copied().unwrap_or(0)
    }

    /// Raises `track`'s seq to `seq`; a lower or equal `seq` changes nothing (acks and
    /// resends can arrive late). Returns whether it rose.
    pub fn advance(&mut self, track: Track, seq: u64) -> bool {
        if seq > self.get(track) {
            self.0.insert(track, seq);
            true
        } else {
            false
        }
    }

    /// Classifies a received frame against the highest seq taken so far on its track.
    #[must_use]
    pub fn classify(&self, track: Track, seq: u64) -> Arrival {
        let last = self.get(track);
        if seq <= last {
            Arrival::Duplicate
        } else if seq == last + 1 {
            Arrival::Next
        } else {
            Arrival::Skipped { expected: last + 1 }
        }
    }

    /// The seq the sender resumes `track` from: one past this value.
    #[must_use]
    pub fn resume_from(&self, track: Track) -> u64 {
        self.get(track).saturating_add(1)
    }

    /// The tracks with a non-zero seq, in track order.
    pub fn iter(&self) -> impl Iterator<Item = (Track, u64)> + '_ {
        self.0
            .iter()
            .filter(|(_, s)| **s > 0)
            .map(|(t, s)| (*t, *s))
    }
}

impl FromIterator<(Track, u64)> for TrackSeqs {
    fn from_iter<I: IntoIterator<Item = (Track, u64)>>(iter: I) -> Self {
        let mut seqs = Self::new();
        for (track, seq) in iter {
            seqs.advance(track, seq);
        }
        seqs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_resume_rules() {
        let mut taken = TrackSeqs::new();
        assert_eq!(taken.classify(Track::Camera, 1), Arrival::Next);
        assert_eq!(
            taken.classify(Track::Camera, 2),
            Arrival::Skipped { expected: 1 }
        );
        assert!(taken.advance(Track::Camera, 1));
        assert!(taken.advance(Track::Camera, 2));
        assert_eq!(taken.classify(Track::Camera, 1), Arrival::Duplicate);
        assert_eq!(taken.classify(Track::Camera, 2), Arrival::Duplicate);
        assert_eq!(taken.classify(Track::Camera, 3), Arrival::Next);
        // Tracks are independent.
        assert_eq!(taken.classify(Track::Screen, 1), Arrival::Next);
        assert_eq!(taken.resume_from(Track::Camera), 3);
        assert_eq!(taken.resume_from(Track::Screen), 1);
    }

    #[test]
    fn late_acks_never_move_backwards() {
        let mut acked = TrackSeqs::new();
        assert!(acked.advance(Track::Screen, 10));
        assert!(!acked.advance(Track::Screen, 4));
        assert!(!acked.advance(Track::Screen, 10));
        assert_eq!(acked.get(Track::Screen), 10);
    }

    #[test]
    fn serializes_as_an_object_keyed_by_track_name() {
        let seqs: TrackSeqs = [(Track::Camera, 120), (Track::MicReference, 7)]
            .into_iter()
            .collect();
        let json = serde_json::to_string(&seqs).unwrap();
        assert_eq!(json, r#"{"camera":120,"mic_reference":7}"#);
        assert_eq!(serde_json::from_str::<TrackSeqs>(&json).unwrap(), seqs);
        assert!(serde_json::from_str::<TrackSeqs>(r#"{"radio":1}"#).is_err());
        assert_eq!(
            seqs.iter().collect::<Vec<_>>(),
            [(Track::Camera, 120), (Track::MicReference, 7)]
        );
    }
}
