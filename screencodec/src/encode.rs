//! The [`Encoder`]: one payload per captured frame. It keeps the previous capture, finds what
//! changed tile by tile, tries to explain changed rectangles as copies of the previous screen
//! or of a reference screen, classifies the rest, and writes the tile records and the
//! photo-like rectangles (one JPEG), both through the stream's running zstd compression.
//!
//! Reference screens: the first is the key frame's screen; after that, whenever the screen
//! has been still for a few frames since it last changed, it is kept in the older of the two
//! slots. What a window uncovers when it moves, closes or is switched away from is then
//! usually on one of them, exactly where it was.

use crate::classify::{Classifier, Coding, write_raw};
use crate::diff::{ChangeFinder, remember};
use crate::error::EncodeError;
use crate::fidelity::Fidelity;
use crate::format::{FrameHeader, FrameKind, TileCoding, write_varint};
use crate::jpeg::JpegSlots;
use crate::motion::{MotionSearch, Piece};
use crate::picture::BgrxFrame;
use crate::stream::Packer;
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
    /// JPEG quality of photo-like rectangles, 1 to 100. Default 60 (photos and video come out
    /// at least as close to the screen as x264 at CRF 23 gets them).
    pub jpeg_quality: u8,
    /// zstd level of the tile stream, 1 to 19 (above 3 costs CPU for little). Default 1.
    pub zstd_level: i32,
    /// Look for scrolled and moved rectangles, and for what windows uncover. Default on.
    pub detect_moves: bool,
    /// Keep the screen as a reference once it has been unchanged for this many frames
    /// (after changing); 0 keeps no reference screens. Default 5.
    pub reference_after_still: u32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            tile_size: 64,
            keyframe_interval: 300,
            jpeg_quality: 60,
            zstd_level: 1,
            detect_moves: true,
            reference_after_still: 5,
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
    /// Raw colours, compressed (exact).
    pub raw: u32,
    /// JPEG.
    pub jpeg: u32,
    /// Copied from elsewhere on the previous screen (scroll, move) or from a reference
    /// screen (what a window uncovered).
    pub copied: u32,
    /// Pixels copied.
    pub copied_pixels: u64,
    /// Pixels in all the rectangles.
    pub pixels: u64,
    /// Pixels in the JPEG rectangles.
    pub jpeg_pixels: u64,
    /// Blocks the decoder had only approximately (JPEG, or copied from JPEG) that looked like
    /// text once still, sent again exactly.
    pub refined: u32,
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
    /// Copied and coded pieces of the changed rectangles, and which are whose.
    pieces: Vec<Piece>,
    plans: Vec<(usize, usize)>,
    motion: MotionSearch,
    /// The reference screens as the decoder will have them (source pixels, rows packed).
    references: [Option<Vec<u8>>; 2],
    /// The slot the next reference screen goes to.
    next_reference: u8,
    /// Unchanged frames in a row.
    still: u32,
    /// Whether the screen changed since a reference screen was last kept.
    changed_since_reference: bool,
    /// What the decoder has only approximately, and the blocks to send again exactly.
    fidelity: Fidelity,
    refinements: Vec<(u32, Rect)>,
    classifier: Classifier,
    records: Vec<u8>,
    packed: Vec<u8>,
    slots: JpegSlots,
    jpeg: Vec<u8>,
    packer: Packer,
}

