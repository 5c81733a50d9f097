//! The customer-side agent: capture (GStreamer), blinder, dirty-region screen encoding,
//! control priority, encryption, reconnect/resume and screenshot fallback. Depends on `proto`
//! alone and never hands the server plaintext it does not need. Built by the agent issue.
