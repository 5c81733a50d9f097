//! Opus CTI recordings in Ogg (RFC 7845): `symphonia` demuxes them (pages, packets, the
//! `OpusHead` identification header) but 0.5 has no Opus decoder, so libopus decodes them,
//! through the `opus` crate (linked against the system's libopus).
//!
//! Opus always decodes at 48 kHz, whatever rate was recorded, so the recording comes out at
//! 48 kHz. It is made sample-exact the way RFC 7845 §4 says: the header's *pre-skip* (the
//! encoder's look-ahead, 312 samples from libopus) is dropped from the front, and the end is
//! cut at the last page's granule position (the last packet decodes a whole frame past the
//! real end). So sample `n` here is sample `n` of what was recorded, which lip sync needs.
//!
//! The exact length is known at open without decoding: last granule position − first one −
//! pre-skip. Opening also walks every packet once without decoding, so damage is found there
//! as for the other formats: each packet's framing is checked by libopus and each must start
//! where the previous one ended (a page lost to corruption, which the demuxer skips, shows as
//! a jump in the granule positions); a file without its end-of-stream page is truncated.

use std::path::{Path, PathBuf};

use symphonia::core::codecs::{CODEC_TYPE_OPUS, CodecParameters};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatReader, Packet};

use super::audio::{AudioInfo, PcmSource, probe};
use super::bytes::InputBytes;
use crate::error::{MuxError, Result};

/// The rate Opus decodes at (RFC 7845 §4: granule positions count 48 kHz samples).
pub(super) const OPUS_RATE_HZ: u32 = 48_000;
/// The longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5760;
/// `OpusHead` up to and including the channel mapping family (RFC 7845 §5.1).
const HEAD_LEN: usize = 19;

/// What the identification header (`OpusHead`, RFC 7845 §5.1) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpusHead {
    /// 1 or 2 (channel mapping family 0 is all that is read).
    pub channels: u16,
    /// Decoded samples (48 kHz) to drop from the front: the encoder's look-ahead.
    pub pre_skip: u16,
    /// The rate the recorder captured at (informational: decoding is at 48 kHz).
    pub input_rate_hz: u32,
    /// Gain to apply on output, dB in Q7.8.
    pub output_gain_q8: i16,
}

impl OpusHead {
    /// Parses the header packet; the error is the reason it cannot be read.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEAD_LEN || &bytes[..8] != b"OpusHead" {
            return Err("not an Opus identification header (OpusHead)".into());
        }
        let version = bytes[8];
        if version >> 4 != 0 {
            return Err(format!("Ogg Opus version {version} is not supported"));
        }
        let channels = u16::from(bytes[9]);
        let family = bytes[18];
        if family != 0 {
            return Err(format!(
                "Opus channel mapping family {family} ({channels} channels) is not supported: \
                 only family 0 (mono or stereo) is"
            ));
        }
        if !(1..=2).contains(&channels) {
            return Err(format!(
                "Opus header says {channels} channels, impossible with channel mapping family 0"
            ));
        }
        Ok(Self {
            channels,
            pre_skip: u16::from_le_bytes([bytes[10], bytes[11]]),
            input_rate_hz: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            output_gain_q8: i16::from_le_bytes([bytes[16], bytes[17]]),
        })
    }
}

/// Where the recording lies among the decoded samples, in symphonia's timestamps (48 kHz
/// granule positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    head: OpusHead,
    track_id: u32,
    /// Timestamp of the first decoded sample.
    start_ts: u64,
    /// Samples the packets decode to, to the end of the last one.
    decoded: u64,
    /// Samples of the recording: `decoded` less the pre-skip and the end trim.
    frames: u64,
}

impl Layout {
    fn of(path: &Path, track_id: u32, params: &CodecParameters) -> Result<Self> {
        let bad = |reason: String| MuxError::input(path, reason);
        let head = params
            .extra_data
            .as_deref()
            .ok_or_else(|| bad("Ogg Opus without its identification header".into()))
            .and_then(|b| OpusHead::parse(b).map_err(bad))?;
        // symphonia reports the pre-skip as the delay, unless the first page's granule
        // position is below the samples on it; then it reports that shortfall instead.
        if params.delay != Some(u32::from(head.pre_skip)) {
            return Err(bad(
                "Ogg Opus whose first page decodes to more samples than its granule position \
                 (start trimming, or a damaged page) is not supported"
                    .into(),
            ));
        }
        // Set from the page flagged end-of-stream: `decoded` past the start, of which
        // `padding` lies beyond the last granule position (the end trim).
        let decoded = params.n_frames.ok_or_else(|| {
            bad(
                "truncated or damaged Ogg Opus: no end-of-stream page found, so its length is \
                 unknown"
                    .into(),
            )
        })?;
        let trim = u64::from(params.padding.unwrap_or(0));
        let frames = decoded
            .checked_sub(trim + u64::from(head.pre_skip))
            .filter(|&f| f > 0)
            .ok_or_else(|| bad("the recording holds no samples".into()))?;
        Ok(Self {
            head,
            track_id,
            start_ts: params.start_ts,
            decoded,
            frames,
        })
    }
}

