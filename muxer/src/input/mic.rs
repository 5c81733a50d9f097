//! The agent's microphone reference track as a recording [`super::audio::AudioFile`] reads.
//!
//! On the wire (`docs/PROTOCOL.md` §2) each frame of the `mic_reference` track is one raw Opus
//! packet, mono, stamped with the capture time of the first sample it decodes to. Here the
//! track becomes a 16 kHz mono 16-bit PCM WAV whose sample `n` was captured `n / 16 000` s
//! after [`MicReference::start`] — made **in memory as it is read**: the Opus packets are kept
//! (opened, in one buffer) and decoded again on every pass, so no plaintext reaches a disk
//! and the PCM is never held whole.
//!
//! * **Placement.** A packet follows the previous one while its timestamp agrees with the
//!   samples laid so far. A jump of more than 10 ms (lost packets, which the agent flags as a
//!   gap, or a pause) puts the packet at its own time: silence before it, or, backwards, the
//!   overlap dropped. A slow disagreement (the microphone's clock against the agent's, tens of
//!   ppm) is followed without reacting to each stamp's jitter: once the disagreement averaged
//!   over about a third of a second reaches 0.5 ms, the packet is put at its own time
//!   (silence inserted, or audio dropped). So every sample lies within about a millisecond of
//!   its capture time however long the call.
//! * **Memory.** The packets and where each goes: at the agent's 20 kbit/s, about 9 MB of
//!   Opus and 4 MB of bookkeeping an hour. The PCM (115 MB an hour at 16 kHz) is decoded a
//!   packet at a time; a pass costs one decoding of the track (an hour: a few seconds).
//! * **Checks.** Every packet's framing is checked by libopus when the track is read, and a
//!   track that is not Opus is refused then, naming the packet. Reading cannot fail after
//!   that: a packet libopus still refused to decode would read as silence.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use super::bytes::{ByteSource, InputBytes, InputReader};
use super::frames::RawFrame;
use crate::align::ReferenceInput;
use crate::error::{MuxError, Result};
use crate::timeline::UtcNanos;

/// The rate the reference is decoded at: wideband speech, all the alignment looks at.
pub const RATE_HZ: u32 = 16_000;
/// A timestamp this far from where the packet would follow on (10 ms) is a jump.
const JUMP_SAMPLES: i64 = RATE_HZ as i64 / 100;
/// An averaged disagreement this large (0.5 ms) is corrected.
const SLIP_SAMPLES: f64 = RATE_HZ as f64 / 2000.0;
/// Weight of each packet in the averaged disagreement: about a third of a second of 20 ms
/// packets, enough to see through the stamps' jitter and short enough to lag little.
const SMOOTHING: f64 = 1.0 / 16.0;
/// The longest Opus packet: 120 ms.
const MAX_PACKET_SAMPLES: usize = RATE_HZ as usize * 120 / 1000;
/// RIFF header, `fmt ` chunk and `data` chunk header.
const HEADER_LEN: u64 = 44;
/// A WAV counts its bytes in 32 bits: about 37 hours of 16-bit mono at 16 kHz.
const MAX_FRAMES: u64 = (u32::MAX as u64 - (HEADER_LEN - 8)) / 2;
/// Silence is laid in blocks of at most this many samples.
const SILENCE_BLOCK: u64 = 4096;

/// The microphone reference track of one session, ready to be read as a WAV.
#[derive(Clone)]
pub struct MicReference {
    label: String,
    start: UtcNanos,
    track: Arc<Packets>,
}

impl std::fmt::Debug for MicReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicReference")
            .field("label", &self.label)
            .field("start", &self.start)
            .field("packets", &self.track.placed.len())
            .field("frames", &self.track.frames)
            .finish()
    }
}

/// The packets, in one buffer, and where each goes.
struct Packets {
    opus: Vec<u8>,
    placed: Vec<Placed>,
    /// Samples in the recording.
    frames: u64,
    /// Jumps and slips: how often placement left the packets' own sequence.
    jumps: usize,
    slips: usize,
}

/// One packet's bytes and place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placed {
    /// The recording's sample its first decoded sample is.
    at: u64,
    /// Where its bytes lie in [`Packets::opus`].
    offset: usize,
    len: u32,
    /// Samples it decodes to.
    samples: u32,
    /// The decoder starts afresh here (after a jump: what came before is not its past).
    fresh: bool,
}

