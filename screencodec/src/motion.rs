//! Scrolls and moved windows: a changed rectangle whose pixels are, exactly, another
//! rectangle of the previous screen is sent as a copy (four bytes of offset) instead of pixels.
//!
//! Candidate offsets come from two places. The offsets that worked recently are tried first
//! (a scroll or a drag keeps its speed for a while). When several changed rectangles are left
//! unexplained, *probes* — 16-pixel runs with some texture, one from each such rectangle —
//! are looked up in the whole previous screen with a rolling hash (one multiply-add per
//! pixel, about a millisecond for 1280 × 720), and every place a probe occurs votes for an
//! offset. The best-voted offsets are then checked rectangle by rectangle with an exact
//! comparison, so a wrong vote costs time, never pixels. A search that finds nothing backs
//! off for a few frames, so a playing video (which changes every frame and never moves) does
//! not pay for it every time.

use crate::picture::BgrxFrame;
use crate::tile::{Rect, TileGrid};

/// Pixels in a probe.
const PROBE_LEN: usize = 16;
/// Smallest rectangle tried as a copy: below this, coding the pixels costs about as much.
const MIN_COPY_AREA: u32 = 64;
/// Smallest rectangle a probe is taken from.
const MIN_PROBE_AREA: u32 = 256;
/// Unexplained rectangles needed before the screen is searched.
const MIN_UNEXPLAINED: usize = 2;
/// Most probes per search.
const MAX_PROBES: usize = 48;
/// Offsets remembered from earlier frames.
const RECENT: usize = 4;
/// Offsets tried (best voted first) after one search.
const CANDIDATES: usize = 12;
/// Most probe hits kept per search (a run repeated all over the screen, like a line of
/// dashes, must not flood the lists).
const MAX_HITS: usize = 8192;
/// Longest pause after fruitless searches, in frames.
const MAX_BACKOFF: u32 = 8;
/// Multiplier of the rolling hash (odd, so no information is lost mod 2^64).
const BASE: u64 = 0x0000_0100_0000_01b3;

/// A copy offset: the source of a rectangle at (x, y) is (x + dx, y + dy).
pub(crate) type Offset = (i32, i32);

struct Probe {
    x: u32,
    y: u32,
    hash: u64,
}

/// The state of the search between frames.
pub(crate) struct MotionSearch {
    recent: Vec<Offset>,
    skip_frames: u32,
    failures: u32,
    probes: Vec<Probe>,
    /// (probe, offset) of every place a probe was found in the previous screen.
    hits: Vec<(u16, Offset)>,
    votes: Vec<(Offset, u32)>,
    /// `BASE^(PROBE_LEN - 1)`, to drop the oldest pixel from the rolling hash.
    drop_factor: u64,
}

impl MotionSearch {
    pub(crate) fn new() -> Self {
        MotionSearch {
            recent: Vec::with_capacity(RECENT),
            skip_frames: 0,
            failures: 0,
            probes: Vec::new(),
            hits: Vec::new(),
            votes: Vec::new(),
            drop_factor: (1..PROBE_LEN).fold(1u64, |f, _| f.wrapping_mul(BASE)),
        }
    }

    /// Forgets everything (a key frame or a new screen size).
    pub(crate) fn reset(&mut self) {
        self.recent.clear();
        self.skip_frames = 0;
        self.failures = 0;
    }

    /// For each changed rectangle, the offset of an identical rectangle in `previous` (the
    /// last frame, rows packed), if one is found; written to `copies`, index for index.
    pub(crate) fn find_copies(
        &mut self,
        frame: &BgrxFrame<'_>,
        previous: &[u8],
        grid: &TileGrid,
        changed: &[(u32, Rect)],
        copies: &mut Vec<Option<Offset>>,
    ) {
        copies.clear();
        copies.resize(changed.len(), None);
        let screen = Screen {
            frame,
            previous,
            width: grid.width,
            height: grid.height,
        };
        for (copy, (_, rect)) in copies.iter_mut().zip(changed) {
            if rect.area() >= MIN_COPY_AREA {
                *copy = self
                    .recent
                    .iter()
                    .copied()
                    .find(|&offset| screen.matches(*rect, offset));
            }
        }
        let unexplained = copies
            .iter()
            .zip(changed)
            .filter(|(copy, (_, rect))| copy.is_none() && probe_worthy(rect))
            .count();
        if unexplained < MIN_UNEXPLAINED {
            return;
        }
        if self.skip_frames > 0 {
            self.skip_frames -= 1;
            return;
        }
        self.search(&screen, changed, copies, unexplained);
        let mut found = false;
        for &(offset, _) in self.votes.iter().take(CANDIDATES) {
            let mut used = false;
            for (copy, (_, rect)) in copies.iter_mut().zip(changed) {
                if copy.is_none() && rect.area() >= MIN_COPY_AREA && screen.matches(*rect, offset) {
                    *copy = Some(offset);
                    used = true;
                }
            }
            if used {
                found = true;
                self.recent.retain(|&o| o != offset);
                self.recent.insert(0, offset);
                self.recent.truncate(RECENT);
            }
        }
        if found {
            self.failures = 0;
        } else {
            self.failures = (self.failures + 1).min(8);
            self.skip_frames = (1 << self.failures).min(MAX_BACKOFF);
        }
    }

