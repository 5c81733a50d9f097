//! Which coding a changed rectangle gets, by two cheap measures of its pixels: how many
//! colours it has (up to 256 are counted) and its *flat share*, the share of pixels equal to
//! the one before them. Text and UI are flat (the background repeats) even when antialiasing
//! gives them a hundred colours; photos and video, with their grain, almost never repeat a
//! pixel.
//!
//! * one colour → solid;
//! * flat with at most 256 colours, or few colours for its size (at most 8; or at most 64
//!   with 4 pixels a colour or some flatness) → palette or raw (exact; text, UI, diagrams);
//! * hardly flat at all → JPEG (photos, video, wallpaper);
//! * in between — usually a tile where a window's edge meets the wallpaper — the rectangle
//!   is looked at in 16 × 16 blocks: blocks with 8 colours or fewer, or flat ones, are exact, the rest
//!   photo-like. All exact → exact; all photo-like → JPEG; both → [`Coding::Mixed`]: a JPEG under the
//!   photo-like blocks and exact rectangles on top of the others, so a window's text stays
//!   exact right up to the wallpaper.
//!
//! The palette pass also writes the palette indices, so a text tile's pixels are read once.

use crate::picture::BgrxFrame;
use crate::tile::Rect;

/// Most colours an exact rectangle coded as a palette holds; past this, raw colours compress
/// better.
const PALETTE_CODED: usize = 16;
/// Most colours counted.
pub(crate) const MAX_PALETTE: usize = 256;
/// Side of the blocks a mixed rectangle is looked at in (JPEG's macroblock).
pub(crate) const BLOCK: u32 = 16;
/// Hash slots of the colour table: a power of two at least twice [`MAX_PALETTE`].
const SLOTS: usize = 512;
const EMPTY: u16 = u16::MAX;
/// Flat share from which a rectangle of at most 256 colours is text or UI.
const TEXT_FLAT: f32 = 0.6;
/// Flat share below which a rectangle is photo-like throughout.
const PHOTO_FLAT: f32 = 0.15;
/// Colours up to which a rectangle is exact whatever its flat share (no photo of 64 × 64
/// pixels has so few), if it is large enough for that to mean something
/// ([`PIXELS_PER_COLOUR`]).
const FEW_COLOURS: usize = 64;
/// Pixels per colour a rectangle of more than [`BLOCK_FEW_COLOURS`] colours needs for
/// [`FEW_COLOURS`] to make it exact, unless it is somewhat flat.
const PIXELS_PER_COLOUR: u32 = 4;
/// Flat share from which a block is exact.
const BLOCK_FLAT: f32 = 0.4;
/// Colours up to which a block is exact whatever its flat share.
const BLOCK_FEW_COLOURS: usize = 8;

/// The coding chosen for a rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// Every pixel is this B, G, R.
    Solid([u8; 3]),
    /// [`Classifier::colours`] and [`Classifier::indices`] hold the palette and the pixels.
    Palette,
    /// Exact, as raw colours (more than 16 colours: antialiased text, icons).
    Raw,
    /// Photo-like: JPEG.
    Lossy,
    /// Both: [`Classifier::parts`] lists the photo-like blocks and the exact runs of blocks.
    Mixed,
}

/// A part of a [`Coding::Mixed`] rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub rect: Rect,
    /// Exact (solid, palette or raw) rather than photo-like.
    pub exact: bool,
}

/// Reusable tables for classifying rectangles (no allocation per tile).
pub(crate) struct Classifier {
    keys: [u32; SLOTS],
    slots: [u16; SLOTS],
    colours: Vec<u32>,
    indices: Vec<u8>,
    /// Pixels equal to the one before them in the last palette pass.
    repeats: u32,
    parts: Vec<Part>,
}

