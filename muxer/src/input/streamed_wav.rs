//! A WAV written while the call ran: the recorder wrote the header before it knew how long
//! the recording would be, and left the RIFF and `data` sizes as 0 or 0xFFFFFFFF (how CTI
//! recorders, `ffmpeg` to a pipe and GStreamer's `wavenc` without seeking leave them). Such
//! a file is read as if its header said the truth: the data chunk runs to the end of the
//! file (whole frames only). The stored bytes are not changed — the sizes are put right in
//! a view of them, for the readers (hound, the G.711 reader, symphonia) that trust the
//! header.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use super::bytes::{ByteSource, InputBytes, InputReader};
use crate::error::{MuxError, Result};

/// The sizes a recorder leaves when it does not know them yet.
const UNKNOWN: [u32; 2] = [0, u32::MAX];

/// `bytes` as the readers should see them: a view with the sizes put right when it is a WAV
/// written as a stream, else `bytes` itself.
///
/// # Errors
/// [`MuxError::Input`] when the bytes cannot be read, or a streamed WAV is too long for the
/// sizes a WAV header can hold (4 GiB).
pub fn settle(bytes: &InputBytes) -> Result<InputBytes> {
    let head = bytes.head(4096)?;
    let Some(data) = streamed_data_chunk(&head) else {
        return Ok(bytes.clone());
    };
    let file_len = bytes.byte_len()?;
    let body = data.offset + 8;
    let available = file_len.saturating_sub(body);
    let whole = available - available % u64::from(data.block_align.max(1));
    let too_long = || {
        MuxError::input(
            &bytes.name(),
            "a WAV written as a stream is longer than a WAV header can say (4 GiB)",
        )
    };
    let data_len = u32::try_from(whole).map_err(|_| too_long())?;
    let riff_len = u32::try_from(body - 8 + whole).map_err(|_| too_long())?;
    Ok(InputBytes::Source(Arc::new(SizedWav {
        inner: bytes.clone(),
        patches: [
            (4, riff_len.to_le_bytes()),
            (data.offset + 4, data_len.to_le_bytes()),
        ],
    })))
}

/// Where the `data` chunk of a streamed WAV starts, and the frame size.
struct DataChunk {
    offset: u64,
    block_align: u16,
}

/// The `data` chunk of a RIFF/WAVE head whose `data` size is left unknown (0 or
/// 0xFFFFFFFF), when the `fmt ` and `data` chunk headers are within `head`.
fn streamed_data_chunk(head: &[u8]) -> Option<DataChunk> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let mut block_align = None;
    let mut at = 12usize;
    while at + 8 <= head.len() {
        let size = u32_at(at + 4)?;
        match &head[at..at + 4] {
            b"fmt " => {
                let align = head.get(at + 20..at + 22)?;
                block_align = Some(u16::from_le_bytes([align[0], align[1]]));
            }
            b"data" => {
                return UNKNOWN.contains(&size).then_some(DataChunk {
                    offset: at as u64,
                    block_align: block_align?,
                });
            }
            _ => {}
        }
        at = at
            .checked_add(8)?
            .checked_add(size as usize)?
            .checked_add(size as usize & 1)?;
    }
    None
}

/// A WAV's bytes with its two sizes replaced.
struct SizedWav {
    inner: InputBytes,
    /// (offset, the four bytes to show there).
    patches: [(u64, [u8; 4]); 2],
}

impl ByteSource for SizedWav {
    fn label(&self) -> String {
        self.inner.name().display().to_string()
    }

    fn open(&self) -> io::Result<Box<dyn InputReader>> {
        let reader = self.inner.open().map_err(io::Error::other)?;
        Ok(Box::new(Patched {
            reader,
            pos: 0,
            patches: self.patches,
        }))
    }
}

struct Patched {
    reader: Box<dyn InputReader>,
    pos: u64,
    patches: [(u64, [u8; 4]); 2],
}