/// Opens the Opus track of `format` (an Ogg reader, already probed), checks every packet, and
/// returns what it holds and a decoder for it.
///
/// # Errors
/// [`MuxError::Input`] for an unsupported header, a truncated file, or damaged pages or
/// packets.
pub(super) fn open(
    bytes: &InputBytes,
    mut format: Box<dyn FormatReader>,
) -> Result<(AudioInfo, OpusSource)> {
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec == CODEC_TYPE_OPUS)
        .ok_or_else(|| MuxError::input(&bytes.name(), "no Opus track"))?;
    let path = &bytes.name();
    let layout = Layout::of(path, track.id, &track.codec_params)?;
    tracing::debug!(
        path = %path.display(),
        pre_skip = layout.head.pre_skip,
        input_rate_hz = layout.head.input_rate_hz,
        frames = layout.frames,
        "Ogg Opus"
    );

    let mut scan = Packets::new(path, format.as_mut(), &layout);
    while scan.next()?.is_some() {}
    let found = scan.next_ts - layout.start_ts;
    if found != layout.decoded {
        return Err(MuxError::input(
            path,
            format!(
                "damaged Ogg Opus: the packets hold {found} samples, the pages say {}",
                layout.decoded
            ),
        ));
    }
    drop(format);

    let source = OpusSource::new(path, probe(bytes)?, layout)?;
    let info = AudioInfo {
        rate_hz: OPUS_RATE_HZ,
        channels: layout.head.channels,
        frames: layout.frames,
        codec: "opus".into(),
    };
    Ok((info, source))
}

/// Why an Ogg file symphonia cannot open or exposes no track for cannot be read, when it is
/// Opus with a header symphonia does not map (channel mapping families 2, 3, 255): `None`
/// otherwise.
pub(super) fn unsupported_head(bytes: &InputBytes) -> Option<MuxError> {
    // The first page holds only the header: 27 bytes, up to 255 lacing values, the packet.
    let page = bytes.head(27 + 255 + HEAD_LEN).ok()?;
    if page.len() < 27 || &page[..4] != b"OggS" {
        return None;
    }
    let packet = page.get(27 + usize::from(page[26])..)?;
    if !packet.starts_with(b"OpusHead") {
        return None;
    }
    OpusHead::parse(packet)
        .err()
        .map(|reason| MuxError::input(&bytes.name(), reason))
}

/// The Opus track's packets in order, each checked to be well-framed and to start where the
/// previous one ended.
struct Packets<'a> {
    path: &'a Path,
    format: &'a mut dyn FormatReader,
    track_id: u32,
    /// Where the next packet must start.
    next_ts: u64,
    /// Timestamp of the recording's first sample (after the pre-skip), for messages.
    origin: u64,
}

impl<'a> Packets<'a> {
    fn new(path: &'a Path, format: &'a mut dyn FormatReader, layout: &Layout) -> Self {
        Self {
            path,
            format,
            track_id: layout.track_id,
            next_ts: layout.start_ts,
            origin: layout.start_ts + u64::from(layout.head.pre_skip),
        }
    }

    /// The next packet and the samples it decodes to; `None` after the last.
    fn next(&mut self) -> Result<Option<(Packet, usize)>> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(None);
                }
                Err(SymphoniaError::ResetRequired) => {
                    return Err(MuxError::input(
                        self.path,
                        "chained Ogg (a second stream after the first) is not supported",
                    ));
                }
                Err(e) => return Err(self.damaged(format!("{e}"))),
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            if packet.ts != self.next_ts {
                let jump = packet.ts as i128 - self.next_ts as i128;
                return Err(self.damaged(format!(
                    "the granule positions jump by {jump} samples at {:.3} s (a lost or corrupt \
                     page)",
                    self.seconds()
                )));
            }
            let samples = opus::packet::parse(&packet.data)
                .and_then(|_| opus::packet::get_nb_samples(&packet.data, OPUS_RATE_HZ))
                .map_err(|e| {
                    self.damaged(format!("bad Opus packet at {:.3} s: {e}", self.seconds()))
                })?;
            self.next_ts += samples as u64;
            return Ok(Some((packet, samples)));
        }
    }

    /// Seconds into the recording of the next packet.
    fn seconds(&self) -> f64 {
        (self.next_ts as f64 - self.origin as f64) / f64::from(OPUS_RATE_HZ)
    }

    fn damaged(&self, reason: String) -> MuxError {
        MuxError::input(self.path, format!("damaged Ogg Opus: {reason}"))
    }
}