    /// Fills `self.votes` with offsets, most voted first. A probe found in one place gives
    /// that offset a full vote; a probe found in n places (a word repeated on every line)
    /// gives each a 1/n vote, so repeated text cannot outvote the real move.
    fn search(
        &mut self,
        screen: &Screen<'_, '_>,
        changed: &[(u32, Rect)],
        copies: &[Option<Offset>],
        unexplained: usize,
    ) {
        self.votes.clear();
        self.hits.clear();
        self.probes.clear();
        let every = unexplained.div_ceil(MAX_PROBES);
        let candidates = copies
            .iter()
            .zip(changed)
            .filter(|(copy, (_, rect))| copy.is_none() && probe_worthy(rect))
            .step_by(every);
        for (_, (_, rect)) in candidates {
            if let Some((x, y)) = textured_run(screen.frame, *rect) {
                let hash = self.hash_run(screen.frame.span(x, y, PROBE_LEN as u32));
                self.probes.push(Probe { x, y, hash });
            }
        }
        if self.probes.is_empty() || (screen.width as usize) < PROBE_LEN {
            return;
        }
        // A 4096-bit filter on the top hash bits: almost every position misses it.
        let mut filter = [0u64; 64];
        for probe in &self.probes {
            let bit = (probe.hash >> 52) as usize;
            filter[bit >> 6] |= 1 << (bit & 63);
        }
        let stride = screen.width as usize * 4;
        for y in 0..screen.height {
            let row = &screen.previous[y as usize * stride..(y as usize + 1) * stride];
            let mut hash = self.hash_run(&row[..PROBE_LEN * 4]);
            self.check(screen, &filter, hash, 0, y);
            let entering = row[PROBE_LEN * 4..].chunks_exact(4);
            let leaving = row.chunks_exact(4);
            for (x, (inp, out)) in entering.zip(leaving).enumerate() {
                let inp = u64::from(u32::from_le_bytes([inp[0], inp[1], inp[2], inp[3]]));
                let out = u64::from(u32::from_le_bytes([out[0], out[1], out[2], out[3]]));
                hash = hash
                    .wrapping_sub(out.wrapping_mul(self.drop_factor))
                    .wrapping_mul(BASE)
                    .wrapping_add(inp);
                let bit = (hash >> 52) as usize;
                if filter[bit >> 6] & (1 << (bit & 63)) != 0 {
                    self.check(screen, &filter, hash, x as u32 + 1, y);
                }
            }
        }
        let mut per_probe = vec![0u32; self.probes.len()];
        for &(probe, _) in &self.hits {
            per_probe[usize::from(probe)] += 1;
        }
        for &(probe, offset) in &self.hits {
            let weight = 1024 / per_probe[usize::from(probe)];
            match self.votes.iter_mut().find(|(o, _)| *o == offset) {
                Some((_, n)) => *n += weight,
                None => self.votes.push((offset, weight)),
            }
        }
        // Most votes first; among equals, the smallest move.
        self.votes.sort_by_key(|&((dx, dy), n)| {
            (std::cmp::Reverse(n), dx.unsigned_abs() + dy.unsigned_abs())
        });
    }

    /// A filter hit at (x, y) of the previous screen: every probe it really matches is a hit.
    fn check(&mut self, screen: &Screen<'_, '_>, filter: &[u64; 64], hash: u64, x: u32, y: u32) {
        let bit = (hash >> 52) as usize;
        if filter[bit >> 6] & (1 << (bit & 63)) == 0 {
            return;
        }
        let stride = screen.width as usize * 4;
        let at = y as usize * stride + x as usize * 4;
        let before = &screen.previous[at..at + PROBE_LEN * 4];
        for (index, probe) in self.probes.iter().enumerate() {
            if probe.hash != hash || self.hits.len() >= MAX_HITS {
                continue;
            }
            let offset = (x as i32 - probe.x as i32, y as i32 - probe.y as i32);
            if offset != (0, 0) && screen.frame.span(probe.x, probe.y, PROBE_LEN as u32) == before {
                self.hits.push((index as u16, offset));
            }
        }
    }

