//! What every CTI byte stream passes through on its way into a seal: counted against the
//! size limit, hashed (for the signed digest), and its leading bytes recognised as a format
//! the muxer reads ([`sniff`]). Decoding is the muxer's job.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, ReadBuf};

use crate::error::IngestError;

/// How many leading bytes [`sniff`] looks at (fewer if the body is shorter).
pub const SNIFF_LEN: usize = 64 * 1024;

/// An audio container or stream the muxer reads, as recognised by its leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// RIFF/WAVE (PCM or G.711).
    Wav,
    /// Native FLAC.
    Flac,
    /// Ogg (Vorbis or Opus).
    Ogg,
    /// MP3 (ID3 tag or an MPEG audio frame).
    Mp3,
    /// AAC in ADTS frames.
    Aac,
    /// MPEG-4 audio (`ftyp`).
    M4a,
}

/// Why an upload's leading bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniffError {
    /// Not a format the muxer reads (415).
    Unsupported(String),
    /// The format is recognised but its header is damaged or cut short (400).
    Corrupt(String),
}

/// Recognises an upload from its first bytes (up to [`SNIFF_LEN`]; `complete` says whether
/// `head` is the whole body). WAV headers are walked chunk by chunk up to `data`.
///
/// # Errors
/// [`SniffError`] with a one-line reason.
pub fn sniff(head: &[u8], complete: bool) -> Result<AudioFormat, SniffError> {
    let unsupported = || {
        SniffError::Unsupported(
            "not a recognised audio format (expected WAV, FLAC, Ogg, MP3, AAC or M4A)".into(),
        )
    };
    if head.len() < 4 {
        return Err(if head.is_empty() {
            SniffError::Corrupt("the recording is empty".into())
        } else {
            unsupported()
        });
    }
    match &head[..4] {
        b"RIFF" => return sniff_wav(head, complete).map(|()| AudioFormat::Wav),
        b"fLaC" => return Ok(AudioFormat::Flac),
        b"OggS" => return Ok(AudioFormat::Ogg),
        _ => {}
    }
    if head.starts_with(b"ID3") {
        return Ok(AudioFormat::Mp3);
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return Ok(AudioFormat::M4a);
    }
    let (b0, b1, b2) = (head[0], head[1], head[2]);
    if b0 == 0xFF && b1 & 0xF6 == 0xF0 {
        // ADTS: 12-bit sync, layer 00; sampling frequency index 0..=12.
        if (b2 >> 2) & 0x0F <= 12 {
            return Ok(AudioFormat::Aac);
        }
        return Err(SniffError::Corrupt(
            "corrupt AAC (ADTS) header: bad sampling frequency index".into(),
        ));
    }
    if b0 == 0xFF && b1 & 0xE0 == 0xE0 {
        let version = (b1 >> 3) & 0x03;
        let layer = (b1 >> 1) & 0x03;
        let bitrate = b2 >> 4;
        let rate = (b2 >> 2) & 0x03;
        if version != 1 && layer != 0 && bitrate != 0x0F && rate != 3 {
            return Ok(AudioFormat::Mp3);
        }
        return Err(SniffError::Corrupt(
            "corrupt MPEG audio frame header".into(),
        ));
    }
    Err(unsupported())
}

/// The RIFF size a WAV written as a stream leaves for "not known yet" (besides 0xFFFFFFFF).
const STREAMED_SIZE_ZERO: u32 = 0;

