//! The [`Decoder`]: applies payloads to a [`Canvas`]. It runs on the server over bytes from
//! the network, so it reads in two passes: first every field is parsed and checked (sizes
//! against [`DecoderLimits`] before anything is allocated, every rectangle inside its tile,
//! every palette index inside its palette, every copy inside the screen, the JPEG's size
//! against its tiles), and only then is the canvas touched. A payload that fails leaves the
//! canvas as it was, and the decoder waits for a key frame.

use crate::error::{DecodeError, Result};
use crate::format::{
    FrameHeader, FrameKind, HEADER_LEN, Reader, TileCoding, max_jpeg_len, max_records_per_tile,
    max_tile_stream_len,
};
use crate::jpeg::DecodedSlots;
use crate::picture::Canvas;
use crate::stream::Unpacker;
use crate::tile::{Rect, TileGrid};

/// The largest screen a [`Decoder`] accepts. Memory grows with the area: the canvas takes
/// 4 bytes per pixel, the tile stream up to about 3 more, a JPEG section up to 4 more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Widest screen, in pixels. Default 8192.
    pub max_width: u32,
    /// Tallest screen, in pixels. Default 8192.
    pub max_height: u32,
    /// Largest area, in pixels. Default 4096 × 4096 (two 4K monitors fit).
    pub max_pixels: u64,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 4096 * 4096,
        }
    }
}

/// One checked tile record; offsets point into the decompressed tile stream.
#[derive(Debug, Clone, Copy)]
enum Op {
    Solid {
        rect: Rect,
        bgr: [u8; 3],
    },
    Palette {
        rect: Rect,
        colours: usize,
        count: usize,
        indices: usize,
    },
    Raw {
        rect: Rect,
        data: usize,
    },
    Jpeg {
        rect: Rect,
        slot: usize,
    },
    Copy {
        rect: Rect,
        /// 0: the previous screen; 1 or 2: that reference screen.
        screen: u8,
        src_x: u32,
        src_y: u32,
    },
}

/// Turns payloads back into a screen. Feed it every payload of one stream in order, starting
/// with a key frame.
pub struct Decoder {
    limits: DecoderLimits,
    canvas: Canvas,
    /// The header of the last frame applied, while the canvas is valid.
    last: Option<FrameHeader>,
    /// The reference screens the stream stored (emptied by key frames).
    references: [Option<Canvas>; 2],
    tile_stream: Vec<u8>,
    ops: Vec<Op>,
    slots: DecodedSlots,
    copied: Vec<u8>,
    unpacker: Unpacker,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the default [`DecoderLimits`].
    pub fn new() -> Self {
        Decoder::with_limits(DecoderLimits::default())
    }

    /// A decoder that refuses screens beyond `limits`.
    pub fn with_limits(limits: DecoderLimits) -> Self {
        Decoder {
            limits,
            canvas: Canvas::new(0, 0),
            last: None,
            references: [None, None],
            tile_stream: Vec::new(),
            ops: Vec::new(),
            slots: DecodedSlots::new(),
            copied: Vec::new(),
            unpacker: Unpacker::default(),
        }
    }

    /// Applies one payload and returns the screen as it now is. On error the canvas keeps
    /// the last good screen ([`Decoder::canvas`]) and only a key frame is accepted next.
    pub fn decode(&mut self, payload: &[u8]) -> Result<&Canvas> {
        match self.apply(payload) {
            Ok(header) => {
                self.last = Some(header);
                Ok(&self.canvas)
            }
            Err(e) => {
                self.last = None;
                Err(e)
            }
        }
    }

    /// The last good screen, if a key frame has been decoded (it stays after an error).
    pub fn canvas(&self) -> Option<&Canvas> {
        (self.canvas.width() > 0).then_some(&self.canvas)
    }

    /// The header of the last payload applied, or `None` before a key frame and after an
    /// error (when only a key frame is accepted).
    pub fn last_header(&self) -> Option<FrameHeader> {
        self.last
    }