impl MicReference {
    /// Reads the track's packets from `frames`, stamped in UTC nanoseconds on the timeline
    /// (pause markers already left out, as [`crate::SealedTrack`] does); `label` names it in
    /// errors and the manifest. `None` when the track holds no packet.
    ///
    /// # Errors
    /// [`MuxError::Input`] when a frame cannot be read (a damaged log, a frame that does not
    /// open under the key), a packet is not Opus, or the track is longer than a WAV holds.
    pub fn read(
        label: impl Into<String>,
        frames: impl Iterator<Item = Result<RawFrame>>,
    ) -> Result<Option<Self>> {
        let label = label.into();
        let bad = |reason: String| MuxError::input(std::path::Path::new(&label), reason);
        let mut opus = Vec::new();
        let mut placed = Vec::new();
        let mut placer: Option<Placer> = None;
        for (n, frame) in frames.enumerate() {
            let frame = frame?;
            let placer = placer.get_or_insert_with(|| Placer::new(frame.pts_ns));
            let seconds = (frame.pts_ns - placer.first_ns) as f64 / 1e9;
            let samples = opus::packet::parse(&frame.data)
                .and_then(|_| opus::packet::get_nb_samples(&frame.data, RATE_HZ))
                .map_err(|e| {
                    bad(format!(
                        "packet {} ({seconds:.3} s in) is not an Opus packet: {e}",
                        n + 1
                    ))
                })?;
            let len = u32::try_from(frame.data.len())
                .map_err(|_| bad(format!("packet {} is too large", n + 1)))?;
            let (at, fresh) = placer.place(frame.pts_ns, samples as u64);
            if placer.next > MAX_FRAMES {
                return Err(bad(format!(
                    "the reference runs past {} hours, longer than it can be read",
                    MAX_FRAMES / u64::from(RATE_HZ) / 3600
                )));
            }
            placed.push(Placed {
                at,
                offset: opus.len(),
                len,
                samples: samples as u32,
                fresh,
            });
            opus.extend_from_slice(&frame.data);
        }
        let Some(placer) = placer else {
            return Ok(None);
        };
        opus.shrink_to_fit();
        placed.shrink_to_fit();
        tracing::debug!(
            label,
            packets = placed.len(),
            frames = placer.next,
            jumps = placer.jumps,
            slips = placer.slips,
            "microphone reference read"
        );
        Ok(Some(Self {
            label,
            start: UtcNanos(placer.first_ns),
            track: Arc::new(Packets {
                opus,
                placed,
                frames: placer.next,
                jumps: placer.jumps,
                slips: placer.slips,
            }),
        }))
    }

    /// When its first sample was captured, on the timeline.
    #[must_use]
    pub fn start(&self) -> UtcNanos {
        self.start
    }

    /// Samples in the recording (at [`RATE_HZ`]).
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.track.frames
    }

    /// Opus packets read.
    #[must_use]
    pub fn packets(&self) -> usize {
        self.track.placed.len()
    }

    /// How often placement left the packets' own sequence: jumps (gaps, pauses) and slips
    /// (clock corrections).
    #[must_use]
    pub fn corrections(&self) -> (usize, usize) {
        (self.track.jumps, self.track.slips)
    }

    /// As the muxer's reference input.
    #[must_use]
    pub fn into_input(self) -> ReferenceInput {
        let start = self.start;
        ReferenceInput {
            bytes: InputBytes::Source(Arc::new(self)),
            start,
        }
    }
}

impl ByteSource for MicReference {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn open(&self) -> io::Result<Box<dyn InputReader>> {
        Ok(Box::new(WavStream::new(self.track.clone())?))
    }
}

/// Where each packet goes (see the module's notes).
struct Placer {
    first_ns: i64,
    /// Samples laid so far.
    next: u64,
    /// The disagreement between timestamps and samples laid, averaged.
    drift: f64,
    jumps: usize,
    slips: usize,
}

impl Placer {
    fn new(first_ns: i64) -> Self {
        Self {
            first_ns,
            next: 0,
            drift: 0.0,
            jumps: 0,
            slips: 0,
        }
    }

    /// The sample a packet captured at `pts_ns` starts at, and whether the decoder starts
    /// afresh there.
    fn place(&mut self, pts_ns: i64, samples: u64) -> (u64, bool) {
        let since = i128::from(pts_ns) - i128::from(self.first_ns);
        let target = (since * i128::from(RATE_HZ) + 500_000_000).div_euclid(1_000_000_000);
        let target = i64::try_from(target).unwrap_or(i64::MAX);
        let next = i64::try_from(self.next).unwrap_or(i64::MAX);
        let error = target.saturating_sub(next);
        let (at, fresh) = if self.next > 0 && error.abs() > JUMP_SAMPLES {
            self.drift = 0.0;
            self.jumps += 1;
            (target.max(0), true)
        } else {
            self.drift += (error as f64 - self.drift) * SMOOTHING;
            if self.drift.abs() >= SLIP_SAMPLES {
                self.drift = 0.0;
                self.slips += 1;
                (target.max(0), false)
            } else {
                (next, false)
            }
        };
        let at = at as u64;
        self.next = self.next.max(at + samples);
        (at, fresh)
    }
}

