//! Keyframes the server asks for (someone started watching live, or lost frames): each is a
//! burst of bytes, so a track is forced at most once per [`MIN_INTERVAL`] whoever asks and
//! however often — a watcher reconnecting in a loop cannot flood the customer's uplink.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::Track;

/// The least time between two keyframes forced for the server on one track.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When each track's last keyframe was forced for the server.
#[derive(Debug, Default)]
pub struct ForcedKeyframes {
    last: HashMap<Track, Instant>,
}

impl ForcedKeyframes {
    /// Whether a keyframe of `track` asked for at `now` is forced (and counts from then).
    pub fn allow(&mut self, track: Track, now: Instant) -> bool {
        match self.last.get(&track) {
            Some(&last) if now.saturating_duration_since(last) < MIN_INTERVAL => false,
            _ => {
                self.last.insert(track, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_track_is_forced_at_most_once_a_second() {
        let mut forced = ForcedKeyframes::default();
        let t0 = Instant::now();
        assert!(forced.allow(Track::Camera, t0));
        assert!(forced.allow(Track::Screen, t0), "tracks count apart");
        assert!(!forced.allow(Track::Camera, t0 + Duration::from_millis(10)));
        assert!(!forced.allow(Track::Camera, t0 + Duration::from_millis(999)));
        assert!(forced.allow(Track::Camera, t0 + MIN_INTERVAL));
        assert!(!forced.allow(
            Track::Camera,
            t0 + MIN_INTERVAL + Duration::from_millis(500)
        ));
    }
}
