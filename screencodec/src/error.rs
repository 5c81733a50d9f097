//! The codec's errors: [`DecodeError`] for payloads that arrive from the network (every one
//! of them names what was wrong, so a log line is enough to find the sender's bug), and
//! [`EncodeError`] for frames and settings the agent passed in.

/// A `Result` whose error defaults to [`DecodeError`].
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// Why a screen payload could not be decoded. The decoder's canvas is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload ends inside a field.
    #[error(
        "screen payload is truncated: the {field} needs {needed} byte(s) at offset {offset}, \
         but only {available} remain"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left in the payload.
        available: usize,
    },
    /// The payload does not start with `IDVS`: it is not a screen-codec payload.
    #[error("not a screen-codec payload: it starts with {found:02x?}, not the magic \"IDVS\"")]
    BadMagic {
        /// The first bytes received (up to four).
        found: Vec<u8>,
    },
    /// The format version is not one this build reads.
    #[error(
        "screen-codec version {found} is not supported (this build reads version {supported}); \
         update the server or the agent so both speak the same version"
    )]
    UnsupportedVersion {
        /// The version byte received.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The frame kind byte is not key (1), delta (2) or unchanged (3).
    #[error("unknown screen frame kind {0} (known: 1 key, 2 delta, 3 unchanged)")]
    UnknownFrameKind(u8),
    /// The tile size is not a power of two from 16 to 256.
    #[error("tile size 2^{0} is not allowed (the exponent must be 4 to 8: 16 to 256 pixels)")]
    BadTileSize(u8),
    /// The flags byte has bits this version does not define.
    #[error(
        "unknown header flags 0x{0:02x} (known: 0x01 and 0x02 store the screen as reference 1 or 2)"
    )]
    UnknownFlags(u8),
    /// Width or height is zero.
    #[error("screen frame of {width}x{height} pixels: both sides must be at least 1")]
    ZeroDimensions {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// The screen is larger than this decoder accepts ([`crate::DecoderLimits`]).
    #[error(
        "screen frame of {width}x{height} pixels exceeds this decoder's limits \
         ({max_width}x{max_height}, {max_pixels} pixels in all)"
    )]
    DimensionsTooLarge {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// Largest width accepted.
        max_width: u32,
        /// Largest height accepted.
        max_height: u32,
        /// Largest area accepted.
        max_pixels: u64,
    },
    /// A delta or unchanged frame arrived with no key frame to build on (none yet, or an
    /// earlier frame failed).
    #[error(
        "screen frame {sequence} is a {kind} frame, but the decoder has no valid screen to apply \
         it to: wait for (or ask the agent for) a key frame"
    )]
    NeedsKeyframe {
        /// The frame's sequence number.
        sequence: u32,
        /// `delta` or `unchanged`.
        kind: &'static str,
    },
    /// A delta or unchanged frame does not follow the previous frame: frames were lost.
    #[error(
        "screen frame {found} does not follow frame {previous} (expected {expected}): frames \
         are missing, so this one cannot be applied; ask the agent for a key frame"
    )]
    OutOfSequence {
        /// The last frame applied.
        previous: u32,
        /// The sequence number a follower must carry.
        expected: u32,
        /// The sequence number received.
        found: u32,
    },
    /// A delta or unchanged frame has other dimensions than the canvas; a change of size
    /// comes only with a key frame.
    #[error(
        "screen frame is {found_width}x{found_height} but the screen so far is \
         {width}x{height}; a new size must come with a key frame"
    )]
    DimensionsChanged {
        /// Canvas width.
        width: u32,
        /// Canvas height.
        height: u32,
        /// Width in the frame.
        found_width: u32,
        /// Height in the frame.
        found_height: u32,
    },
    /// An unchanged frame carries bytes after its header, or a frame after its last section.
    #[error("screen payload has {extra} unexpected byte(s) after its end")]
    TrailingBytes {
        /// Bytes left over.
        extra: usize,
    },
    /// The declared size of the tile stream is larger than any frame of these dimensions
    /// can need.
    #[error(
        "tile stream declared as {declared} bytes, but a frame of this size needs at most {max}"
    )]
    TileStreamTooLarge {
        /// Declared decompressed size.
        declared: u64,
        /// Largest size possible for these dimensions.
        max: u64,
    },
    /// The compressed tile stream does not decompress to its declared size.
    #[error("tile stream does not decompress to its declared {declared} bytes: {reason}")]
    TileStreamCorrupt {
        /// Declared decompressed size.
        declared: u64,
        /// What the decompressor or the length check said.
        reason: String,
    },
    /// A tile record names a tile past the end of the grid.
    #[error("tile record names tile {index}, but the screen has {tiles} tiles")]
    TileOutOfRange {
        /// The tile index reached.
        index: u64,
        /// Tiles in the grid.
        tiles: u32,
    },
    /// A tile record's kind byte is unknown.
    #[error(
        "tile {tile}: unknown tile coding {kind} (known: 1 solid, 2 palette, 3 raw, \
         4 jpeg, 5 copy)"
    )]
    UnknownTileCoding {
        /// The tile index.
        tile: u32,
        /// The kind byte.
        kind: u8,
    },
    /// A tile record's rectangle does not lie inside its tile.
    #[error("tile {tile}: rectangle {w}x{h} at ({x}, {y}) lies outside the tile")]
    RectOutsideTile {
        /// The tile index.
        tile: u32,
        /// Left, relative to the tile.
        x: u32,
        /// Top, relative to the tile.
        y: u32,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// A key frame decodes on its own, so it cannot copy from an earlier screen.
    #[error("key frame: tile {tile} is a copy; a key frame must not refer to an earlier screen")]
    CopyInKeyframe {
        /// The tile index.
        tile: u32,
    },
    /// A tile has more records than any encoder writes.
    #[error("tile {tile} has more than {max} records")]
    TooManyRecords {
        /// The tile index.
        tile: u32,
        /// Most records a tile of this size may have.
        max: u32,
    },
    /// A palette index is not below the palette's size.
    #[error("tile {tile}: palette index {index} but the palette has {colours} colour(s)")]
    PaletteIndexOutOfRange {
        /// The tile index.
        tile: u32,
        /// The index found.
        index: u8,
        /// Colours in the palette.
        colours: usize,
    },
    /// A copy reads from a screen the decoder does not have.
    #[error(
        "tile {tile}: copy from reference screen {screen}, which {problem}; ask the agent for a \
         key frame"
    )]
    NoSuchScreen {
        /// The tile index.
        tile: u32,
        /// The screen named (0 previous, 1 or 2 reference).
        screen: u8,
        /// Why it cannot be read.
        problem: &'static str,
    },
    /// A copy reads from outside the screen.
    #[error(
        "tile {tile}: copy source {w}x{h} at ({src_x}, {src_y}) lies outside the \
         {width}x{height} screen"
    )]
    CopyOutsideScreen {
        /// The tile index.
        tile: u32,
        /// Source left (may be negative).
        src_x: i64,
        /// Source top (may be negative).
        src_y: i64,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
        /// Screen width.
        width: u32,
        /// Screen height.
        height: u32,
    },
    /// The JPEG section and the JPEG tile records disagree, or the JPEG has the wrong size.
    #[error("JPEG section: {0}")]
    JpegLayout(String),
    /// The JPEG section does not decode.
    #[error("JPEG section does not decode: {0}")]
    Jpeg(String),
}

/// Why a frame could not be encoded: the frame or the settings the caller passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Width or height is zero or larger than the format's 65,535.
    #[error("a screen of {width}x{height} pixels cannot be encoded: each side must be 1 to 65535")]
    BadDimensions {
        /// Width given.
        width: u32,
        /// Height given.
        height: u32,
    },
    /// The row stride is shorter than a row of pixels.
    #[error("row stride {stride} is shorter than one row of {width} BGRx pixels ({row} bytes)")]
    StrideTooSmall {
        /// Stride given.
        stride: usize,
        /// Width given.
        width: u32,
        /// Bytes in one row.
        row: usize,
    },
    /// The pixel buffer is shorter than `stride × (height − 1) + width × 4`.
    #[error("pixel buffer of {got} bytes is too short for the frame: {needed} bytes needed")]
    BufferTooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// An [`crate::EncoderConfig`] field is out of range.
    #[error("screen encoder setting {field} = {value} is invalid: {rule}")]
    BadConfig {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
        /// What it must be.
        rule: &'static str,
    },
    /// The compressor or the JPEG encoder failed (out of memory, in practice).
    #[error("screen encoder: {0}")]
    Backend(String),
}
