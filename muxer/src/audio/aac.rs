//! AAC on two cores. `voaacenc` is the slowest part of a mux (a 10-minute call at 32 kHz is
//! about two seconds of one core), and it is single-threaded. So the PCM stream is cut into
//! chunks of about [`CHUNK_SECONDS`], each encoded by its own encoder in its own thread, and
//! the frames are stitched back in order on the stream's 1024-sample grid.
//!
//! Why the seams are clean: an encoder's output frame `m` always covers the same input
//! samples relative to where its input started (its delay is fixed in samples), and every
//! chunk's input starts on a multiple of 1024 samples — so frame `m` of a chunk fed from
//! sample `s` *is* frame `s / 1024 + m` of the whole stream. Each chunk is fed
//! [`PRE_ROLL_FRAMES`] frames before its first kept frame (the MDCT overlap and the
//! encoder's priming are over by then) and [`LOOK_AHEAD_FRAMES`] after its last (the
//! encoder's look-ahead), and only its own frames are kept. AAC-LC frames carry no state a
//! decoder needs beyond the overlap with the previous frame, which was computed from the same
//! samples in both encoders, so a decoder sees one stream. The first chunk starts at sample 0
//! and the last is flushed at end of stream, exactly as a single encoder would be.
//! Memory: at most [`WORKERS`] chunks in flight, whatever the length of the call.

use std::collections::VecDeque;
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::error::{MuxError, Result};
use crate::pipeline::{Pipeline, element};

/// Seconds of audio per chunk.
pub const CHUNK_SECONDS: f64 = 30.0;
/// Frames fed before a chunk's first kept frame.
pub const PRE_ROLL_FRAMES: u64 = 4;
/// Frames fed after a chunk's last kept frame.
pub const LOOK_AHEAD_FRAMES: u64 = 4;
/// Encoders running at once.
pub const WORKERS: usize = 2;
/// Samples per AAC-LC frame.
pub const FRAME: u64 = 1024;

/// The encoding asked for.
#[derive(Debug, Clone, Copy)]
pub struct AacSettings {
    /// Sample rate of the PCM (and the AAC).
    pub rate_hz: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Bits per second, all channels.
    pub bitrate: i32,
}

/// Takes the PCM stream in order, pushes AAC frames into `src` in order.
pub struct ChunkedAac<'a> {
    settings: AacSettings,
    src: &'a gst_app::AppSrc,
    /// Frames kept per chunk.
    chunk_frames: u64,
    /// Index of the chunk being filled.
    chunk: u64,
    /// Sample (per channel) of the stream where `pending` starts.
    pending_from: u64,
    /// Interleaved samples not yet handed to an encoder, from `pending_from`.
    pending: Vec<i16>,
    /// Samples of the stream received so far.
    received: u64,
    in_flight: VecDeque<(u64, JoinHandle<Result<Encoded>>)>,
    caps_set: bool,
    /// Frames pushed so far.
    pushed_frames: u64,
}

struct Encoded {
    caps: Option<gst::Caps>,
    frames: Vec<gst::Buffer>,
}

impl<'a> ChunkedAac<'a> {
    /// A stream encoded into `src` (whose caps are set from the encoder's output).
    #[must_use]
    pub fn new(settings: AacSettings, src: &'a gst_app::AppSrc) -> Self {
        let frames = (CHUNK_SECONDS * f64::from(settings.rate_hz) / FRAME as f64).round() as u64;
        Self::with_chunk_frames(settings, src, frames)
    }

    /// The same with chunks of `chunk_frames` frames (at least the pre-roll and look-ahead).
    #[must_use]
    pub fn with_chunk_frames(
        settings: AacSettings,
        src: &'a gst_app::AppSrc,
        chunk_frames: u64,
    ) -> Self {
        let chunk_frames = chunk_frames.max(PRE_ROLL_FRAMES + LOOK_AHEAD_FRAMES);
        Self {
            settings,
            src,
            chunk_frames,
            chunk: 0,
            pending_from: 0,
            pending: Vec::new(),
            received: 0,
            in_flight: VecDeque::new(),
            caps_set: false,
            pushed_frames: 0,
        }
    }

    fn channels(&self) -> usize {
        usize::from(self.settings.channels)
    }

    /// The next interleaved samples of the stream.
    ///
    /// # Errors
    /// An encoder failed, or the muxer stopped taking audio.
    pub fn write(&mut self, samples: &[i16]) -> Result<()> {
        self.pending.extend_from_slice(samples);
        self.received += (samples.len() / self.channels()) as u64;
        // A chunk can go once its look-ahead has arrived.
        loop {
            let end = self.chunk_end(self.chunk) + LOOK_AHEAD_FRAMES * FRAME;
            if self.received < end {
                return Ok(());
            }
            self.dispatch(end, false)?;
        }
    }

    /// End of the stream: encodes the rest and pushes every frame.
    ///
    /// # Errors
    /// An encoder failed, or the muxer stopped taking audio.
    pub fn finish(mut self) -> Result<()> {
        // The previous chunk went with its look-ahead, so the rest starts before `received`.
        self.dispatch(self.received, true)?;
        while let Some((chunk, job)) = self.in_flight.pop_front() {
            self.push_chunk(chunk, job)?;
        }
        Ok(())
    }

    /// First sample of the stream kept from chunk `c` (frames `c·F ..`).
    fn chunk_start(&self, c: u64) -> u64 {
        c * self.chunk_frames * FRAME
    }

