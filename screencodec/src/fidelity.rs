//! Which pixels of the decoder's screen are only approximate, and sending them again exactly.
//!
//! JPEG makes a rectangle approximate; a copy carries whatever its source was, so an edge of a
//! dragged window coded as JPEG in one frame travels with the window in the next. The encoder
//! keeps one byte per pixel saying whether the decoder has it exactly (and the same for the
//! previous screen and the reference screens, which copies read). A 16 × 16 block holding an
//! approximate pixel that holds still and looks like text or UI (`Classifier::block_is_text`)
//! is sent again exactly, a bounded number per frame; a block that looks like a photo is left
//! alone until something is written to it again. So text ends exact once the screen settles,
//! whatever path its pixels took.

use crate::classify::{BLOCK, Classifier};
use crate::motion::Source;
use crate::picture::BgrxFrame;
use crate::tile::{Rect, TileGrid};

const EXACT: u8 = 0;
const APPROXIMATE: u8 = 1;

/// Blocks sent again exactly per frame at most (64 blocks: 16,384 pixels).
const MAX_REFINED: usize = 64;

/// What a block of the current screen may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    /// Every pixel exact.
    Exact,
    /// Possibly an approximate pixel: look at it when it holds still.
    Suspect,
    /// Approximate pixels, but the block looks like a photo: leave it.
    Photo,
}

/// Per-pixel fidelity of the decoder's screens.
#[derive(Default)]
pub(crate) struct Fidelity {
    width: u32,
    height: u32,
    cols: u32,
    rows: u32,
    now: Vec<u8>,
    /// `now` as it was before this frame's records (copies from the previous screen read it).
    before: Vec<u8>,
    references: [Vec<u8>; 2],
    blocks: Vec<BlockState>,
    /// Blocks touched by this frame's changes.
    busy: Vec<bool>,
}

impl Fidelity {
    /// Starts over for a screen of `width` × `height` (a key frame: everything exact until
    /// its records say otherwise; no reference screens).
    pub(crate) fn reset(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.cols = width.div_ceil(BLOCK);
        self.rows = height.div_ceil(BLOCK);
        self.now.clear();
        self.now.resize((width * height) as usize, EXACT);
        self.references = [Vec::new(), Vec::new()];
        self.blocks.clear();
        self.blocks
            .resize((self.cols * self.rows) as usize, BlockState::Exact);
    }

    /// Remembers the screen before this frame's records, when they copy from it.
    pub(crate) fn begin_frame(&mut self, copies_from_previous: bool) {
        if copies_from_previous {
            self.before.clone_from(&self.now);
        }
    }

    /// The reference screen `slot` (1 or 2) now holds the current screen.
    pub(crate) fn store_reference(&mut self, slot: u8) {
        if let Some(kept) = self.references.get_mut(usize::from(slot).wrapping_sub(1)) {
            kept.clone_from(&self.now);
        }
    }

    /// `rect` was coded exactly.
    pub(crate) fn exact(&mut self, rect: Rect) {
        self.fill(rect, EXACT);
    }

    /// `rect` was coded as JPEG.
    pub(crate) fn approximate(&mut self, rect: Rect) {
        self.fill(rect, APPROXIMATE);
        self.mark(rect, BlockState::Suspect);
    }

    /// `rect` was copied from `source`: its pixels are as exact as the source's were.
    pub(crate) fn copied(&mut self, rect: Rect, source: Source) {
        let from = match source.screen {
            0 if self.before.len() == self.now.len() => &self.before,
            n => match self.references.get(usize::from(n).wrapping_sub(1)) {
                Some(map) if map.len() == self.now.len() => map,
                // Not tracked: assume the worst.
                _ => return self.approximate(rect),
            },
        };
        let w = self.width as usize;
        let (sx, sy) = (
            (i64::from(rect.x) + i64::from(source.offset.0)) as usize,
            (i64::from(rect.y) + i64::from(source.offset.1)) as usize,
        );
        let mut any = false;
        for row in 0..rect.h as usize {
            let src = (sy + row) * w + sx;
            let dst = (rect.y as usize + row) * w + rect.x as usize;
            let line = &from[src..src + rect.w as usize];
            any |= line.contains(&APPROXIMATE);
            self.now[dst..dst + rect.w as usize].copy_from_slice(line);
        }
        if any {
            self.mark(rect, BlockState::Suspect);
        }
    }

