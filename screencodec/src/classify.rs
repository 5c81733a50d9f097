//! Which coding a changed rectangle gets, by cheap measures of its pixels: one colour → solid;
//! at most 256 colours (text, UI chrome, diagrams) → palette, exact; more colours but mostly
//! flat (sub-pixel antialiased text, UI over a gradient) → lossless filtered; otherwise
//! (photos, video) → JPEG. The palette pass also writes the palette indices, so a palette
//! tile's pixels are read once.

use crate::picture::BgrxFrame;
use crate::tile::Rect;

/// Most colours a palette tile holds.
pub(crate) const MAX_PALETTE: usize = 256;
/// Hash slots of the colour table: a power of two at least twice [`MAX_PALETTE`].
const SLOTS: usize = 512;
const EMPTY: u16 = u16::MAX;

/// The coding chosen for a rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// Every pixel is this B, G, R.
    Solid([u8; 3]),
    /// [`Classifier::colours`] and [`Classifier::indices`] hold the palette and the pixels.
    Palette,
    /// Many colours, mostly flat: exact, filtered.
    Lossless,
    /// Photo-like: JPEG.
    Lossy,
}

/// Reusable tables for classifying rectangles (no allocation per tile).
pub(crate) struct Classifier {
    keys: [u32; SLOTS],
    slots: [u16; SLOTS],
    colours: Vec<u32>,
    indices: Vec<u8>,
    /// Share of pixels equal to their left neighbour at or above which a many-colour
    /// rectangle counts as flat (lossless) rather than photo-like.
    flat_share: f32,
}

impl Classifier {
    pub(crate) fn new(flat_share: f32) -> Self {
        Classifier {
            keys: [0; SLOTS],
            slots: [EMPTY; SLOTS],
            colours: Vec::with_capacity(MAX_PALETTE + 1),
            indices: Vec::new(),
            flat_share,
        }
    }

    /// The palette of the last [`Coding::Palette`] rectangle, as `0x00RRGGBB`.
    pub(crate) fn colours(&self) -> &[u32] {
        &self.colours
    }

    /// One palette index per pixel of the last [`Coding::Palette`] rectangle, row by row.
    pub(crate) fn indices(&self) -> &[u8] {
        &self.indices
    }

    pub(crate) fn classify(&mut self, frame: &BgrxFrame<'_>, rect: Rect) -> Coding {
        if self.build_palette(frame, rect) {
            if self.colours.len() == 1 {
                let c = self.colours[0];
                return Coding::Solid([c as u8, (c >> 8) as u8, (c >> 16) as u8]);
            }
            return Coding::Palette;
        }
        if left_equal_share(frame, rect) >= self.flat_share {
            Coding::Lossless
        } else {
            Coding::Lossy
        }
    }

    /// Fills the palette and the indices; `false` as soon as a 257th colour turns up.
    fn build_palette(&mut self, frame: &BgrxFrame<'_>, rect: Rect) -> bool {
        self.slots.fill(EMPTY);
        self.colours.clear();
        self.indices.clear();
        self.indices.reserve(rect.area() as usize);
        // No real colour has the top byte set, so the first pixel always misses.
        let mut last = u32::MAX;
        let mut last_index = 0u8;
        for row in frame.rows(rect) {
            for px in row.chunks_exact(4) {
                let colour = u32::from_le_bytes([px[0], px[1], px[2], 0]);
                if colour != last {
                    match self.index_of(colour) {
                        Some(index) => last_index = index,
                        None => return false,
                    }
                    last = colour;
                }
                self.indices.push(last_index);
            }
        }
        true
    }

