//! The byte layout of one screen payload (`docs/SCREEN_CODEC.md`): the 16-byte header, the
//! tile record codes, the bound on the tile stream, and a bounds-checked reader. Nothing here
//! touches pixels.
//!
//! All integers are little-endian.

use crate::error::{DecodeError, Result};

/// The first four bytes of every payload.
pub const MAGIC: [u8; 4] = *b"IDVS";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes in the header; an unchanged frame is exactly this long.
pub const HEADER_LEN: usize = 16;
/// Smallest tile side, as a power of two (16 pixels): a multiple of JPEG's 16 × 16 macroblock.
pub const MIN_TILE_LOG2: u8 = 4;
/// Largest tile side, as a power of two (256 pixels): record rectangles store sides − 1 in a byte.
pub const MAX_TILE_LOG2: u8 = 8;

/// Flag bits that name the reference screen to store (1 or 2; 3 is invalid).
const FLAG_STORE_MASK: u8 = 0b11;
/// Reference screens a decoder keeps.
pub const REFERENCE_SCREENS: u8 = 2;

/// What a payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Every tile, decodable without any earlier frame.
    Key,
    /// Changed tiles only, applied to the previous frame's screen.
    Delta,
    /// Nothing changed: a heartbeat.
    Unchanged,
}

impl FrameKind {
    fn code(self) -> u8 {
        match self {
            FrameKind::Key => 1,
            FrameKind::Delta => 2,
            FrameKind::Unchanged => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self> {
        match code {
            1 => Ok(FrameKind::Key),
            2 => Ok(FrameKind::Delta),
            3 => Ok(FrameKind::Unchanged),
            other => Err(DecodeError::UnknownFrameKind(other)),
        }
    }

    /// `key`, `delta` or `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Key => "key",
            FrameKind::Delta => "delta",
            FrameKind::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for FrameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fixed header at the start of every payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Key, delta or unchanged.
    pub kind: FrameKind,
    /// Frame counter of the encoder, +1 (wrapping) per frame of any kind; a delta or unchanged
    /// frame applies only to the frame numbered one less.
    pub sequence: u32,
    /// Screen width in pixels (1 to 65,535).
    pub width: u32,
    /// Screen height in pixels (1 to 65,535).
    pub height: u32,
    /// Tile side in pixels (16, 32, 64, 128 or 256).
    pub tile_size: u32,
    /// After applying this frame, keep the screen as reference screen 1 or 2 (0: keep none).
    /// Later copies can read from it; a key frame empties both.
    pub store_reference: u8,
}

impl FrameHeader {
    /// Reads and checks the header of `payload` (magic, version, kind, tile size, flags,
    /// non-zero dimensions). It does not check the body.
    pub fn parse(payload: &[u8]) -> Result<FrameHeader> {
        let magic_len = payload.len().min(MAGIC.len());
        if payload[..magic_len] != MAGIC[..magic_len] {
            return Err(DecodeError::BadMagic {
                found: payload[..magic_len].to_vec(),
            });
        }
        let mut reader = Reader::new(payload);
        reader.take(MAGIC.len(), "magic")?;
        let version = reader.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let kind = FrameKind::from_code(reader.u8("frame kind")?)?;
        let tile_log2 = reader.u8("tile size")?;
        if !(MIN_TILE_LOG2..=MAX_TILE_LOG2).contains(&tile_log2) {
            return Err(DecodeError::BadTileSize(tile_log2));
        }
        let flags = reader.u8("flags")?;
        if flags & !FLAG_STORE_MASK != 0 || flags & FLAG_STORE_MASK == 3 {
            return Err(DecodeError::UnknownFlags(flags));
        }
        let sequence = reader.u32("sequence")?;
        let width = u32::from(reader.u16("width")?);
        let height = u32::from(reader.u16("height")?);
        if width == 0 || height == 0 {
            return Err(DecodeError::ZeroDimensions { width, height });
        }
        Ok(FrameHeader {
            kind,
            sequence,
            width,
            height,
            tile_size: 1 << tile_log2,
            store_reference: flags & FLAG_STORE_MASK,
        })
    }

    /// Appends the 16 header bytes. The caller guarantees the fields are in range.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        debug_assert!(self.tile_size.is_power_of_two());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind.code());
        out.push(self.tile_size.trailing_zeros() as u8);
        out.push(self.store_reference & FLAG_STORE_MASK);
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&(self.width as u16).to_le_bytes());
        out.extend_from_slice(&(self.height as u16).to_le_bytes());
    }
}

