//! Shared helpers of the screen-codec tests: a drawable test screen (flat fills, text-like
//! glyphs, smooth photo-like areas, scrolls), comparisons, and a hand-made payload writer for
//! the malformed-input tests.

#![allow(dead_code)]

use screencodec::{BgrxFrame, Canvas};

/// A BGRx screen, rows packed.
#[derive(Clone, Debug, PartialEq)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Screen {
    pub fn new(width: u32, height: u32, bgr: [u8; 3]) -> Self {
        let mut screen = Screen {
            width,
            height,
            pixels: vec![0; (width * height * 4) as usize],
        };
        screen.fill(0, 0, width, height, bgr);
        screen
    }

    pub fn frame(&self) -> BgrxFrame<'_> {
        BgrxFrame::new(
            &self.pixels,
            self.width,
            self.height,
            self.width as usize * 4,
        )
        .unwrap()
    }

    pub fn set(&mut self, x: u32, y: u32, bgr: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = ((y * self.width + x) * 4) as usize;
            // ximagesrc leaves the fourth byte constant; the codec does not keep it.
            self.pixels[i..i + 4].copy_from_slice(&[bgr[0], bgr[1], bgr[2], 0]);
        }
    }

    pub fn get(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    pub fn fill(&mut self, x: u32, y: u32, w: u32, h: u32, bgr: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.set(xx, yy, bgr);
            }
        }
    }

    /// Text-like glyphs: each character a 6 × 9 cell with a 5 × 7 pattern derived from its
    /// code, plus two grey "antialiasing" levels at the pattern's edges.
    pub fn text(&mut self, x: u32, y: u32, text: &str, fg: [u8; 3], bg: [u8; 3]) {
        let mid = [
            ((fg[0] as u16 + bg[0] as u16) / 2) as u8,
            ((fg[1] as u16 + bg[1] as u16) / 2) as u8,
            ((fg[2] as u16 + bg[2] as u16) / 2) as u8,
        ];
        for (i, ch) in text.chars().enumerate() {
            let cx = x + i as u32 * 6;
            self.fill(cx, y, 6, 9, bg);
            if ch == ' ' {
                continue;
            }
            let bits = (ch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555_0000_aaaa;
            for gy in 0..7 {
                for gx in 0..5 {
                    let on = bits >> ((gy * 5 + gx) % 61) & 1 == 1;
                    if on {
                        self.set(cx + gx, y + 1 + gy, fg);
                    } else if gx == 4 && gy % 3 == 0 {
                        self.set(cx + gx, y + 1 + gy, mid);
                    }
                }
            }
        }
    }

    /// A smooth, many-coloured area (photo- or video-like), moving with `t`.
    pub fn photo(&mut self, x: u32, y: u32, w: u32, h: u32, t: f32) {
        for yy in 0..h {
            for xx in 0..w {
                let (fx, fy) = (xx as f32, yy as f32);
                let r = 128.0 + 100.0 * ((fx * 0.031 + t).sin() * (fy * 0.023).cos());
                let g = 128.0 + 90.0 * ((fx + fy) * 0.017 - t * 0.7).sin();
                let b = 128.0 + 80.0 * ((fy * 0.041 + t * 0.3).cos());
                self.set(x + xx, y + yy, [b as u8, g as u8, r as u8]);
            }
        }
    }

    /// Pseudo-random pixels (incompressible, every pixel its own colour).
    pub fn noise(&mut self, x: u32, y: u32, w: u32, h: u32, seed: u32) {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        for yy in y..y + h {
            for xx in x..x + w {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                self.set(xx, yy, [s as u8, (s >> 8) as u8, (s >> 16) as u8]);
            }
        }
    }

    /// Adds film grain of ±`amp` to every channel of the rectangle.
    pub fn grain(&mut self, x: u32, y: u32, w: u32, h: u32, amp: u8, seed: u32) {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        for yy in y..y + h {
            for xx in x..x + w {
                let mut c = self.get(xx, yy);
                for v in &mut c {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    let d = (s % (2 * u32::from(amp) + 1)) as i32 - i32::from(amp);
                    *v = (i32::from(*v) + d).clamp(0, 255) as u8;
                }
                self.set(xx, yy, c);
            }
        }
    }

    /// Scrolls the rectangle up by `dy` rows (content moves up), leaving the bottom rows as
    /// they were.
    pub fn scroll_up(&mut self, x: u32, y: u32, w: u32, h: u32, dy: u32) {
        for yy in y..y + h - dy {
            for xx in x..x + w {
                let v = self.get(xx, yy + dy);
                self.set(xx, yy, v);
            }
        }
    }

    /// Copies the `size` (w, h) rectangle at `src` (x, y) of `from` to `to` (x, y).
    pub fn blit(&mut self, from: &Screen, src: (u32, u32), size: (u32, u32), to: (u32, u32)) {
        for yy in 0..size.1 {
            for xx in 0..size.0 {
                let v = from.get(src.0 + xx, src.1 + yy);
                self.set(to.0 + xx, to.1 + yy, v);
            }
        }
    }
}

