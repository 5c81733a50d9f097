//! Wire formats shared by the agent, ingest and console: media frames, control and chat
//! messages, clock-sync exchanges, live fan-out, and sealing of frames (AES-256-GCM with the
//! session id, track, sequence number and timestamp as associated data). No I/O, and no
//! dependency on any other crate of ours. Built by the ingest and agent issues.
