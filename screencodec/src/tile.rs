//! The tile grid: which tiles a screen has and the rectangle each covers (tiles on the right
//! and bottom edges are clipped to the screen).

/// A rectangle of pixels, in screen coordinates unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub(crate) fn area(&self) -> u32 {
        self.w * self.h
    }

    /// The smallest rectangle holding both.
    pub(crate) fn union(self, other: Rect) -> Rect {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        Rect {
            x,
            y,
            w: (self.x + self.w).max(other.x + other.w) - x,
            h: (self.y + self.h).max(other.y + other.h) - y,
        }
    }
}

/// Tiles of `size` × `size` pixels in raster order, left to right, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileGrid {
    pub width: u32,
    pub height: u32,
    pub size: u32,
    pub cols: u32,
    pub rows: u32,
}

impl TileGrid {
    pub(crate) fn new(width: u32, height: u32, size: u32) -> Self {
        TileGrid {
            width,
            height,
            size,
            cols: width.div_ceil(size),
            rows: height.div_ceil(size),
        }
    }

    pub(crate) fn count(&self) -> u32 {
        self.cols * self.rows
    }

    /// The screen rectangle of tile `index` (< [`TileGrid::count`]).
    pub(crate) fn tile_rect(&self, index: u32) -> Rect {
        let x = (index % self.cols) * self.size;
        let y = (index / self.cols) * self.size;
        Rect {
            x,
            y,
            w: self.size.min(self.width - x),
            h: self.size.min(self.height - y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_tiles_are_clipped() {
        let grid = TileGrid::new(1280, 720, 64);
        assert_eq!((grid.cols, grid.rows, grid.count()), (20, 12, 240));
        assert_eq!(
            grid.tile_rect(239),
            Rect {
                x: 1216,
                y: 704,
                w: 64,
                h: 16
            }
        );
        let odd = TileGrid::new(100, 1, 64);
        assert_eq!(
            odd.tile_rect(1),
            Rect {
                x: 64,
                y: 0,
                w: 36,
                h: 1
            }
        );
    }
}