impl Classifier {
    pub(crate) fn new() -> Self {
        Classifier {
            keys: [0; SLOTS],
            slots: [EMPTY; SLOTS],
            colours: Vec::with_capacity(MAX_PALETTE + 1),
            indices: Vec::new(),
            repeats: 0,
            parts: Vec::new(),
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

    /// The parts of the last [`Coding::Mixed`] rectangle: exact runs and photo-like blocks.
    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Classifies `rect`, which lies in the tile whose top left is `origin` (blocks are
    /// aligned to it).
    pub(crate) fn classify(
        &mut self,
        frame: &BgrxFrame<'_>,
        rect: Rect,
        origin: (u32, u32),
    ) -> Coding {
        let fits = self.build_palette(frame, rect);
        if fits && self.colours.len() == 1 {
            return self.solid();
        }
        let flat = if fits {
            self.repeats as f32 / rect.area() as f32
        } else {
            flat_share(frame, rect)
        };
        if fits && (flat >= TEXT_FLAT || self.few_colours(rect, flat)) {
            return self.exact();
        }
        if flat < PHOTO_FLAT || rect.area() <= BLOCK * BLOCK {
            return Coding::Lossy;
        }
        self.split(frame, rect, origin, fits)
    }

    /// Classifies `rect` knowing it is exact: solid, palette or raw.
    pub(crate) fn classify_exact(&mut self, frame: &BgrxFrame<'_>, rect: Rect) -> Coding {
        if !self.build_palette(frame, rect) {
            return Coding::Raw;
        }
        if self.colours.len() == 1 {
            return self.solid();
        }
        self.exact()
    }

    /// Palette or raw, for an exact rectangle whose palette was just built.
    fn exact(&self) -> Coding {
        if self.colours.len() <= PALETTE_CODED {
            Coding::Palette
        } else {
            Coding::Raw
        }
    }

    /// Whether a block (at most 16 × 16) is text-like, by the same test as the blocks of a
    /// mixed rectangle.
    pub(crate) fn block_is_exact(&mut self, frame: &BgrxFrame<'_>, block: Rect) -> bool {
        self.build_palette(frame, block);
        self.colours.len() <= BLOCK_FEW_COLOURS
            || self.repeats as f32 >= BLOCK_FLAT * block.area() as f32
    }

    /// Whether a block the decoder has only approximately is worth sending again exactly:
    /// text-like, and no part of a photo (a block half photo, half page would cost a photo's
    /// worth of raw bytes to fix a few page pixels).
    pub(crate) fn block_is_text(&mut self, frame: &BgrxFrame<'_>, block: Rect) -> bool {
        self.block_is_exact(frame, block) && self.colours.len() <= FEW_COLOURS
    }

    /// Whether the palette just built has too few colours for `rect` (of flat share `flat`)
    /// to be a photo: at most [`FEW_COLOURS`]. A small rectangle always has few, so past
    /// [`BLOCK_FEW_COLOURS`] it must also have [`PIXELS_PER_COLOUR`] pixels per colour or
    /// some flatness: the thin strip of grainy wallpaper a dragged window uncovers each frame
    /// has about as many colours as pixels and no two alike side by side.
    fn few_colours(&self, rect: Rect, flat: f32) -> bool {
        let colours = self.colours.len();
        colours <= BLOCK_FEW_COLOURS
            || (colours <= FEW_COLOURS
                && (colours as u32 * PIXELS_PER_COLOUR <= rect.area() || flat >= PHOTO_FLAT))
    }

    fn solid(&self) -> Coding {
        let c = self.colours[0];
        Coding::Solid([c as u8, (c >> 8) as u8, (c >> 16) as u8])
    }

    /// Looks at `rect` block by block (see the module documentation).
    fn split(
        &mut self,
        frame: &BgrxFrame<'_>,
        rect: Rect,
        origin: (u32, u32),
        whole_fits: bool,
    ) -> Coding {
        self.parts.clear();
        let (mut exact, mut lossy) = (0u32, 0u32);
        let first_row = (rect.y - origin.1) / BLOCK;
        let last_row = (rect.y + rect.h - 1 - origin.1) / BLOCK;
        let first_col = (rect.x - origin.0) / BLOCK;
        let last_col = (rect.x + rect.w - 1 - origin.0) / BLOCK;
        for row in first_row..=last_row {
            let y0 = (origin.1 + row * BLOCK).max(rect.y);
            let y1 = (origin.1 + (row + 1) * BLOCK).min(rect.y + rect.h);
            let mut run: Option<Rect> = None;
            for col in first_col..=last_col {
                let x0 = (origin.0 + col * BLOCK).max(rect.x);
                let x1 = (origin.0 + (col + 1) * BLOCK).min(rect.x + rect.w);
                let block = Rect {
                    x: x0,
                    y: y0,
                    w: x1 - x0,
                    h: y1 - y0,
                };
                if self.block_is_exact(frame, block) {
                    exact += 1;
                    run = Some(match run {
                        Some(r) => Rect {
                            w: r.w + block.w,
                            ..r
                        },
                        None => block,
                    });
                } else {
                    lossy += 1;
                    if let Some(r) = run.take() {
                        self.parts.push(Part {
                            rect: r,
                            exact: true,
                        });
                    }
                    self.parts.push(Part {
                        rect: block,
                        exact: false,
                    });
                }
            }
            if let Some(r) = run.take() {
                self.parts.push(Part {
                    rect: r,
                    exact: true,
                });
            }
        }
        match (exact, lossy) {
            (_, 0) if whole_fits => {
                // The block passes overwrote the whole rectangle's palette.
                self.build_palette(frame, rect);
                self.exact()
            }
            (_, 0) => Coding::Raw,
            (0, _) => Coding::Lossy,
            _ => Coding::Mixed,
        }
    }

    /// Fills the palette and the indices and counts repeated pixels; `false` as soon as a
    /// 257th colour turns up.
    fn build_palette(&mut self, frame: &BgrxFrame<'_>, rect: Rect) -> bool {
        self.slots.fill(EMPTY);
        self.colours.clear();
        self.indices.clear();
        self.indices.reserve(rect.area() as usize);
        self.repeats = 0;
        // No real colour has the top byte set, so the first pixel always misses.
        let mut last = u32::MAX;
        let mut last_index = 0u8;
        for row in frame.rows(rect) {
            for px in row.chunks_exact(4) {
                let colour = u32::from_le_bytes([px[0], px[1], px[2], 0]);
                if colour == last {
                    self.repeats += 1;
                } else {
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

/// Share of pixels equal to the one before them (row by row, rows joined).
fn flat_share(frame: &BgrxFrame<'_>, rect: Rect) -> f32 {
    let mut repeats = 0u32;
    let mut last = [0u8; 3];
    let mut first = true;
    for row in frame.rows(rect) {
        for px in row.chunks_exact(4) {
            let this = [px[0], px[1], px[2]];
            repeats += u32::from(!first && this == last);
            first = false;
            last = this;
        }
    }
    repeats as f32 / rect.area() as f32
}

/// Appends the raw coding of `rect`: B, G, R of every pixel, row by row. Unfiltered on
/// purpose: the same glyph then gives the same bytes wherever it is, which zstd finds again
/// across tiles (measured on antialiased text: 30 % smaller than palette indices, 15 %
/// smaller than left-neighbour deltas).
pub(crate) fn write_raw(frame: &BgrxFrame<'_>, rect: Rect, out: &mut Vec<u8>) {
    out.reserve(rect.area() as usize * 3);
    for row in frame.rows(rect) {
        for px in row.chunks_exact(4) {
            out.extend_from_slice(&px[..3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(pixels: &[u8], w: u32, h: u32) -> BgrxFrame<'_> {
        BgrxFrame::new(pixels, w, h, w as usize * 4).unwrap()
    }

    fn noise(i: u32) -> [u8; 4] {
        let c = i.wrapping_mul(2_654_435_761);
        [c as u8, (c >> 8) as u8, (c >> 16) as u8, 0]
    }

    const WHOLE: Rect = Rect {
        x: 0,
        y: 0,
        w: 32,
        h: 32,
    };

    #[test]
    fn solid_palette_photo_and_flat_many_colour_rectangles() {
        let mut classifier = Classifier::new();

        let solid: Vec<u8> = [10, 20, 30, 0].repeat(32 * 32);
        assert_eq!(
            classifier.classify(&frame_of(&solid, 32, 32), WHOLE, (0, 0)),
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
            classifier.classify(&frame_of(&stripes, 32, 32), WHOLE, (0, 0)),
            Coding::Palette
        );
        assert_eq!(classifier.colours(), &[0, 0x00ff_ffff]);
        assert_eq!(classifier.indices()[15..17], [0, 1]);

        // Every pixel its own colour: photo-like, even with fewer than 256 of them.
        let noisy: Vec<u8> = (0..32 * 32u32).flat_map(noise).collect();
        assert_eq!(
            classifier.classify(&frame_of(&noisy, 32, 32), WHOLE, (0, 0)),
            Coding::Lossy
        );
        let few: Vec<u8> = (0..32 * 32u32).flat_map(|i| noise(i % 200)).collect();
        assert_eq!(
            classifier.classify(&frame_of(&few, 32, 32), WHOLE, (0, 0)),
            Coding::Lossy
        );

        // Runs of three: 342 colours, but two thirds of the pixels repeat: exact.
        let runs: Vec<u8> = (0..32 * 32u32).flat_map(|i| noise(i / 3)).collect();
        assert_eq!(
            classifier.classify(&frame_of(&runs, 32, 32), WHOLE, (0, 0)),
            Coding::Raw
        );
    }

    #[test]
    fn a_thin_strip_of_photo_is_lossy_though_it_has_few_colours() {
        let mut classifier = Classifier::new();
        // The 3 x 16 strip of grainy wallpaper a dragged window uncovers: 48 colours, fewer
        // than FEW_COLOURS only because it is small.
        let strip: Vec<u8> = (0..3 * 16u32).flat_map(noise).collect();
        let rect = Rect {
            x: 0,
            y: 0,
            w: 3,
            h: 16,
        };
        assert_eq!(
            classifier.classify(&frame_of(&strip, 3, 16), rect, (0, 0)),
            Coding::Lossy
        );
        // As small, but a glyph's few shades (antialiased text): exact.
        let glyph: Vec<u8> = (0..3 * 16u32).flat_map(|i| noise(i % 7)).collect();
        assert_eq!(
            classifier.classify(&frame_of(&glyph, 3, 16), rect, (0, 0)),
            Coding::Palette
        );
        // Twelve shades, each on four pixels: exact.
        let shades: Vec<u8> = (0..3 * 16u32).flat_map(|i| noise(i % 12)).collect();
        assert_eq!(
            classifier.classify(&frame_of(&shades, 3, 16), rect, (0, 0)),
            Coding::Palette
        );
        // A 32 x 32 rectangle of 60 colours is no photo, however they lie.
        let sixty: Vec<u8> = (0..32 * 32u32).flat_map(|i| noise(i % 60)).collect();
        assert_eq!(
            classifier.classify(&frame_of(&sixty, 32, 32), WHOLE, (0, 0)),
            Coding::Raw
        );
    }

    #[test]
    fn a_window_edge_on_a_photo_splits_into_exact_runs_and_photo_blocks() {
        // Left 16 columns photo-like, the rest a white window with a black line of text.
        let pixels: Vec<u8> = (0..32 * 32u32)
            .flat_map(|i| {
                let (x, y) = (i % 32, i / 32);
                if x < 16 {
                    noise(i)
                } else if y == 5 && x % 3 == 0 {
                    [0, 0, 0, 0]
                } else {
                    [255, 255, 255, 0]
                }
            })
            .collect();
        let frame = frame_of(&pixels, 32, 32);
        let mut classifier = Classifier::new();
        assert_eq!(classifier.classify(&frame, WHOLE, (0, 0)), Coding::Mixed);
        let block = |x, y, w, h, exact| Part {
            rect: Rect { x, y, w, h },
            exact,
        };
        assert_eq!(
            classifier.parts(),
            &[
                block(0, 0, 16, 16, false),
                block(16, 0, 16, 16, true),
                block(0, 16, 16, 16, false),
                block(16, 16, 16, 16, true),
            ]
        );
        assert_eq!(
            classifier.classify_exact(&frame, classifier.parts()[1].rect),
            Coding::Palette
        );
    }
}