    fn apply(&mut self, payload: &[u8]) -> Result<FrameHeader> {
        let header = FrameHeader::parse(payload)?;
        let limits = self.limits;
        let pixels = u64::from(header.width) * u64::from(header.height);
        if header.width > limits.max_width
            || header.height > limits.max_height
            || pixels > limits.max_pixels
        {
            return Err(DecodeError::DimensionsTooLarge {
                width: header.width,
                height: header.height,
                max_width: limits.max_width,
                max_height: limits.max_height,
                max_pixels: limits.max_pixels,
            });
        }
        let key = header.kind == FrameKind::Key;
        if !key {
            let Some(last) = self.last else {
                return Err(DecodeError::NeedsKeyframe {
                    sequence: header.sequence,
                    kind: header.kind.as_str(),
                });
            };
            if (header.width, header.height) != (last.width, last.height) {
                return Err(DecodeError::DimensionsChanged {
                    width: last.width,
                    height: last.height,
                    found_width: header.width,
                    found_height: header.height,
                });
            }
            let expected = last.sequence.wrapping_add(1);
            if header.sequence != expected {
                return Err(DecodeError::OutOfSequence {
                    previous: last.sequence,
                    expected,
                    found: header.sequence,
                });
            }
        }

        let mut reader = Reader::new(payload);
        reader.take(HEADER_LEN, "header")?;
        if header.kind == FrameKind::Unchanged {
            if reader.remaining() > 0 {
                return Err(DecodeError::TrailingBytes {
                    extra: reader.remaining(),
                });
            }
            self.store_reference(&header);
            return Ok(header);
        }

        let grid = TileGrid::new(header.width, header.height, header.tile_size);
        let tiles_len = u64::from(reader.u32("tile stream length")?);
        let max = max_tile_stream_len(pixels, u64::from(grid.count()), header.tile_size);
        if tiles_len > max {
            return Err(DecodeError::TileStreamTooLarge {
                declared: tiles_len,
                max,
            });
        }
        let jpeg_len = u64::from(reader.u32("JPEG length")?);
        let max_jpeg = max_jpeg_len(pixels);
        if jpeg_len > max_jpeg {
            return Err(DecodeError::JpegLayout(format!(
                "{jpeg_len} bytes of JPEG, but a frame of this size needs at most {max_jpeg}"
            )));
        }
        let packed_len = reader.u32("compressed section length")? as usize;
        let packed = reader.take(packed_len, "compressed section")?;
        if reader.remaining() > 0 {
            return Err(DecodeError::TrailingBytes {
                extra: reader.remaining(),
            });
        }

        if key {
            self.unpacker.restart()?;
        }
        let (tiles_len, jpeg_len) = (tiles_len as usize, jpeg_len as usize);
        self.unpacker
            .unpack(packed, tiles_len + jpeg_len, &mut self.tile_stream)?;
        let jpeg = self.tile_stream.split_off(tiles_len);
        let jpeg_slots = self.parse_records(&header, &grid)?;
        match (jpeg_slots, jpeg.is_empty()) {
            (0, true) => {}
            (0, false) => {
                return Err(DecodeError::JpegLayout(format!(
                    "{} byte(s) of JPEG but no JPEG tile",
                    jpeg.len()
                )));
            }
            (n, true) => {
                return Err(DecodeError::JpegLayout(format!(
                    "{n} JPEG tile(s) but no JPEG"
                )));
            }
            (n, false) => self.slots.decode(&jpeg, n, header.tile_size)?,
        }

        // Everything is checked: now the canvas changes. A key frame starts from black, with
        // no reference screens.
        if key {
            self.references = [None, None];
            if (self.canvas.width(), self.canvas.height()) == (header.width, header.height) {
                self.canvas.clear();
            } else {
                self.canvas = Canvas::new(header.width, header.height);
            }
        }
        self.paint();
        self.store_reference(&header);
        Ok(header)
    }

