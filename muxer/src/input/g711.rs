//! G.711 WAV (format tags 6 = A-law, 7 = µ-law), the usual CTI recording. `hound` reads only
//! PCM and float WAV and symphonia refuses `fmt ` chunks many recorders (GStreamer's `wavenc`
//! among them) write without the `cbSize` field, so the RIFF walk is done here: it is small
//! and every length is checked against the file.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::bytes::{InputBytes, InputReader};
use crate::error::{MuxError, Result};

/// The two G.711 companding laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// A-law (Europe): format tag 6.
    A,
    /// µ-law (North America, Japan): format tag 7.
    Mu,
}

/// What the `fmt ` and `data` chunks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct G711Format {
    /// The law.
    pub law: Law,
    /// Channels.
    pub channels: u16,
    /// Sample rate.
    pub rate_hz: u32,
    /// Offset of the first data byte.
    pub data_offset: u64,
    /// Data bytes (one per sample).
    pub data_len: u64,
}

/// The WAV format tag when `head` (a file's first bytes) starts a RIFF/WAVE file with a
/// `fmt ` chunk.
#[must_use]
pub fn wav_format_tag(head: &[u8]) -> Option<u16> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= head.len() {
        let size = u32::from_le_bytes(head[at + 4..at + 8].try_into().ok()?) as usize;
        if &head[at..at + 4] == b"fmt " {
            return head
                .get(at + 8..at + 10)
                .map(|t| u16::from_le_bytes([t[0], t[1]]));
        }
        at += 8 + size + (size & 1);
    }
    None
}

/// Reads the chunk headers of a G.711 WAV.
///
/// # Errors
/// [`MuxError::Input`] naming what is wrong: not RIFF/WAVE, a chunk running past the end,
/// no `fmt ` or `data`, not G.711, or a `data` chunk longer than the file (truncated).
pub fn parse(bytes: &InputBytes) -> Result<G711Format> {
    let path = &bytes.name();
    let bad = |why: String| MuxError::input(path, format!("corrupt WAV header: {why}"));
    let mut file = bytes.open()?;
    let file_len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| MuxError::input(path, e.to_string()))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| MuxError::input(path, e.to_string()))?;
    let mut riff = [0u8; 12];
    file.read_exact(&mut riff)
        .map_err(|_| bad("shorter than a RIFF header".into()))?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(bad("not RIFF/WAVE".into()));
    }
    let mut at = 12u64;
    let mut format: Option<(Law, u16, u32)> = None;
    while at + 8 <= file_len {
        let mut chunk = [0u8; 8];
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut chunk))
            .map_err(|e| bad(e.to_string()))?;
        let size = u64::from(u32::from_le_bytes(chunk[4..8].try_into().expect("4 bytes")));
        let body = at + 8;
        match &chunk[0..4] {
            b"fmt " => {
                if size < 16 || body + size > file_len {
                    return Err(bad(format!("`fmt ` chunk of {size} bytes")));
                }
                let mut f = [0u8; 16];
                file.read_exact(&mut f).map_err(|e| bad(e.to_string()))?;
                let tag = u16::from_le_bytes([f[0], f[1]]);
                let channels = u16::from_le_bytes([f[2], f[3]]);
                let rate = u32::from_le_bytes(f[4..8].try_into().expect("4 bytes"));
                let bits = u16::from_le_bytes([f[14], f[15]]);
                let law = match tag {
                    6 => Law::A,
                    7 => Law::Mu,
                    other => return Err(bad(format!("format tag {other} is not G.711"))),
                };
                if channels == 0 || rate == 0 || bits != 8 {
                    return Err(bad(format!("{channels} channels, {rate} Hz, {bits} bits")));
                }
                format = Some((law, channels, rate));
            }
            b"data" => {
                let (law, channels, rate_hz) =
                    format.ok_or_else(|| bad("`data` before `fmt `".into()))?;
                if body + size > file_len {
                    return Err(MuxError::input(
                        path,
                        format!(
                            "truncated WAV: the data chunk promises {size} bytes, the file holds {}",
                            file_len - body
                        ),
                    ));
                }
                return Ok(G711Format {
                    law,
                    channels,
                    rate_hz,
                    data_offset: body,
                    data_len: size - size % u64::from(channels),
                });
            }
            _ => {}
        }
        at = body + size + (size & 1);
    }
    Err(bad("no `data` chunk".into()))
}

/// Streams decoded samples of a G.711 WAV.
pub struct G711Reader {
    path: PathBuf,
    reader: BufReader<Box<dyn InputReader>>,
    left: u64,
    table: [f32; 256],
    buf: Vec<u8>,
}

impl G711Reader {
    /// Opens the data chunk described by `format`.
    ///
    /// # Errors
    /// [`MuxError::Input`] when the file cannot be opened.
    pub fn open(bytes: &InputBytes, format: &G711Format) -> Result<Self> {
        let path = bytes.name();
        let mut file = bytes.open()?;
        file.seek(SeekFrom::Start(format.data_offset))
            .map_err(|e| MuxError::input(&path, e.to_string()))?;
        let mut table = [0f32; 256];
        for (byte, slot) in table.iter_mut().enumerate() {
            let linear = match format.law {
                Law::Mu => mulaw_to_linear(byte as u8),
                Law::A => alaw_to_linear(byte as u8),
            };
            *slot = f32::from(linear) / 32768.0;
        }
        Ok(Self {
            path,
            reader: BufReader::with_capacity(64 * 1024, file),
            left: format.data_len,
            table,
            buf: vec![0u8; 16 * 1024],
        })
    }

    /// Appends up to 16 KiB of samples to `out`; returns how many (0 at the end).
    ///
    /// # Errors
    /// [`MuxError::Input`] when the data ends early.
    pub fn read(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        let want = (self.buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        self.reader
            .read_exact(&mut self.buf[..want])
            .map_err(|e| MuxError::input(&self.path, format!("damaged WAV data: {e}")))?;
        self.left -= want as u64;
        out.extend(self.buf[..want].iter().map(|&b| self.table[usize::from(b)]));
        Ok(want)
    }
}

/// ITU-T G.711 µ-law expansion.
#[must_use]
pub fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// ITU-T G.711 A-law expansion.
#[must_use]
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let sign = a & 0x80;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if sign != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_expansion_matches_the_standard_tables() {
        // Reference points from ITU-T G.711 (and every codec library).
        assert_eq!(mulaw_to_linear(0xff), 0);
        assert_eq!(mulaw_to_linear(0x7f), 0);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
    }
}
