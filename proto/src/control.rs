//! Control messages on the media WebSocket: JSON in text messages, one message per
//! WebSocket message, tagged by `"type"` (`{"type":"ack","track":"camera","seq":42}`).
//! Media travels in binary messages ([`crate::frame`]); the message kind alone tells the two
//! apart. JSON was chosen because control traffic is a few messages per second, must be
//! readable in a packet capture during an incident, and is what the console's browser side
//! speaks natively.
//!
//! Each direction has its own enum, so neither side can even parse a message the other side
//! is not allowed to send: [`AgentControl`] (agent → server) and [`ServerControl`]
//! (server → agent). Within a protocol version, unknown fields are ignored (a new optional
//! field with a default may be added); an unknown `"type"` is an error.
//!
//! This module also owns the [`CloseCode`] catalogue (WebSocket close codes 4000–4999).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::clock::ClockSample;
use crate::error::{ProtoError, Result};
use crate::frame::{PROTOCOL_VERSION, Track};
use crate::progress::TrackSeqs;

/// The longest control or notice message accepted, in bytes: far above any real message,
/// small enough that parsing it costs nothing.
pub const MAX_CONTROL_LEN: usize = 16 * 1024;
/// The longest chat message, in characters (a message of up to 4 bytes a character stays far
/// under [`MAX_CONTROL_LEN`]).
pub const MAX_CHAT_CHARS: usize = 2000;

/// A chat message as sent: trimmed, not empty, at most [`MAX_CHAT_CHARS`] characters, no
/// control characters but newlines and tabs.
///
/// # Errors
/// Why the text is not a chat message, in words for the person who typed it.
pub fn chat_text(text: &str) -> std::result::Result<String, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty message is not sent");
    }
    if text.chars().count() > MAX_CHAT_CHARS {
        return Err("a message is at most 2000 characters");
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("a message cannot hold control characters");
    }
    Ok(text.to_owned())
}
/// The longest close reason, in bytes: a WebSocket close frame's payload is at most 125
/// bytes, two of which are the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// The bearer secret the agent got when it redeemed its one-time code. Wiped on drop,
/// redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SessionToken(String);

impl SessionToken {
    /// Wraps a token string.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token, to compare (in constant time) against the stored one. Never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// What the agent says about itself in [`AgentControl::Hello`], for the session record
/// and for support staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent software version (`idv-agent 0.1.0`).
    pub version: String,
    /// Operating system and architecture (`linux-x86_64`, `windows-aarch64`, …).
    pub platform: String,
    /// Tracks this agent can send.
    pub tracks: BTreeSet<Track>,
}

/// What the customer consented to on the device. Each scope is given by the customer
/// alone; an operator can never give one for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsentScope {
    /// Sending the camera.
    Camera,
    /// Sharing the screen (live, dirty-region encoded).
    Screen,
    /// Recording what is sent, for the sealed archive.
    Recording,
    /// Still screen captures (screenshots).
    ScreenCapture,
    /// Transferring files.
    FileTransfer,
}

impl ConsentScope {
    /// Every scope, in order.
    pub const ALL: [ConsentScope; 5] = [
        ConsentScope::Camera,
        ConsentScope::Screen,
        ConsentScope::Recording,
        ConsentScope::ScreenCapture,
        ConsentScope::FileTransfer,
    ];

    /// The scope's wire name (`camera`, `screen_capture`, …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ConsentScope::Camera => "camera",
            ConsentScope::Screen => "screen",
            ConsentScope::Recording => "recording",
            ConsentScope::ScreenCapture => "screen_capture",
            ConsentScope::FileTransfer => "file_transfer",
        }
    }

    /// The scope of a wire name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scope a track's media needs before the server accepts a frame of it: the
    /// microphone reference exists only to align the recording, so it needs `recording`.
    #[must_use]
    pub fn for_track(track: Track) -> Self {
        match track {
            Track::Camera => ConsentScope::Camera,
            Track::Screen => ConsentScope::Screen,
            Track::Screenshot => ConsentScope::ScreenCapture,
            Track::MicReference => ConsentScope::Recording,
        }
    }
}

