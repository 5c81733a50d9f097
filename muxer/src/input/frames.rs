//! Video that arrives as encoded frames instead of a container file: the ingest server's track
//! logs, decrypted frame by frame in memory by the mux worker, so no plaintext media touches a
//! disk. The muxer sees them through [`FrameSource`] and turns them into the same stream of
//! encoded frames a container gives ([`FrameReader`], used by
//! [`super::video::Demuxer`]), so scanning, copying, re-encoding and compositing have one
//! code path for both.
//!
//! * **Timestamps**: [`RawFrame::pts_ns`] is nanoseconds on any clock with any origin (the
//!   agent's monotonic clock, or 0 at the first frame); only differences count. Frame *k* is
//!   captured at `VideoInput::start + (pts_k − pts_0)`, exactly as a container's presentation
//!   times are read. A frame stamped before the first frame is refused.
//! * **H.264** comes as **Annex-B** access units (start codes; what x264 produces live) with
//!   SPS and PPS in-band before keyframes. They go through `appsrc ! h264parse !
//!   video/x-h264,stream-format=avc,alignment=au ! appsink`, so the stream gets the caps a
//!   demuxed MP4 has (`avcC` codec_data, size, rate) and length-prefixed frames; the keyframe
//!   flags come from the bitstream (IDR slices), as for files.
//! * **VP8 / VP9** frames are taken as they are; keyframes are read from the frame header.
//!   The picture size comes from the source's [`FrameFormat`] or, for VP8, from the first
//!   keyframe's header.
//! * **JPEG** stills (the agent's screenshots, see [`crate::video::stills`]) are taken as they
//!   are, each a picture of its own (a keyframe whatever its flag); every one is checked to be
//!   a whole JPEG (`super::jpeg`) before anything decodes it. The picture size is the first
//!   still's; later stills may differ (they are scaled to it when encoded).
//!
//! The first frame must be a keyframe (and, for H.264, carry its SPS and PPS): a stream that
//! starts elsewhere cannot be decoded and is refused with one line, as are empty streams,
//! empty frames, and frames that are not Annex-B.

use std::fmt;
use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::jpeg;
use super::video::{VideoCodec, vpx_keyframe};
use crate::error::{MuxError, Result};
use crate::pipeline::{self, Pipeline};

/// One encoded frame as the agent sent it.
#[derive(Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Capture time, nanoseconds on the source's clock (any origin: only differences count).
    pub pts_ns: i64,
    /// Whether the sender marked it as a keyframe. The first frame must be one; later frames'
    /// keyframe status is read from the bitstream.
    pub keyframe: bool,
    /// One access unit: H.264 Annex-B (start codes), or one VP8/VP9 frame.
    pub data: Vec<u8>,
}

impl fmt::Debug for RawFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawFrame")
            .field("pts_ns", &self.pts_ns)
            .field("keyframe", &self.keyframe)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The bitstream of a frame source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCodec {
    /// H.264 Annex-B byte stream, one access unit per frame, SPS/PPS in-band before keyframes.
    H264AnnexB,
    /// VP8, one frame per [`RawFrame`].
    Vp8,
    /// VP9, one frame (superframe) per [`RawFrame`].
    Vp9,
    /// JPEG stills: one complete JPEG (start- to end-of-image) per [`RawFrame`], each a picture
    /// of its own (screenshots). Never copied into the output: always transcoded.
    Jpeg,
}

impl FrameCodec {
    fn codec(self) -> VideoCodec {
        match self {
            Self::H264AnnexB => VideoCodec::H264,
            Self::Vp8 => VideoCodec::Vp8,
            Self::Vp9 => VideoCodec::Vp9,
            Self::Jpeg => VideoCodec::Jpeg,
        }
    }
}

/// What a frame source carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFormat {
    /// The bitstream.
    pub codec: FrameCodec,
    /// Width and height in pixels, when known (H.264 reads them from the SPS; VP9 needs them).
    pub size: Option<(u32, u32)>,
    /// Nominal frame rate (numerator, denominator), when known.
    pub framerate: Option<(i32, i32)>,
}

