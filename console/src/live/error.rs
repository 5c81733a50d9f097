//! What can go wrong when an operator opens a live view, worded for the console to show (the
//! HTTP handler maps each kind to a status; nothing here carries a key or a token).

/// A live view that could not start, or stopped on a fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The feed settings are unusable (a base URL that is not `https://`, a CA file that holds
    /// no certificate).
    #[error("live feed settings: {0}")]
    Config(String),
    /// The ingest server refused the operator token.
    #[error("the ingest server refused the operator token (401): log in again")]
    Unauthorised,
    /// The ingest server has no open session by that id for this operator (unknown, ended, or
    /// of another group).
    #[error("no open session {0} to watch: it is unknown, has ended, or belongs to another group")]
    SessionNotFound(uuid::Uuid),
    /// The ingest server could not be reached or answered something else.
    #[error("the live feed is unavailable: {0}")]
    FeedUnavailable(String),
    /// The feed broke the live protocol (`docs/PROTOCOL.md` §8): a first message other than
    /// `subscribed`, a frame that does not open under the session key.
    #[error("the live feed broke the protocol: {0}")]
    Protocol(String),
    /// The browser's SDP offer cannot be answered (not SDP, or no video to receive).
    #[error("the browser's WebRTC offer cannot be answered: {0}")]
    BadOffer(String),
    /// The WebRTC stack failed (ICE, DTLS, RTP).
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// A GStreamer element is missing or the screen encoder failed.
    #[error("screen video encoder: {0}")]
    Encoder(String),
}

/// Results of the live view.
pub type Result<T, E = LiveError> = std::result::Result<T, E>;

impl From<webrtc::Error> for LiveError {
    fn from(e: webrtc::Error) -> Self {
        LiveError::WebRtc(e.to_string())
    }
}