/// Asserts that the canvas shows exactly the screen's colours.
#[track_caller]
pub fn assert_same_picture(canvas: &Canvas, screen: &Screen) {
    assert_eq!(
        (canvas.width(), canvas.height()),
        (screen.width, screen.height)
    );
    for y in 0..screen.height {
        for x in 0..screen.width {
            let got = canvas.bgr(x, y).unwrap();
            let want = screen.get(x, y);
            assert_eq!(got, want, "pixel ({x}, {y}) differs");
        }
    }
}

/// PSNR (dB) of the canvas against the screen over the rectangle, on B, G and R; infinite
/// when identical.
pub fn psnr(canvas: &Canvas, screen: &Screen, x: u32, y: u32, w: u32, h: u32) -> f64 {
    let mut sum = 0f64;
    for yy in y..y + h {
        for xx in x..x + w {
            let a = canvas.bgr(xx, yy).unwrap();
            let b = screen.get(xx, yy);
            for c in 0..3 {
                let d = f64::from(a[c]) - f64::from(b[c]);
                sum += d * d;
            }
        }
    }
    let mse = sum / f64::from(w * h * 3);
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// A payload written by hand: header fields as given, then the tile records and the JPEG
/// compressed as one complete zstd frame (declared with their true lengths unless
/// `tiles_len` / `jpeg_len` say otherwise).
pub struct Handmade {
    pub kind: u8,
    pub tile_log2: u8,
    pub flags: u8,
    pub sequence: u32,
    pub width: u16,
    pub height: u16,
    pub records: Vec<u8>,
    pub jpeg: Vec<u8>,
    pub tiles_len: Option<u32>,
    pub jpeg_len: Option<u32>,
}

impl Handmade {
    pub fn key(width: u16, height: u16) -> Self {
        Handmade {
            kind: 1,
            tile_log2: 6,
            flags: 0,
            sequence: 1,
            width,
            height,
            records: Vec::new(),
            jpeg: Vec::new(),
            tiles_len: None,
            jpeg_len: None,
        }
    }

    /// A delta following this frame.
    pub fn delta(&self) -> Self {
        Handmade {
            kind: 2,
            sequence: self.sequence + 1,
            records: Vec::new(),
            jpeg: Vec::new(),
            tiles_len: None,
            jpeg_len: None,
            flags: 0,
            ..*self
        }
    }

    pub fn header(&self) -> Vec<u8> {
        let mut out = b"IDVS\x01".to_vec();
        out.push(self.kind);
        out.push(self.tile_log2);
        out.push(self.flags);
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.header();
        let mut body = self.records.clone();
        body.extend_from_slice(&self.jpeg);
        let packed = zstd::bulk::compress(&body, 1).unwrap();
        let tiles = self.tiles_len.unwrap_or(self.records.len() as u32);
        let jpeg = self.jpeg_len.unwrap_or(self.jpeg.len() as u32);
        out.extend_from_slice(&tiles.to_le_bytes());
        out.extend_from_slice(&jpeg.to_le_bytes());
        out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        out.extend_from_slice(&packed);
        out
    }
}

/// A record: skip, coding, rectangle (x, y, w, h relative to the tile), payload.
pub fn record(skip: u8, coding: u8, rect: (u8, u8, u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut r = vec![
        skip,
        coding,
        rect.0,
        rect.1,
        (rect.2 - 1) as u8,
        (rect.3 - 1) as u8,
    ];
    r.extend_from_slice(payload);
    r
}

/// A solid-colour record for the whole tile `w` × `h` (skip given).
pub fn solid_record(skip: u8, w: u16, h: u16, bgr: [u8; 3]) -> Vec<u8> {
    record(skip, 1, (0, 0, w, h), &bgr)
}

/// A baseline JPEG (4:2:0, quality 80) of `width` × `height` grey pixels.
pub fn grey_jpeg(width: u16, height: u16) -> Vec<u8> {
    let pixels = vec![128u8; width as usize * height as usize * 4];
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 80);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(&pixels, width, height, jpeg_encoder::ColorType::Bgra)
        .unwrap();
    out
}
