//! The live view over WebRTC (issue 6): an operator's browser watches a session's camera and
//! screen as they are captured.
//!
//! ```text
//! ingest live WebSocket ──feed──▶ open frames (session key) ─┬─ camera H.264 ───────────────▶ RTP ─▶ browser
//!   (proto fan-out, §8)                                       ├─ screen codec → decode → x264 ─▶ RTP ─▶ browser
//!                                                             └─ screenshots  → JPEG → x264 ──▶ (screen track)
//! ```
//!
//! The console reaches the session only through the `proto` fan-out (never by linking the
//! ingest server), so it runs the same in one process or on another node. The HTTP handler
//! checks the operator's role, audits the access, and calls [`answer`] with the browser's
//! offer; it sends the answer back and keeps the [`LiveView`] until the browser leaves (or
//! drops it to stop). See `docs/CONSOLE.md`, "Live view over WebRTC".
//!
//! * [`feed`] — the subscription to ingest's live WebSocket.
//! * [`video_track`] — H.264 access units to RTP, stamped with the capture clock.
//! * [`screen_pictures`] — the screen codec and screenshots decoded to pictures.
//! * [`screen_encoder`] — pictures encoded to H.264 (GStreamer, x264 zero latency).
//! * `forward` — the loop from the feed to the tracks (keyframes, gaps, pauses).
//! * `peer` — the answer, the peer connection, and the [`LiveView`] handle.
//!
//! No plaintext media is written anywhere: frames are opened, decoded and encoded in memory.

mod error;
pub mod feed;
mod forward;
mod peer;
pub mod screen_encoder;
pub mod screen_pictures;
pub mod video_track;

pub use error::{LiveError, Result};
pub use feed::{Feed, FeedConfig};
pub use forward::Ending;
pub(crate) use peer::loopback_peer;
pub use peer::{LiveView, answer};
pub use video_track::rtp_timestamp;