    /// Sample after the last kept from chunk `c`.
    fn chunk_end(&self, c: u64) -> u64 {
        self.chunk_start(c + 1)
    }

    /// Where chunk `c`'s encoder input starts: a pre-roll before its first kept frame.
    fn feed_start(&self, c: u64) -> u64 {
        self.chunk_start(c).saturating_sub(PRE_ROLL_FRAMES * FRAME)
    }

    /// Hands samples `[feed_start(chunk), until)` to an encoder; `last` keeps everything it
    /// makes (the stream's end).
    fn dispatch(&mut self, until: u64, last: bool) -> Result<()> {
        if self.in_flight.len() >= WORKERS
            && let Some((chunk, job)) = self.in_flight.pop_front()
        {
            self.push_chunk(chunk, job)?;
        }
        let channels = self.channels();
        let from = self.feed_start(self.chunk);
        let skip = (from - self.pending_from) as usize * channels;
        let take = (until - from) as usize * channels;
        let input = self.pending[skip..skip + take].to_vec();
        // The next chunk's pre-roll starts inside this one's samples: keep from there.
        let next_from = self.feed_start(self.chunk + 1).min(until);
        self.pending
            .drain(..(next_from - self.pending_from) as usize * channels);
        self.pending_from = next_from;

        let settings = self.settings;
        let first_frame = from / FRAME;
        let keep = if last {
            usize::MAX
        } else {
            self.chunk_frames as usize
        };
        let skip_frames = self.chunk * self.chunk_frames - first_frame;
        let job = std::thread::spawn(move || {
            let mut encoded = encode(settings, &input)?;
            let kept: Vec<gst::Buffer> = encoded
                .frames
                .drain(..)
                .skip(skip_frames as usize)
                .take(keep)
                .collect();
            if !last && kept.len() < keep {
                return Err(MuxError::Pipeline {
                    stage: "encoding audio".into(),
                    element: "voaacenc".into(),
                    message: format!("a chunk gave {} frames, {keep} expected", kept.len()),
                });
            }
            encoded.frames = kept;
            Ok(encoded)
        });
        self.in_flight.push_back((self.chunk, job));
        self.chunk += 1;
        Ok(())
    }

    /// Waits for chunk `chunk` and pushes its frames with their times on the stream.
    fn push_chunk(&mut self, chunk: u64, job: JoinHandle<Result<Encoded>>) -> Result<()> {
        let encoded = job.join().map_err(|_| MuxError::Pipeline {
            stage: "encoding audio".into(),
            element: "voaacenc".into(),
            message: "an encoder thread panicked".into(),
        })??;
        if !self.caps_set {
            if let Some(caps) = encoded.caps {
                self.src.set_caps(Some(&caps));
            }
            self.caps_set = true;
        }
        debug_assert_eq!(self.pushed_frames, chunk * self.chunk_frames);
        let rate = u64::from(self.settings.rate_hz);
        for mut frame in encoded.frames {
            let n = self.pushed_frames;
            let pts = n * FRAME * 1_000_000_000 / rate;
            let end = (n + 1) * FRAME * 1_000_000_000 / rate;
            {
                let b = frame.make_mut();
                b.set_pts(gst::ClockTime::from_nseconds(pts));
                b.set_dts(gst::ClockTime::from_nseconds(pts));
                b.set_duration(gst::ClockTime::from_nseconds(end - pts));
            }
            self.src
                .push_buffer(frame)
                .map_err(|e| MuxError::Pipeline {
                    stage: "muxing".into(),
                    element: "audio".into(),
                    message: format!("the muxer stopped taking audio ({e:?})"),
                })?;
            self.pushed_frames += 1;
        }
        Ok(())
    }
}

/// Encodes interleaved S16 samples with a fresh `voaacenc`; every frame it makes, in order.
fn encode(settings: AacSettings, samples: &[i16]) -> Result<Encoded> {
    let pipeline = Pipeline::new("encoding audio");
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("layout", "interleaved")
        .field("rate", settings.rate_hz as i32)
        .field("channels", i32::from(settings.channels))
        .build();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    let encoder = element("voaacenc")?;
    encoder.set_property("bitrate", settings.bitrate);
    let sink = gst_app::AppSink::builder().sync(false).build();
    // audioconvert: stereo without a channel mask needs one before voaacenc negotiates.
    let convert = element("audioconvert")?;
    pipeline.chain(&[src.upcast_ref(), &convert, &encoder, sink.upcast_ref()])?;
    pipeline.play()?;
    let channels = usize::from(settings.channels);
    let rate = u64::from(settings.rate_hz);
    let mut at = 0u64;
    for block in samples.chunks(8192 * channels) {
        let frames = (block.len() / channels) as u64;
        let bytes: Vec<u8> = block.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(at * 1_000_000_000 / rate));
            b.set_duration(gst::ClockTime::from_nseconds(frames * 1_000_000_000 / rate));
        }
        at += frames;
        src.push_buffer(buffer)
            .map_err(|e| pipeline.error("appsrc", format!("{e:?}")))?;
    }
    let _ = src.end_of_stream();
    let mut frames = Vec::new();
    let mut out_caps = None;
    while let Some(sample) = pipeline.pull(&sink)? {
        if out_caps.is_none() {
            out_caps = sample.caps_owned();
        }
        frames.extend(sample.buffer_owned());
    }
    pipeline.check_bus()?;
    Ok(Encoded {
        caps: out_caps,
        frames,
    })
}