impl Encoder {
    /// An encoder with `config`; its first frame will be a key frame.
    pub fn new(config: EncoderConfig) -> Result<Self, EncodeError> {
        config.validate()?;
        let packer = Packer::new(config.zstd_level)?;
        Ok(Encoder {
            grid: None,
            previous: Vec::new(),
            sequence: 1,
            since_key: 0,
            key_requested: true,
            changes: ChangeFinder::default(),
            changed: Vec::new(),
            pieces: Vec::new(),
            plans: Vec::new(),
            motion: MotionSearch::new(),
            references: [None, None],
            next_reference: 1,
            still: 0,
            changed_since_reference: false,
            fidelity: Fidelity::default(),
            refinements: Vec::new(),
            classifier: Classifier::new(),
            records: Vec::new(),
            packed: Vec::new(),
            slots: JpegSlots::new(config.tile_size),
            jpeg: Vec::new(),
            packer,
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
        self.refinements.clear();
        if key {
            self.fidelity.reset(width, height);
            self.packer.restart()?;
            self.changed
                .extend((0..grid.count()).map(|i| (i, grid.tile_rect(i))));
            self.motion.reset();
        } else {
            self.changes
                .changed_rects(frame, &self.previous, &grid, &mut self.changed);
        }
        if !key {
            self.fidelity.refinements(
                frame,
                &grid,
                &self.changed,
                &mut self.classifier,
                &mut self.refinements,
            );
        }

        let still = !key && self.changed.is_empty();
        let kind = if key {
            FrameKind::Key
        } else if still && self.refinements.is_empty() {
            FrameKind::Unchanged
        } else {
            FrameKind::Delta
        };
        let store_reference = self.reference_to_store(key, still);
        let header = FrameHeader {
            kind,
            sequence: self.sequence,
            width,
            height,
            tile_size: self.config.tile_size,
            store_reference,
        };
        header.write(out);

        let mut tiles = TileCounts::default();
        if kind != FrameKind::Unchanged {
            if kind == FrameKind::Delta && self.config.detect_moves {
                let references = [self.references[0].as_deref(), self.references[1].as_deref()];
                self.motion.plan(
                    frame,
                    &self.previous,
                    references,
                    &grid,
                    &self.changed,
                    &mut self.pieces,
                    &mut self.plans,
                );
            } else {
                self.pieces.clear();
                self.plans.clear();
                for (i, &(_, rect)) in self.changed.iter().enumerate() {
                    self.pieces.push(Piece { rect, source: None });
                    self.plans.push((i, i + 1));
                }
            }
            let copies_from_previous = self
                .pieces
                .iter()
                .any(|p| matches!(p.source, Some(s) if s.screen == 0));
            self.fidelity.begin_frame(copies_from_previous);
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
        if key {
            self.references = [None, None];
        }
        if store_reference != 0 {
            self.fidelity.store_reference(store_reference);
            let slot = &mut self.references[usize::from(store_reference) - 1];
            match slot {
                Some(kept) => kept.clone_from(&self.previous),
                None => *slot = Some(self.previous.clone()),
            }
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

    /// The reference slot this frame's screen goes to (0: none), and the bookkeeping of
    /// when to keep one.
    fn reference_to_store(&mut self, key: bool, still: bool) -> u8 {
        let after = self.config.reference_after_still;
        if after == 0 {
            return 0;
        }
        if key {
            self.still = 0;
            self.changed_since_reference = false;
            self.next_reference = 2;
            return 1;
        }
        if !still {
            self.still = 0;
            self.changed_since_reference = true;
            return 0;
        }
        self.still += 1;
        if self.still < after || !self.changed_since_reference {
            return 0;
        }
        self.changed_since_reference = false;
        let slot = self.next_reference;
        self.next_reference = 3 - slot;
        slot
    }

    /// Writes the records of every changed rectangle into `self.records` and the photo-like
    /// ones into `self.slots`.
    fn write_records(&mut self, frame: &BgrxFrame<'_>, grid: &TileGrid) -> TileCounts {
        let mut counts = TileCounts::default();
        self.records.clear();
        self.slots.clear();
        let mut last_tile = 0;
        let mut refined = 0;
        for i in 0..self.changed.len() {
            let (tile, whole) = self.changed[i];
            // Blocks sent again exactly, in tile order with the changes.
            while refined < self.refinements.len() && self.refinements[refined].0 <= tile {
                self.write_refinement(frame, grid, refined, &mut last_tile, &mut counts);
                refined += 1;
            }
            counts.pixels += u64::from(whole.area());
            let origin = grid.tile_rect(tile);
            let (start, end) = self.plans[i];
            for p in start..end {
                let Piece { rect, source } = self.pieces[p];
                match source {
                    Some(source) => {
                        self.record_header(&mut last_tile, tile, origin, rect, TileCoding::Copy);
                        self.records.push(source.screen);
                        // Offsets fit: the motion search keeps them within 16 bits.
                        self.records
                            .extend_from_slice(&(source.offset.0 as i16).to_le_bytes());
                        self.records
                            .extend_from_slice(&(source.offset.1 as i16).to_le_bytes());
                        self.fidelity.copied(rect, source);
                        counts.copied += 1;
                        counts.copied_pixels += u64::from(rect.area());
                    }
                    None => {
                        self.write_piece(frame, &mut last_tile, tile, origin, rect, &mut counts)
                    }
                }
            }
        }
        for i in refined..self.refinements.len() {
            self.write_refinement(frame, grid, i, &mut last_tile, &mut counts);
        }
        counts
    }

    /// Writes refinement `i`: a block the decoder has only approximately, sent exactly.
    fn write_refinement(
        &mut self,
        frame: &BgrxFrame<'_>,
        grid: &TileGrid,
        i: usize,
        last_tile: &mut u32,
        counts: &mut TileCounts,
    ) {
        let (tile, block) = self.refinements[i];
        let coding = self.classifier.classify_exact(frame, block);
        let origin = grid.tile_rect(tile);
        self.write_coded(frame, last_tile, tile, origin, block, coding, counts);
        counts.refined += 1;
        counts.pixels += u64::from(block.area());
    }

    /// Writes the records of a piece to code: one, or for a mixed piece a JPEG under its
    /// photo-like blocks and the exact runs on top.
    fn write_piece(
        &mut self,
        frame: &BgrxFrame<'_>,
        last_tile: &mut u32,
        tile: u32,
        origin: Rect,
        rect: Rect,
        counts: &mut TileCounts,
    ) {
        let coding = self.classifier.classify(frame, rect, (origin.x, origin.y));
        if coding != Coding::Mixed {
            self.write_coded(frame, last_tile, tile, origin, rect, coding, counts);
            return;
        }
        // A JPEG under the photo-like blocks, then the exact runs on top of it (records of one
        // tile apply in order). Inside the JPEG the exact runs are flattened so they cost next
        // to nothing there.
        let parts = self.classifier.parts().to_vec();
        let lossy = parts.iter().filter(|p| !p.exact).map(|p| p.rect);
        let Some(under) = lossy.reduce(Rect::union) else {
            return;
        };
        self.record_header(last_tile, tile, origin, under, TileCoding::Jpeg);
        self.fidelity.approximate(under);
        self.slots.push_flattened(
            frame,
            under,
            parts.iter().filter(|p| p.exact).map(|p| p.rect),
        );
        counts.jpeg += 1;
        counts.jpeg_pixels += u64::from(under.area());
        for part in parts.iter().filter(|p| p.exact) {
            let coding = self.classifier.classify_exact(frame, part.rect);
            self.write_coded(frame, last_tile, tile, origin, part.rect, coding, counts);
        }
    }

    /// Writes one record of `coding` (anything but a copy or a mixed rectangle).
    #[allow(clippy::too_many_arguments)]
    fn write_coded(
        &mut self,
        frame: &BgrxFrame<'_>,
        last_tile: &mut u32,
        tile: u32,
        origin: Rect,
        rect: Rect,
        coding: Coding,
        counts: &mut TileCounts,
    ) {
        let code = match coding {
            Coding::Solid(_) => TileCoding::Solid,
            Coding::Palette => TileCoding::Palette,
            Coding::Raw => TileCoding::Raw,
            Coding::Lossy | Coding::Mixed => TileCoding::Jpeg,
        };
        self.record_header(last_tile, tile, origin, rect, code);
        match coding {
            Coding::Lossy | Coding::Mixed => self.fidelity.approximate(rect),
            _ => self.fidelity.exact(rect),
        }
        match coding {
            Coding::Solid(bgr) => {
                counts.solid += 1;
                self.records.extend_from_slice(&bgr);
            }
            Coding::Palette => {
                counts.palette += 1;
                let colours = self.classifier.colours();
                self.records.push((colours.len() - 1) as u8);
                for &c in colours {
                    self.records
                        .extend_from_slice(&[c as u8, (c >> 8) as u8, (c >> 16) as u8]);
                }
                self.records.extend_from_slice(self.classifier.indices());
            }
            Coding::Raw => {
                counts.raw += 1;
                write_raw(frame, rect, &mut self.records);
            }
            Coding::Lossy | Coding::Mixed => {
                counts.jpeg += 1;
                counts.jpeg_pixels += u64::from(rect.area());
                self.slots.push(frame, rect);
            }
        }
    }

    /// Writes a record's tile skip, coding and rectangle (relative to the tile).
    fn record_header(
        &mut self,
        last_tile: &mut u32,
        tile: u32,
        origin: Rect,
        rect: Rect,
        coding: TileCoding,
    ) {
        write_varint(&mut self.records, tile - *last_tile);
        *last_tile = tile;
        self.records.push(coding.code());
        self.records.extend_from_slice(&[
            (rect.x - origin.x) as u8,
            (rect.y - origin.y) as u8,
            (rect.w - 1) as u8,
            (rect.h - 1) as u8,
        ]);
    }

    /// Appends the compressed tile stream and the JPEG section to `out`.
    fn write_sections(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.jpeg.clear();
        if self.slots.count() > 0 {
            self.slots
                .encode(self.config.jpeg_quality, &mut self.jpeg)?;
        }
        let too_large = |what: &str, len: usize| {
            EncodeError::Backend(format!("{what} of {len} bytes does not fit the format"))
        };
        let tiles = u32::try_from(self.records.len())
            .map_err(|_| too_large("tile stream", self.records.len()))?;
        let jpeg =
            u32::try_from(self.jpeg.len()).map_err(|_| too_large("JPEG", self.jpeg.len()))?;
        // The JPEG goes through the stream too: its tables repeat every frame.
        self.records.extend_from_slice(&self.jpeg);
        self.packed.clear();
        self.packer.pack(&self.records, &mut self.packed)?;
        let packed = u32::try_from(self.packed.len())
            .map_err(|_| too_large("compressed section", self.packed.len()))?;
        out.reserve(12 + self.packed.len());
        out.extend_from_slice(&tiles.to_le_bytes());
        out.extend_from_slice(&jpeg.to_le_bytes());
        out.extend_from_slice(&packed.to_le_bytes());
        out.extend_from_slice(&self.packed);
        Ok(())
    }
}
