//! The [`Encoder`]: one payload per captured frame. It keeps the previous capture, finds what
//! changed tile by tile, tries to explain changed rectangles as copies of the previous screen,
//! classifies the rest, and writes the tile records (compressed together with zstd) and the
//! photo-like rectangles (one JPEG).

use zstd::zstd_safe;

use crate::classify::{Classifier, Coding, write_lossless};
use crate::diff::{ChangeFinder, remember};
use crate::error::EncodeError;
use crate::format::{FrameHeader, FrameKind, TileCoding, write_varint};
use crate::jpeg::JpegSlots;
use crate::motion::{MotionSearch, Offset};
use crate::picture::BgrxFrame;
use crate::tile::{Rect, TileGrid};

/// Largest screen the encoder takes (2^26 pixels, twice 8K UHD): keeps every frame's JPEG
/// within JPEG's 65,535 × 65,535 limit at any tile size.
const MAX_PIXELS: u64 = 1 << 26;

/// Settings of an [`Encoder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    /// Tile side in pixels: 16, 32, 64, 128 or 256. Smaller tiles find smaller changes and
    /// cost more records. Default 64.
    pub tile_size: u32,
    /// A key frame every this many frames; 0 = only the first frame, on request
    /// ([`Encoder::request_keyframe`]) and when the screen size changes. Default 300.
    pub keyframe_interval: u32,
    /// JPEG quality of photo-like rectangles, 1 to 100. Default 75.
    pub jpeg_quality: u8,
    /// zstd level of the tile stream, 1 to 19 (above 3 costs CPU for little). Default 1.
    pub zstd_level: i32,
    /// Share (0 to 1) of pixels equal to their left neighbour from which a rectangle of more
    /// than 256 colours is coded lossless rather than as JPEG. Default 0.5.
    pub flat_share: f32,
    /// Look for scrolled and moved rectangles. Default on.
    pub detect_moves: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            tile_size: 64,
            keyframe_interval: 300,
            jpeg_quality: 75,
            zstd_level: 1,
            flat_share: 0.5,
            detect_moves: true,
        }
    }
}

impl EncoderConfig {
    fn validate(&self) -> Result<(), EncodeError> {
        if !(16..=256).contains(&self.tile_size) || !self.tile_size.is_power_of_two() {
            return Err(EncodeError::BadConfig {
                field: "tile_size",
                value: i64::from(self.tile_size),
                rule: "16, 32, 64, 128 or 256",
            });
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(EncodeError::BadConfig {
                field: "jpeg_quality",
                value: i64::from(self.jpeg_quality),
                rule: "1 to 100",
            });
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err(EncodeError::BadConfig {
                field: "zstd_level",
                value: i64::from(self.zstd_level),
                rule: "1 to 19",
            });
        }
        if !(0.0..=1.0).contains(&self.flat_share) {
            return Err(EncodeError::BadConfig {
                field: "flat_share (per cent)",
                value: (self.flat_share * 100.0) as i64,
                rule: "0 to 100 per cent",
            });
        }
        Ok(())
    }
}

/// How many rectangles of a frame got each coding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TileCounts {
    /// One colour.
    pub solid: u32,
    /// Palette (exact).
    pub palette: u32,
    /// Lossless filtered (exact).
    pub lossless: u32,
    /// JPEG.
    pub jpeg: u32,
    /// Copied from elsewhere on the previous screen (scroll, move).
    pub copied: u32,
    /// Pixels in all the rectangles.
    pub pixels: u64,
    /// Pixels in the JPEG rectangles.
    pub jpeg_pixels: u64,
}

/// What [`Encoder::encode_into`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSummary {
    /// Key, delta or unchanged.
    pub kind: FrameKind,
    /// The frame's sequence number.
    pub sequence: u32,
    /// Payload length in bytes.
    pub bytes: usize,
    /// Rectangles by coding.
    pub tiles: TileCounts,
}

