//! Pixels in and out: [`BgrxFrame`], a borrowed capture as `ximagesrc` gives it (BGRx, any
//! row stride), and [`Canvas`], the decoder's screen (BGRx, rows packed).

use crate::error::EncodeError;
use crate::tile::Rect;

/// Largest side the format can carry (16-bit fields).
pub(crate) const MAX_SIDE: u32 = u16::MAX as u32;

/// One captured screen: `height` rows of `width` BGRx pixels (4 bytes: blue, green, red, and
/// a fourth byte the codec does not keep), each row starting `stride` bytes after the last.
#[derive(Debug, Clone, Copy)]
pub struct BgrxFrame<'a> {
    pixels: &'a [u8],
    width: u32,
    height: u32,
    stride: usize,
}

impl<'a> BgrxFrame<'a> {
    /// Wraps a capture after checking that the sizes fit the buffer and the format.
    pub fn new(
        pixels: &'a [u8],
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<Self, EncodeError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(EncodeError::BadDimensions { width, height });
        }
        let row = width as usize * 4;
        if stride < row {
            return Err(EncodeError::StrideTooSmall { stride, width, row });
        }
        let needed = stride * (height as usize - 1) + row;
        if pixels.len() < needed {
            return Err(EncodeError::BufferTooShort {
                needed,
                got: pixels.len(),
            });
        }
        Ok(BgrxFrame {
            pixels,
            width,
            height,
            stride,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from one row to the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The BGRx bytes of `w` pixels of row `y` from column `x`.
    pub(crate) fn span(&self, x: u32, y: u32, w: u32) -> &'a [u8] {
        let start = y as usize * self.stride + x as usize * 4;
        &self.pixels[start..start + w as usize * 4]
    }

    /// The rows of `rect`, each `rect.w × 4` bytes.
    pub(crate) fn rows(&self, rect: Rect) -> impl Iterator<Item = &'a [u8]> + '_ {
        (rect.y..rect.y + rect.h).map(move |y| self.span(rect.x, y, rect.w))
    }
}

/// The decoder's picture of the screen: `height` rows of `width` BGRx pixels, rows packed
/// (stride = width × 4), the fourth byte of every pixel 0xFF. Feed it to GStreamer as
/// `video/x-raw,format=BGRx`.
#[derive(Debug, PartialEq, Eq)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Clone for Canvas {
    fn clone(&self) -> Self {
        Canvas {
            width: self.width,
            height: self.height,
            pixels: self.pixels.clone(),
        }
    }

    /// Reuses this canvas's memory (a reference screen is kept every few seconds).
    fn clone_from(&mut self, source: &Self) {
        self.width = source.width;
        self.height = source.height;
        self.pixels.clone_from(&source.pixels);
    }
}

impl Canvas {
    /// A black canvas (the decoder's only allocation of its size, after the limits passed).
    pub(crate) fn new(width: u32, height: u32) -> Self {
        let mut pixels = vec![0; width as usize * height as usize * 4];
        for px in pixels.chunks_exact_mut(4) {
            px[3] = 0xff;
        }
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// Paints it black.
    pub(crate) fn clear(&mut self) {
        for px in self.pixels.chunks_exact_mut(4) {
            px.copy_from_slice(&[0, 0, 0, 0xff]);
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row (`width × 4`).
    pub fn stride(&self) -> usize {
        self.width as usize * 4
    }

    /// The BGRx bytes, row after row.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The pixel at (`x`, `y`) as `[blue, green, red]`, or `None` outside the canvas.
    pub fn bgr(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// The canvas as a frame, e.g. to encode it again.
    pub fn as_frame(&self) -> BgrxFrame<'_> {
        BgrxFrame {
            pixels: &self.pixels,
            width: self.width,
            height: self.height,
            stride: self.stride(),
        }
    }

    pub(crate) fn row_mut(&mut self, x: u32, y: u32, w: u32) -> &mut [u8] {
        let start = (y as usize * self.width as usize + x as usize) * 4;
        &mut self.pixels[start..start + w as usize * 4]
    }

    pub(crate) fn row(&self, x: u32, y: u32, w: u32) -> &[u8] {
        let start = (y as usize * self.width as usize + x as usize) * 4;
        &self.pixels[start..start + w as usize * 4]
    }
}
