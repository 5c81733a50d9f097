//! Puts CTI audio and agent video on one timeline (clock mapping, drift), cuts the in and out
//! points, keeps gaps as gaps, muxes with GStreamer and streams the result into the caller's
//! writer (a sealed archive) with its manifest. Knows nothing about sockets.
//!
//! * [`timeline`] — instants, clock mapping, drift, cut points: the arithmetic.
//! * [`input`] — reading camera/screen containers or frame streams, and CTI recordings.
//! * [`video`], [`audio`] — planning each output track and feeding it to the muxer.
//! * [`align`] — the CTI offset refined against the agent's microphone reference.
//! * [`mux()`] — one mux end to end; [`manifest`] — what is sealed with it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod align;
pub mod audio;
pub mod error;
pub mod input;
pub mod manifest;
mod mux;
pub mod pipeline;
pub mod timeline;
pub mod video;
pub mod worker;

pub use align::ReferenceInput;
pub use audio::AudioInput;
pub use error::{MuxError, Result};
pub use input::frames::{FrameCodec, FrameFormat, FrameIter, FrameSource, MemoryFrames, RawFrame};
pub use input::mic::MicReference;
pub use input::sealed::SealedTrack;
pub use input::video::VideoSource;
pub use manifest::{AgentClockRecord, Manifest};
pub use mux::{Layout, MuxRequest, OutputFormat, mux};
pub use video::{VideoInput, VideoRole};
