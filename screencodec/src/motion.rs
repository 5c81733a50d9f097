//! Copies instead of pixels: a changed rectangle whose pixels are, exactly, another
//! rectangle of the previous screen (a scroll, a dragged window) or the same rectangle of a
//! *reference screen* (what was there before a window covered it: the encoder keeps up to two
//! earlier screens, and the decoder keeps the same ones) is sent as a copy.
//!
//! Candidate offsets into the previous screen come from two places. The offsets that worked
//! recently are tried first (a scroll or a drag keeps its speed for a while). When several
//! changed rectangles are left unexplained, *probes* — 16-pixel runs with some texture, one
//! from each such rectangle — are looked up in the previous screen with a rolling hash (one
//! multiply-add per pixel; only the changed area is scanned, since what moved left its old
//! place changed too), and every place a probe occurs votes for an offset. The best-voted offsets are then checked rectangle by rectangle
//! with an exact comparison, so a wrong vote costs time, never pixels. When nothing has moved
//! for a few frames in a row the search backs off, so a playing video (which changes every
//! frame and never moves) does not pay for it every time.
//!
//! A rectangle that matches nowhere as a whole (the edge of a dragged window: part window,
//! part uncovered wallpaper) is tried again in 16 × 16 blocks, each against the offsets found
//! and the reference screens. What stays to code in those blocks (the strips a window
//! uncovers for the first time) is joined into as few rectangles as it makes: each coded
//! rectangle costs a record and, for a photo, a JPEG slot of its own.

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
/// Frames in a row with nothing copied before the search pauses.
const FAILURES_BEFORE_BACKOFF: u32 = 3;
/// Longest pause after fruitless searches, in frames.
const MAX_BACKOFF: u32 = 8;
/// Multiplier of the rolling hash (odd, so no information is lost mod 2^64).
const BASE: u64 = 0x0000_0100_0000_01b3;

/// A copy offset: the source of a rectangle at (x, y) is (x + dx, y + dy).
pub(crate) type Offset = (i32, i32);

/// Where a copy reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Source {
    /// 0: the previous screen; 1 or 2: that reference screen.
    pub screen: u8,
    pub offset: Offset,
}

/// A part of a changed rectangle: copied from `source`, or coded when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub rect: Rect,
    pub source: Option<Source>,
}

