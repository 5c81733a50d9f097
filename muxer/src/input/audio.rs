//! CTI recordings: PCM WAV read with `hound`; G.711 (µ-law, A-law) WAV by [`super::g711`];
//! MP3, FLAC, Ogg Vorbis and AAC decoded with `symphonia`; Ogg Opus demuxed by `symphonia` and
//! decoded by libopus (`super::opus`). Every format comes out the same way — blocks of
//! interleaved `f32` frames, streamed, so a long call is never held in memory — with the exact
//! number of frames known before the mux starts (drift is measured from it).

use std::io::BufReader;
use std::path::PathBuf;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_OPUS, Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Track};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::bytes::{InputBytes, InputReader, MediaBytes};
use super::{g711, opus};
use crate::error::{MuxError, Result};

/// What a CTI recording holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioInfo {
    /// Nominal sample rate (the recorder's clock may drift from it).
    pub rate_hz: u32,
    /// Channels (stereo CTI often carries customer and operator apart: both are kept).
    pub channels: u16,
    /// Frames (samples per channel) in the file.
    pub frames: u64,
    /// Codec as read (`pcm_s16le`, `pcm_mulaw`, `mp3`, …).
    pub codec: String,
}

/// A CTI recording opened for streaming.
pub struct AudioFile {
    /// Where it is read from.
    pub bytes: InputBytes,
    /// What it holds.
    pub info: AudioInfo,
    source: Box<dyn PcmSource>,
}

/// Decoded audio, a block at a time.
pub(super) trait PcmSource: Send {
    /// Appends up to a block of interleaved frames to `out`; returns how many (0 at the end).
    fn read(&mut self, out: &mut Vec<f32>) -> Result<usize>;
}

impl AudioFile {
    /// Opens a recording (a path, or any [`InputBytes`]), learning its format and exact
    /// length.
    ///
    /// # Errors
    /// [`MuxError::Input`] for a missing, empty, corrupt, truncated or unsupported file.
    pub fn open(bytes: impl Into<InputBytes>) -> Result<Self> {
        let original = bytes.into();
        // A WAV written as a stream is read through a view whose sizes are put right; the
        // file is still named, and hashed, as stored.
        let mut file = Self::open_settled(super::streamed_wav::settle(&original)?)?;
        file.bytes = original;
        Ok(file)
    }

    fn open_settled(bytes: InputBytes) -> Result<Self> {
        let path = bytes.name();
        let file_len = bytes.byte_len()?;
        if file_len == 0 {
            return Err(MuxError::input(&path, "the audio file is empty"));
        }
        let head = bytes.head(512)?;
        match g711::wav_format_tag(&head) {
            Some(6 | 7) => return open_g711(bytes),
            Some(_) => {}
            // Not WAV: MP3, FLAC, Ogg Vorbis, Ogg Opus, AAC.
            None if !head.starts_with(b"RIFF") => return open_symphonia(bytes),
            None => {}
        }
        match hound::WavReader::new(BufReader::new(bytes.open()?)) {
            Ok(reader) => open_pcm_wav(bytes, reader, file_len),
            Err(e) => Err(MuxError::input(&path, format!("corrupt WAV header: {e}"))),
        }
    }

    /// Reads the next block of interleaved frames into `out` (cleared first); 0 at the end.
    ///
    /// # Errors
    /// [`MuxError::Input`] when the file turns out damaged part-way.
    pub fn read(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        out.clear();
        self.source.read(out)
    }
}

fn open_g711(bytes: InputBytes) -> Result<AudioFile> {
    let format = g711::parse(&bytes)?;
    let frames = format.data_len / u64::from(format.channels);
    if frames == 0 {
        return Err(MuxError::input(
            &bytes.name(),
            "the recording holds no samples",
        ));
    }
    Ok(AudioFile {
        info: AudioInfo {
            rate_hz: format.rate_hz,
            channels: format.channels,
            frames,
            codec: match format.law {
                g711::Law::Mu => "pcm_mulaw".into(),
                g711::Law::A => "pcm_alaw".into(),
            },
        },
        source: Box::new(G711Source {
            reader: g711::G711Reader::open(&bytes, &format)?,
            channels: usize::from(format.channels),
        }),
        bytes,
    })
}

struct G711Source {
    reader: g711::G711Reader,
    channels: usize,
}

impl PcmSource for G711Source {
    fn read(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        Ok(self.reader.read(out)? / self.channels)
    }
}

const BLOCK_FRAMES: usize = 4096;

type WavReader = hound::WavReader<BufReader<Box<dyn InputReader>>>;

fn open_pcm_wav(bytes: InputBytes, reader: WavReader, file_len: u64) -> Result<AudioFile> {
    let path = bytes.name();
    let spec = reader.spec();
    let frames = u64::from(reader.duration());
    let data_len = frames * u64::from(spec.channels) * u64::from(spec.bits_per_sample.div_ceil(8));
    if data_len > file_len {
        return Err(MuxError::input(
            &path,
            format!(
                "truncated WAV: the header promises {frames} frames ({data_len} bytes) but the file has {file_len} bytes"
            ),
        ));
    }
    if frames == 0 {
        return Err(MuxError::input(&path, "the recording holds no samples"));
    }
    let codec = match spec.sample_format {
        hound::SampleFormat::Int => format!("pcm_s{}le", spec.bits_per_sample),
        hound::SampleFormat::Float => format!("pcm_f{}le", spec.bits_per_sample),
    };
    let info = AudioInfo {
        rate_hz: spec.sample_rate,
        channels: spec.channels,
        frames,
        codec,
    };
    Ok(AudioFile {
        bytes,
        info,
        source: Box::new(HoundSource {
            path,
            reader,
            channels: usize::from(spec.channels),
            scale: match spec.sample_format {
                hound::SampleFormat::Int => 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32,
                hound::SampleFormat::Float => 1.0,
            },
            float: spec.sample_format == hound::SampleFormat::Float,
        }),
    })
}

