//! Camera and screen video ([`VideoSource`]): a file (MP4, Matroska, WebM, IVF; H.264, VP8,
//! VP9) demuxed in code (`filesrc ! parsebin ! appsink`), or encoded frames from a
//! [`FrameSource`] (see [`super::frames`]; H.264, VP8, VP9 or JPEG stills) — either way a
//! stream of encoded frames with their presentation times, without decoding. A first pass
//! ([`VideoScan::of`]) learns the codec, every frame's time and the keyframes; the mux streams
//! later passes ([`Demuxer`]) so no input is ever held in memory. Past
//! [`Demuxer::next_frame`], both kinds are the same.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::frames::{FrameReader, FrameSource};
use crate::error::{MuxError, Result};
use crate::pipeline::{self, Pipeline};

/// Where a camera or screen track's encoded frames come from.
#[derive(Clone)]
pub enum VideoSource {
    /// A container file.
    File(PathBuf),
    /// Encoded frames (the ingest server's track log, read in memory), named by their label.
    Frames(Arc<dyn FrameSource>),
}

impl VideoSource {
    /// What errors and the manifest call it: the file's path, or the frame source's label.
    #[must_use]
    pub fn label(&self) -> PathBuf {
        match self {
            Self::File(path) => path.clone(),
            Self::Frames(source) => PathBuf::from(source.label()),
        }
    }
}

impl fmt::Debug for VideoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Frames(source) => f.debug_tuple("Frames").field(&source.label()).finish(),
        }
    }
}

/// The video codecs the muxer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// JPEG stills (screenshots), from a frame source only: each frame a picture of its own,
    /// on screen until the next. Never an output codec (see [`crate::video::stills`]).
    Jpeg,
}

impl VideoCodec {
    fn of_caps(caps: &gst::CapsRef) -> Option<Self> {
        match caps.structure(0)?.name().as_str() {
            "video/x-h264" => Some(Self::H264),
            "video/x-vp8" => Some(Self::Vp8),
            "video/x-vp9" => Some(Self::Vp9),
            "image/jpeg" => Some(Self::Jpeg),
            _ => None,
        }
    }

    /// Whether frames are stills to be held on screen until the next one (JPEG screenshots),
    /// not video at a frame rate.
    #[must_use]
    pub fn is_stills(self) -> bool {
        self == Self::Jpeg
    }

    /// The GStreamer decoder for this codec.
    #[must_use]
    pub fn decoder(self) -> &'static str {
        match self {
            Self::H264 => "avdec_h264",
            Self::Vp8 => "vp8dec",
            Self::Vp9 => "vp9dec",
            Self::Jpeg => "jpegdec",
        }
    }
}

/// One encoded frame as the file holds it.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// Presentation time relative to the file's first frame, nanoseconds.
    pub pts: i64,
    /// Whether it decodes on its own.
    pub keyframe: bool,
    /// The encoded access unit (AVC: length-prefixed NAL units).
    pub data: gst::Buffer,
}

/// What a first pass learned about a video input.
#[derive(Debug, Clone)]
pub struct VideoScan {
    /// The input's label (the file's path, or the frame source's label).
    pub path: PathBuf,
    /// Its codec.
    pub codec: VideoCodec,
    /// The parsed stream's caps (AVC with `codec_data` for H.264).
    pub caps: gst::Caps,
    /// Width and height in pixels.
    pub size: (i32, i32),
    /// Presentation time of every frame relative to the first, in decode order.
    pub frame_pts: Vec<i64>,
    /// Whether each frame (same index) is a keyframe.
    pub keyframes: Vec<bool>,
    /// True when frames are stored out of presentation order (B-frames).
    pub reordered: bool,
    /// The nominal frame duration: the median gap between frames, nanoseconds.
    pub frame_duration: i64,
    /// Encoded bytes of all frames (for choosing a bitrate when re-encoding).
    pub bytes: u64,
    /// The nominal frame rate from the caps, when the stream declares one.
    pub framerate: Option<(i32, i32)>,
}