/// The WAV, decoded as it is read. Reading on from where it is costs decoding what lies
/// between; reading backwards starts again from the first packet.
struct WavStream {
    track: Arc<Packets>,
    header: [u8; HEADER_LEN as usize],
    /// The reader's position, bytes.
    pos: u64,
    /// Behind a mutex only to be `Sync` (libopus's state is not shared).
    decoder: Mutex<opus::Decoder>,
    /// The next packet to decode.
    next_packet: usize,
    /// Samples decoded so far.
    rendered: u64,
    /// The last block made, as bytes, and its offset in the file.
    block: Vec<u8>,
    block_at: u64,
    pcm: Vec<i16>,
}

impl WavStream {
    fn new(track: Arc<Packets>) -> io::Result<Self> {
        Ok(Self {
            header: wav_header(track.frames),
            track,
            pos: 0,
            decoder: Mutex::new(new_decoder()?),
            next_packet: 0,
            rendered: 0,
            block: Vec::new(),
            block_at: HEADER_LEN,
            pcm: vec![0; MAX_PACKET_SAMPLES],
        })
    }

    fn len(&self) -> u64 {
        HEADER_LEN + self.track.frames * 2
    }

    /// Back to the first packet.
    fn restart(&mut self) -> io::Result<()> {
        *self.decoder.get_mut().expect("not poisoned") = new_decoder()?;
        self.next_packet = 0;
        self.rendered = 0;
        self.block.clear();
        self.block_at = HEADER_LEN;
        Ok(())
    }

    /// Makes the next block of samples: silence up to the next packet, or the next packet's
    /// samples not laid yet. `false` at the end.
    fn render_next(&mut self) -> bool {
        self.block_at += self.block.len() as u64;
        self.block.clear();
        while self.block.is_empty() {
            let Some(&packet) = self.track.placed.get(self.next_packet) else {
                return false;
            };
            if packet.at > self.rendered {
                let n = (packet.at - self.rendered).min(SILENCE_BLOCK);
                self.block.resize(n as usize * 2, 0);
                self.rendered += n;
                break;
            }
            self.next_packet += 1;
            let samples = packet.samples as usize;
            let data = &self.track.opus[packet.offset..packet.offset + packet.len as usize];
            let decoder = self.decoder.get_mut().expect("not poisoned");
            if packet.fresh {
                let _ = decoder.reset_state();
            }
            match decoder.decode(data, &mut self.pcm, false) {
                Ok(decoded) => self.pcm[decoded.min(samples)..samples].fill(0),
                Err(e) => {
                    tracing::warn!(error = %e, at = packet.at, "a reference packet read as silence");
                    self.pcm[..samples].fill(0);
                }
            }
            let skip = (self.rendered - packet.at).min(samples as u64) as usize;
            self.block
                .extend(self.pcm[skip..samples].iter().flat_map(|s| s.to_le_bytes()));
            self.rendered += (samples - skip) as u64;
        }
        true
    }
}

