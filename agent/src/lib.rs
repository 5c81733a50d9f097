//! The customer-side agent: it redeems the one-time code, records the customer's consent,
//! captures the camera, the screen and, if asked, a microphone reference (GStreamer), paints
//! the customer's blinds over the screen before encoding, seals every frame under the session
//! media key (`proto`) and streams it to the ingest server, keeping each frame until the
//! server says it is durable — through network cuts, address changes and server restarts.
//!
//! * [`config`] — what it is told to do (the `idv agent` command line).
//! * [`join`] — TLS, code redemption and consent over HTTPS.
//! * [`capture`] — one pipeline per track, with a gate for pause and gaps
//!   ([`capture::audio`]: the microphone reference, Opus).
//! * [`blinder`] — the regions the customer hides.
//! * [`control`] — the operator's input, injected only while the customer is idle.
//! * [`outbox`] — sealed frames awaiting acknowledgement (the spill buffer).
//! * [`link`] — the media WebSocket: send, ack, clock sync, reconnect and resume.
//! * [`screenshots`] — a JPEG every 5 s over HTTPS while the WebSocket is refused.
//! * [`session`] — runs it all until the session ends.
//! * [`notice`] — what the customer always sees while it runs.
//!
//! The agent depends on `proto` alone of our crates (the server is never linked), and writes
//! nothing to the device's disk.

pub mod blinder;
pub mod capture;
pub mod clock;
pub mod config;
pub mod control;
pub mod error;
pub mod join;
pub mod keyframes;
pub mod link;
pub mod notice;
pub mod outbox;
pub mod screenshots;
pub mod session;

pub use config::{AgentConfig, MicSource, Region, ScreenCodec, TrackSettings, VideoSource};
pub use error::AgentError;
pub use session::{CustomerAction, Outcome, run};