    /// Keeps the canvas as the reference screen the header names, if any.
    fn store_reference(&mut self, header: &FrameHeader) {
        let slot = match header.store_reference {
            1 => &mut self.references[0],
            2 => &mut self.references[1],
            _ => return,
        };
        match slot {
            Some(kept) => kept.clone_from(&self.canvas),
            None => *slot = Some(self.canvas.clone()),
        }
    }

    /// Parses and checks every record of the tile stream into `self.ops`; returns the number
    /// of JPEG slots they use.
    fn parse_records(&mut self, header: &FrameHeader, grid: &TileGrid) -> Result<usize> {
        self.ops.clear();
        let key = header.kind == FrameKind::Key;
        let tiles = grid.count();
        let mut reader = Reader::new(&self.tile_stream);
        let max_records = max_records_per_tile(header.tile_size);
        let mut last = 0u64;
        let mut records_of_tile = 0u32;
        let mut jpeg_slots = 0usize;
        while reader.remaining() > 0 {
            let skip = reader.varint("tile skip")?;
            let index = last.saturating_add(skip);
            if index >= u64::from(tiles) {
                return Err(DecodeError::TileOutOfRange { index, tiles });
            }
            let tile = index as u32;
            records_of_tile = if skip == 0 { records_of_tile + 1 } else { 1 };
            if records_of_tile > max_records {
                return Err(DecodeError::TooManyRecords {
                    tile,
                    max: max_records,
                });
            }
            last = index;
            let code = reader.u8("tile coding")?;
            let coding = TileCoding::from_code(code)
                .ok_or(DecodeError::UnknownTileCoding { tile, kind: code })?;
            let rect_bytes = reader.take(4, "tile rectangle")?;
            let (x, y) = (u32::from(rect_bytes[0]), u32::from(rect_bytes[1]));
            let (w, h) = (u32::from(rect_bytes[2]) + 1, u32::from(rect_bytes[3]) + 1);
            let area = grid.tile_rect(tile);
            if x + w > area.w || y + h > area.h {
                return Err(DecodeError::RectOutsideTile { tile, x, y, w, h });
            }
            let rect = Rect {
                x: area.x + x,
                y: area.y + y,
                w,
                h,
            };
            let pixels = rect.area() as usize;
            let op = match coding {
                TileCoding::Solid => {
                    let b = reader.take(3, "solid colour")?;
                    Op::Solid {
                        rect,
                        bgr: [b[0], b[1], b[2]],
                    }
                }
                TileCoding::Palette => {
                    let count = usize::from(reader.u8("palette size")?) + 1;
                    let colours = reader.position();
                    reader.take(count * 3, "palette")?;
                    let indices = reader.position();
                    let values = reader.take(pixels, "palette indices")?;
                    if count < 256
                        && let Some(&index) = values.iter().find(|&&i| usize::from(i) >= count)
                    {
                        return Err(DecodeError::PaletteIndexOutOfRange {
                            tile,
                            index,
                            colours: count,
                        });
                    }
                    Op::Palette {
                        rect,
                        colours,
                        count,
                        indices,
                    }
                }
                TileCoding::Raw => {
                    let data = reader.position();
                    reader.take(pixels * 3, "raw pixels")?;
                    Op::Raw { rect, data }
                }
                TileCoding::Jpeg => {
                    jpeg_slots += 1;
                    Op::Jpeg {
                        rect,
                        slot: jpeg_slots - 1,
                    }
                }
                TileCoding::Copy => {
                    if key {
                        return Err(DecodeError::CopyInKeyframe { tile });
                    }
                    let screen = reader.u8("copy source")?;
                    let problem = match screen {
                        0 => None,
                        1 | 2 if self.references[usize::from(screen) - 1].is_none() => {
                            Some("was never stored (or a key frame emptied it)")
                        }
                        1 | 2 => None,
                        _ => Some("does not exist (sources are 0, 1 and 2)"),
                    };
                    if let Some(problem) = problem {
                        return Err(DecodeError::NoSuchScreen {
                            tile,
                            screen,
                            problem,
                        });
                    }
                    let dx = i64::from(reader.i16("copy dx")?);
                    let dy = i64::from(reader.i16("copy dy")?);
                    let (src_x, src_y) = (i64::from(rect.x) + dx, i64::from(rect.y) + dy);
                    if src_x < 0
                        || src_y < 0
                        || src_x + i64::from(w) > i64::from(grid.width)
                        || src_y + i64::from(h) > i64::from(grid.height)
                    {
                        return Err(DecodeError::CopyOutsideScreen {
                            tile,
                            src_x,
                            src_y,
                            w,
                            h,
                            width: grid.width,
                            height: grid.height,
                        });
                    }
                    Op::Copy {
                        rect,
                        screen,
                        src_x: src_x as u32,
                        src_y: src_y as u32,
                    }
                }
            };
            self.ops.push(op);
        }
        Ok(jpeg_slots)
    }

