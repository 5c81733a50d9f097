//! What an operator subscribed to a live session receives: the agent's frames, relayed
//! verbatim, and notices about the stream. A frame travels as the same binary message the
//! agent sent (header ‖ sealed payload) — the relay never decrypts or re-seals, so a node
//! forwarding frames to another node or to the console never holds plaintext; the subscriber
//! opens it with the session key. Notices are JSON text messages tagged by `"type"`.
//!
//! The live path is lossy by design: a subscriber too slow for its bounded queue skips
//! frames and is told so with [`LiveNotice::Gap`]; it should wait for the next keyframe.
//! The recording path (ingest → segments) is never affected by a slow subscriber.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::control::MAX_CONTROL_LEN;
use crate::error::{ProtoError, Result};
use crate::frame::{FrameHeader, Track, decode_frame};
use crate::seal::SessionCipher;

/// One WebSocket message, as the transport sees it; `proto` does no I/O, so the server and
/// the console convert this to and from their WebSocket library's message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage {
    /// A text message (JSON).
    Text(String),
    /// A binary message (a frame).
    Binary(Bytes),
}

/// A frame on the live path: the agent's bytes, with the header already decoded. Cloning
/// shares the bytes, so one frame goes to many subscribers without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFrame {
    header: FrameHeader,
    wire: Bytes,
}

impl LiveFrame {
    /// Checks `wire` is a well-formed frame (see [`decode_frame`]) and keeps it as is. The
    /// ingest server builds these only from frames that opened under the session key.
    ///
    /// # Errors
    /// Whatever [`decode_frame`] reports.
    pub fn from_wire(wire: Bytes, max_payload: usize) -> Result<Self> {
        let header = decode_frame(&wire, max_payload)?.header;
        Ok(Self { header, wire })
    }

    /// Track, seq, timestamp and flags (authenticated only once opened).
    #[must_use]
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// The frame's bytes, exactly as the agent sent them.
    #[must_use]
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// Authenticates and decrypts the payload with the session's cipher.
    ///
    /// # Errors
    /// [`ProtoError::OpenFailed`] under the wrong key or session.
    pub fn open(&self, cipher: &SessionCipher, max_payload: usize) -> Result<Vec<u8>> {
        cipher.open(&self.wire, max_payload).map(|(_, plain)| plain)
    }
}

/// Something about the live stream other than media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LiveNotice {
    /// The first message to a subscriber: the session, and its media key (hex) to open the
    /// frames with. Only an operator authorised for the session receives it.
    Subscribed {
        /// The session.
        session_id: uuid::Uuid,
        /// The session media key, hex.
        media_key: String,
    },
    /// The customer paused sharing of `tracks` (every track if empty).
    Paused {
        /// Tracks paused; empty means all.
        #[serde(default)]
        tracks: BTreeSet<Track>,
        /// Agent monotonic ns of the pause.
        at_ns: i64,
    },
    /// Sharing resumed.
    Resumed {
        /// Tracks resumed; empty means all.
        #[serde(default)]
        tracks: BTreeSet<Track>,
        /// Agent monotonic ns of the resume.
        at_ns: i64,
    },
    /// This subscriber will not see frames `from_seq..=to_seq` of `track` (it lagged, or
    /// the agent reconnected); wait for the next keyframe.
    Gap {
        /// The track.
        track: Track,
        /// First seq skipped.
        from_seq: u64,
        /// Last seq skipped.
        to_seq: u64,
    },
    /// Who drives the customer's input changed (the customer took control back, or has been
    /// idle and the operator's input is injected again).
    Control {
        /// Who has it now.
        holder: crate::control::ControlHolder,
        /// Agent monotonic ns of the change.
        at_ns: i64,
    },
    /// The agent refused what an operator asked (lifting a blind, input it cannot inject),
    /// or nothing could take the request (no agent connected).
    Refused {
        /// What was asked.
        request: String,
        /// Why not.
        reason: String,
    },
    /// The customer changed what they hide from the screen (see
    /// [`crate::control::AgentControl::Blinds`]).
    Blinds {
        /// How many regions are hidden now (zero: nothing).
        regions: u32,
        /// Agent monotonic ns of the change.
        at_ns: i64,
    },
    /// A chat message, from the customer or from an operator (every subscriber sees every
    /// message, its sender too: that is the sender's confirmation).
    Chat {
        /// `customer`, or the operator's audit name (`user:alice`, `operator:bootstrap`).
        from: String,
        /// What was written.
        text: String,
        /// When the server received it (RFC 3339, UTC).
        at: String,
    },
    /// The session moved on: the customer joined, consented (to `scopes`), or the agent
    /// connected (`live`). Sent to whoever is subscribed when it happens.
    Session {
        /// `joined`, `consented` or `live`.
        state: String,
        /// The scopes consented to so far.
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// The session ended; no more messages follow.
    Ended {
        /// Why, for the operator.
        reason: String,
    },
}

