//! The web console for operators, compliance officers and admins: login, roles, live view
//! over WebRTC, search, verification, playback and export — every access through the audit
//! log. Built by the console issue.

pub mod live;
