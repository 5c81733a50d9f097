//! Everything that can be wrong with bytes or messages on the wire, each named precisely
//! enough for the server to pick a close code and for a person reading the log to act.

/// A result whose error is a [`ProtoError`].
pub type Result<T, E = ProtoError> = std::result::Result<T, E>;

/// Malformed, oversize or unauthentic protocol input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame ends before its fixed header does.
    #[error("frame is truncated: {got} byte(s), but the frame header alone is {needed} bytes")]
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes received.
        got: usize,
    },
    /// The frame does not start with the idv frame magic.
    #[error("not an idv media frame: it starts with {found:02x?}, not the magic \"iv\"")]
    BadMagic {
        /// The first two bytes received.
        found: [u8; 2],
    },
    /// The frame's protocol version is not the one this build speaks.
    #[error(
        "protocol version {found} is not supported (this build speaks version {supported}); \
         update the agent or the server so both speak the same version"
    )]
    UnsupportedVersion {
        /// The version byte received.
        found: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// The frame's message type byte is not a known type.
    #[error("unknown frame message type 0x{0:02x}")]
    UnknownKind(u8),
    /// The frame names a track this version does not define.
    #[error("unknown track 0x{0:02x} (known: camera 1, screen 2, screenshot 3, mic-reference 4)")]
    UnknownTrack(u8),
    /// The frame sets flag bits this version does not define.
    #[error("unknown frame flag bits 0x{0:02x} (known: keyframe 0x01, gap 0x02, paused 0x04)")]
    UnknownFlags(u8),
    /// The header's reserved bytes are not zero.
    #[error("reserved header bytes must be zero, found 0x{0:04x}")]
    ReservedNotZero(u16),
    /// Sequence numbers start at 1; 0 means "nothing yet" and never names a frame.
    #[error("frame sequence number 0 is invalid: sequence numbers start at 1 on every track")]
    ZeroSequence,
    /// The sealed payload's declared length is more than the receiver accepts.
    #[error(
        "frame payload of {len} byte(s) exceeds the limit of {max} byte(s); send smaller \
         frames (split keyframes or lower the resolution)"
    )]
    PayloadTooLarge {
        /// Plaintext bytes the frame declares (or the sender tried to seal).
        len: u64,
        /// The receiver's limit on plaintext bytes.
        max: u64,
    },
    /// The declared sealed length cannot even hold the authentication tag.
    #[error("sealed payload of {0} byte(s) is shorter than the 16-byte authentication tag")]
    SealedTooShort(u32),
    /// The header's length field disagrees with the bytes that follow it.
    #[error(
        "frame length mismatch: the header declares a {declared}-byte sealed payload but \
         {actual} byte(s) follow it"
    )]
    LengthMismatch {
        /// Sealed payload bytes the header declares.
        declared: u32,
        /// Bytes actually following the header.
        actual: usize,
    },
    /// The frame did not authenticate under this session's key.
    #[error(
        "frame failed authentication: wrong session key, a frame of another session, or a \
         header field (track, seq, timestamp, flags, version) or payload byte was altered"
    )]
    OpenFailed,
    /// A control or notice message is longer than the protocol allows.
    #[error("control message of {len} bytes exceeds the {max}-byte limit")]
    ControlTooLarge {
        /// Bytes received.
        len: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// A control or notice message is not valid JSON of a known shape.
    #[error("malformed control message: {0}")]
    BadControl(String),
    /// A WebSocket close code outside the protocol's catalogue.
    #[error("unknown close code {0} (the protocol defines 4000-4007)")]
    UnknownCloseCode(u16),
    /// A clock-sync sample whose timestamps cannot come from one real exchange.
    #[error("implausible clock-sync sample: {0}")]
    BadClockSample(&'static str),
}