struct HoundSource {
    path: PathBuf,
    reader: WavReader,
    channels: usize,
    scale: f32,
    float: bool,
}

impl PcmSource for HoundSource {
    fn read(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        let want = BLOCK_FRAMES * self.channels;
        let fail = |e: hound::Error| MuxError::input(&self.path, format!("damaged WAV data: {e}"));
        if self.float {
            for s in self.reader.samples::<f32>().take(want) {
                out.push(s.map_err(fail)?);
            }
        } else {
            for s in self.reader.samples::<i32>().take(want) {
                out.push(s.map_err(fail)? as f32 * self.scale);
            }
        }
        Ok(out.len() / self.channels)
    }
}

fn open_symphonia(bytes: InputBytes) -> Result<AudioFile> {
    let path = bytes.name();
    let format = probe(&bytes)?;
    if audio_track(&bytes, format.as_ref())?.codec_params.codec == CODEC_TYPE_OPUS {
        let (info, source) = opus::open(&bytes, format)?;
        return Ok(AudioFile {
            bytes,
            info,
            source: Box::new(source),
        });
    }
    // Count the frames with one decoding pass: container headers of lossy formats (MP3, AAC)
    // do not say exactly, and drift is measured from this number.
    let mut counter = SymphoniaSource::new(&bytes, format)?;
    let (rate_hz, channels, codec) = (counter.rate_hz, counter.channels, counter.codec.clone());
    let mut frames = 0u64;
    let mut scratch = Vec::new();
    loop {
        scratch.clear();
        let n = counter.read(&mut scratch)?;
        if n == 0 {
            break;
        }
        frames += n as u64;
    }
    if frames == 0 {
        return Err(MuxError::input(&path, "the recording holds no samples"));
    }
    let source = SymphoniaSource::new(&bytes, probe(&bytes)?)?;
    Ok(AudioFile {
        bytes,
        info: AudioInfo {
            rate_hz,
            channels,
            frames,
            codec,
        },
        source: Box::new(source),
    })
}

struct SymphoniaSource {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    rate_hz: u32,
    channels: u16,
    codec: String,
    buf: Option<SampleBuffer<f32>>,
}

/// Opens `bytes` with symphonia's demuxer for its container (found from the bytes, the
/// extension a hint).
pub(super) fn probe(bytes: &InputBytes) -> Result<Box<dyn FormatReader>> {
    let path = bytes.name();
    let stream = MediaSourceStream::new(Box::new(MediaBytes::open(bytes)?), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = bytes.extension() {
        hint.with_extension(&ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| {
            // symphonia gives up on an Ogg file whose only stream it cannot map, such as Opus
            // with a channel mapping family other than 0 or 1: say which, if so.
            opus::unsupported_head(bytes).unwrap_or_else(|| {
                MuxError::input(&path, format!("not a readable audio file: {e}"))
            })
        })?;
    Ok(probed.format)
}

/// The recording's track: the first one symphonia knows the codec of.
fn audio_track<'a>(bytes: &InputBytes, format: &'a dyn FormatReader) -> Result<&'a Track> {
    format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| {
            opus::unsupported_head(bytes)
                .unwrap_or_else(|| MuxError::input(&bytes.name(), "no audio track"))
        })
}

impl SymphoniaSource {
    fn new(bytes: &InputBytes, format: Box<dyn FormatReader>) -> Result<Self> {
        let path = bytes.name();
        let bad = |what: &str, e: SymphoniaError| MuxError::input(&path, format!("{what}: {e}"));
        let track = audio_track(bytes, format.as_ref())?;
        let params = track.codec_params.clone();
        let codec = symphonia::default::get_codecs()
            .get_codec(params.codec)
            .map_or_else(|| "unknown".to_owned(), |d| d.short_name.to_owned());
        let decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| bad("unsupported audio codec", e))?;
        let rate_hz = params
            .sample_rate
            .ok_or_else(|| MuxError::input(&path, "no sample rate"))?;
        let channels = params.channels.map_or(1, |c| c.count()) as u16;
        Ok(Self {
            path,
            track_id: track.id,
            format,
            decoder,
            rate_hz,
            channels,
            codec,
            buf: None,
        })
    }
}

impl PcmSource for SymphoniaSource {
    fn read(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(0);
                }
                Err(e) => {
                    return Err(MuxError::input(&self.path, format!("damaged audio: {e}")));
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                // One bad packet in a lossy stream is concealed by the decoder's reset.
                Err(SymphoniaError::DecodeError(_)) => continue,
                Err(e) => {
                    return Err(MuxError::input(&self.path, format!("damaged audio: {e}")));
                }
            };
            if decoded.frames() == 0 {
                continue;
            }
            let spec = *decoded.spec();
            let capacity = decoded.capacity() as u64;
            let buf = match &mut self.buf {
                Some(b) if b.capacity() >= decoded.capacity() * spec.channels.count() => b,
                slot => slot.insert(SampleBuffer::new(capacity, spec)),
            };
            buf.copy_interleaved_ref(decoded);
            out.extend_from_slice(buf.samples());
            return Ok(buf.samples().len() / usize::from(self.channels.max(1)));
        }
    }
}