    /// Blocks to send again exactly: holding an approximate pixel, not touched by `changed`,
    /// and text-like now. Blocks that look like photos are marked and skipped until written
    /// again. Appends `(tile, block)` in tile order.
    pub(crate) fn refinements(
        &mut self,
        frame: &BgrxFrame<'_>,
        grid: &TileGrid,
        changed: &[(u32, Rect)],
        classifier: &mut Classifier,
        out: &mut Vec<(u32, Rect)>,
    ) {
        out.clear();
        if !self.blocks.contains(&BlockState::Suspect) {
            return;
        }
        self.busy.clear();
        self.busy.resize(self.blocks.len(), false);
        for &(_, rect) in changed {
            for i in self.touched(rect) {
                self.busy[i] = true;
            }
        }
        for i in 0..self.blocks.len() {
            if self.blocks[i] != BlockState::Suspect || self.busy[i] {
                continue;
            }
            let block = self.block_rect(i);
            if !self.holds_approximate(block) {
                self.blocks[i] = BlockState::Exact;
                continue;
            }
            if !classifier.block_is_text(frame, block) {
                self.blocks[i] = BlockState::Photo;
                continue;
            }
            let tile = (block.y / grid.size) * grid.cols + block.x / grid.size;
            out.push((tile, block));
            if out.len() == MAX_REFINED {
                break;
            }
        }
        out.sort_by_key(|&(tile, _)| tile);
    }

    fn holds_approximate(&self, rect: Rect) -> bool {
        let w = self.width as usize;
        (rect.y..rect.y + rect.h).any(|y| {
            let at = y as usize * w + rect.x as usize;
            self.now[at..at + rect.w as usize].contains(&APPROXIMATE)
        })
    }

    fn fill(&mut self, rect: Rect, value: u8) {
        let w = self.width as usize;
        for y in rect.y..rect.y + rect.h {
            let at = y as usize * w + rect.x as usize;
            self.now[at..at + rect.w as usize].fill(value);
        }
        if value == EXACT {
            // A photo block written to may hold text now: look again.
            for i in self.touched(rect) {
                if self.blocks[i] == BlockState::Photo {
                    self.blocks[i] = BlockState::Suspect;
                }
            }
        }
    }

    fn mark(&mut self, rect: Rect, state: BlockState) {
        for i in self.touched(rect) {
            self.blocks[i] = state;
        }
    }

    /// The screen rectangle of block `i` (clipped at the screen's edges).
    fn block_rect(&self, i: usize) -> Rect {
        let (col, row) = (i as u32 % self.cols, i as u32 / self.cols);
        Rect {
            x: col * BLOCK,
            y: row * BLOCK,
            w: BLOCK.min(self.width - col * BLOCK),
            h: BLOCK.min(self.height - row * BLOCK),
        }
    }

    /// Indices of the blocks `rect` touches.
    fn touched(&self, rect: Rect) -> impl Iterator<Item = usize> + use<> {
        let (c0, r0) = (rect.x / BLOCK, rect.y / BLOCK);
        let c1 = (rect.x + rect.w).div_ceil(BLOCK).min(self.cols);
        let r1 = (rect.y + rect.h).div_ceil(BLOCK).min(self.rows);
        let cols = self.cols;
        (r0..r1).flat_map(move |r| (c0..c1).map(move |c| (r * cols + c) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn copies_carry_fidelity_pixel_for_pixel() {
        let mut f = Fidelity::default();
        f.reset(64, 40);
        f.approximate(rect(0, 0, 20, 10));
        f.begin_frame(true);
        // Copy the top-left 24 × 16 to the right: columns 32..52 of rows 0..10 approximate.
        f.copied(
            rect(32, 0, 24, 16),
            Source {
                screen: 0,
                offset: (-32, 0),
            },
        );
        assert!(f.holds_approximate(rect(32, 0, 20, 10)));
        assert!(!f.holds_approximate(rect(52, 0, 4, 16)));
        assert!(!f.holds_approximate(rect(32, 10, 24, 6)));
        // Exact writes clear exactly what they cover.
        f.exact(rect(0, 0, 20, 5));
        assert!(!f.holds_approximate(rect(0, 0, 20, 5)));
        assert!(f.holds_approximate(rect(0, 5, 20, 5)));
        assert_eq!(f.blocks[2], BlockState::Suspect);
    }
}
