//! Puts CTI audio and agent video on one timeline (clock mapping, drift, cross-correlation),
//! cuts the in and out points, fills gaps, muxes with GStreamer and streams the result into a
//! sealed archive with its manifest. Knows nothing about sockets.
//!
//! Built so far: [`timeline`], the arithmetic every other part stands on.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod timeline;