/// What an operator watching live may ask of the agent, as a text message on the same
/// WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperatorRequest {
    /// Input for the customer's screen, injected while the customer is idle.
    Input {
        /// The events, in order.
        events: Vec<crate::control::InputEvent>,
    },
    /// Lift the customer's blinds (the agent always refuses; the request is audited).
    LiftBlinds,
    /// A chat message to the customer (see [`crate::control::chat_text`]).
    Chat {
        /// What the operator wrote.
        text: String,
    },
}

impl OperatorRequest {
    /// Parses one text message.
    ///
    /// # Errors
    /// [`ProtoError::ControlTooLarge`] or [`ProtoError::BadControl`].
    pub fn from_json(text: &str) -> Result<Self> {
        if text.len() > MAX_CONTROL_LEN {
            return Err(ProtoError::ControlTooLarge {
                len: text.len(),
                max: MAX_CONTROL_LEN,
            });
        }
        serde_json::from_str(text).map_err(|e| ProtoError::BadControl(e.to_string()))
    }

    /// The text message.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("requests always serialize")
    }

    /// What the agent is told; `operator` is how the customer sees the sender.
    #[must_use]
    pub fn to_agent(&self, operator: &str) -> crate::control::ServerControl {
        match self {
            OperatorRequest::Input { events } => crate::control::ServerControl::Input {
                events: events.clone(),
            },
            OperatorRequest::LiftBlinds => crate::control::ServerControl::LiftBlinds,
            OperatorRequest::Chat { text } => crate::control::ServerControl::Chat {
                from: operator.to_owned(),
                text: text.clone(),
            },
        }
    }
}

/// One message to a live subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveMessage {
    /// A media frame (binary).
    Frame(LiveFrame),
    /// A notice (text).
    Notice(LiveNotice),
}

impl LiveMessage {
    /// The WebSocket message to send.
    #[must_use]
    pub fn to_wire(&self) -> WireMessage {
        match self {
            LiveMessage::Frame(frame) => WireMessage::Binary(frame.wire.clone()),
            LiveMessage::Notice(notice) => {
                WireMessage::Text(serde_json::to_string(notice).expect("notices always serialize"))
            }
        }
    }

    /// Parses a received WebSocket message.
    ///
    /// # Errors
    /// A frame error from [`decode_frame`], [`ProtoError::ControlTooLarge`] or
    /// [`ProtoError::BadControl`] for a notice.
    pub fn from_wire(message: WireMessage, max_payload: usize) -> Result<Self> {
        match message {
            WireMessage::Binary(wire) => LiveFrame::from_wire(wire, max_payload).map(Self::Frame),
            WireMessage::Text(text) => {
                if text.len() > MAX_CONTROL_LEN {
                    return Err(ProtoError::ControlTooLarge {
                        len: text.len(),
                        max: MAX_CONTROL_LEN,
                    });
                }
                serde_json::from_str(&text)
                    .map(Self::Notice)
                    .map_err(|e| ProtoError::BadControl(e.to_string()))
            }
        }
    }
}