fn sniff_wav(head: &[u8], complete: bool) -> Result<(), SniffError> {
    let corrupt = |why: &str| Err(SniffError::Corrupt(format!("corrupt WAV header: {why}")));
    if head.len() < 12 {
        return corrupt("shorter than the RIFF header");
    }
    if &head[8..12] != b"WAVE" {
        return Err(SniffError::Unsupported(
            "a RIFF file that is not WAVE audio".into(),
        ));
    }
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    // A recorder writing while the call runs does not know the sizes yet: it leaves 0 or
    // 0xFFFFFFFF there (the muxer then reads the data chunk to the end of the recording).
    let riff_size = u32_at(4);
    if riff_size < 4 && riff_size != STREAMED_SIZE_ZERO {
        return corrupt("the RIFF size is too small");
    }
    let mut at = 12usize;
    let mut fmt_seen = false;
    loop {
        if at + 8 > head.len() {
            if !complete && fmt_seen {
                // The chunks before `data` go beyond what we look at; the muxer checks the rest.
                return Ok(());
            }
            return corrupt(if fmt_seen {
                "cut short before the data chunk"
            } else {
                "cut short before the fmt chunk"
            });
        }
        let id = &head[at..at + 4];
        let size = u32_at(at + 4) as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                if size < 16 {
                    return corrupt("the fmt chunk is shorter than 16 bytes");
                }
                if body + 16 > head.len() {
                    return corrupt("the fmt chunk is cut short");
                }
                let (tag, channels, rate, align) = (
                    u16_at(body),
                    u16_at(body + 2),
                    u32_at(body + 4),
                    u16_at(body + 12),
                );
                if tag == 0 {
                    return corrupt("format tag 0");
                }
                if channels == 0 {
                    return corrupt("0 channels");
                }
                if rate == 0 {
                    return corrupt("sample rate 0");
                }
                if align == 0 {
                    return corrupt("block alignment 0");
                }
                fmt_seen = true;
            }
            b"data" => {
                if !fmt_seen {
                    return corrupt("the data chunk comes before the fmt chunk");
                }
                return Ok(());
            }
            _ => {}
        }
        at = body.saturating_add(size).saturating_add(size & 1);
    }
}

/// Which part of a recording a stream is, for recognising its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Span {
    /// The whole recording: its head is recognised, and it may be shorter than [`SNIFF_LEN`].
    Whole,
    /// The start of a recording that continues in later parts: its head is recognised.
    Leading,
    /// A later part: its bytes are not looked at.
    Later,
}

/// Counts, hashes and recognises a stream fed to it piece by piece.
pub(super) struct BodyCheck {
    limit: u64,
    bytes: u64,
    hasher: Sha256,
    span: Span,
    head: Vec<u8>,
    format: Option<AudioFormat>,
}

impl BodyCheck {
    /// A check allowing up to `limit` bytes.
    pub(super) fn new(limit: u64, span: Span) -> Self {
        Self {
            limit,
            bytes: 0,
            hasher: Sha256::new(),
            span,
            head: Vec::new(),
            format: None,
        }
    }

    /// Bytes fed so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The format recognised, once it is.
    pub(super) fn format(&self) -> Option<AudioFormat> {
        self.format
    }

    /// Takes the next piece.
    ///
    /// # Errors
    /// Over the limit (413), or a head that is not a format the muxer reads (415, 400).
    pub(super) fn feed(&mut self, piece: &[u8]) -> Result<(), IngestError> {
        self.bytes += piece.len() as u64;
        if self.bytes > self.limit {
            return Err(IngestError::PayloadTooLarge(format!(
                "the recording is larger than the limit of {} bytes",
                self.limit
            )));
        }
        self.hasher.update(piece);
        if self.span != Span::Later && self.format.is_none() {
            let take = piece.len().min(SNIFF_LEN - self.head.len());
            self.head.extend_from_slice(&piece[..take]);
            if self.head.len() >= SNIFF_LEN {
                self.recognise(false)?;
            }
        }
        Ok(())
    }

    /// The stream ended: recognises a short head and checks the digest against `expected`.
    ///
    /// # Errors
    /// A head not recognised, or another digest (400, with `mismatch` as the reason).
    pub(super) fn finish(
        &mut self,
        expected: &[u8; 32],
        mismatch: &str,
    ) -> Result<(), IngestError> {
        if bool::from(self.digest()?.ct_eq(expected)) {
            Ok(())
        } else {
            Err(IngestError::BadRequest(mismatch.to_owned()))
        }
    }

    /// The stream ended: recognises a short head and gives the digest of what was fed.
    ///
    /// # Errors
    /// A head not recognised.
    pub(super) fn digest(&mut self) -> Result<[u8; 32], IngestError> {
        if self.span != Span::Later && self.format.is_none() {
            self.recognise(self.span == Span::Whole)?;
        }
        Ok(std::mem::take(&mut self.hasher).finalize().into())
    }

    fn recognise(&mut self, complete: bool) -> Result<(), IngestError> {
        match sniff(&self.head, complete) {
            Ok(format) => {
                self.format = Some(format);
                self.head = Vec::new();
                Ok(())
            }
            Err(SniffError::Unsupported(why)) => Err(IngestError::UnsupportedMedia(why)),
            Err(SniffError::Corrupt(why)) => Err(IngestError::BadRequest(why)),
        }
    }
}