/// Side of the blocks a rectangle is tried in when it matches nowhere as a whole.
const BLOCK: u32 = 16;

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

    /// Plans every changed rectangle as copied and coded pieces: `plans[i]` is the range of
    /// `pieces` for `changed[i]`. `previous` is the last frame and `references` the reference
    /// screens (rows packed; `None` where a slot is empty).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan(
        &mut self,
        frame: &BgrxFrame<'_>,
        previous: &[u8],
        references: [Option<&[u8]>; 2],
        grid: &TileGrid,
        changed: &[(u32, Rect)],
        pieces: &mut Vec<Piece>,
        plans: &mut Vec<(usize, usize)>,
    ) {
        let screen = Screen {
            frame,
            previous,
            references,
            width: grid.width,
            height: grid.height,
        };
        let mut whole: Vec<Option<Source>> = vec![None; changed.len()];
        for (copy, (_, rect)) in whole.iter_mut().zip(changed) {
            if rect.area() >= MIN_COPY_AREA {
                *copy = self.first_match(&screen, *rect);
            }
        }
        self.find_offsets(&screen, changed, &mut whole);

        pieces.clear();
        plans.clear();
        for (i, &(tile, rect)) in changed.iter().enumerate() {
            let start = pieces.len();
            match whole[i] {
                Some(source) => pieces.push(Piece {
                    rect,
                    source: Some(source),
                }),
                None if rect.area() > BLOCK * BLOCK => {
                    // A window's straight edge through the tile: copy the tile from where
                    // most of it is and the rest from where that is.
                    let split = self.best_partial(&screen, rect).and_then(|(mostly, rest)| {
                        Some((mostly, rest, self.first_match(&screen, rest)?))
                    });
                    if let Some((mostly, rest, from)) = split {
                        pieces.push(Piece {
                            rect,
                            source: Some(mostly),
                        });
                        pieces.push(Piece {
                            rect: rest,
                            source: Some(from),
                        });
                    } else {
                        let origin = grid.tile_rect(tile);
                        self.plan_blocks(&screen, rect, (origin.x, origin.y), pieces);
                    }
                }
                None => pieces.push(Piece { rect, source: None }),
            }
            plans.push((start, pieces.len()));
        }
    }

    /// The first source that holds exactly `rect`: recent offsets into the previous screen,
    /// then the reference screens in place.
    fn first_match(&self, screen: &Screen<'_, '_>, rect: Rect) -> Option<Source> {
        self.candidates()
            .find(|&source| screen.matches(rect, source))
    }

    /// Searches the previous screen for the rectangles no known source explains, and
    /// records the offsets that explain some of them.
    fn find_offsets(
        &mut self,
        screen: &Screen<'_, '_>,
        changed: &[(u32, Rect)],
        whole: &mut [Option<Source>],
    ) {
        let unexplained = whole
            .iter()
            .zip(changed)
            .filter(|(copy, (_, rect))| copy.is_none() && probe_worthy(rect))
            .count();
        // Something already moved this frame (a drag, a scroll): keep searching every frame.
        let mut found = whole
            .iter()
            .any(|copy| matches!(copy, Some(s) if s.screen == 0));
        if found {
            self.failures = 0;
            self.skip_frames = 0;
        }
        if unexplained < MIN_UNEXPLAINED {
            return;
        }
        if self.skip_frames > 0 {
            self.skip_frames -= 1;
            return;
        }
        self.search(screen, changed, whole, unexplained);
        for &(offset, _) in self.votes.iter().take(CANDIDATES) {
            let source = Source { screen: 0, offset };
            let mut used = false;
            for (copy, (_, rect)) in whole.iter_mut().zip(changed) {
                if copy.is_none() && rect.area() >= MIN_COPY_AREA && screen.matches(*rect, source) {
                    *copy = Some(source);
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
            // Nothing moved: changes like a playing video's. Search less often.
            self.failures = (self.failures + 1).min(16);
            if self.failures >= FAILURES_BEFORE_BACKOFF {
                self.skip_frames =
                    (1 << (self.failures - FAILURES_BEFORE_BACKOFF + 1)).min(MAX_BACKOFF);
            }
        }
    }

    /// Tries `rect` in blocks aligned to its tile (`origin`), and appends its pieces: runs of
    /// blocks copied from one source, runs of blocks to code.
    fn plan_blocks(
        &self,
        screen: &Screen<'_, '_>,
        rect: Rect,
        origin: (u32, u32),
        pieces: &mut Vec<Piece>,
    ) {
        let start = pieces.len();
        let mut any = false;
        let mut y = rect.y;
        while y < rect.y + rect.h {
            let y1 = (origin.1 + ((y - origin.1) / BLOCK + 1) * BLOCK).min(rect.y + rect.h);
            let mut x = rect.x;
            while x < rect.x + rect.w {
                let x1 = (origin.0 + ((x - origin.0) / BLOCK + 1) * BLOCK).min(rect.x + rect.w);
                let block = Rect {
                    x,
                    y,
                    w: x1 - x,
                    h: y1 - y,
                };
                let source = self.first_match(screen, block);
                if source.is_none()
                    && let Some((mostly, rest)) = self.best_partial(screen, block)
                {
                    // Copy the block from where most of it is, then fix up the rest
                    // (records apply in order): the edge of a dragged window is part
                    // window (moved) and part what it uncovered (on a reference screen).
                    any = true;
                    pieces.push(Piece {
                        rect: block,
                        source: Some(mostly),
                    });
                    pieces.push(Piece {
                        rect: rest,
                        source: self.first_match(screen, rest),
                    });
                    x = x1;
                    continue;
                }
                any |= source.is_some();
                let extends = pieces.len() > start
                    && pieces.last().is_some_and(|last| {
                        last.source == source
                            && last.rect.y == y
                            && last.rect.h == block.h
                            && last.rect.x + last.rect.w == x
                    });
                match pieces.last_mut() {
                    // Same source, same band, adjacent: one run.
                    Some(last) if extends => last.rect.w += block.w,
                    _ => pieces.push(Piece {
                        rect: block,
                        source,
                    }),
                }
                x = x1;
            }
            y = y1;
        }
        if !any {
            pieces.truncate(start);
            pieces.push(Piece { rect, source: None });
            return;
        }
        merge_coded(pieces, start);
    }

    /// The source that holds most of `block` — measured by the bounding box of the pixels it
    /// gets wrong — if that box is at most half the block; with the box.
    fn best_partial(&self, screen: &Screen<'_, '_>, block: Rect) -> Option<(Source, Rect)> {
        self.candidates()
            .filter_map(|source| Some((source, screen.mismatch(block, source)??)))
            .min_by_key(|(_, rest)| rest.area())
            .filter(|(_, rest)| rest.area() * 2 <= block.area())
    }

    fn candidates(&self) -> impl Iterator<Item = Source> + '_ {
        let recent = self
            .recent
            .iter()
            .map(|&offset| Source { screen: 0, offset });
        let references = [1u8, 2].into_iter().map(|screen| Source {
            screen,
            offset: (0, 0),
        });
        recent.chain(references)
    }

    /// Fills `self.votes` with offsets, most voted first. A probe found in one place gives
    /// that offset a full vote; a probe found in n places (a word repeated on every line)
    /// gives each a 1/n vote, so repeated text cannot outvote the real move.
    fn search(
        &mut self,
        screen: &Screen<'_, '_>,
        changed: &[(u32, Rect)],
        copies: &[Option<Source>],
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
        // Whatever moved left its old place changed too, so the sources lie within the
        // changed area: only that part of the previous screen is scanned.
        let Some(area) = changed.iter().map(|&(_, r)| r).reduce(Rect::union) else {
            return;
        };
        if (area.w as usize) < PROBE_LEN {
            return;
        }
        let stride = screen.width as usize * 4;
        let (x0, x1) = (area.x as usize * 4, (area.x + area.w) as usize * 4);
        for y in area.y..area.y + area.h {
            let row = &screen.previous[y as usize * stride + x0..y as usize * stride + x1];
            let mut hash = self.hash_run(&row[..PROBE_LEN * 4]);
            self.check(screen, &filter, hash, area.x, y);
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
                    self.check(screen, &filter, hash, area.x + x as u32 + 1, y);
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

/// Moves the coded pieces of one rectangle's plan (`pieces[start..]`) after its copies and
/// joins coded pieces that together form a rectangle (the strips a dragged window uncovers
/// along its edge, one per block, become one piece per tile). The pixels do not change:
/// copies read the screens as they were before the payload, and each coded piece lies inside
/// its block, over that block's copy, so it stays after it.
fn merge_coded(pieces: &mut Vec<Piece>, start: usize) {
    // Stable: copies keep their order (a block's partial copy stays after the block's).
    pieces[start..].sort_by_key(|p| p.source.is_none());
    let first = start + pieces[start..].partition_point(|p| p.source.is_some());
    let mut end = pieces.len();
    let mut i = first;
    while i < end {
        // Join every later piece that makes a rectangle with this one, then look again.
        let mut j = i + 1;
        let mut joined = false;
        while j < end {
            let (a, b) = (pieces[i].rect, pieces[j].rect);
            let union = a.union(b);
            if union.area() == a.area() + b.area() {
                pieces[i].rect = union;
                pieces.remove(j);
                end -= 1;
                joined = true;
            } else {
                j += 1;
            }
        }
        if !joined {
            i += 1;
        }
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

/// The frame being encoded, the previous one and the reference screens.
struct Screen<'f, 'p> {
    frame: &'f BgrxFrame<'f>,
    previous: &'p [u8],
    references: [Option<&'p [u8]>; 2],
    width: u32,
    height: u32,
}

impl Screen<'_, '_> {
    /// The screen `source` reads from and the top left of `rect` there, if the source
    /// exists and holds the whole rectangle.
    fn locate(&self, rect: Rect, source: Source) -> Option<(&[u8], usize, usize)> {
        let (dx, dy) = source.offset;
        let pixels = match source.screen {
            0 => self.previous,
            n => (*self.references.get(usize::from(n).checked_sub(1)?)?)?,
        };
        // The format stores offsets as 16-bit numbers.
        i16::try_from(dx).ok()?;
        i16::try_from(dy).ok()?;
        let sx = i64::from(rect.x) + i64::from(dx);
        let sy = i64::from(rect.y) + i64::from(dy);
        if sx < 0
            || sy < 0
            || sx + i64::from(rect.w) > i64::from(self.width)
            || sy + i64::from(rect.h) > i64::from(self.height)
        {
            return None;
        }
        Some((pixels, sx as usize, sy as usize))
    }

    /// Whether `rect` of the frame equals the rectangle at `source`.
    fn matches(&self, rect: Rect, source: Source) -> bool {
        let Some((pixels, sx, sy)) = self.locate(rect, source) else {
            return false;
        };
        let stride = self.width as usize * 4;
        self.frame.rows(rect).enumerate().all(|(i, row)| {
            let at = (sy + i) * stride + sx * 4;
            row == &pixels[at..at + row.len()]
        })
    }

    /// The bounding box of the pixels of `rect` that differ from `source`: `None` if the
    /// source does not hold the rectangle, `Some(None)` if nothing differs.
    fn mismatch(&self, rect: Rect, source: Source) -> Option<Option<Rect>> {
        let (pixels, sx, sy) = self.locate(rect, source)?;
        let stride = self.width as usize * 4;
        let mut bounds: Option<(u32, u32, u32, u32)> = None;
        for (i, row) in self.frame.rows(rect).enumerate() {
            let at = (sy + i) * stride + sx * 4;
            let there = &pixels[at..at + row.len()];
            if row == there {
                continue;
            }
            let pairs = || row.chunks_exact(4).zip(there.chunks_exact(4));
            let first = pairs().position(|(a, b)| a != b).unwrap_or(0) as u32;
            let last = pairs().rposition(|(a, b)| a != b).unwrap_or(0) as u32;
            let y = i as u32;
            bounds = Some(match bounds {
                None => (first, last, y, y),
                Some((l, r, t, _)) => (l.min(first), r.max(last), t, y),
            });
        }
        Some(bounds.map(|(l, r, t, b)| Rect {
            x: rect.x + l,
            y: rect.y + t,
            w: r - l + 1,
            h: b - t + 1,
        }))
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
    fn coded_strips_join_after_the_copies() {
        let rect = |x, y, w, h| Rect { x, y, w, h };
        let moved = Some(Source {
            screen: 0,
            offset: (-9, -3),
        });
        let uncovered = Some(Source {
            screen: 1,
            offset: (0, 0),
        });
        // A tile's plan along a window's left edge: per block, the window copied, then the
        // uncovered strip (coded) or a fix-up from the reference screen; one coded block.
        let mut pieces = vec![
            Piece {
                rect: rect(64, 0, 16, 16),
                source: moved,
            },
            Piece {
                rect: rect(64, 0, 3, 16),
                source: None,
            },
            Piece {
                rect: rect(64, 16, 16, 16),
                source: moved,
            },
            Piece {
                rect: rect(64, 16, 3, 16),
                source: None,
            },
            Piece {
                rect: rect(64, 32, 16, 16),
                source: moved,
            },
            Piece {
                rect: rect(64, 32, 3, 10),
                source: uncovered,
            },
            Piece {
                rect: rect(80, 32, 16, 16),
                source: None,
            },
            Piece {
                rect: rect(64, 48, 16, 16),
                source: moved,
            },
            Piece {
                rect: rect(64, 48, 3, 16),
                source: None,
            },
        ];
        merge_coded(&mut pieces, 0);
        assert_eq!(
            pieces,
            vec![
                Piece {
                    rect: rect(64, 0, 16, 16),
                    source: moved
                },
                Piece {
                    rect: rect(64, 16, 16, 16),
                    source: moved
                },
                Piece {
                    rect: rect(64, 32, 16, 16),
                    source: moved
                },
                Piece {
                    rect: rect(64, 32, 3, 10),
                    source: uncovered
                },
                Piece {
                    rect: rect(64, 48, 16, 16),
                    source: moved
                },
                // The two strips that touch join; the one below the fix-up does not reach
                // them, and the coded block beside them makes no rectangle with them.
                Piece {
                    rect: rect(64, 0, 3, 32),
                    source: None
                },
                Piece {
                    rect: rect(80, 32, 16, 16),
                    source: None
                },
                Piece {
                    rect: rect(64, 48, 3, 16),
                    source: None
                },
            ]
        );
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
        let (mut pieces, mut plans) = (Vec::new(), Vec::new());
        search.plan(
            &frame,
            before,
            [None, None],
            &grid,
            &changed,
            &mut pieces,
            &mut plans,
        );
        // Whole tiles are copies; the bottom band's source would lie below the screen, so
        // it is tried in blocks: the blocks whose source is on screen are copies, the
        // bottom 40 rows are coded.
        let scrolled = Some(Source {
            screen: 0,
            offset: (0, 40),
        });
        for (i, (_, rect)) in changed.iter().enumerate() {
            let (start, end) = plans[i];
            if rect.y + rect.h + 40 <= h {
                assert_eq!(
                    &pieces[start..end],
                    &[Piece {
                        rect: *rect,
                        source: scrolled
                    }]
                );
            } else {
                let copied: u32 = pieces[start..end]
                    .iter()
                    .filter(|p| p.source == scrolled)
                    .map(|p| p.rect.area())
                    .sum();
                assert_eq!(copied, rect.w * 16, "tile {i}: {:?}", &pieces[start..end]);
            }
        }
        assert_eq!(search.recent, vec![(0, 40)]);
    }
}
