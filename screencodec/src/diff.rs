//! What changed since the previous frame: for every tile with a changed pixel, the bounding
//! box of its changed pixels. Whole rows are compared first (one `memcmp` each), so an
//! unchanged screen costs one pass over memory.

use crate::picture::BgrxFrame;
use crate::tile::{Rect, TileGrid};

/// The changed box of one tile while a band of rows is scanned: rows `top..=bottom`,
/// columns `left..=right` (pixels, relative to the tile).
#[derive(Debug, Clone, Copy)]
struct Extent {
    top: u32,
    bottom: u32,
    left: u32,
    right: u32,
}

/// Reusable state of the comparison.
#[derive(Default)]
pub(crate) struct ChangeFinder {
    extents: Vec<Option<Extent>>,
}

impl ChangeFinder {
    /// Appends `(tile index, changed box)` for every tile of `frame` that differs from
    /// `previous` (the last frame, rows packed), in raster order.
    pub(crate) fn changed_rects(
        &mut self,
        frame: &BgrxFrame<'_>,
        previous: &[u8],
        grid: &TileGrid,
        out: &mut Vec<(u32, Rect)>,
    ) {
        let stride = grid.width as usize * 4;
        for band in 0..grid.rows {
            self.extents.clear();
            self.extents.resize(grid.cols as usize, None);
            let y0 = band * grid.size;
            let y1 = (y0 + grid.size).min(grid.height);
            for y in y0..y1 {
                let now = frame.span(0, y, grid.width);
                let before = &previous[y as usize * stride..(y as usize + 1) * stride];
                if now == before {
                    continue;
                }
                for col in 0..grid.cols {
                    let x0 = (col * grid.size) as usize * 4;
                    let x1 = ((col + 1) * grid.size).min(grid.width) as usize * 4;
                    let (a, b) = (&now[x0..x1], &before[x0..x1]);
                    if a == b {
                        continue;
                    }
                    let row = y - y0;
                    let extent = &mut self.extents[col as usize];
                    match extent {
                        None => {
                            // The row differs, so both ends exist.
                            let left = first_difference(a, b).unwrap_or(0);
                            let right = last_difference(a, b).unwrap_or(left);
                            *extent = Some(Extent {
                                top: row,
                                bottom: row,
                                left,
                                right,
                            });
                        }
                        Some(e) => {
                            e.bottom = row;
                            // Only the parts outside the box so far can widen it.
                            let l = e.left as usize * 4;
                            if let Some(left) = first_difference(&a[..l], &b[..l]) {
                                e.left = left;
                            }
                            let r = (e.right as usize + 1) * 4;
                            if let Some(right) = last_difference(&a[r..], &b[r..]) {
                                e.right = e.right + 1 + right;
                            }
                        }
                    }
                }
            }
            for (col, extent) in self.extents.iter().enumerate() {
                if let Some(e) = extent {
                    let index = band * grid.cols + col as u32;
                    let tile = grid.tile_rect(index);
                    out.push((
                        index,
                        Rect {
                            x: tile.x + e.left,
                            y: tile.y + e.top,
                            w: e.right - e.left + 1,
                            h: e.bottom - e.top + 1,
                        },
                    ));
                }
            }
        }
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<u32> {
    a.chunks_exact(4)
        .zip(b.chunks_exact(4))
        .position(|(p, q)| p != q)
        .map(|i| i as u32)
}

fn last_difference(a: &[u8], b: &[u8]) -> Option<u32> {
    a.chunks_exact(4)
        .zip(b.chunks_exact(4))
        .rposition(|(p, q)| p != q)
        .map(|i| i as u32)
}

/// Copies `rect` of `frame` into `previous` (rows packed, `width` pixels each).
pub(crate) fn remember(frame: &BgrxFrame<'_>, rect: Rect, previous: &mut [u8], width: u32) {
    let stride = width as usize * 4;
    for (i, row) in frame.rows(rect).enumerate() {
        let at = (rect.y as usize + i) * stride + rect.x as usize * 4;
        previous[at..at + row.len()].copy_from_slice(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_cover_exactly_the_changed_pixels_of_each_tile() {
        let (w, h) = (100u32, 40u32);
        let before = vec![0u8; (w * h * 4) as usize];
        let mut after = before.clone();
        // Pixels (5, 3), (20, 9) in tile 0; (70, 35) in tile 6 (second band, third column).
        for (x, y) in [(5u32, 3u32), (20, 9), (70, 35)] {
            after[((y * w + x) * 4) as usize] = 1;
        }
        let frame = BgrxFrame::new(&after, w, h, (w * 4) as usize).unwrap();
        let grid = TileGrid::new(w, h, 32);
        let mut out = Vec::new();
        ChangeFinder::default().changed_rects(&frame, &before, &grid, &mut out);
        assert_eq!(
            out,
            vec![
                (
                    0,
                    Rect {
                        x: 5,
                        y: 3,
                        w: 16,
                        h: 7
                    }
                ),
                (
                    6,
                    Rect {
                        x: 70,
                        y: 35,
                        w: 1,
                        h: 1
                    }
                ),
            ]
        );
    }
}
