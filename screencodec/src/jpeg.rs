//! The photo-like rectangles of a frame, packed into one JPEG: each rectangle gets a
//! tile-sized *slot* (its pixels at the top left; the macroblocks it reaches into filled by
//! repeating its last column and row, so no edge rings into it; the others flat), and the
//! slots are laid out in raster order in a grid `cols` slots wide. One JPEG per frame shares one set of tables (~600 bytes) across every
//! photo-like tile. Tile sides are multiples of 16, so no 4:2:0 macroblock spans two slots.

use crate::error::{DecodeError, EncodeError};
use crate::picture::BgrxFrame;
use crate::tile::Rect;

/// Side of a 4:2:0 macroblock.
const MACROBLOCK: u32 = 16;

/// Slots per column and row of the JPEG for `slots` slots of side `tile`: one column unless
/// that would pass JPEG's 65,535-pixel height, then as few columns as fit.
pub(crate) fn strip_layout(slots: usize, tile: u32) -> (u32, u32) {
    let max_rows = (u32::from(u16::MAX) / tile) as usize;
    let cols = slots.div_ceil(max_rows).max(1);
    let rows = slots.div_ceil(cols).max(1);
    (cols as u32, rows as u32)
}

/// The slots of the frame being encoded.
pub(crate) struct JpegSlots {
    tile: u32,
    /// Slots one after the other, each `tile × tile` BGRx pixels (with one column this is
    /// already the JPEG's image).
    slots: Vec<u8>,
    count: usize,
    image: Vec<u8>,
}