impl FrameCodec {
    /// The codec of a keyframe, read from its first bytes: an Annex-B start code (H.264), a
    /// VP8 key frame's start code (`9d 01 2a`), a VP9 key frame's frame marker and sync
    /// code (`49 83 42`, profiles 0–2), or a JPEG's start-of-image marker and the next
    /// marker's `ff` (`ff d8 ff`). `None` for anything else.
    #[must_use]
    pub fn sniff(keyframe: &[u8]) -> Option<Self> {
        if jpeg::looks_like_jpeg(keyframe) {
            Some(Self::Jpeg)
        } else if keyframe.starts_with(&[0, 0, 0, 1]) || keyframe.starts_with(&[0, 0, 1]) {
            Some(Self::H264AnnexB)
        } else if keyframe.get(3..6) == Some(&[0x9d, 0x01, 0x2a]) && keyframe[0] & 1 == 0 {
            Some(Self::Vp8)
        } else if keyframe.first().is_some_and(|b| b >> 6 == 0b10)
            && keyframe.get(1..4) == Some(&[0x49, 0x83, 0x42])
        {
            Some(Self::Vp9)
        } else {
            None
        }
    }
}

impl FrameFormat {
    /// A format with only the codec known.
    #[must_use]
    pub fn new(codec: FrameCodec) -> Self {
        Self {
            codec,
            size: None,
            framerate: None,
        }
    }
}

/// Frames in decode order, each possibly failing (a log that cannot be read or decrypted).
pub type FrameIter<'a> = Box<dyn Iterator<Item = Result<RawFrame>> + Send + 'a>;

/// Encoded video frames the muxer can read as many times as it needs (it reads a track in
/// several passes: scan, hash, feed, composite), each pass from the first frame, in decode
/// order. Implemented by the mux worker over the ingest server's track logs; the muxer knows
/// nothing about where the frames live.
pub trait FrameSource: Send + Sync {
    /// Names the source in the manifest (`inputs[].file`) and in error messages, e.g.
    /// `session 0f3c…/camera`.
    fn label(&self) -> String;
    /// The codec and what is known of the picture.
    fn format(&self) -> FrameFormat;
    /// A new pass over every frame, from the first.
    ///
    /// # Errors
    /// The frames cannot be opened (an error naming the source, e.g. [`MuxError::Input`]).
    fn frames(&self) -> Result<FrameIter<'_>>;
}

/// Frames held in memory (tests, short clips).
#[derive(Debug, Clone)]
pub struct MemoryFrames {
    /// What the manifest calls it.
    pub label: String,
    /// The codec and picture.
    pub format: FrameFormat,
    /// The frames in decode order.
    pub frames: Vec<RawFrame>,
}

impl FrameSource for MemoryFrames {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn format(&self) -> FrameFormat {
        self.format
    }

    fn frames(&self) -> Result<FrameIter<'_>> {
        Ok(Box::new(self.frames.iter().cloned().map(Ok)))
    }
}

/// Frames handed to the parser before waiting for its output: keeps memory bounded however
/// long the stream (the parser holds at most an access unit back).
const IN_FLIGHT: u64 = 4;

/// Turns a [`FrameSource`] into samples shaped like a container demuxer's (caps + buffer,
/// PTS relative to the first frame).
pub(crate) struct FrameReader<'a> {
    label: PathBuf,
    format: FrameFormat,
    frames: FrameIter<'a>,
    /// Frames taken from the source so far.
    taken: usize,
    first_pts: Option<i64>,
    out: Output,
}

enum Output {
    /// H.264: through `h264parse` into AVC framing.
    Parser {
        pipeline: Pipeline,
        src: gst_app::AppSrc,
        sink: gst_app::AppSink,
        ended: bool,
        pulled: usize,
    },
    /// VP8/VP9/JPEG: the frames as they are, with these caps (known once the first frame is
    /// read).
    Direct { caps: Option<gst::Caps> },
}