/// One input event from the operator for the customer's screen (screen pixels; X11 button
/// numbers, 4/5 the wheel; X11 keysyms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputEvent {
    /// Move the pointer to (x, y).
    PointerMove {
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// Press or release a mouse button.
    Button {
        /// 1 left, 2 middle, 3 right, 4/5 wheel up/down.
        button: u8,
        /// Pressed (true) or released.
        pressed: bool,
    },
    /// Press or release a key.
    Key {
        /// The X11 keysym.
        keysym: u32,
        /// Pressed (true) or released.
        pressed: bool,
    },
}

/// Who drives the customer's mouse and keyboard now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlHolder {
    /// The customer: the operator's input is not injected (they are using their device, or
    /// took control back).
    Customer,
    /// The operator's input is injected (the customer is idle).
    Operator,
}

/// Agent → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentControl {
    /// The first message after connecting; nothing else is accepted before it.
    Hello {
        /// The protocol version the agent speaks; the server closes with
        /// [`CloseCode::ProtocolError`] if it is not its own.
        protocol: u8,
        /// The token from code redemption.
        session_token: SessionToken,
        /// Who is connecting.
        agent: AgentInfo,
        /// The last ack the agent saw per track (empty on the first connection). Advisory:
        /// the server's [`ServerControl::Welcome`] is what the agent resumes from.
        #[serde(default)]
        last_acked: TrackSeqs,
    },
    /// Clock-sync request; `t1` is the agent's monotonic clock at sending, in ns.
    Ping {
        /// Agent monotonic ns when the ping was sent.
        t1: i64,
    },
    /// A completed clock-sync exchange (`t4` stamped on the pong's arrival), for the
    /// server to store with the session.
    ClockSample(ClockSample),
    /// The scopes the customer has consented to now — the whole set, replacing the last
    /// one (a scope missing from it is withdrawn).
    Consent {
        /// Scopes granted.
        scopes: BTreeSet<ConsentScope>,
        /// Agent monotonic ns when the customer decided.
        at_ns: i64,
    },
    /// The customer paused sharing of `tracks` (every track if empty).
    Pause {
        /// Tracks paused; empty means all.
        #[serde(default)]
        tracks: BTreeSet<Track>,
        /// Agent monotonic ns of the pause.
        at_ns: i64,
    },
    /// The customer resumed sharing of `tracks` (every track if empty).
    Resume {
        /// Tracks resumed; empty means all.
        #[serde(default)]
        tracks: BTreeSet<Track>,
        /// Agent monotonic ns of the resume.
        at_ns: i64,
    },
    /// Who has control changed: the customer's own input took it back (at once, whatever
    /// the operator does), or the customer has been idle and the operator's input counts.
    Control {
        /// Who has it now.
        holder: ControlHolder,
        /// Agent monotonic ns of the change (for the customer, of their input).
        at_ns: i64,
    },
    /// The agent refused something the operator asked (e.g. lifting a blind).
    Refused {
        /// What was asked.
        request: String,
        /// Why it is refused.
        reason: String,
    },
    /// The customer changed what they hide from the screen: `regions` blinds now (zero:
    /// nothing hidden). Where they are is not said: the operator sees them blurred.
    Blinds {
        /// How many regions are hidden now.
        regions: u32,
        /// Agent monotonic ns of the change.
        at_ns: i64,
    },
    /// A chat message from the customer to the operators (at most [`MAX_CHAT_CHARS`]
    /// characters, not empty).
    Chat {
        /// What the customer wrote.
        text: String,
    },
    /// The agent is leaving (e.g. the customer ended the session).
    Close(Close),
}