    fn hash_run(&self, pixels: &[u8]) -> u64 {
        pixels.chunks_exact(4).fold(0u64, |h, p| {
            h.wrapping_mul(BASE)
                .wrapping_add(u64::from(u32::from_le_bytes([p[0], p[1], p[2], p[3]])))
        })
    }
}

fn probe_worthy(rect: &Rect) -> bool {
    rect.area() >= MIN_PROBE_AREA && rect.w as usize >= PROBE_LEN
}

/// A run of [`PROBE_LEN`] pixels inside `rect` with at least three changes of colour, tried
/// on rows from the middle outwards; `None` for flat rectangles (they code cheaply anyway).
fn textured_run(frame: &BgrxFrame<'_>, rect: Rect) -> Option<(u32, u32)> {
    let x = rect.x + (rect.w - PROBE_LEN as u32) / 2;
    let mid = rect.y + rect.h / 2;
    for step in 0..rect.h.min(16) {
        let y = if step % 2 == 0 {
            mid + step / 2
        } else {
            mid.checked_sub(step / 2 + 1)?
        };
        if y >= rect.y + rect.h || y < rect.y {
            continue;
        }
        let run = frame.span(x, y, PROBE_LEN as u32);
        let changes = run
            .chunks_exact(4)
            .zip(run.chunks_exact(4).skip(1))
            .filter(|(a, b)| a != b)
            .count();
        if changes >= 3 {
            return Some((x, y));
        }
    }
    None
}

/// The frame being encoded and the previous one.
struct Screen<'f, 'p> {
    frame: &'f BgrxFrame<'f>,
    previous: &'p [u8],
    width: u32,
    height: u32,
}

impl Screen<'_, '_> {
    /// Whether `rect` of the frame equals the previous screen's rectangle at `offset`.
    fn matches(&self, rect: Rect, (dx, dy): Offset) -> bool {
        // The format stores offsets as 16-bit numbers.
        if i16::try_from(dx).is_err() || i16::try_from(dy).is_err() {
            return false;
        }
        let sx = i64::from(rect.x) + i64::from(dx);
        let sy = i64::from(rect.y) + i64::from(dy);
        if sx < 0
            || sy < 0
            || sx + i64::from(rect.w) > i64::from(self.width)
            || sy + i64::from(rect.h) > i64::from(self.height)
        {
            return false;
        }
        let stride = self.width as usize * 4;
        let (sx, sy) = (sx as usize, sy as usize);
        self.frame.rows(rect).enumerate().all(|(i, row)| {
            let at = (sy + i) * stride + sx * 4;
            row == &self.previous[at..at + row.len()]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A screen of pseudo-random 4×4 blocks (texture everywhere).
    fn textured(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            for x in 0..w {
                let v = (x / 4 + seed).wrapping_mul(2_654_435_761) ^ (y / 4).wrapping_mul(40_503);
                out.extend_from_slice(&[v as u8, (v >> 8) as u8, (v >> 16) as u8, 0]);
            }
        }
        out
    }

    #[test]
    fn a_scroll_is_found_as_one_offset() {
        let (w, h) = (256u32, 192u32);
        let before = textured(w, h + 40, 0);
        // Scrolled up by 40 rows: row y now shows what row y + 40 showed.
        let after: Vec<u8> = before[(40 * w * 4) as usize..].to_vec();
        let before = &before[..(w * h * 4) as usize];
        let frame = BgrxFrame::new(&after, w, h, (w * 4) as usize).unwrap();
        let grid = TileGrid::new(w, h, 64);
        let changed: Vec<(u32, Rect)> = (0..grid.count()).map(|i| (i, grid.tile_rect(i))).collect();
        let mut search = MotionSearch::new();
        let mut copies = Vec::new();
        search.find_copies(&frame, before, &grid, &changed, &mut copies);
        // The bottom band's source would lie below the screen.
        let expected: Vec<Option<Offset>> = changed
            .iter()
            .map(|(_, r)| (r.y + r.h + 40 <= h).then_some((0, 40)))
            .collect();
        assert_eq!(copies, expected);
        assert_eq!(search.recent, vec![(0, 40)]);
    }
}
