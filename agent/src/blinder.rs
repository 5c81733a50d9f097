//! The blinder: regions of the screen the customer hides are painted over on the device,
//! before the frame reaches the encoder — so what is under them never leaves the device, not
//! in any frame, not in the recording. The paint is a flat grey hatch that depends on nothing
//! but the region's own coordinates: the operator sees that something is hidden, and no
//! number of frames tells anything about what.
//!
//! The regions can change during the session ([`Blinds::set`]); the operator has no way to
//! lift them (no message of the protocol reaches this module).

use std::sync::{Arc, RwLock};

use crate::config::Region;

/// The current regions, shared by the capture thread and the customer's controls.
#[derive(Debug, Clone, Default)]
pub struct Blinds(Arc<RwLock<Vec<Region>>>);

impl Blinds {
    /// Starting with `regions`.
    #[must_use]
    pub fn new(regions: Vec<Region>) -> Self {
        Self(Arc::new(RwLock::new(regions)))
    }

    /// Replaces the regions (an empty list lifts every blind).
    pub fn set(&self, regions: Vec<Region>) {
        *self.0.write().expect("blinds lock") = regions;
    }

    /// The regions now.
    #[must_use]
    pub fn regions(&self) -> Vec<Region> {
        self.0.read().expect("blinds lock").clone()
    }
}

/// The hatch's luma at a point of a region (region-relative coordinates).
fn hatch(x: u32, y: u32) -> u8 {
    if ((x + y) / 8).is_multiple_of(2) {
        112
    } else {
        136
    }
}

/// One plane of a frame: its bytes, row stride, size, and how much smaller than the luma
/// plane it is (1 for luma, 2 for 4:2:0 chroma).
pub struct Plane<'a> {
    /// The bytes.
    pub data: &'a mut [u8],
    /// Bytes per row.
    pub stride: usize,
    /// Width in samples.
    pub width: u32,
    /// Height in rows.
    pub height: u32,
    /// Subsampling factor relative to luma.
    pub subsampling: u32,
}

/// Paints `regions` over one plane of an I420 frame: the luma plane with the hatch, a chroma
/// plane neutral. Regions are clipped to the frame; chroma covers every chroma sample a region
/// touches.
pub fn paint(plane: Plane<'_>, regions: &[Region]) {
    let s = plane.subsampling.max(1);
    for region in regions {
        let x0 = region.x / s;
        let y0 = region.y / s;
        let x1 = region
            .x
            .saturating_add(region.w)
            .div_ceil(s)
            .min(plane.width);
        let y1 = region
            .y
            .saturating_add(region.h)
            .div_ceil(s)
            .min(plane.height);
        for y in y0..y1 {
            let row = y as usize * plane.stride;
            for x in x0..x1 {
                if let Some(sample) = plane.data.get_mut(row + x as usize) {
                    *sample = if s == 1 { hatch(x - x0, y - y0) } else { 128 };
                }
            }
        }
    }
}

/// Paints `regions` over a BGRx frame (4 bytes a pixel, rows `stride` apart): the same hatch
/// as grey.
pub fn paint_bgrx(data: &mut [u8], stride: usize, width: u32, height: u32, regions: &[Region]) {
    for region in regions {
        let x1 = region.x.saturating_add(region.w).min(width);
        let y1 = region.y.saturating_add(region.h).min(height);
        for y in region.y.min(height)..y1 {
            let row = y as usize * stride;
            for x in region.x.min(width)..x1 {
                let grey = hatch(x - region.x, y - region.y);
                let at = row + x as usize * 4;
                if let Some(pixel) = data.get_mut(at..at + 3) {
                    pixel.copy_from_slice(&[grey, grey, grey]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An I420 frame of `w`×`h` filled by `f(x, y)` on every plane.
    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> [Vec<u8>; 3] {
        let plane = |pw: u32, ph: u32| {
            (0..ph)
                .flat_map(|y| (0..pw).map(move |x| (x, y)))
                .map(|(x, y)| f(x, y))
                .collect::<Vec<u8>>()
        };
        [plane(w, h), plane(w / 2, h / 2), plane(w / 2, h / 2)]
    }

    fn painted(mut f: [Vec<u8>; 3], w: u32, h: u32, regions: &[Region]) -> [Vec<u8>; 3] {
        let [y, u, v] = &mut f;
        paint(
            Plane {
                data: y,
                stride: w as usize,
                width: w,
                height: h,
                subsampling: 1,
            },
            regions,
        );
        for c in [u, v] {
            let plane = Plane {
                data: c,
                stride: w as usize / 2,
                width: w / 2,
                height: h / 2,
                subsampling: 2,
            };
            paint(plane, regions);
        }
        f
    }

    #[test]
    fn what_is_under_a_region_leaves_no_trace() {
        let (w, h) = (64, 48);
        let region = Region {
            x: 10,
            y: 6,
            w: 30,
            h: 20,
        };
        // Two different secrets under the region, the same picture around it.
        let secret_a = painted(
            frame(w, h, |x, y| ((x * 7 + y * 13) % 251) as u8),
            w,
            h,
            &[region],
        );
        let secret_b = painted(
            frame(w, h, |x, y| ((x * 31 + y * 3 + 5) % 241) as u8),
            w,
            h,
            &[region],
        );
        let inside = |x: u32, y: u32| (10..40).contains(&x) && (6..26).contains(&y);
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) as usize;
                if inside(x, y) {
                    assert_eq!(secret_a[0][i], secret_b[0][i], "luma at {x},{y}");
                    assert!(matches!(secret_a[0][i], 112 | 136));
                }
            }
        }
        for y in 3..13 {
            for x in 5..20 {
                let i = (y * w / 2 + x) as usize;
                assert_eq!((secret_a[1][i], secret_a[2][i]), (128, 128));
            }
        }
        // Outside, nothing changed.
        let untouched = frame(w, h, |x, y| ((x * 7 + y * 13) % 251) as u8);
        assert_eq!(secret_a[0][0], untouched[0][0]);
        assert_eq!(
            secret_a[0][(47 * w + 63) as usize],
            untouched[0][(47 * w + 63) as usize]
        );
    }

    #[test]
    fn bgrx_regions_are_the_same_hatch_whatever_is_under_them() {
        let (w, h) = (40u32, 30u32);
        let region = Region {
            x: 5,
            y: 4,
            w: 20,
            h: 10,
        };
        let mut a: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        let mut b: Vec<u8> = (0..w * h * 4).map(|i| (i * 13 % 241) as u8).collect();
        paint_bgrx(&mut a, w as usize * 4, w, h, &[region]);
        paint_bgrx(&mut b, w as usize * 4, w, h, &[region]);
        for y in 4..14 {
            for x in 5..25 {
                let at = (y * w + x) as usize * 4;
                assert_eq!(a[at..at + 3], b[at..at + 3]);
                assert_eq!(a[at], hatch(x - 5, y - 4));
            }
        }
        assert_ne!(a[0..3], b[0..3], "outside is untouched");
    }

    #[test]
    fn regions_beyond_the_frame_are_clipped() {
        let (w, h) = (16, 16);
        let f = painted(
            frame(w, h, |_, _| 7),
            w,
            h,
            &[Region {
                x: 10,
                y: 10,
                w: 100,
                h: 100,
            }],
        );
        assert_eq!(f[0][(15 * w + 15) as usize], hatch(5, 5));
        assert_eq!(f[0][0], 7);
    }
}