    /// Applies `self.ops` to the canvas. Copies read the screens as they were before this
    /// frame, so their sources are gathered first.
    fn paint(&mut self) {
        self.copied.clear();
        for op in &self.ops {
            if let Op::Copy {
                rect,
                screen,
                src_x,
                src_y,
            } = *op
            {
                let from = match screen {
                    0 => Some(&self.canvas),
                    n => self.references[usize::from(n) - 1].as_ref(),
                };
                let Some(from) = from else {
                    // Refused when parsed; black keeps the staging in step regardless.
                    let len = self.copied.len() + rect.area() as usize * 4;
                    self.copied.resize(len, 0);
                    continue;
                };
                for row in 0..rect.h {
                    self.copied
                        .extend_from_slice(from.row(src_x, src_y + row, rect.w));
                }
            }
        }
        let mut copied = 0usize;
        for op in &self.ops {
            match *op {
                Op::Solid { rect, bgr } => {
                    let px = [bgr[0], bgr[1], bgr[2], 0xff];
                    for y in rect.y..rect.y + rect.h {
                        for out in self.canvas.row_mut(rect.x, y, rect.w).chunks_exact_mut(4) {
                            out.copy_from_slice(&px);
                        }
                    }
                }
                Op::Palette {
                    rect,
                    colours,
                    count,
                    indices,
                } => {
                    let mut table = [[0u8, 0, 0, 0xff]; 256];
                    for (entry, c) in table
                        .iter_mut()
                        .zip(self.tile_stream[colours..colours + count * 3].chunks_exact(3))
                    {
                        entry[..3].copy_from_slice(c);
                    }
                    let values = &self.tile_stream[indices..indices + rect.area() as usize];
                    for (y, row) in (rect.y..).zip(values.chunks_exact(rect.w as usize)) {
                        let out = self.canvas.row_mut(rect.x, y, rect.w);
                        for (px, &i) in out.chunks_exact_mut(4).zip(row) {
                            px.copy_from_slice(&table[usize::from(i)]);
                        }
                    }
                }
                Op::Raw { rect, data } => {
                    let values = &self.tile_stream[data..data + rect.area() as usize * 3];
                    for (y, row) in (rect.y..).zip(values.chunks_exact(rect.w as usize * 3)) {
                        let out = self.canvas.row_mut(rect.x, y, rect.w);
                        for (px, c) in out.chunks_exact_mut(4).zip(row.chunks_exact(3)) {
                            px.copy_from_slice(&[c[0], c[1], c[2], 0xff]);
                        }
                    }
                }
                Op::Jpeg { rect, slot } => {
                    for row in 0..rect.h {
                        let src = self.slots.row(slot, row, rect.w);
                        let out = self.canvas.row_mut(rect.x, rect.y + row, rect.w);
                        for (px, s) in out.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                            px.copy_from_slice(&[s[0], s[1], s[2], 0xff]);
                        }
                    }
                }
                Op::Copy { rect, .. } => {
                    let len = rect.w as usize * 4;
                    for row in 0..rect.h {
                        let src = &self.copied[copied..copied + len];
                        self.canvas
                            .row_mut(rect.x, rect.y + row, rect.w)
                            .copy_from_slice(src);
                        copied += len;
                    }
                }
            }
        }
    }
}