impl<'a> FrameReader<'a> {
    /// Starts a pass over `source`; `label` names it in errors.
    pub(crate) fn open(source: &'a dyn FrameSource, label: &Path) -> Result<Self> {
        pipeline::init()?;
        let format = source.format();
        let frames = source.frames()?;
        let out = match format.codec {
            FrameCodec::H264AnnexB => {
                let pipeline = Pipeline::new(format!("parsing the H.264 of {}", label.display()));
                let mut caps = gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au");
                if let Some((n, d)) = format.framerate.filter(|&(n, d)| n > 0 && d > 0) {
                    caps = caps.field("framerate", gst::Fraction::new(n, d));
                }
                let src = gst_app::AppSrc::builder()
                    .caps(&caps.build())
                    .format(gst::Format::Time)
                    .block(false)
                    .build();
                let parse = pipeline::element("h264parse")?;
                let filter = pipeline::element("capsfilter")?;
                filter.set_property(
                    "caps",
                    gst::Caps::builder("video/x-h264")
                        .field("stream-format", "avc")
                        .field("alignment", "au")
                        .build(),
                );
                let sink = gst_app::AppSink::builder().sync(false).build();
                pipeline.chain(&[src.upcast_ref(), &parse, &filter, sink.upcast_ref()])?;
                pipeline.play()?;
                Output::Parser {
                    pipeline,
                    src,
                    sink,
                    ended: false,
                    pulled: 0,
                }
            }
            FrameCodec::Vp8 | FrameCodec::Vp9 | FrameCodec::Jpeg => Output::Direct { caps: None },
        };
        Ok(Self {
            label: label.to_path_buf(),
            format,
            frames,
            taken: 0,
            first_pts: None,
            out,
        })
    }

    /// The next frame as a sample (caps and buffer), `None` after the last.
    ///
    /// # Errors
    /// [`MuxError::Input`] for a stream that does not start on a keyframe, an empty stream
    /// or frame, data that is not the declared codec, or a failed read of the source.
    pub(crate) fn next_sample(&mut self) -> Result<Option<gst::Sample>> {
        match &mut self.out {
            Output::Direct { caps } => {
                let Some((frame, buffer)) = take(
                    &mut self.frames,
                    &mut self.taken,
                    &mut self.first_pts,
                    &self.format,
                    &self.label,
                )?
                else {
                    return Ok(None);
                };
                if caps.is_none() {
                    *caps = Some(match self.format.codec {
                        FrameCodec::Jpeg => jpeg_caps(&self.format, &frame.data, &self.label)?,
                        _ => vpx_caps(&self.format, &frame.data, &self.label)?,
                    });
                }
                let mut sample = gst::Sample::builder().buffer(&buffer);
                if let Some(caps) = caps.as_ref() {
                    sample = sample.caps(caps);
                }
                Ok(Some(sample.build()))
            }
            Output::Parser {
                pipeline,
                src,
                sink,
                ended,
                pulled,
            } => loop {
                if let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
                    *pulled += 1;
                    return Ok(Some(sample));
                }
                if *ended {
                    let sample = pipeline
                        .pull(sink)
                        .map_err(|e| parse_error(&self.label, &e))?;
                    if sample.is_some() {
                        *pulled += 1;
                        return Ok(sample);
                    }
                    if *pulled != self.taken {
                        return Err(MuxError::input(
                            &self.label,
                            format!(
                                "the H.264 parser kept {pulled} of {} access units (damaged or \
                                 not one access unit per frame)",
                                self.taken
                            ),
                        ));
                    }
                    return Ok(None);
                }
                if src.current_level_buffers() >= IN_FLIGHT {
                    if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(10)) {
                        *pulled += 1;
                        return Ok(Some(sample));
                    }
                    pipeline
                        .check_bus()
                        .map_err(|e| parse_error(&self.label, &e))?;
                    continue;
                }
                match take(
                    &mut self.frames,
                    &mut self.taken,
                    &mut self.first_pts,
                    &self.format,
                    &self.label,
                )? {
                    Some((_, buffer)) => {
                        if src.push_buffer(buffer).is_err() {
                            pipeline
                                .check_bus()
                                .map_err(|e| parse_error(&self.label, &e))?;
                            return Err(MuxError::input(
                                &self.label,
                                "the H.264 parser stopped taking frames",
                            ));
                        }
                    }
                    None => {
                        let _ = src.end_of_stream();
                        *ended = true;
                    }
                }
            },
        }
    }
}

