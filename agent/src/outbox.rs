//! Frames sealed and waiting for the server's acknowledgement: the agent's spill buffer. Every
//! frame is sealed (AES-256-GCM under the session media key) before it is kept here, so the
//! buffer holds nothing in the clear; it lives in memory (nothing is written to the device's
//! disk) and is bounded in bytes. A frame leaves only when the server acknowledged it as
//! durable; after a reconnect everything past the server's `welcome.acked` is sent again.

use std::collections::{BTreeMap, VecDeque};

use proto::{Track, TrackSeqs};

/// One sealed frame on the wire.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Its seq on its track.
    pub seq: u64,
    /// The whole binary message (header and sealed payload).
    pub bytes: Vec<u8>,
}

/// The sealed frames not yet acknowledged, per track, in seq order.
#[derive(Debug)]
pub struct Outbox {
    tracks: BTreeMap<Track, VecDeque<Sealed>>,
    next: TrackSeqs,
    bytes: usize,
    limit: usize,
}

impl Outbox {
    /// An empty buffer holding at most `limit` bytes.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            tracks: BTreeMap::new(),
            next: TrackSeqs::new(),
            bytes: 0,
            limit,
        }
    }

    /// The seq the next frame of `track` gets (1, 2, 3 …; never reused).
    pub fn next_seq(&mut self, track: Track) -> u64 {
        let seq = self.next.get(track) + 1;
        self.next.advance(track, seq);
        seq
    }

    /// The last seq given to a frame of `track` (0 if none).
    #[must_use]
    pub fn last_seq(&self, track: Track) -> u64 {
        self.next.get(track)
    }

    /// How full it is, 0.0 to 1.0 (and beyond, by the last frame let in).
    #[must_use]
    pub fn fill(&self) -> f64 {
        self.bytes as f64 / self.limit.max(1) as f64
    }

    /// Whether a frame of `len` bytes fits.
    #[must_use]
    pub fn has_room(&self, len: usize) -> bool {
        self.bytes + len <= self.limit
    }

    /// Keeps a sealed frame until it is acknowledged.
    pub fn push(&mut self, track: Track, frame: Sealed) {
        self.bytes += frame.bytes.len();
        self.tracks.entry(track).or_default().push_back(frame);
    }

    /// The server has every frame of `track` up to `seq`: they are dropped.
    pub fn ack(&mut self, track: Track, seq: u64) {
        if let Some(queue) = self.tracks.get_mut(&track) {
            while queue.front().is_some_and(|f| f.seq <= seq) {
                let frame = queue.pop_front().expect("front checked");
                self.bytes -= frame.bytes.len();
            }
        }
    }

    /// The frames of `track` after `seq`, in order.
    pub fn after(&self, track: Track, seq: u64) -> impl Iterator<Item = &Sealed> + '_ {
        self.tracks
            .get(&track)
            .into_iter()
            .flat_map(move |q| q.iter().filter(move |f| f.seq > seq))
    }

    /// The tracks holding frames.
    pub fn tracks(&self) -> impl Iterator<Item = Track> + '_ {
        self.tracks
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(t, _)| *t)
    }

    /// Whether every frame was acknowledged.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes == 0 && self.tracks.values().all(VecDeque::is_empty)
    }

    /// Bytes held.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(outbox: &mut Outbox, track: Track, len: usize) -> u64 {
        let seq = outbox.next_seq(track);
        outbox.push(
            track,
            Sealed {
                seq,
                bytes: vec![0; len],
            },
        );
        seq
    }

    #[test]
    fn frames_stay_until_acknowledged_and_resend_from_the_servers_view() {
        let mut outbox = Outbox::new(1000);
        for _ in 0..4 {
            frame(&mut outbox, Track::Camera, 100);
        }
        frame(&mut outbox, Track::Screen, 300);
        assert_eq!(outbox.bytes(), 700);
        assert!(!outbox.has_room(301));
        outbox.ack(Track::Camera, 2);
        assert_eq!(outbox.bytes(), 500);
        let resend: Vec<u64> = outbox.after(Track::Camera, 2).map(|f| f.seq).collect();
        assert_eq!(resend, [3, 4]);
        assert_eq!(outbox.after(Track::Camera, 3).count(), 1);
        assert_eq!(
            frame(&mut outbox, Track::Camera, 10),
            5,
            "seqs are never reused"
        );
        outbox.ack(Track::Camera, 5);
        outbox.ack(Track::Screen, 1);
        assert!(outbox.is_empty());
        assert_eq!(outbox.tracks().count(), 0);
    }
}