/// Server → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerControl {
    /// The answer to a valid `Hello`: the agent resumes every track from `acked + 1`.
    Welcome {
        /// The protocol version the server speaks.
        protocol: u8,
        /// The session the token belongs to (also the frames' associated data).
        session_id: Uuid,
        /// The highest durable seq per track (absent: nothing durable yet).
        acked: TrackSeqs,
        /// The largest frame plaintext the server accepts, in bytes.
        max_payload: u32,
        /// The session's bandwidth cap, in bytes per second of frame data.
        max_bytes_per_sec: u64,
    },
    /// Every frame of `track` with a sequence number ≤ `seq` is durable (cumulative).
    Ack {
        /// The track.
        track: Track,
        /// The highest durable seq; the agent may drop every buffered frame up to it.
        seq: u64,
    },
    /// Clock-sync answer: `t1` echoed, `t2` server UTC ns on receipt of the ping, `t3`
    /// server UTC ns on sending this pong.
    Pong {
        /// The ping's `t1`, echoed.
        t1: i64,
        /// Server UTC ns (since the Unix epoch) when the ping arrived.
        t2: i64,
        /// Server UTC ns (since the Unix epoch) when the pong was sent.
        t3: i64,
    },
    /// The operator's input, to inject while the customer is idle.
    Input {
        /// The events, in order.
        events: Vec<InputEvent>,
    },
    /// The operator asks to lift the customer's blinds. The agent always refuses: only the
    /// customer lifts them.
    LiftBlinds,
    /// A chat message from an operator to the customer.
    Chat {
        /// Who wrote it, as the customer should see it (e.g. `alice`).
        from: String,
        /// What they wrote (at most [`MAX_CHAT_CHARS`] characters).
        text: String,
    },
    /// Someone started watching `track` live, or lost frames of it: start a new keyframe
    /// soon so their view can begin. The agent may coalesce requests (at most one forced
    /// keyframe a second per track is plenty).
    Keyframe {
        /// The track.
        track: Track,
    },
    /// The server is closing the connection; the same code and reason go in the WebSocket
    /// close frame.
    Close(Close),
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    if text.len() > MAX_CONTROL_LEN {
        return Err(ProtoError::ControlTooLarge {
            len: text.len(),
            max: MAX_CONTROL_LEN,
        });
    }
    serde_json::from_str(text).map_err(|e| ProtoError::BadControl(e.to_string()))
}

fn render<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("control messages always serialize")
}

impl AgentControl {
    /// The `Hello` of this protocol version.
    #[must_use]
    pub fn hello(session_token: SessionToken, agent: AgentInfo, last_acked: TrackSeqs) -> Self {
        Self::Hello {
            protocol: PROTOCOL_VERSION,
            session_token,
            agent,
            last_acked,
        }
    }

    /// Parses one text WebSocket message.
    ///
    /// # Errors
    /// [`ProtoError::ControlTooLarge`] or [`ProtoError::BadControl`].
    pub fn from_json(text: &str) -> Result<Self> {
        parse(text)
    }

    /// The text WebSocket message.
    #[must_use]
    pub fn to_json(&self) -> String {
        render(self)
    }
}

impl ServerControl {
    /// Parses one text WebSocket message.
    ///
    /// # Errors
    /// [`ProtoError::ControlTooLarge`] or [`ProtoError::BadControl`].
    pub fn from_json(text: &str) -> Result<Self> {
        parse(text)
    }

    /// The text WebSocket message.
    #[must_use]
    pub fn to_json(&self) -> String {
        render(self)
    }
}

/// Why a connection is being closed; the WebSocket close code is `4000 + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
#[non_exhaustive]
pub enum CloseCode {
    /// Malformed frame or message, wrong protocol version, a frame that fails to open, a
    /// message out of order (anything before `Hello`), a skipped sequence number.
    ProtocolError = 4000,
    /// A frame over the announced `max_payload`.
    FrameTooLarge = 4001,
    /// The session's bandwidth cap was exceeded for longer than its burst allowance.
    BandwidthExceeded = 4002,
    /// The session token is unknown, expired or revoked.
    AuthFailed = 4003,
    /// The session ended (by either side, or by timeout); nothing more will be accepted.
    SessionEnded = 4004,
    /// The server is shutting down after draining acks; reconnect to another node.
    ServerShuttingDown = 4005,
    /// Media arrived for a scope the customer has not consented to.
    ConsentRequired = 4006,
    /// A newer connection resumed the same session; this one is obsolete.
    Superseded = 4007,
}

impl CloseCode {
    /// Every code, in numeric order.
    pub const ALL: [CloseCode; 8] = [
        CloseCode::ProtocolError,
        CloseCode::FrameTooLarge,
        CloseCode::BandwidthExceeded,
        CloseCode::AuthFailed,
        CloseCode::SessionEnded,
        CloseCode::ServerShuttingDown,
        CloseCode::ConsentRequired,
        CloseCode::Superseded,
    ];