impl VideoScan {
    /// Reads every frame's time and flags (no decoding).
    ///
    /// # Errors
    /// [`MuxError::Input`] for a missing, unreadable, truncated or non-video file, an
    /// unknown codec, or a frame stream that is empty, damaged or does not start on a keyframe.
    pub fn of(source: &VideoSource) -> Result<Self> {
        let label = source.label();
        let path = label.as_path();
        let mut demuxer = Demuxer::open(source)?;
        let mut frame_pts = Vec::new();
        let mut keyframes = Vec::new();
        let mut bytes = 0u64;
        while let Some(frame) = demuxer.next_frame()? {
            bytes += frame.data.size() as u64;
            frame_pts.push(frame.pts);
            keyframes.push(frame.keyframe);
        }
        if frame_pts.is_empty() {
            return Err(MuxError::input(path, "no video frames"));
        }
        if !keyframes[0] {
            return Err(MuxError::input(
                path,
                "the first frame is not a keyframe (truncated at the start?)",
            ));
        }
        let caps = demuxer
            .caps
            .clone()
            .expect("caps come with the first frame");
        let codec = demuxer.codec.expect("codec comes with the caps");
        let s = caps.structure(0).expect("video caps have a structure");
        let size = (
            s.get::<i32>("width").unwrap_or(0),
            s.get::<i32>("height").unwrap_or(0),
        );
        if size.0 <= 0 || size.1 <= 0 {
            return Err(MuxError::input(path, "the video stream has no frame size"));
        }
        let framerate = s
            .get::<gst::Fraction>("framerate")
            .ok()
            .map(|f| (f.numer(), f.denom()))
            .filter(|&(n, d)| n > 0 && d > 0);
        let reordered = frame_pts.windows(2).any(|w| w[1] <= w[0]);
        let mut sorted = frame_pts.clone();
        sorted.sort_unstable();
        let mut gaps: Vec<i64> = sorted.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        let frame_duration = gaps.get(gaps.len() / 2).copied().unwrap_or(33_333_333);
        Ok(Self {
            path: path.to_path_buf(),
            codec,
            caps,
            size,
            frame_pts,
            keyframes,
            reordered,
            frame_duration: frame_duration.max(1),
            bytes,
            framerate,
        })
    }

    /// Presentation times in ascending order.
    #[must_use]
    pub fn sorted_pts(&self) -> Vec<i64> {
        let mut sorted = self.frame_pts.clone();
        sorted.sort_unstable();
        sorted
    }

    /// The average bitrate, kbit/s (at least 300).
    #[must_use]
    pub fn bitrate_kbps(&self) -> u32 {
        let seconds = self.end() as f64 / 1e9;
        ((self.bytes as f64 * 8.0 / 1000.0 / seconds.max(0.001)) as u32).max(300)
    }

    /// Frames per second, from the nominal frame duration.
    #[must_use]
    pub fn fps(&self) -> f64 {
        1e9 / self.frame_duration as f64
    }

    /// The time just after the last frame (last frame + one nominal frame duration).
    #[must_use]
    pub fn end(&self) -> i64 {
        let end = self.frame_pts.iter().max().copied().unwrap_or(0) + self.frame_duration;
        // Containers store times rounded to their timescale; snap to the frame grid when the
        // stream declares its rate, so 180 frames at 30 fps end at 6 s, not 5.999999999 s.
        match self.framerate {
            Some((n, d)) => {
                let (n, d) = (i128::from(n), i128::from(d));
                let frames = (i128::from(end) * n + 500_000_000 * d) / (1_000_000_000 * d);
                let snapped = (frames * 1_000_000_000 * d + n / 2) / n;
                if (snapped - i128::from(end)).abs() < 1_000_000 {
                    snapped as i64
                } else {
                    end
                }
            }
            None => end,
        }
    }
}

/// Encoded frames out of a video input, in decode order.
pub struct Demuxer<'a> {
    path: PathBuf,
    reader: Reader<'a>,
    first_pts: Option<u64>,
    /// Caps of the video stream, known from the first frame on.
    pub caps: Option<gst::Caps>,
    /// Codec of the video stream, known from the first frame on.
    pub codec: Option<VideoCodec>,
}

/// Where a [`Demuxer`]'s samples come from.
enum Reader<'a> {
    Container(ContainerReader),
    Frames(FrameReader<'a>),
}

/// A container file through `parsebin`.
struct ContainerReader {
    pipeline: Pipeline,
    sink: gst_app::AppSink,
    linked: Arc<Mutex<bool>>,
    all_pads: Arc<AtomicBool>,
    opened_at: std::time::Instant,
}

