//! The web console the bank's people use: operators run live sessions, compliance officers
//! find, verify and play sealed recordings, admins manage users — every access audited.
//! Served by `idv serve` (role `console`) on the same TLS listener as the ingest API.
//!
//! Built so far: accounts ([`accounts`], `idv user add`), logins with argon2id passwords, an
//! optional TOTP second factor and per-user or per-group allowed addresses ([`auth`]), and
//! the login, logout and home pages with CSRF protection ([`http`]); recordings found, opened
//! for a stated reason, played, and their manifests shown in words and as a timeline
//! ([`recordings`]); the live view republished to the operator's browser over WebRTC
//! ([`live`]); the customer join page, whose browser sends its camera and screen over WebRTC
//! into the session through a bridge that is the session's agent ([`join`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accounts;
pub mod auth;
pub mod http;
pub mod join;
pub mod live;
pub mod recordings;

pub use http::{ConsoleState, LiveSource, router};