/// A failure of the H.264 parser, as an input error of `label`.
fn parse_error(label: &Path, e: &MuxError) -> MuxError {
    let reason = match e {
        MuxError::Pipeline { message, .. } => message.clone(),
        other => other.to_string(),
    };
    MuxError::input(label, format!("not valid H.264: {reason}"))
}

/// The next frame from the source, checked, with its buffer stamped relative to the first.
fn take(
    frames: &mut FrameIter<'_>,
    taken: &mut usize,
    first_pts: &mut Option<i64>,
    format: &FrameFormat,
    label: &Path,
) -> Result<Option<(RawFrame, gst::Buffer)>> {
    let Some(frame) = frames.next().transpose()? else {
        if *taken == 0 {
            return Err(MuxError::input(label, "no video frames"));
        }
        return Ok(None);
    };
    let index = *taken;
    check_frame(index, &frame, format.codec).map_err(|reason| MuxError::input(label, reason))?;
    let first = *first_pts.get_or_insert(frame.pts_ns);
    let relative = frame.pts_ns - first;
    if relative < 0 {
        return Err(MuxError::input(
            label,
            format!(
                "frame {index} is stamped {} ns before the first frame",
                -relative
            ),
        ));
    }
    let mut buffer = gst::Buffer::from_slice(frame.data.clone());
    {
        let b = buffer.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(relative as u64));
        if !frame.keyframe {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
    }
    *taken += 1;
    Ok(Some((frame, buffer)))
}

/// What is wrong with frame `index`, if anything a parser would not say clearly itself.
fn check_frame(index: usize, frame: &RawFrame, codec: FrameCodec) -> Result<(), String> {
    if frame.data.is_empty() {
        return Err(format!("frame {index} is empty"));
    }
    if index == 0 && !frame.keyframe {
        return Err("the first frame is not a keyframe (the stream must start at one)".into());
    }
    match codec {
        FrameCodec::H264AnnexB => {
            let headers = annexb_nal_headers(&frame.data);
            if headers.is_empty() {
                return Err(format!(
                    "frame {index} is not an H.264 Annex-B access unit (no start code)"
                ));
            }
            if headers.iter().any(|h| h & 0x80 != 0) {
                return Err(format!(
                    "frame {index} holds a damaged H.264 NAL unit (forbidden bit set)"
                ));
            }
            let types: Vec<u8> = headers.iter().map(|h| h & 0x1f).collect();
            if index == 0 {
                if !types.contains(&5) {
                    return Err("the first frame is not a keyframe (no IDR slice)".into());
                }
                if !(types.contains(&7) && types.contains(&8)) {
                    return Err(
                        "the first keyframe carries no SPS and PPS (they must be in-band)".into(),
                    );
                }
            }
        }
        FrameCodec::Jpeg => {
            jpeg::check(&frame.data).map_err(|reason| format!("frame {index}: {reason}"))?;
        }
        FrameCodec::Vp8 | FrameCodec::Vp9 => {
            if index == 0 && vpx_keyframe(codec.codec(), &frame.data) != Some(true) {
                return Err(format!(
                    "the first frame is not a {} keyframe",
                    format!("{:?}", codec.codec()).to_uppercase()
                ));
            }
        }
    }
    Ok(())
}

/// The NAL unit header bytes of an Annex-B access unit, one after each start code (empty when
/// it does not start with a start code).
fn annexb_nal_headers(data: &[u8]) -> Vec<u8> {
    let starts_with_code = data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1]);
    if !starts_with_code {
        return Vec::new();
    }
    data.windows(4)
        .filter(|w| w[..3] == [0, 0, 1])
        .map(|w| w[3])
        .collect()
}

/// Caps for VP8/VP9 frames: the size from the format or the first VP8 keyframe's header.
fn vpx_caps(format: &FrameFormat, first: &[u8], label: &Path) -> Result<gst::Caps> {
    let codec = format.codec.codec();
    let size = format
        .size
        .or_else(|| {
            (codec == VideoCodec::Vp8)
                .then(|| vp8_size(first))
                .flatten()
        })
        .filter(|&(w, h)| w > 0 && h > 0)
        .ok_or_else(|| {
            MuxError::input(
                label,
                "the frame source does not say the picture size (needed for VP9)",
            )
        })?;
    let name = match codec {
        VideoCodec::Vp9 => "video/x-vp9",
        _ => "video/x-vp8",
    };
    let mut caps = gst::Caps::builder(name)
        .field("width", size.0 as i32)
        .field("height", size.1 as i32);
    if let Some((n, d)) = format.framerate.filter(|&(n, d)| n > 0 && d > 0) {
        caps = caps.field("framerate", gst::Fraction::new(n, d));
    }
    Ok(caps.build())
}