    /// The WebSocket close code.
    #[must_use]
    pub fn to_u16(self) -> u16 {
        self as u16
    }

    /// The code for a WebSocket close code, if it is one of ours.
    #[must_use]
    pub fn from_u16(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.to_u16() == code)
    }

    /// Whether an agent closed with this code should connect again and resume. The
    /// others mean retrying cannot help (or would repeat the offence).
    #[must_use]
    pub fn agent_should_reconnect(self) -> bool {
        matches!(
            self,
            CloseCode::ServerShuttingDown | CloseCode::BandwidthExceeded
        )
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = ProtoError;
    fn try_from(code: u16) -> Result<Self> {
        Self::from_u16(code).ok_or(ProtoError::UnknownCloseCode(code))
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.to_u16()
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            CloseCode::ProtocolError => "protocol error",
            CloseCode::FrameTooLarge => "frame too large",
            CloseCode::BandwidthExceeded => "bandwidth exceeded",
            CloseCode::AuthFailed => "authentication failed",
            CloseCode::SessionEnded => "session ended",
            CloseCode::ServerShuttingDown => "server shutting down",
            CloseCode::ConsentRequired => "consent required",
            CloseCode::Superseded => "superseded by a newer connection",
        };
        write!(f, "{} ({name})", self.to_u16())
    }
}

/// A close: the code and a human-readable reason that fits a WebSocket close frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// Why.
    pub code: CloseCode,
    /// What a person should know (never secrets or personal data), at most
    /// [`MAX_CLOSE_REASON`] bytes.
    pub reason: String,
}

impl Close {
    /// A close whose reason is cut (at a character boundary) to [`MAX_CLOSE_REASON`] bytes.
    #[must_use]
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_CLOSE_REASON {
            let mut end = MAX_CLOSE_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Self { code, reason }
    }

    /// The close for a protocol error found in a frame or message: the error's message
    /// becomes the reason, and an oversize frame gets its own code.
    #[must_use]
    pub fn for_error(error: &ProtoError) -> Self {
        let code = match error {
            ProtoError::PayloadTooLarge { .. } => CloseCode::FrameTooLarge,
            _ => CloseCode::ProtocolError,
        };
        Self::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_the_4000_range_and_back() {
        for code in CloseCode::ALL {
            assert!((4000..5000).contains(&code.to_u16()));
            assert_eq!(CloseCode::from_u16(code.to_u16()), Some(code));
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                code.to_u16().to_string()
            );
        }
        assert_eq!(CloseCode::from_u16(1000), None);
        assert!(serde_json::from_str::<CloseCode>("4999").is_err());
        assert_eq!(
            CloseCode::FrameTooLarge.to_string(),
            "4001 (frame too large)"
        );
        assert!(CloseCode::ServerShuttingDown.agent_should_reconnect());
        assert!(!CloseCode::AuthFailed.agent_should_reconnect());
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let close = Close::new(CloseCode::ProtocolError, "é".repeat(100));
        assert!(close.reason.len() <= MAX_CLOSE_REASON);
        assert_eq!(close.reason.len(), 122);
        assert_eq!(Close::new(CloseCode::SessionEnded, "bye").reason, "bye");
    }

    #[test]
    fn errors_choose_their_close_code() {
        let too_large = ProtoError::PayloadTooLarge { len: 9, max: 1 };
        assert_eq!(Close::for_error(&too_large).code, CloseCode::FrameTooLarge);
        let close = Close::for_error(&ProtoError::ZeroSequence);
        assert_eq!(close.code, CloseCode::ProtocolError);
        assert!(
            close
                .reason
                .starts_with("frame sequence number 0 is invalid")
        );
    }

    #[test]
    fn every_track_needs_a_distinct_scope() {
        let scopes: BTreeSet<_> = Track::ALL
            .into_iter()
            .map(ConsentScope::for_track)
            .collect();
        assert_eq!(scopes.len(), Track::ALL.len());
        assert_eq!(
            ConsentScope::for_track(Track::MicReference),
            ConsentScope::Recording
        );
    }

    #[test]
    fn session_token_is_redacted() {
        let token = SessionToken::new("s3cret");
        assert_eq!(format!("{token:?}"), "SessionToken(<redacted>)");
        assert_eq!(token.expose(), "s3cret");
    }
}