/// Decodes the recording: pre-skip dropped, end trimmed, interleaved `f32` at 48 kHz.
pub(super) struct OpusSource {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    layout: Layout,
    decoder: opus::Decoder,
    /// Where the next packet must start (see [`Packets`]).
    next_ts: u64,
    /// Decoded samples still to drop from the front.
    skip: u64,
    /// Samples of the recording still to come.
    remaining: u64,
    /// One packet, decoded.
    pcm: Vec<f32>,
}

impl OpusSource {
    fn new(path: &Path, format: Box<dyn FormatReader>, layout: Layout) -> Result<Self> {
        let channels = match layout.head.channels {
            1 => opus::Channels::Mono,
            _ => opus::Channels::Stereo,
        };
        let libopus = |e: opus::Error| MuxError::input(path, format!("libopus: {e}"));
        let mut decoder = opus::Decoder::new(OPUS_RATE_HZ, channels).map_err(libopus)?;
        if layout.head.output_gain_q8 != 0 {
            decoder
                .set_gain(i32::from(layout.head.output_gain_q8))
                .map_err(libopus)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            decoder,
            next_ts: layout.start_ts,
            skip: u64::from(layout.head.pre_skip),
            remaining: layout.frames,
            pcm: vec![0.0; MAX_PACKET_SAMPLES * usize::from(layout.head.channels)],
            layout,
        })
    }
}

impl PcmSource for OpusSource {
    fn read(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        let channels = usize::from(self.layout.head.channels);
        while self.remaining > 0 {
            let mut packets = Packets {
                path: &self.path,
                format: self.format.as_mut(),
                track_id: self.layout.track_id,
                next_ts: self.next_ts,
                origin: self.layout.start_ts + u64::from(self.layout.head.pre_skip),
            };
            let next = packets.next()?;
            let at = packets.seconds();
            self.next_ts = packets.next_ts;
            let Some((packet, samples)) = next else {
                return Err(MuxError::input(
                    &self.path,
                    format!(
                        "damaged Ogg Opus: it ends {} samples before its last page says",
                        self.remaining
                    ),
                ));
            };
            let decoded = self
                .decoder
                .decode_float(&packet.data, &mut self.pcm, false)
                .map_err(|e| {
                    MuxError::input(
                        &self.path,
                        format!("damaged Ogg Opus: packet at {at:.3} s: {e}"),
                    )
                })?;
            if decoded != samples {
                return Err(MuxError::input(
                    &self.path,
                    format!(
                        "damaged Ogg Opus: packet at {at:.3} s decoded to {decoded} samples, \
                         its header says {samples}"
                    ),
                ));
            }
            let skip = self.skip.min(decoded as u64) as usize;
            self.skip -= skip as u64;
            let take = ((decoded - skip) as u64).min(self.remaining) as usize;
            self.remaining -= take as u64;
            if take > 0 {
                out.extend_from_slice(&self.pcm[skip * channels..(skip + take) * channels]);
                return Ok(take);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(channels: u8, pre_skip: u16, family: u8) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.push(1);
        h.push(channels);
        h.extend_from_slice(&pre_skip.to_le_bytes());
        h.extend_from_slice(&16_000u32.to_le_bytes());
        h.extend_from_slice(&(-256i16).to_le_bytes());
        h.push(family);
        h
    }

    #[test]
    fn the_identification_header_is_read() {
        assert_eq!(
            OpusHead::parse(&head(2, 312, 0)),
            Ok(OpusHead {
                channels: 2,
                pre_skip: 312,
                input_rate_hz: 16_000,
                output_gain_q8: -256,
            })
        );
    }

    #[test]
    fn only_mono_and_stereo_family_zero_is_accepted() {
        for (channels, family) in [(2, 1), (6, 1), (2, 255), (4, 2)] {
            let reason = OpusHead::parse(&head(channels, 312, family)).unwrap_err();
            assert!(
                reason.contains(&format!("channel mapping family {family}")),
                "{reason}"
            );
        }
        assert!(OpusHead::parse(&head(3, 312, 0)).is_err());
        assert!(OpusHead::parse(&head(0, 312, 0)).is_err());
        assert!(OpusHead::parse(&head(1, 312, 0)[..18]).is_err());
        let mut v2 = head(1, 312, 0);
        v2[8] = 0x10;
        assert!(OpusHead::parse(&v2).unwrap_err().contains("version"));
    }
}
