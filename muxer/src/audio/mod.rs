//! The CTI audio track: mapped onto the timeline by its call record (start, and end when
//! known, which gives the drift), resampled onto the output's sample grid so that sample `n`
//! plays at `in + n / rate` exactly, and pushed into the output pipeline.
//!
//! Encoder delay: AAC encoders put `delay` samples before the first real one (1600 for
//! `voaacenc`), and
//! a fragmented MP4 cannot carry the edit list that would hide them (GStreamer writes none
//! there, and browsers ignore it in fragments). So the track is fed from `in + delay / rate`:
//! a player that plays the priming — ffmpeg, GStreamer, browsers all do here — hears every
//! later sample at its true time, and the first `delay` samples after the in point
//! (50 ms at 32 kHz) are the encoder's silence. Opus carries its pre-skip in the stream
//! header and decoders honour it, so nothing is skipped there.

pub mod aac;
pub mod resample;

use std::sync::atomic::{AtomicU64, Ordering};

use gstreamer as gst;
use gstreamer_app as gst_app;

use crate::error::{MuxError, Result};
use crate::input::audio::AudioFile;
use crate::input::bytes::InputBytes;
use crate::manifest::{Gap, TrackRole};
use crate::timeline::{CtiClock, CutPoints, UtcNanos};
use aac::{AacSettings, ChunkedAac};
use resample::Resampler;

/// A CTI recording and its call record.
#[derive(Debug, Clone)]
pub struct AudioInput {
    /// The recording (a file, or a sealed CTI recording in the blob store).
    pub bytes: InputBytes,
    /// Start of the call on the timeline.
    pub start: UtcNanos,
    /// End of the call, when the call record has it (gives the drift).
    pub end: Option<UtcNanos>,
}

/// The output's audio encoding: rate, and priming the player does not skip on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioOutput {
    /// Output sample rate. For AAC 32 kHz: one frame (1024 samples, 32 ms) is shorter than a
    /// video frame, so the durations agree within one frame, at two thirds of 48 kHz's cost.
    pub rate_hz: u32,
    /// Samples of encoder priming skipped at the start (see the module docs).
    pub skip: u64,
    /// Samples of silence pushed after the out point so the encoder emits everything it holds
    /// (`voaacenc`: its look-ahead, and it drops a partial last frame): the track then ends
    /// less than one audio frame (32 ms) after the out point.
    pub tail: u64,
    /// AAC at this many bits per second and channel, encoded here on two cores (see
    /// [`aac`]); `None`: raw PCM goes to the pipeline's own encoder.
    pub aac_bitrate_per_channel: Option<i32>,
}

