//! The axum server customers' agents and the CTI system talk to: sessions and one-time codes,
//! consent, the agent media protocol, clock sync, CTI audio intake, durable segments and the
//! mux job queue. Never decodes media. Built by the ingest issue.