/// A request body as it streams into the seal, through a [`BodyCheck`] against the signed
/// digest. A refusal is kept in `rejected` and surfaces as a read error, which makes the
/// vault abort the sealed upload.
pub(super) struct Inspected<R> {
    inner: R,
    pub(super) check: BodyCheck,
    signed_digest: [u8; 32],
    pub(super) rejected: Option<IngestError>,
    ended: bool,
}

impl<R> Inspected<R> {
    pub(super) fn new(inner: R, check: BodyCheck, signed_digest: [u8; 32]) -> Self {
        Self {
            inner,
            check,
            signed_digest,
            rejected: None,
            ended: false,
        }
    }

    fn reject(&mut self, error: IngestError) -> io::Error {
        let e = io::Error::other(error.to_string());
        self.rejected = Some(error);
        e
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Inspected<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.rejected.is_some() {
            return Poll::Ready(Err(io::Error::other("upload refused")));
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let new = &buf.filled()[before..];
        let checked = if new.is_empty() {
            this.ended = true;
            this.check.finish(
                &this.signed_digest,
                "the body does not match its signed SHA-256 (altered in transit?)",
            )
        } else {
            this.check.feed(new)
        };
        Poll::Ready(checked.map_err(|e| this.reject(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_header(channels: u16, rate: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&40u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        h.extend_from_slice(&(2 * channels).to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&[0, 0, 1, 0]);
        h
    }

    #[test]
    fn sniff_recognises_each_format() {
        assert_eq!(sniff(&wav_header(1, 8000), true), Ok(AudioFormat::Wav));
        assert_eq!(sniff(b"fLaC\0\0\0\x22", true), Ok(AudioFormat::Flac));
        assert_eq!(sniff(b"OggS\0\x02", true), Ok(AudioFormat::Ogg));
        assert_eq!(sniff(b"ID3\x04\0\0", true), Ok(AudioFormat::Mp3));
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64], true), Ok(AudioFormat::Mp3));
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80], true), Ok(AudioFormat::Aac));
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A ", true), Ok(AudioFormat::M4a));
    }

    #[test]
    fn sniff_takes_a_wav_written_as_a_stream() {
        let mut wav = wav_header(1, 8000);
        wav[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(sniff(&wav, true), Ok(AudioFormat::Wav));
        wav[4..8].copy_from_slice(&0u32.to_le_bytes());
        wav[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(sniff(&wav[..44], false), Ok(AudioFormat::Wav));
        wav[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(sniff(&wav, true), Err(SniffError::Corrupt(_))));
    }

    #[test]
    fn a_check_counts_hashes_and_recognises() {
        let wav = wav_header(1, 8000);
        let digest: [u8; 32] = Sha256::digest(&wav).into();
        let mut check = BodyCheck::new(1 << 20, Span::Whole);
        for piece in wav.chunks(5) {
            check.feed(piece).unwrap();
        }
        check.finish(&digest, "mismatch").unwrap();
        assert_eq!(check.format(), Some(AudioFormat::Wav));
        assert_eq!(check.bytes(), wav.len() as u64);

        let mut later = BodyCheck::new(1 << 20, Span::Later);
        later.feed(b"not a header at all").unwrap();
        assert!(later.finish(&digest, "mismatch").is_err());
        let mut small = BodyCheck::new(10, Span::Later);
        assert!(matches!(
            small.feed(&wav),
            Err(IngestError::PayloadTooLarge(_))
        ));
        let mut garbage = BodyCheck::new(1 << 20, Span::Leading);
        garbage.feed(b"hello, not audio").unwrap();
        assert!(matches!(
            garbage.finish(&[0; 32], "mismatch"),
            Err(IngestError::UnsupportedMedia(_))
        ));
    }

    #[test]
    fn sniff_refuses_garbage_and_damaged_wav() {
        assert!(matches!(
            sniff(b"hello, not audio", true),
            Err(SniffError::Unsupported(_))
        ));
        assert!(matches!(
            sniff(b"RIFF\x10\0\0\0AVI ", true),
            Err(SniffError::Unsupported(_))
        ));
        let wav = wav_header(1, 8000);
        assert!(matches!(
            sniff(&wav[..30], true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(
            sniff(&wav[..36], true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(
            sniff(&wav_header(0, 8000), true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(
            sniff(&wav_header(1, 0), true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(sniff(b"", true), Err(SniffError::Corrupt(_))));
    }
}
