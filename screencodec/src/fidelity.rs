//! Which parts of the decoder's screen are only approximate, and sending them again exactly.
//!
//! JPEG makes a rectangle approximate; a copy carries whatever its source was, so an edge of a
//! dragged window coded as JPEG in one frame travels with the window in the next. The encoder
//! keeps, per 16 × 16 block of the screen, whether the decoder holds it exactly, only
//! approximately, or approximately because it is a photo. Blocks that are approximate, hold
//! still and look like text or UI (the same test as in `classify`) are sent again exactly, a
//! bounded number per frame; blocks that look like photos are marked so and left alone. So text
//! ends exact once the screen settles, whatever path its pixels took.

use crate::classify::{BLOCK, Classifier};
use crate::motion::Source;
use crate::picture::BgrxFrame;
use crate::tile::{Rect, TileGrid};

/// The decoder has the block exactly.
const EXACT: u8 = 0;
/// The decoder has it approximately; not looked at since.
const APPROXIMATE: u8 = 1;
/// Approximate, and it looks like a photo: leave it.
const PHOTO: u8 = 2;

/// Blocks sent again exactly per frame at most (64 blocks: 16,384 pixels).
const MAX_REFINED: usize = 64;

/// Per-block fidelity of the decoder's screen, of the previous screen and of the reference
/// screens.
#[derive(Default)]
pub(crate) struct Fidelity {
    width: u32,
    height: u32,
    cols: u32,
    rows: u32,
    now: Vec<u8>,
    before: Vec<u8>,
    references: [Vec<u8>; 2],
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
        let blocks = (self.cols * self.rows) as usize;
        self.now.clear();
        self.now.resize(blocks, EXACT);
        self.references = [Vec::new(), Vec::new()];
    }

    /// Remembers the state before this frame's records (copies read the screen before).
    pub(crate) fn begin_frame(&mut self) {
        self.before.clone_from(&self.now);
    }

    /// The reference screen `slot` (1 or 2) now holds the current screen.
    pub(crate) fn store_reference(&mut self, slot: u8) {
        if let Some(kept) = self.references.get_mut(usize::from(slot).wrapping_sub(1)) {
            kept.clone_from(&self.now);
        }
    }

    /// `rect` was coded exactly: the blocks it covers whole are exact.
    pub(crate) fn exact(&mut self, rect: Rect) {
        for i in self.blocks(rect, true) {
            self.now[i] = EXACT;
        }
    }

    /// `rect` was coded as JPEG: every block it touches is approximate.
    pub(crate) fn approximate(&mut self, rect: Rect) {
        for i in self.blocks(rect, false) {
            self.now[i] = APPROXIMATE;
        }
    }

    /// `rect` was copied from `source`: each block it touches is as exact as the part of
    /// the source it got.
    pub(crate) fn copied(&mut self, rect: Rect, source: Source) {
        // Borrowed out of `self` while `self.now` changes, put back below.
        let from = match source.screen {
            0 => std::mem::take(&mut self.before),
            n => match self.references.get_mut(usize::from(n).wrapping_sub(1)) {
                Some(map) if !map.is_empty() => std::mem::take(map),
                _ => return self.approximate(rect),
            },
        };
        let (dx, dy) = source.offset;
        let touched: Vec<usize> = self.blocks(rect, false).collect();
        for i in touched {
            let block = self.block_rect(i);
            let part = intersection(block, rect);
            let src = Rect {
                x: (i64::from(part.x) + i64::from(dx)).max(0) as u32,
                y: (i64::from(part.y) + i64::from(dy)).max(0) as u32,
                ..part
            };
            let exact = self.blocks(src, false).all(|j| from.get(j) == Some(&EXACT));
            if !exact {
                self.now[i] = APPROXIMATE;
            } else if part == block {
                self.now[i] = EXACT;
            }
        }
        match source.screen {
            0 => self.before = from,
            n => self.references[usize::from(n) - 1] = from,
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

    /// Blocks to send again exactly: approximate, not touched by `changed`, and text-like
    /// now. Blocks that look like photos are marked and skipped from then on. Appends
    /// `(tile, block)` in tile order.
    pub(crate) fn refinements(
        &mut self,
        frame: &BgrxFrame<'_>,
        grid: &TileGrid,
        changed: &[(u32, Rect)],
        classifier: &mut Classifier,
        out: &mut Vec<(u32, Rect)>,
    ) {
        out.clear();
        if !self.now.contains(&APPROXIMATE) {
            return;
        }
        self.busy.clear();
        self.busy.resize(self.now.len(), false);
        for &(_, rect) in changed {
            for i in self.blocks(rect, false) {
                self.busy[i] = true;
            }
        }
        for i in 0..self.now.len() {
            if self.now[i] != APPROXIMATE || self.busy[i] {
                continue;
            }
            let block = self.block_rect(i);
            if !classifier.block_is_text(frame, block) {
                self.now[i] = PHOTO;
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

    /// Indices of the blocks `rect` touches (`whole`: only those it covers entirely).
    fn blocks(&self, rect: Rect, whole: bool) -> impl Iterator<Item = usize> + use<> {
        let (x1, y1) = (rect.x + rect.w, rect.y + rect.h);
        let (c0, r0, c1, r1) = if whole {
            // A block clipped by the screen's edge is covered when the rectangle reaches it.
            let end = |e: u32, edge: u32, count: u32| if e == edge { count } else { e / BLOCK };
            (
                rect.x.div_ceil(BLOCK),
                rect.y.div_ceil(BLOCK),
                end(x1, self.width, self.cols),
                end(y1, self.height, self.rows),
            )
        } else {
            (
                rect.x / BLOCK,
                rect.y / BLOCK,
                x1.div_ceil(BLOCK).min(self.cols),
                y1.div_ceil(BLOCK).min(self.rows),
            )
        };
        let cols = self.cols;
        (r0..r1).flat_map(move |r| (c0..c1).map(move |c| (r * cols + c) as usize))
    }
}

/// The overlap of two rectangles that overlap.
fn intersection(a: Rect, b: Rect) -> Rect {
    let x = a.x.max(b.x);
    let y = a.y.max(b.y);
    Rect {
        x,
        y,
        w: (a.x + a.w).min(b.x + b.w) - x,
        h: (a.y + a.h).min(b.y + b.h) - y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_carry_fidelity_and_exact_writes_restore_it() {
        let mut f = Fidelity::default();
        f.reset(64, 40);
        assert_eq!((f.cols, f.rows), (4, 3));
        f.begin_frame();
        f.approximate(Rect {
            x: 0,
            y: 0,
            w: 20,
            h: 10,
        });
        assert_eq!(&f.now[..5], &[1, 1, 0, 0, 0]);
        f.begin_frame();
        // Copying the approximate corner to the right: approximate there too.
        f.copied(
            Rect {
                x: 32,
                y: 0,
                w: 16,
                h: 16,
            },
            Source {
                screen: 0,
                offset: (-32, 0),
            },
        );
        assert_eq!(&f.now[..4], &[1, 1, 1, 0]);
        // Exact writes clear only whole blocks; the bottom row (8 pixels high) is whole.
        f.exact(Rect {
            x: 0,
            y: 0,
            w: 24,
            h: 40,
        });
        assert_eq!(&f.now[..4], &[0, 1, 1, 0]);
        f.approximate(Rect {
            x: 60,
            y: 36,
            w: 4,
            h: 4,
        });
        f.exact(Rect {
            x: 48,
            y: 32,
            w: 16,
            h: 8,
        });
        assert_eq!(f.now[11], 0);
    }
}