impl<'a> Demuxer<'a> {
    /// Starts a pass over `source`.
    ///
    /// # Errors
    /// [`MuxError::Input`] when the file does not exist or the frame source cannot be opened,
    /// or GStreamer cannot start.
    pub fn open(source: &'a VideoSource) -> Result<Self> {
        let path = source.label();
        let reader = match source {
            VideoSource::File(file) => Reader::Container(ContainerReader::open(file)?),
            VideoSource::Frames(frames) => Reader::Frames(FrameReader::open(&**frames, &path)?),
        };
        Ok(Self {
            path,
            reader,
            first_pts: None,
            caps: None,
            codec: None,
        })
    }

    /// The next frame in decode order, `None` at the end.
    ///
    /// # Errors
    /// [`MuxError::Input`] when the input is damaged, holds no video, or an unknown codec.
    pub fn next_frame(&mut self) -> Result<Option<EncodedFrame>> {
        let sample = match &mut self.reader {
            Reader::Container(reader) => reader.next_sample(&self.path)?,
            Reader::Frames(reader) => reader.next_sample()?,
        };
        let Some(sample) = sample else {
            return Ok(None);
        };
        if self.caps.is_none() {
            let caps = sample
                .caps_owned()
                .ok_or_else(|| MuxError::input(&self.path, "video stream without caps"))?;
            self.codec = Some(
                VideoCodec::of_caps(&caps)
                    .ok_or_else(|| MuxError::input(&self.path, format!("unknown codec {caps}")))?,
            );
            self.caps = Some(caps);
        }
        let buffer = sample
            .buffer_owned()
            .ok_or_else(|| MuxError::input(&self.path, "empty sample"))?;
        let Some(pts) = buffer.pts().or(buffer.dts()) else {
            return Err(MuxError::input(&self.path, "a frame without a timestamp"));
        };
        let first = *self.first_pts.get_or_insert(pts.nseconds());
        // VP8/VP9 say it in their own header; some parsers (ivfparse) flag nothing. A JPEG
        // is always a picture of its own.
        let keyframe = match self.codec {
            Some(VideoCodec::Jpeg) => true,
            Some(codec @ (VideoCodec::Vp8 | VideoCodec::Vp9)) => buffer
                .map_readable()
                .ok()
                .and_then(|m| vpx_keyframe(codec, m.as_slice()))
                .unwrap_or(false),
            _ => !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        };
        Ok(Some(EncodedFrame {
            pts: pts.nseconds() as i64 - first as i64,
            keyframe,
            data: buffer,
        }))
    }
}

impl ContainerReader {
    fn open(path: &Path) -> Result<Self> {
        pipeline::init()?;
        std::fs::metadata(path).map_err(|e| MuxError::input(path, e.to_string()))?;
        let pipeline = Pipeline::new(format!("demuxing {}", path.display()));
        let src = pipeline::element("filesrc")?;
        src.set_property("location", path.to_string_lossy().as_ref());
        let parse = pipeline::element("parsebin")?;
        let sink = gst_app::AppSink::builder()
            .caps(
                &"video/x-h264,stream-format=avc,alignment=au; video/x-vp8; video/x-vp9"
                    .parse::<gst::Caps>()
                    .expect("static caps parse"),
            )
            .sync(false)
            .max_buffers(64)
            .build();
        pipeline.chain(&[&src, &parse])?;
        pipeline
            .inner
            .add(&sink)
            .map_err(|e| pipeline.error("appsink", e))?;
        let linked = Arc::new(Mutex::new(false));
        let bin = pipeline.inner.clone();
        let sink_pad = sink.static_pad("sink").expect("appsink has a sink pad");
        let linked_in_cb = Arc::clone(&linked);
        parse.connect_pad_added(move |_, pad| {
            let is_video = pad
                .current_caps()
                .or_else(|| Some(pad.query_caps(None)))
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(false);
            let mut linked = linked_in_cb.lock().expect("not poisoned");
            if is_video && !*linked && pad.link(&sink_pad).is_ok() {
                *linked = true;
                return;
            }
            // Audio or a second video stream: drained, never linked to us.
            if let Ok(fake) = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .build()
                && bin.add(&fake).is_ok()
            {
                let _ = fake.sync_state_with_parent();
                if let Some(fake_pad) = fake.static_pad("sink") {
                    let _ = pad.link(&fake_pad);
                }
            }
        });
        // A file with no video stream (a WAV given as --video) would leave the appsink waiting
        // forever: end its stream when parsebin says no more pads are coming.
        let all_pads = Arc::new(AtomicBool::new(false));
        let all_pads_in_cb = Arc::clone(&all_pads);
        parse.connect_no_more_pads(move |_| all_pads_in_cb.store(true, Ordering::SeqCst));
        pipeline
            .play()
            .map_err(|e| MuxError::input(path, reason_of(&e)))?;
        Ok(Self {
            pipeline,
            sink,
            linked,
            all_pads,
            opened_at: std::time::Instant::now(),
        })
    }

