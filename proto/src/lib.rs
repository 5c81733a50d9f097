//! Wire formats shared by the agent, ingest and console: media frames, control messages,
//! clock-sync exchanges, live fan-out, and sealing of frames (AES-256-GCM with the session
//! id and the whole frame header as associated data). No I/O, and no dependency on any other
//! crate of ours: the agent and the server both speak through exactly these types.
//!
//! The byte layouts, message catalogue and rules (ack/resume, clock sync, close codes,
//! limits, versioning) are specified in `docs/PROTOCOL.md`.
//!
//! * [`frame`] — the binary media frame: fixed little-endian header and strict decoder.
//! * [`seal`] — the session media key and sealing/opening of frame payloads.
//! * [`control`] — JSON control messages on the same WebSocket (hello, acks, clock sync,
//!   consent, pause/resume, close) and the close codes.
//! * [`progress`] — per-track sequence bookkeeping: cumulative acks and idempotent resends.
//! * [`clock`] — NTP-style clock-sync samples and the offset/delay computed from one.
//! * [`fanout`] — what operators subscribed to a live session receive.
//! * [`join`] — the HTTPS requests before the media connection: redeeming the code, consent.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod control;
mod error;
pub mod fanout;
pub mod frame;
pub mod join;
pub mod progress;
pub mod seal;

pub use clock::{ClockEstimate, ClockSample};
pub use control::{
    AgentControl, AgentInfo, Close, CloseCode, ConsentScope, ControlHolder, InputEvent,
    ServerControl,
};
pub use error::{ProtoError, Result};
pub use fanout::{LiveFrame, LiveMessage, LiveNotice, OperatorRequest, WireMessage};
pub use frame::{
    Frame, FrameFlags, FrameHeader, FrameKind, HEADER_LEN, PROTOCOL_VERSION, Track, decode_frame,
};
pub use progress::{Arrival, TrackSeqs};
pub use seal::{FrameVerifier, SessionCipher, SessionKey, open_frame, open_frame_into, seal_frame};