impl JpegSlots {
    pub(crate) fn new(tile: u32) -> Self {
        JpegSlots {
            tile,
            slots: Vec::new(),
            count: 0,
            image: Vec::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.count = 0;
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Adds `rect` (at most one tile) as the next slot.
    pub(crate) fn push(&mut self, frame: &BgrxFrame<'_>, rect: Rect) {
        let side = self.tile as usize * 4;
        let used = rect.w as usize * 4;
        let start = self.slots.len();
        for row in frame.rows(rect) {
            self.slots.extend_from_slice(row);
            let last = [row[used - 4], row[used - 3], row[used - 2], row[used - 1]];
            for _ in rect.w..self.tile {
                self.slots.extend_from_slice(&last);
            }
        }
        let last_row = start + (rect.h as usize - 1) * side;
        for _ in rect.h..self.tile {
            self.slots.extend_from_within(last_row..last_row + side);
        }
        self.flatten_beyond(start, rect);
        self.count += 1;
    }

    /// Fills the macroblocks of the slot at `start` that hold none of `rect` (it sits at the
    /// slot's top left) with one colour, its bottom-right pixel's. Repeated edges cost JPEG
    /// their every change along the edge in each block they fill; a flat macroblock costs a
    /// few bits. Macroblocks `rect` reaches into keep the repeated edge, so nothing rings
    /// into it.
    fn flatten_beyond(&mut self, start: usize, rect: Rect) {
        let side = self.tile as usize * 4;
        let used_w = (rect.w.div_ceil(MACROBLOCK) * MACROBLOCK) as usize;
        let used_h = (rect.h.div_ceil(MACROBLOCK) * MACROBLOCK) as usize;
        let tile = self.tile as usize;
        if used_w >= tile && used_h >= tile {
            return;
        }
        let corner = start + (rect.h as usize - 1) * side + (rect.w as usize - 1) * 4;
        let colour: [u8; 4] = self.slots[corner..corner + 4].try_into().unwrap_or([0; 4]);
        for y in 0..tile {
            let line = &mut self.slots[start + y * side..start + (y + 1) * side];
            let from = if y < used_h { used_w } else { 0 };
            for px in line[from * 4..].chunks_exact_mut(4) {
                px.copy_from_slice(&colour);
            }
        }
    }

    /// Adds `rect` as the next slot with the parts of `holes` inside it flattened to one
    /// colour each (exact records will cover them; flat, they cost the JPEG almost nothing).
    pub(crate) fn push_flattened(
        &mut self,
        frame: &BgrxFrame<'_>,
        rect: Rect,
        holes: impl Iterator<Item = Rect>,
    ) {
        self.push(frame, rect);
        let side = self.tile as usize * 4;
        let base = (self.count - 1) * side * self.tile as usize;
        for hole in holes {
            let x0 = hole.x.max(rect.x);
            let y0 = hole.y.max(rect.y);
            let x1 = (hole.x + hole.w).min(rect.x + rect.w);
            let y1 = (hole.y + hole.h).min(rect.y + rect.h);
            if x0 >= x1 || y0 >= y1 {
                continue;
            }
            let first = base + (y0 - rect.y) as usize * side + (x0 - rect.x) as usize * 4;
            let colour: [u8; 4] = self.slots[first..first + 4].try_into().unwrap_or([0; 4]);
            for y in y0..y1 {
                let at = base + (y - rect.y) as usize * side + (x0 - rect.x) as usize * 4;
                for px in self.slots[at..at + (x1 - x0) as usize * 4].chunks_exact_mut(4) {
                    px.copy_from_slice(&colour);
                }
            }
        }
    }

    /// Appends the JPEG of every slot at `quality` (1–100, 4:2:0) to `out`.
    pub(crate) fn encode(&mut self, quality: u8, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (cols, rows) = strip_layout(self.count, self.tile);
        let width = cols * self.tile;
        let height = rows * self.tile;
        let image = if cols == 1 {
            &self.slots
        } else {
            self.arrange(cols, rows);
            &self.image
        };
        let mut encoder = jpeg_encoder::Encoder::new(out, quality);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        encoder
            .encode(
                image,
                width as u16,
                height as u16,
                jpeg_encoder::ColorType::Bgra,
            )
            .map_err(|e| EncodeError::Backend(format!("JPEG encoder: {e}")))
    }

    /// Lays the slots out `cols` wide in `self.image`; unused slots stay black.
    fn arrange(&mut self, cols: u32, rows: u32) {
        let tile = self.tile as usize;
        let side = tile * 4;
        let stride = cols as usize * side;
        self.image.clear();
        self.image.resize(stride * rows as usize * tile, 0);
        for (slot, pixels) in self.slots.chunks_exact(side * tile).enumerate() {
            let (col, row) = (slot % cols as usize, slot / cols as usize);
            for (y, line) in pixels.chunks_exact(side).enumerate() {
                let at = (row * tile + y) * stride + col * side;
                self.image[at..at + side].copy_from_slice(line);
            }
        }
    }
}

/// A decoded JPEG section: BGRA slots laid out as [`strip_layout`] says.
pub(crate) struct DecodedSlots {
    tile: u32,
    cols: u32,
    pixels: Vec<u8>,
}

impl DecodedSlots {
    pub(crate) fn new() -> Self {
        DecodedSlots {
            tile: 16,
            cols: 1,
            pixels: Vec::new(),
        }
    }

    /// Decodes `jpeg`, which must hold exactly the layout of `slots` slots of side `tile`.
    pub(crate) fn decode(
        &mut self,
        jpeg: &[u8],
        slots: usize,
        tile: u32,
    ) -> Result<(), DecodeError> {
        use zune_core::bytestream::ZCursor;
        use zune_core::colorspace::ColorSpace;
        use zune_core::options::DecoderOptions;

        let (cols, rows) = strip_layout(slots, tile);
        let (width, height) = ((cols * tile) as usize, (rows * tile) as usize);
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::BGRA)
            .set_max_width(width)
            .set_max_height(height)
            .set_strict_mode(true);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        decoder
            .decode_headers()
            .map_err(|e| DecodeError::Jpeg(e.to_string()))?;
        let found = decoder.dimensions().unwrap_or((0, 0));
        if found != (width, height) {
            return Err(DecodeError::JpegLayout(format!(
                "{slots} JPEG tile(s) of {tile} pixels need a {width}x{height} image, found {}x{}",
                found.0, found.1
            )));
        }
        let size = width * height * 4;
        if decoder.output_buffer_size() != Some(size) {
            return Err(DecodeError::JpegLayout(
                "the JPEG does not decode to BGRA".into(),
            ));
        }
        self.pixels.clear();
        self.pixels.resize(size, 0);
        decoder
            .decode_into(&mut self.pixels)
            .map_err(|e| DecodeError::Jpeg(e.to_string()))?;
        self.tile = tile;
        self.cols = cols;
        Ok(())
    }

    /// `w` BGRA pixels of row `y` of slot `slot` (`w` ≤ tile, `y` < tile).
    pub(crate) fn row(&self, slot: usize, y: u32, w: u32) -> &[u8] {
        let tile = self.tile as usize;
        let stride = self.cols as usize * tile * 4;
        let (col, row) = (slot % self.cols as usize, slot / self.cols as usize);
        let at = (row * tile + y as usize) * stride + col * tile * 4;
        &self.pixels[at..at + w as usize * 4]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_flat_beyond_the_macroblocks_its_rectangle_reaches() {
        // A 20 x 5 rectangle of noise on a 40 x 8 screen, in a 64-pixel slot.
        let (w, h) = (40u32, 8u32);
        let pixels: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let c = i.wrapping_mul(2_654_435_761);
                [c as u8, (c >> 8) as u8, (c >> 16) as u8, 0]
            })
            .collect();
        let frame = BgrxFrame::new(&pixels, w, h, w as usize * 4).unwrap();
        let rect = Rect {
            x: 3,
            y: 2,
            w: 20,
            h: 5,
        };
        let mut slots = JpegSlots::new(64);
        slots.push(&frame, rect);
        let at = |x: usize, y: usize| &slots.slots[(y * 64 + x) * 4..(y * 64 + x) * 4 + 4];
        let source = |x: u32, y: u32| {
            let i = (((rect.y + y) * w + rect.x + x) * 4) as usize;
            &pixels[i..i + 4]
        };
        // The rectangle itself, then its last column and row repeated up to the 32 x 16
        // macroblocks it reaches into.
        assert_eq!(at(0, 0), source(0, 0));
        assert_eq!(at(19, 4), source(19, 4));
        assert_eq!(at(31, 1), source(19, 1));
        assert_eq!(at(5, 15), source(5, 4));
        // Every other macroblock one colour: the rectangle's bottom-right pixel.
        let corner = source(19, 4).to_vec();
        for (x, y) in [(32, 0), (63, 15), (0, 16), (40, 63), (63, 63)] {
            assert_eq!(at(x, y), &corner[..], "({x}, {y})");
        }
        // A rectangle as large as the slot is left alone.
        let mut full = JpegSlots::new(16);
        let big = BgrxFrame::new(&pixels[..16 * 16 * 4], 16, 16, 64).unwrap();
        full.push(
            &big,
            Rect {
                x: 0,
                y: 0,
                w: 16,
                h: 16,
            },
        );
        assert_eq!(full.slots, pixels[..16 * 16 * 4]);
    }

    #[test]
    fn layout_is_one_column_until_the_height_limit() {
        assert_eq!(strip_layout(1, 64), (1, 1));
        assert_eq!(strip_layout(1023, 64), (1, 1023));
        assert_eq!(strip_layout(1024, 64), (2, 512));
        assert_eq!(strip_layout(2040, 64), (2, 1020));
        assert_eq!(strip_layout(4096, 16), (2, 2048));
    }
}
