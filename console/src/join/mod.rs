//! The customer join page's media path (issue 6): a customer without the agent opens `/join`,
//! redeems the code and consents in the browser (`/api/v1/join`, `/api/v1/consent`, as the
//! agent does), and sends the camera (and the screen) over WebRTC. The console is the
//! browser's peer and, for the session, **its agent**:
//!
//! ```text
//! browser ──WebRTC (SRTP, VP8 or H.264)──▶ console: receiver ─RTP─▶ agent::capture::rtp (jitter buffer, decode,
//!                                                                    x264 zero latency, agent clock)
//!                                          ─sealed frames (session key)─▶ agent::link ──▶ ingest /api/v1/agent
//! ```
//!
//! The bridge speaks the agent media protocol exactly as `idv agent` does — the agent crate's
//! [`agent::link::Link`] (resume, acks, clock sync), [`agent::outbox::Outbox`] and
//! [`agent::session::seal_frames`] — so ingest stores, acknowledges, relays and muxes the
//! browser's tracks like any agent's: the same tracks, H.264, on the same timeline.
//!
//! * [`offer`] — what the browser's SDP offer sends, and the codec chosen for it.
//! * `receiver` — the webrtc-rs peer connection that receives the tracks.
//! * `bridge` — the agent side: link, sealing, the per-track encode pipelines, the loop.
//! * [`Bridges`] — the running bridges by session, for the customer's "leave".
//!
//! Nothing is written to disk: packets, pictures and access units live in memory, and frames
//! are sealed before they are queued.

mod bridge;
pub mod offer;
mod receiver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use bridge::{BridgeEnding, BridgeSummary, JoinedBridge, answer};
pub use offer::Offered;
use uuid::Uuid;

/// Where the bridge reaches the ingest server, as an agent would.
#[derive(Clone)]
pub struct IngestEndpoint {
    /// `https://host:port` of the ingest server.
    pub server: url::Url,
    /// Its certificate, PEM.
    pub ca_pem: Vec<u8>,
}

/// Why a browser's media could not be taken, worded for the customer's page (the HTTP handler
/// maps each kind to a status; nothing here carries a key or a token).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The offer is not SDP, sends no video, or offers neither H.264 nor VP8.
    #[error("the browser's WebRTC offer cannot be answered: {0}")]
    BadOffer(String),
    /// The session token is malformed or the ingest server refused it.
    #[error("the session token is not valid: join again with a new code")]
    BadToken,
    /// The ingest server refused the session for another reason (it ended, consent missing).
    #[error("the session cannot take media: {0}")]
    Refused(String),
    /// A browser is already sending into this session.
    #[error("this session already receives media from a browser")]
    InUse,
    /// The ingest server cannot be reached, or the console has no ingest server.
    #[error("the recording service is unavailable: {0}")]
    Unavailable(String),
    /// The decoding or encoding pipeline could not start (a missing GStreamer element).
    #[error("media pipeline: {0}")]
    Media(String),
    /// The WebRTC stack failed.
    #[error("WebRTC: {0}")]
    WebRtc(String),
}

impl From<webrtc::Error> for JoinError {
    fn from(e: webrtc::Error) -> Self {
        JoinError::WebRtc(e.to_string())
    }
}

/// Results of the join path.
pub type Result<T, E = JoinError> = std::result::Result<T, E>;

/// The session a token names (`<session id>.<MAC>`); only ingest can tell whether it is
/// genuine, so this is a lookup key, never an authorisation.
#[must_use]
pub fn session_named_by(token: &str) -> Option<Uuid> {
    let (id, mac) = token.trim().split_once('.')?;
    if mac.is_empty() {
        return None;
    }
    Uuid::parse_str(id).ok()
}

/// The running bridges, by session: one browser per session at a time.
#[derive(Default)]
pub struct Bridges {
    running: Mutex<HashMap<Uuid, JoinedBridge>>,
}

impl Bridges {
    /// Keeps `bridge` until [`Bridges::remove`]; `false` (and nothing kept) when the session
    /// has one already.
    pub fn insert(&self, bridge: JoinedBridge) -> bool {
        let mut running = self.running.lock().expect("bridges lock");
        if running.get(&bridge.session()).is_some_and(|b| !b.is_over()) {
            return false;
        }
        running.insert(bridge.session(), bridge);
        true
    }

    /// Whether `session` has a bridge still running.
    #[must_use]
    pub fn is_running(&self, session: Uuid) -> bool {
        let running = self.running.lock().expect("bridges lock");
        running.get(&session).is_some_and(|b| !b.is_over())
    }

    /// The bridge of the session `token` stands for, if `token` is the one it was started
    /// with (compared in constant time).
    #[must_use]
    pub fn find(&self, token: &str) -> Option<JoinedBridge> {
        let session = session_named_by(token)?;
        let running = self.running.lock().expect("bridges lock");
        running
            .get(&session)
            .filter(|b| b.token_matches(token))
            .cloned()
    }

    /// Forgets the bridge of `session`.
    pub fn remove(&self, session: Uuid) {
        self.running.lock().expect("bridges lock").remove(&session);
    }
}

/// Shared between the HTTP handlers.
pub type SharedBridges = Arc<Bridges>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_session_and_nothing_else_does() {
        let id = Uuid::new_v4();
        assert_eq!(session_named_by(&format!("{id}.abcd")), Some(id));
        for bad in ["", "abc", &format!("{id}"), &format!("{id}."), "x.y"] {
            assert_eq!(session_named_by(bad), None, "{bad}");
        }
    }
}