/// Where the track's PCM goes.
enum PcmSink<'a> {
    /// Into the pipeline, whose encoder follows the appsrc.
    Raw(&'a gst_app::AppSrc),
    /// Encoded to AAC here, frames into the appsrc.
    Aac(ChunkedAac<'a>),
}

/// The audio track, planned.
pub struct AudioTrack {
    /// The recording, open for streaming.
    pub file: AudioFile,
    /// Its clock on the timeline.
    pub clock: CtiClock,
    /// The in and out points.
    pub cuts: CutPoints,
    /// The output encoding.
    pub output: AudioOutput,
    /// Stretches of the cut the recording does not cover (silence).
    pub gaps: Vec<Gap>,
}

impl AudioTrack {
    /// Plans the track for the `output` encoding.
    #[must_use]
    pub fn plan(file: AudioFile, clock: CtiClock, cuts: CutPoints, output: AudioOutput) -> Self {
        let span = clock.span();
        let mut gaps = Vec::new();
        if span.start > cuts.in_point {
            let to = span.start.min(cuts.out_point);
            gaps.push(Gap::new(TrackRole::CtiAudio, cuts.in_point, to, "silence"));
        }
        if span.end < cuts.out_point {
            let from = span.end.max(cuts.in_point);
            gaps.push(Gap::new(
                TrackRole::CtiAudio,
                from,
                cuts.out_point,
                "silence",
            ));
        }
        Self {
            file,
            clock,
            cuts,
            output,
            gaps,
        }
    }

    /// Output samples in `[in, out)` at the output rate.
    #[must_use]
    pub fn output_samples(&self) -> u64 {
        (self.cuts.duration() as f64 * f64::from(self.output.rate_hz) / 1e9).round() as u64
    }

    /// Caps of what is pushed into the pipeline: raw audio, or `None` when it is AAC encoded
    /// here (the encoder's caps are set on the first push).
    #[must_use]
    pub fn caps(&self) -> Option<gst::Caps> {
        if self.output.aac_bitrate_per_channel.is_some() {
            return None;
        }
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("layout", "interleaved")
            .field("rate", self.output.rate_hz as i32)
            .field("channels", i32::from(self.file.info.channels))
            .build();
        Some(caps)
    }

    /// Decodes, resamples and pushes the track into `src`, then end-of-stream. `pushed`
    /// counts output samples.
    ///
    /// # Errors
    /// A recording damaged part-way, or the pipeline stopped taking audio.
    pub fn feed(mut self, src: &gst_app::AppSrc, pushed: &AtomicU64) -> Result<()> {
        let mut sink = match self.output.aac_bitrate_per_channel {
            Some(per_channel) => PcmSink::Aac(ChunkedAac::new(
                AacSettings {
                    rate_hz: self.output.rate_hz,
                    channels: self.file.info.channels,
                    bitrate: per_channel * i32::from(self.file.info.channels),
                },
                src,
            )),
            None => PcmSink::Raw(src),
        };
        let result = self
            .feed_inner(&mut sink, pushed)
            .and_then(|()| match sink {
                PcmSink::Aac(aac) => aac.finish(),
                PcmSink::Raw(_) => Ok(()),
            });
        let _ = src.end_of_stream();
        result
    }

    fn feed_inner(&mut self, sink: &mut PcmSink<'_>, pushed: &AtomicU64) -> Result<()> {
        const BLOCK: usize = 4800;
        let rate = self.clock.effective_rate_hz();
        let out_rate = f64::from(self.output.rate_hz);
        let step = rate / out_rate;
        let offset_s = (self.cuts.in_point.0 - self.clock.start.0) as f64 / 1e9;
        let x0 = offset_s * rate + self.output.skip as f64 * step;
        let channels = usize::from(self.file.info.channels);
        let mut resampler = Resampler::new(channels, x0, step);
        let total = self.output_samples().saturating_sub(self.output.skip);
        let mut made = 0u64;
        let mut input = Vec::new();
        let mut output: Vec<i16> = Vec::new();
        let mut input_done = false;
        while made < total {
            output.clear();
            let want = BLOCK.min((total - made) as usize);
            let n = resampler.produce(&mut output, want);
            if n == 0 {
                if input_done {
                    break; // cannot happen: past the input's end the resampler makes silence
                }
                if self.file.read(&mut input)? == 0 {
                    input_done = true;
                    resampler.finish();
                } else {
                    resampler.push(&input);
                }
                continue;
            }
            self.write(sink, &output, made)?;
            made += n as u64;
            pushed.store(made, Ordering::Relaxed);
        }
        if self.output.tail > 0 {
            // Silence past the out point flushes what the encoder still holds.
            let silence = vec![0i16; self.output.tail as usize * channels];
            self.write(sink, &silence, made)?;
        }
        Ok(())
    }

    fn write(&self, sink: &mut PcmSink<'_>, samples: &[i16], at: u64) -> Result<()> {
        match sink {
            PcmSink::Raw(src) => self.push(src, samples, at),
            PcmSink::Aac(aac) => aac.write(samples),
        }
    }

    /// Pushes interleaved samples starting at output sample `at` (contiguous from 0: the
    /// encoder's priming then plays during `[0, skip)`).
    fn push(&self, src: &gst_app::AppSrc, samples: &[i16], at: u64) -> Result<()> {
        let frames = (samples.len() / usize::from(self.file.info.channels)) as u64;
        let rate = u64::from(self.output.rate_hz);
        let pts = at * 1_000_000_000 / rate;
        let end = (at + frames) * 1_000_000_000 / rate;
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(end - pts));
        }
        src.push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| MuxError::Pipeline {
                stage: "muxing".into(),
                element: "audio".into(),
                message: format!("the muxer stopped taking audio ({e:?})"),
            })
    }
}