    /// The palette index of `colour`, added if new; `None` when the palette is full.
    fn index_of(&mut self, colour: u32) -> Option<u8> {
        let mut slot = (colour.wrapping_mul(0x9e37_79b1) >> 23) as usize;
        loop {
            let index = self.slots[slot];
            if index == EMPTY {
                if self.colours.len() == MAX_PALETTE {
                    return None;
                }
                let index = self.colours.len() as u16;
                self.keys[slot] = colour;
                self.slots[slot] = index;
                self.colours.push(colour);
                return Some(index as u8);
            }
            if self.keys[slot] == colour {
                return Some(index as u8);
            }
            slot = (slot + 1) & (SLOTS - 1);
        }
    }
}

/// Share of pixels (from the second column on) equal to their left neighbour.
fn left_equal_share(frame: &BgrxFrame<'_>, rect: Rect) -> f32 {
    if rect.w < 2 {
        return 1.0;
    }
    let mut equal = 0u32;
    for row in frame.rows(rect) {
        let mut left = [row[0], row[1], row[2]];
        for px in row[4..].chunks_exact(4) {
            let this = [px[0], px[1], px[2]];
            equal += u32::from(this == left);
            left = this;
        }
    }
    equal as f32 / ((rect.w - 1) * rect.h) as f32
}

/// Appends the lossless filtered coding of `rect`: per pixel B, G, R minus the left
/// neighbour's (the first column: minus the pixel above; the very first: minus zero),
/// wrapping.
pub(crate) fn write_lossless(frame: &BgrxFrame<'_>, rect: Rect, out: &mut Vec<u8>) {
    out.reserve(rect.area() as usize * 3);
    let mut above = [0u8; 3];
    for row in frame.rows(rect) {
        let mut left = above;
        above = [row[0], row[1], row[2]];
        for px in row.chunks_exact(4) {
            out.extend_from_slice(&[
                px[0].wrapping_sub(left[0]),
                px[1].wrapping_sub(left[1]),
                px[2].wrapping_sub(left[2]),
            ]);
            left = [px[0], px[1], px[2]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(pixels: &[u8], w: u32, h: u32) -> BgrxFrame<'_> {
        BgrxFrame::new(pixels, w, h, w as usize * 4).unwrap()
    }

    #[test]
    fn classes_by_colour_count_and_flatness() {
        let rect = Rect {
            x: 0,
            y: 0,
            w: 32,
            h: 32,
        };
        let mut classifier = Classifier::new(0.5);

        let solid: Vec<u8> = [10, 20, 30, 0].repeat(32 * 32);
        assert_eq!(
            classifier.classify(&frame_of(&solid, 32, 32), rect),
            Coding::Solid([10, 20, 30])
        );

        // Two colours in stripes: palette, indices in order of first appearance.
        let stripes: Vec<u8> = (0..32 * 32)
            .flat_map(|i| {
                if (i % 32) < 16 {
                    [0, 0, 0, 9]
                } else {
                    [255, 255, 255, 7]
                }
            })
            .collect();
        assert_eq!(
            classifier.classify(&frame_of(&stripes, 32, 32), rect),
            Coding::Palette
        );
        assert_eq!(classifier.colours(), &[0, 0x00ff_ffff]);
        assert_eq!(classifier.indices()[15..17], [0, 1]);

        // 1024 distinct colours, no two neighbours equal: photo-like.
        let noise: Vec<u8> = (0..32 * 32u32)
            .flat_map(|i| {
                let c = i.wrapping_mul(2_654_435_761);
                [c as u8, (c >> 8) as u8, (c >> 16) as u8, 0]
            })
            .collect();
        assert_eq!(
            classifier.classify(&frame_of(&noise, 32, 32), rect),
            Coding::Lossy
        );

        // Runs of three: 342 colours, but two thirds of the pixels equal their left neighbour.
        let runs: Vec<u8> = (0..32 * 32u32)
            .flat_map(|i| {
                let c = (i / 3).wrapping_mul(2_654_435_761);
                [c as u8, (c >> 8) as u8, (c >> 16) as u8, 0]
            })
            .collect();
        assert_eq!(
            classifier.classify(&frame_of(&runs, 32, 32), rect),
            Coding::Lossless
        );
    }
}