    /// The next sample of the video stream, `None` at its end.
    fn next_sample(&mut self, path: &Path) -> Result<Option<gst::Sample>> {
        let sample = loop {
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(100))
            {
                break Some(sample);
            }
            let linked = *self.linked.lock().expect("not poisoned");
            // No video pad once parsebin is done (or, should it never say so, after 5 s of
            // nothing): a file without video, e.g. a WAV given as the camera.
            if self.sink.is_eos()
                || (!linked
                    && (self.all_pads.load(Ordering::SeqCst)
                        || self.opened_at.elapsed() > std::time::Duration::from_secs(5)))
            {
                break None;
            }
            self.pipeline
                .check_bus()
                .map_err(|e| MuxError::input(path, reason_of(&e)))?;
        };
        if sample.is_none() {
            if !*self.linked.lock().expect("not poisoned") {
                return Err(MuxError::input(
                    path,
                    "no H.264, VP8 or VP9 video stream in this file",
                ));
            }
            // A clean end: make sure nothing failed on the way.
            self.pipeline
                .check_bus()
                .map_err(|e| MuxError::input(path, reason_of(&e)))?;
        }
        Ok(sample)
    }
}

/// Whether a VP8 or VP9 frame is a keyframe, from its uncompressed header (RFC 6386 §9.1;
/// VP9 bitstream spec §6.2); `None` for an empty or malformed frame.
pub(crate) fn vpx_keyframe(codec: VideoCodec, frame: &[u8]) -> Option<bool> {
    let first = *frame.first()?;
    match codec {
        // VP8: bit 0 of the frame tag is 0 for a key frame.
        VideoCodec::Vp8 => Some(first & 0x01 == 0),
        VideoCodec::Vp9 => {
            let bit = |i: u32| (first >> (7 - i)) & 1;
            if (first >> 6) != 0b10 {
                return None; // frame_marker
            }
            let profile = bit(2) | (bit(3) << 1);
            let mut at = 4;
            if profile == 3 {
                at += 1; // reserved_zero
            }
            if bit(at) == 1 {
                return Some(false); // show_existing_frame
            }
            Some(bit(at + 1) == 0) // frame_type: 0 = KEY_FRAME
        }
        VideoCodec::H264 | VideoCodec::Jpeg => None,
    }
}

/// The reason part of a pipeline error, for an input error message.
fn reason_of(e: &MuxError) -> String {
    match e {
        MuxError::Pipeline { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpx_keyframes_are_read_from_the_frame_header() {
        assert_eq!(vpx_keyframe(VideoCodec::Vp8, &[0x30, 0x0c]), Some(true));
        assert_eq!(vpx_keyframe(VideoCodec::Vp8, &[0x31, 0x0c]), Some(false));
        // VP9 profile 0: marker 10, profile 00, show_existing 0, frame_type 0/1.
        assert_eq!(vpx_keyframe(VideoCodec::Vp9, &[0b1000_0000]), Some(true));
        assert_eq!(vpx_keyframe(VideoCodec::Vp9, &[0b1000_0100]), Some(false));
        assert_eq!(
            vpx_keyframe(VideoCodec::Vp9, &[0b1000_1000]),
            Some(false),
            "shown again"
        );
        assert_eq!(
            vpx_keyframe(VideoCodec::Vp9, &[0b0000_0000]),
            None,
            "no frame marker"
        );
        assert_eq!(vpx_keyframe(VideoCodec::Vp8, &[]), None);
    }
}