impl Read for WavStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.len() {
            return Ok(0);
        }
        if self.pos < HEADER_LEN {
            let from = &self.header[self.pos as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos < self.block_at {
            self.restart()?;
        }
        while self.pos >= self.block_at + self.block.len() as u64 {
            if !self.render_next() {
                return Ok(0);
            }
        }
        let from = &self.block[(self.pos - self.block_at) as usize..];
        let n = from.len().min(buf.len());
        buf[..n].copy_from_slice(&from[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for WavStream {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => i128::from(self.len()) + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(target)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

fn new_decoder() -> io::Result<opus::Decoder> {
    opus::Decoder::new(RATE_HZ, opus::Channels::Mono)
        .map_err(|e| io::Error::other(format!("libopus: {e}")))
}

/// A canonical 44-byte PCM WAV header: mono, 16-bit, [`RATE_HZ`], `frames` samples.
fn wav_header(frames: u64) -> [u8; HEADER_LEN as usize] {
    let data_len = u32::try_from(frames * 2).expect("bounded by MAX_FRAMES");
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(data_len + 36).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&RATE_HZ.to_le_bytes());
    h[28..32].copy_from_slice(&(RATE_HZ * 2).to_le_bytes()); // bytes per second
    h[32..34].copy_from_slice(&2u16.to_le_bytes()); // block alignment
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::audio::AudioFile;

    const PACKET_NS: i64 = 20_000_000;
    const T0: i64 = 1_700_000_000_000_000_000;

    /// 20 ms packets of a 440 Hz tone (amplitude 0.5), encoded with libopus at 16 kHz,
    /// stamped as the agent does from `T0`.
    fn tone_packets(count: usize) -> Vec<RawFrame> {
        let mut encoder =
            opus::Encoder::new(RATE_HZ, opus::Channels::Mono, opus::Application::Audio).unwrap();
        encoder.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
        let lookahead = i64::from(encoder.get_lookahead().unwrap());
        (0..count)
            .map(|k| {
                let pcm: Vec<i16> = (0..320)
                    .map(|i| {
                        let t = (k * 320 + i) as f64 / f64::from(RATE_HZ);
                        ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 16_000.0) as i16
                    })
                    .collect();
                RawFrame {
                    pts_ns: T0 + k as i64 * PACKET_NS - lookahead * 1_000_000_000 / 16_000,
                    keyframe: true,
                    data: encoder.encode_vec(&pcm, 4000).unwrap(),
                }
            })
            .collect()
    }

    fn reference(frames: Vec<RawFrame>) -> MicReference {
        MicReference::read("session test/mic_reference", frames.into_iter().map(Ok))
            .unwrap()
            .unwrap()
    }

    fn pcm(reference: &MicReference) -> Vec<f32> {
        let mut file = AudioFile::open(InputBytes::Source(Arc::new(reference.clone()))).unwrap();
        assert_eq!(
            (file.info.rate_hz, file.info.channels, file.info.frames),
            (RATE_HZ, 1, reference.frames())
        );
        let (mut all, mut block) = (Vec::new(), Vec::new());
        while file.read(&mut block).unwrap() > 0 {
            all.extend_from_slice(&block);
        }
        all
    }

    fn rms(samples: &[f32]) -> f32 {
        (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
    }

    #[test]
    fn packets_in_sequence_decode_back_to_back() {
        let r = reference(tone_packets(50));
        assert_eq!((r.packets(), r.frames()), (50, 50 * 320));
        assert_eq!(r.corrections(), (0, 0));
        let pcm = pcm(&r);
        assert_eq!(pcm.len(), 16_000);
        // The tone is there from the end of the encoder's look-ahead on (0.5 ≈ −9 dBFS peak:
        // an RMS near 0.35).
        let level = rms(&pcm[800..]);
        assert!((0.3..0.4).contains(&level), "rms {level}");
    }

    #[test]
    fn a_gap_is_silence_of_its_length_and_a_slow_drift_is_followed() {
        let mut frames = tone_packets(100);
        // Packets 40..60 lost (400 ms): the gap is silence, the rest stays on its time.
        frames.drain(40..60);
        let r = reference(frames);
        assert_eq!(r.corrections().0, 1, "one jump");
        assert_eq!(r.frames(), 100 * 320);
        let pcm = pcm(&r);
        assert!(
            rms(&pcm[40 * 320 + 200..60 * 320]) < 1e-4,
            "silence in the gap"
        );
        assert!(rms(&pcm[62 * 320..]) > 0.3, "the tone after it");

        // A microphone clock 1000 ppm fast: 50 s of packets are stamped 50 ms short. The
        // samples follow the stamps, never more than about a millisecond away.
        let mut frames = tone_packets(2500);
        for (k, frame) in frames.iter_mut().enumerate() {
            frame.pts_ns -= (k as i64 * PACKET_NS) / 1000;
        }
        let r = reference(frames);
        let (jumps, slips) = r.corrections();
        assert_eq!(jumps, 0);
        assert!(slips > 10, "{slips} slips");
        let expected = 2500 * 320 - 800;
        assert!(
            (r.frames() as i64 - expected).abs() <= 32,
            "{} samples for {expected}",
            r.frames()
        );
    }

    #[test]
    fn the_wav_reads_the_same_forwards_after_any_seek() {
        let r = reference(tone_packets(30));
        let mut whole = Vec::new();
        r.open().unwrap().read_to_end(&mut whole).unwrap();
        assert_eq!(whole.len() as u64, HEADER_LEN + 30 * 640);
        let mut reader = r.open().unwrap();
        for at in [5000u64, 100, 9000, 44, 0, 12_001] {
            reader.seek(SeekFrom::Start(at)).unwrap();
            let mut part = vec![0u8; 777];
            reader.read_exact(&mut part).unwrap();
            assert_eq!(part, whole[at as usize..at as usize + 777], "at {at}");
        }
        assert_eq!(reader.seek(SeekFrom::End(0)).unwrap(), whole.len() as u64);
        assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0);
    }

    #[test]
    fn a_track_that_is_not_opus_is_refused_naming_the_packet() {
        let mut frames = tone_packets(5);
        // TOC code 3 with a frame count of 0: no Opus packet looks like that.
        frames[3].data = vec![0x03, 0x00];
        let error = MicReference::read("session test/mic_reference", frames.into_iter().map(Ok))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "session test/mic_reference: packet 4 (0.060 s in) is not an Opus packet"
            ),
            "{error}"
        );
        assert!(
            MicReference::read("x", std::iter::empty())
                .unwrap()
                .is_none()
        );
    }
}
