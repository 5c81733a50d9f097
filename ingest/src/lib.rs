//! The axum server customers' agents and the CTI system talk to: sessions and one-time codes,
//! consent, the agent media protocol, clock sync, CTI audio intake, durable segments and the
//! mux job queue. Never decodes media.
//!
//! Built so far: TLS with a self-signed certificate made on first start, the bootstrap
//! operator token, `/healthz`, `/metrics`, the OpenAPI document, graceful shutdown, sessions,
//! agent media and CTI audio intake ([`cti`]).
// `deny`, not `forbid`: [`heap::trim`] makes the one foreign call, and allows it there.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod api;
pub mod client;
pub mod code;
pub mod commit;
pub mod cti;
pub mod ending;
pub mod error;
pub mod heap;
pub mod live;
pub mod media;
pub mod metrics;
pub mod operator;
pub mod recordings;
pub mod remote;
pub mod screenshot;
mod secret_file;
pub mod segments;
pub mod server;
pub mod session;
pub mod status;
pub mod tls;

pub use error::{IngestError, Result};
pub use segments::SegmentPolicy;
pub use server::{RunningServer, ServeConfig, ShutdownHandle, start};