/// Whether `bytes` starts like a screen-codec payload (the magic `IDVS`). A cheap sniff for
/// readers of mixed tracks; [`FrameHeader::parse`] checks the rest.
pub fn is_screen_payload(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// How a tile record codes its rectangle (the byte after the record's rectangle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TileCoding {
    /// One colour: 3 bytes B, G, R.
    Solid,
    /// Up to 256 colours, then one index byte per pixel.
    Palette,
    /// B, G, R of every pixel: exact.
    Raw,
    /// The next slot of the frame's JPEG.
    Jpeg,
    /// A rectangle of the previous screen or of a reference screen, offset by (dx, dy).
    Copy,
}

impl TileCoding {
    pub(crate) fn code(self) -> u8 {
        match self {
            TileCoding::Solid => 1,
            TileCoding::Palette => 2,
            TileCoding::Raw => 3,
            TileCoding::Jpeg => 4,
            TileCoding::Copy => 5,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => TileCoding::Solid,
            2 => TileCoding::Palette,
            3 => TileCoding::Raw,
            4 => TileCoding::Jpeg,
            5 => TileCoding::Copy,
            _ => return None,
        })
    }
}

/// The largest tile record header: skip (5-byte varint), coding, rectangle (4), palette size
/// and 256 colours.
const MAX_RECORD_OVERHEAD: u64 = 5 + 1 + 4 + 1 + 256 * 3;

/// Most records one tile may have. An encoder writes per 16 × 16 block at most a copy and a
/// fix-up, or a JPEG under photo-like blocks with exact runs on top: never more than four.
pub(crate) fn max_records_per_tile(tile_size: u32) -> u32 {
    let blocks = (tile_size / 16) * (tile_size / 16);
    4 * blocks + 2
}

/// The most bytes a tile stream of a `pixels`-pixel screen with `tiles` tiles of side
/// `tile_size` can hold: every tile at its record limit, no pixel coded in more than 3 bytes.
/// A declared length above this is refused before anything is allocated.
pub(crate) fn max_tile_stream_len(pixels: u64, tiles: u64, tile_size: u32) -> u64 {
    tiles * u64::from(max_records_per_tile(tile_size)) * MAX_RECORD_OVERHEAD + pixels * 3
}

/// The most bytes a JPEG section of a `pixels`-pixel screen may have: 4 per pixel (a JPEG of
/// noise at quality 100 stays under 3) plus 64 KiB of headers.
pub(crate) fn max_jpeg_len(pixels: u64) -> u64 {
    pixels * 4 + 65_536
}

/// Appends `value` as an unsigned LEB128 varint (7 bits per byte, low first).
pub(crate) fn write_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A cursor over untrusted bytes: every read is bounds-checked and names its field.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                offset: self.pos,
                needed: len,
                available: self.remaining(),
            });
        }
        let slice = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16> {
        let b = self.take(2, field)?;
        Ok(i16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned LEB128 varint of at most 5 bytes (a `u32`); longer encodings are refused
    /// as truncated-or-malformed input rather than read on.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.u8(field)?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        // Five continuation bytes: more than any tile index needs. Reported as a tile index
        // past any grid, which is what it would be.
        Ok(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_is_sixteen_bytes() {
        let header = FrameHeader {
            kind: FrameKind::Delta,
            sequence: 0xdead_beef,
            width: 1920,
            height: 1080,
            tile_size: 64,
            store_reference: 2,
        };
        let mut bytes = Vec::new();
        header.write(&mut bytes);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(&bytes[..6], b"IDVS\x01\x02");
        assert_eq!(FrameHeader::parse(&bytes).unwrap(), header);
        assert!(is_screen_payload(&bytes));
    }

    #[test]
    fn varints_round_trip_and_overlong_ones_are_out_of_range() {
        for value in [0u32, 1, 127, 128, 300, 65_535, u32::MAX] {
            let mut bytes = Vec::new();
            write_varint(&mut bytes, value);
            let mut reader = Reader::new(&bytes);
            assert_eq!(reader.varint("v").unwrap(), u64::from(value));
            assert_eq!(reader.remaining(), 0);
        }
        let mut reader = Reader::new(&[0xff; 6]);
        assert_eq!(reader.varint("v").unwrap(), u64::MAX);
        assert!(matches!(
            Reader::new(&[0x80]).varint("skip"),
            Err(DecodeError::Truncated { field: "skip", .. })
        ));
    }
}