/// Turns captured frames into payloads. One encoder per screen stream; frames must be
/// decoded in the order they were encoded.
pub struct Encoder {
    config: EncoderConfig,
    grid: Option<TileGrid>,
    /// The last frame, rows packed: what changed is found against it, copies are taken from it.
    previous: Vec<u8>,
    sequence: u32,
    since_key: u32,
    key_requested: bool,
    changes: ChangeFinder,
    changed: Vec<(u32, Rect)>,
    copies: Vec<Option<Offset>>,
    motion: MotionSearch,
    classifier: Classifier,
    records: Vec<u8>,
    packed: Vec<u8>,
    slots: JpegSlots,
    jpeg: Vec<u8>,
    compressor: zstd_safe::CCtx<'static>,
}

impl Encoder {
    /// An encoder with `config`; its first frame will be a key frame.
    pub fn new(config: EncoderConfig) -> Result<Self, EncodeError> {
        config.validate()?;
        let compressor = zstd_safe::CCtx::try_create()
            .ok_or_else(|| EncodeError::Backend("cannot create a zstd context".into()))?;
        Ok(Encoder {
            grid: None,
            previous: Vec::new(),
            sequence: 1,
            since_key: 0,
            key_requested: true,
            changes: ChangeFinder::default(),
            changed: Vec::new(),
            copies: Vec::new(),
            motion: MotionSearch::new(),
            classifier: Classifier::new(config.flat_share),
            records: Vec::new(),
            packed: Vec::new(),
            slots: JpegSlots::new(config.tile_size),
            jpeg: Vec::new(),
            compressor,
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Makes the next frame a key frame (a viewer joined, frames were dropped, the server
    /// asked).
    pub fn request_keyframe(&mut self) {
        self.key_requested = true;
    }

    /// Encodes `frame` into a new payload.
    pub fn encode(&mut self, frame: &BgrxFrame<'_>) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(frame, &mut out)?;
        Ok(out)
    }

    /// Encodes `frame` into `out` (cleared first; reuse it to avoid an allocation per frame).
    /// If this fails, the next frame is a key frame.
    pub fn encode_into(
        &mut self,
        frame: &BgrxFrame<'_>,
        out: &mut Vec<u8>,
    ) -> Result<FrameSummary, EncodeError> {
        let result = self.write_frame(frame, out);
        if result.is_err() {
            out.clear();
            self.key_requested = true;
        }
        result
    }

    fn write_frame(
        &mut self,
        frame: &BgrxFrame<'_>,
        out: &mut Vec<u8>,
    ) -> Result<FrameSummary, EncodeError> {
        out.clear();
        let (width, height) = (frame.width(), frame.height());
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(EncodeError::BadDimensions { width, height });
        }
        let grid = TileGrid::new(width, height, self.config.tile_size);
        let resized = self.grid != Some(grid);
        let interval = self.config.keyframe_interval;
        let key = resized || self.key_requested || (interval > 0 && self.since_key >= interval);

        self.changed.clear();
        if key {
            self.changed
                .extend((0..grid.count()).map(|i| (i, grid.tile_rect(i))));
            self.motion.reset();
        } else {
            self.changes
                .changed_rects(frame, &self.previous, &grid, &mut self.changed);
        }
        let kind = if key {
            FrameKind::Key
        } else if self.changed.is_empty() {
            FrameKind::Unchanged
        } else {
            FrameKind::Delta
        };
        let header = FrameHeader {
            kind,
            sequence: self.sequence,
            width,
            height,
            tile_size: self.config.tile_size,
        };
        header.write(out);

        let mut tiles = TileCounts::default();
        if kind != FrameKind::Unchanged {
            if kind == FrameKind::Delta && self.config.detect_moves {
                self.motion.find_copies(
                    frame,
                    &self.previous,
                    &grid,
                    &self.changed,
                    &mut self.copies,
                );
            } else {
                self.copies.clear();
                self.copies.resize(self.changed.len(), None);
            }
            tiles = self.write_records(frame, &grid);
            self.write_sections(out)?;
        }

        // The frame is written: remember it.
        if resized {
            self.previous.clear();
            self.previous
                .resize(width as usize * height as usize * 4, 0);
            self.grid = Some(grid);
        }
        for &(_, rect) in &self.changed {
            remember(frame, rect, &mut self.previous, width);
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.since_key = if key { 1 } else { self.since_key + 1 };
        self.key_requested = false;
        Ok(FrameSummary {
            kind,
            sequence: header.sequence,
            bytes: out.len(),
            tiles,
        })
    }

    /// Writes one record per changed rectangle into `self.records` and the photo-like ones
    /// into `self.slots`.
    fn write_records(&mut self, frame: &BgrxFrame<'_>, grid: &TileGrid) -> TileCounts {
        let mut counts = TileCounts::default();
        self.records.clear();
        self.slots.clear();
        let mut next_tile = 0;
        for (&(tile, rect), copy) in self.changed.iter().zip(&self.copies) {
            write_varint(&mut self.records, tile - next_tile);
            next_tile = tile + 1;
            counts.pixels += u64::from(rect.area());
            let origin = grid.tile_rect(tile);
            let local = [
                (rect.x - origin.x) as u8,
                (rect.y - origin.y) as u8,
                (rect.w - 1) as u8,
                (rect.h - 1) as u8,
            ];
            let coding = match copy {
                Some(_) => None,
                None => Some(self.classifier.classify(frame, rect)),
            };
            let code = match coding {
                None => TileCoding::Copy,
                Some(Coding::Solid(_)) => TileCoding::Solid,
                Some(Coding::Palette) => TileCoding::Palette,
                Some(Coding::Lossless) => TileCoding::Lossless,
                Some(Coding::Lossy) => TileCoding::Jpeg,
            };
            self.records.push(code.code());
            self.records.extend_from_slice(&local);
            match (coding, copy) {
                (None, Some((dx, dy))) => {
                    counts.copied += 1;
                    // Offsets fit: both ends lie on a screen of at most 65,535 pixels.
                    self.records.extend_from_slice(&(*dx as i16).to_le_bytes());
                    self.records.extend_from_slice(&(*dy as i16).to_le_bytes());
                }
                (Some(Coding::Solid(bgr)), _) => {
                    counts.solid += 1;
                    self.records.extend_from_slice(&bgr);
                }
                (Some(Coding::Palette), _) => {
                    counts.palette += 1;
                    let colours = self.classifier.colours();
                    self.records.push((colours.len() - 1) as u8);
                    for &c in colours {
                        self.records
                            .extend_from_slice(&[c as u8, (c >> 8) as u8, (c >> 16) as u8]);
                    }
                    self.records.extend_from_slice(self.classifier.indices());
                }
                (Some(Coding::Lossless), _) => {
                    counts.lossless += 1;
                    write_lossless(frame, rect, &mut self.records);
                }
                (Some(Coding::Lossy), _) => {
                    counts.jpeg += 1;
                    counts.jpeg_pixels += u64::from(rect.area());
                    self.slots.push(frame, rect);
                }
                (None, None) => {}
            }
        }
        counts
    }

    /// Appends the compressed tile stream and the JPEG section to `out`.
    fn write_sections(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.packed.clear();
        self.packed
            .reserve(zstd_safe::compress_bound(self.records.len()));
        self.compressor
            .compress(&mut self.packed, &self.records, self.config.zstd_level)
            .map_err(|code| {
                EncodeError::Backend(format!("zstd: {}", zstd_safe::get_error_name(code)))
            })?;
        self.jpeg.clear();
        if self.slots.count() > 0 {
            self.slots
                .encode(self.config.jpeg_quality, &mut self.jpeg)?;
        }
        let too_large = |what: &str, len: usize| {
            EncodeError::Backend(format!("{what} of {len} bytes does not fit the format"))
        };
        let raw = u32::try_from(self.records.len())
            .map_err(|_| too_large("tile stream", self.records.len()))?;
        let packed = u32::try_from(self.packed.len())
            .map_err(|_| too_large("compressed tile stream", self.packed.len()))?;
        let jpeg =
            u32::try_from(self.jpeg.len()).map_err(|_| too_large("JPEG", self.jpeg.len()))?;
        out.reserve(12 + self.packed.len() + self.jpeg.len());
        out.extend_from_slice(&raw.to_le_bytes());
        out.extend_from_slice(&packed.to_le_bytes());
        out.extend_from_slice(&self.packed);
        out.extend_from_slice(&jpeg.to_le_bytes());
        out.extend_from_slice(&self.jpeg);
        Ok(())
    }
}