impl Read for Patched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        let (start, end) = (self.pos, self.pos + n as u64);
        for (offset, bytes) in &self.patches {
            for (i, byte) in bytes.iter().enumerate() {
                let at = offset + i as u64;
                if (start..end).contains(&at) {
                    buf[(at - start) as usize] = *byte;
                }
            }
        }
        self.pos = end;
        Ok(n)
    }
}

impl Seek for Patched {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = self.reader.seek(pos)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed_wav(data: &[u8], riff: u32, size: u32) -> Vec<u8> {
        wav_with(1, 16, data, riff, size)
    }

    /// A mono 8 kHz WAV of format `tag` (1 PCM, 7 µ-law) with the sizes given.
    fn wav_with(tag: u16, bits: u16, data: &[u8], riff: u32, size: u32) -> Vec<u8> {
        let align = bits / 8;
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&riff.to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&tag.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes()); // mono
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&(8000 * u32::from(align)).to_le_bytes());
        wav.extend_from_slice(&align.to_le_bytes());
        wav.extend_from_slice(&bits.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&size.to_le_bytes());
        wav.extend_from_slice(data);
        wav
    }

    fn read_all(bytes: &InputBytes) -> Vec<u8> {
        let mut out = Vec::new();
        bytes.open().unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn the_sizes_are_put_right_in_the_view_only() {
        let dir = tempfile::tempdir().unwrap();
        for (riff, size) in [(0, 0), (u32::MAX, u32::MAX), (0, u32::MAX)] {
            // 7 data bytes: the odd one is not a whole frame.
            let wav = streamed_wav(&[1, 2, 3, 4, 5, 6, 7], riff, size);
            let path = dir.path().join("call.wav");
            std::fs::write(&path, &wav).unwrap();
            let settled = settle(&InputBytes::File(path.clone())).unwrap();
            let seen = read_all(&settled);
            assert_eq!(seen.len(), wav.len());
            assert_eq!(u32::from_le_bytes(seen[4..8].try_into().unwrap()), 36 + 6);
            assert_eq!(u32::from_le_bytes(seen[40..44].try_into().unwrap()), 6);
            assert_eq!(&seen[44..], &wav[44..]);
            assert_eq!(std::fs::read(&path).unwrap(), wav, "the file is untouched");

            // Reading from any offset sees the same view.
            let mut reader = settled.open().unwrap();
            reader.seek(SeekFrom::Start(41)).unwrap();
            let mut three = [0u8; 3];
            reader.read_exact(&mut three).unwrap();
            assert_eq!(three, [0, 0, 0]);
        }
    }

    #[test]
    fn a_wav_with_true_sizes_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.wav");
        std::fs::write(&path, streamed_wav(&[1, 2, 3, 4], 40, 4)).unwrap();
        let bytes = InputBytes::File(path);
        assert!(matches!(settle(&bytes).unwrap(), InputBytes::File(_)));
        assert!(streamed_data_chunk(b"OggS\0\0\0\0\0\0\0\0\0").is_none());
    }

    #[test]
    fn streamed_pcm_and_g711_recordings_open_to_every_sample() {
        use crate::input::audio::AudioFile;
        let dir = tempfile::tempdir().unwrap();
        let pcm: Vec<u8> = (0..8000i16).flat_map(|i| (i * 3).to_le_bytes()).collect();
        let mulaw: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
        for (name, wav, codec) in [
            ("pcm.wav", wav_with(1, 16, &pcm, 0, 0), "pcm_s16le"),
            (
                "ulaw.wav",
                wav_with(7, 8, &mulaw, u32::MAX, u32::MAX),
                "pcm_mulaw",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &wav).unwrap();
            let mut file = AudioFile::open(path.clone()).unwrap();
            assert_eq!(file.info.frames, 8000, "{name}");
            assert_eq!(file.info.codec, codec);
            assert!(matches!(&file.bytes, InputBytes::File(p) if *p == path));
            let (mut total, mut block) = (0, Vec::new());
            loop {
                let n = file.read(&mut block).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, 8000, "{name}: every sample decoded");
        }
    }
}
