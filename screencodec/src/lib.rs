//! The agent's screen codec: send only what changed.
//!
//! A screen is cut into square tiles (64 × 64 pixels by default). Each frame the [`Encoder`]
//! compares the capture with the previous one and writes one self-describing payload:
//!
//! * **unchanged** — nothing moved: a 16-byte heartbeat;
//! * **delta** — only the changed part of each changed tile, each coded the cheapest way that
//!   keeps text exact: a solid colour, a palette (up to 16 colours), raw colours compressed
//!   (antialiased text, icons), JPEG for photo-like content (video, photos, wallpaper), or a
//!   *copy* of another rectangle of the previous screen (a scroll, a dragged window). A tile
//!   where a window meets a photo gets a JPEG under the photo and exact rectangles on top;
//! * **key** — every tile, decodable on its own (on request, every N frames, or when the
//!   screen size changes).
//!
//! The [`Decoder`] keeps a [`Canvas`] and applies payloads to it; everything it reads is
//! bounds-checked and capped ([`DecoderLimits`]), and a payload that fails leaves the canvas as
//! it was. Its canvas is ordinary BGRx video for the muxer and the live view. The byte format
//! is specified in `docs/SCREEN_CODEC.md`.
//!
//! * [`format`] — the payload header, tile records and limits; recognising a payload.
//! * `tile` — the tile grid and rectangles; `diff` — which tiles changed, and where.
//! * `classify` — which coding a changed rectangle gets (colour count, flat share).
//! * `motion` — finding scrolled and moved rectangles in the previous screen.
//! * `jpeg` — the photo-like tiles of a frame packed into one JPEG.
//! * `fidelity` — what the decoder has only approximately; sending text there again exactly.
//! * `stream` — the zstd stream from key frame to key frame under every payload.
//! * `encode` / `decode` — the [`Encoder`] and the [`Decoder`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod classify;
mod decode;
mod diff;
mod encode;
mod error;
mod fidelity;
pub mod format;
mod jpeg;
mod motion;
mod picture;
mod stream;
mod tile;

pub use decode::{Decoder, DecoderLimits};
pub use encode::{Encoder, EncoderConfig, FrameSummary, TileCounts};
pub use error::{DecodeError, EncodeError, Result};
pub use format::{FrameHeader, FrameKind, MAGIC, VERSION, is_screen_payload};
pub use picture::{BgrxFrame, Canvas};