/// Caps for JPEG stills: the first still's size, one whole picture per buffer (`parsed`), no
/// frame rate (stills come when they come).
fn jpeg_caps(format: &FrameFormat, first: &[u8], label: &Path) -> Result<gst::Caps> {
    let (width, height) = match format.size.filter(|&(w, h)| w > 0 && h > 0) {
        Some(size) => size,
        None => {
            let header = jpeg::check(first).map_err(|reason| MuxError::input(label, reason))?;
            (header.width, header.height)
        }
    };
    Ok(gst::Caps::builder("image/jpeg")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("parsed", true)
        .build())
}

/// Width and height from a VP8 keyframe's header (RFC 6386 §9.1).
fn vp8_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff);
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(keyframe: bool, data: &[u8]) -> RawFrame {
        RawFrame {
            pts_ns: 0,
            keyframe,
            data: data.to_vec(),
        }
    }

    #[test]
    fn annexb_nal_headers_are_read_after_each_start_code() {
        let au = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 3];
        assert_eq!(annexb_nal_headers(&au), vec![0x67, 0x68, 0x65]);
        assert!(
            annexb_nal_headers(&[0x65, 0, 0, 1, 0x65]).is_empty(),
            "no leading code"
        );
    }

    #[test]
    fn the_first_frame_must_be_a_decodable_keyframe() {
        let idr_only = [0, 0, 0, 1, 0x65, 3];
        let full = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 3];
        let h264 = FrameCodec::H264AnnexB;
        assert!(check_frame(0, &frame(true, &full), h264).is_ok());
        assert!(
            check_frame(0, &frame(false, &full), h264).is_err(),
            "unflagged"
        );
        let e = check_frame(0, &frame(true, &idr_only), h264).unwrap_err();
        assert!(e.contains("SPS"), "{e}");
        let p = [0, 0, 0, 1, 0x41, 3];
        assert!(check_frame(0, &frame(true, &p), h264).is_err(), "P slice");
        assert!(check_frame(1, &frame(false, &p), h264).is_ok());
        assert!(check_frame(1, &frame(false, b"garbage"), h264).is_err());
        assert!(check_frame(1, &frame(false, &[]), h264).is_err());
        assert!(check_frame(0, &frame(true, &[0x31]), FrameCodec::Vp8).is_err());
        let e =
            check_frame(3, &frame(true, &[0xff, 0xd8, 0xff, 0xe0]), FrameCodec::Jpeg).unwrap_err();
        assert!(e.starts_with("frame 3: truncated"), "{e}");
    }

    #[test]
    fn the_codec_is_sniffed_from_the_first_bytes() {
        let sniff = FrameCodec::sniff;
        assert_eq!(
            sniff(&[0xff, 0xd8, 0xff, 0xe0, 0, 16]),
            Some(FrameCodec::Jpeg)
        );
        assert_eq!(
            sniff(&[0xff, 0xd8, 0x00]),
            None,
            "SOI without a marker after it"
        );
        assert_eq!(sniff(&[0, 0, 0, 1, 0x67]), Some(FrameCodec::H264AnnexB));
        let vp8 = [0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0xa0, 0x00, 0x78, 0x00];
        assert_eq!(sniff(&vp8), Some(FrameCodec::Vp8));
        assert_eq!(sniff(&[0x82, 0x49, 0x83, 0x42]), Some(FrameCodec::Vp9));
        assert_eq!(sniff(b"GIF89a"), None);
    }

    #[test]
    fn a_vp8_keyframe_says_its_size() {
        let key = [0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0xa0, 0x00, 0x78, 0x00];
        assert_eq!(vp8_size(&key), Some((160, 120)));
        assert_eq!(vp8_size(&key[..5]), None);
    }
}
