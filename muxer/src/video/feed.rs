//! Pushes a planned video track into its appsrc of the output pipeline, with output
//! timestamps (see the module docs of [`crate::video`]).

use std::sync::atomic::{AtomicU64, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::avc::ParameterSets;
use super::encode::{Reencoder, RetimeWindow};
use super::stills::{self, Grid, STILLS_FPS};
use super::{VideoMode, VideoTrack};
use crate::error::{MuxError, Result};
use crate::input::video::{Demuxer, EncodedFrame, VideoCodec};
use crate::pipeline::Pipeline;

/// The caps the track's appsrc must announce (stills come in at [`STILLS_FPS`], each pushed
/// again at every frame it is on screen).
#[must_use]
pub fn appsrc_caps(track: &VideoTrack) -> gst::Caps {
    let mut caps = track.scan.caps.clone();
    if matches!(track.mode, VideoMode::ReencodedHead { .. }) && track.scan.codec == VideoCodec::H264
    {
        caps.make_mut().set("stream-format", "avc3");
    }
    if track.scan.codec.is_stills() {
        caps.make_mut()
            .set("framerate", gst::Fraction::new(STILLS_FPS, 1));
    }
    caps
}

/// The decode → retime → encode chain of a track transcoded to `to`: a keyframe every 2 s of
/// output, at the input's average bitrate (at least 300 kbit/s); stills are brought to one
/// picture size at [`STILLS_FPS`] first (see [`super::stills`]).
///
/// # Errors
/// A missing plugin.
pub fn transcoder(track: &VideoTrack, to: VideoCodec) -> Result<Reencoder> {
    let stills = track.scan.codec.is_stills();
    let fps = if stills {
        f64::from(STILLS_FPS)
    } else {
        track.scan.fps()
    };
    let gop = (fps * 2.0).round().max(1.0) as u32;
    Reencoder::new(
        track.scan.codec,
        to,
        track.scan.bitrate_kbps(),
        gop,
        retime_window(track),
        stills.then(|| stills::canvas_caps(track.scan.size)),
    )
}

/// Pushes every kept frame of `track` into `src`, then end-of-stream. `pushed` counts frames.
///
/// # Errors
/// A damaged input, or a failure of the re-encoding of the first GOP.
pub fn feed(track: &VideoTrack, src: &gst_app::AppSrc, pushed: &AtomicU64) -> Result<()> {
    let result = match track.mode {
        VideoMode::Passthrough => copy_frames(track, src, track.kept.start, None, pushed),
        VideoMode::Transcode(_) => decode_input(track, src, pushed),
        VideoMode::ReencodedHead { frames } => {
            let head_end = track.kept.start + frames;
            let head = reencode_head(track, head_end)?;
            let mut splice = Splice::new(track, head.caps.as_ref());
            for frame in head.frames {
                let frame = splice.head_frame(frame)?;
                push(src, frame)?;
                pushed.fetch_add(1, Ordering::Relaxed);
            }
            copy_frames(track, src, head_end, splice.source_sets, pushed)
        }
    };
    // End the stream even after a failure, so the muxer is not left waiting.
    let _ = src.end_of_stream();
    result
}

fn push(src: &gst_app::AppSrc, buffer: gst::Buffer) -> Result<()> {
    src.push_buffer(buffer)
        .map(|_| ())
        .map_err(|e| MuxError::Pipeline {
            stage: "muxing".into(),
            element: src.name().to_string(),
            message: format!("the muxer stopped taking video ({e:?})"),
        })
}

/// Copies frames `from..kept.end` with output times; `in_band` puts parameter sets before
/// each keyframe (H.264 after a re-encoded head).
fn copy_frames(
    track: &VideoTrack,
    src: &gst_app::AppSrc,
    from: usize,
    in_band: Option<ParameterSets>,
    pushed: &AtomicU64,
) -> Result<()> {
    let (in_rel, out_rel) = (track.in_rel(), track.out_rel());
    frames_with_next(track, from, |frame, next_pts| {
        let start = frame.pts.max(in_rel);
        let end = next_pts.unwrap_or(out_rel).min(out_rel);
        let mut data = frame.data;
        if let Some(sets) = &in_band {
            let map = data
                .map_readable()
                .map_err(|e| MuxError::input(&track.input.label(), e.to_string()))?;
            let reframed = sets
                .frame(map.as_slice(), sets.length_size, frame.keyframe)
                .ok_or_else(|| MuxError::input(&track.input.label(), "malformed H.264 frame"))?;
            drop(map);
            data = gst::Buffer::from_mut_slice(reframed);
        }
        let b = data.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds((start - in_rel) as u64));
        b.set_dts(gst::ClockTime::from_nseconds((start - in_rel) as u64));
        b.set_duration(gst::ClockTime::from_nseconds((end - start).max(1) as u64));
        if frame.keyframe {
            b.unset_flags(gst::BufferFlags::DELTA_UNIT);
        } else {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        push(src, data)?;
        pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
}

/// Demuxes frames `from..kept.end` of `track` and hands each to `f` with the time of the
/// next (`None` for the last).
fn frames_with_next(
    track: &VideoTrack,
    from: usize,
    f: impl FnMut(EncodedFrame, Option<i64>) -> Result<()>,
) -> Result<()> {
    frames_between_with_next(track, from, track.kept.end, f)
}

/// [`frames_with_next`] over frames `from..until` (decode order).
fn frames_between_with_next(
    track: &VideoTrack,
    from: usize,
    until: usize,
    mut f: impl FnMut(EncodedFrame, Option<i64>) -> Result<()>,
) -> Result<()> {
    let mut demuxer = Demuxer::open(&track.input.source)?;
    let mut held: Option<EncodedFrame> = None;
    let mut index = 0usize;
    while let Some(frame) = demuxer.next_frame()? {
        let i = index;
        index += 1;
        if i < from {
            continue;
        }
        if i >= until {
            break;
        }
        let next_pts = frame.pts;
        if let Some(prev) = held.replace(frame) {
            f(prev, Some(next_pts))?;
        }
    }
    match held {
        Some(last) => f(last, None),
        None => Ok(()),
    }
}

/// Pushes the source frames (file times) into a pipeline that decodes and re-encodes them.
fn decode_input(track: &VideoTrack, src: &gst_app::AppSrc, pushed: &AtomicU64) -> Result<()> {
    if track.scan.codec.is_stills() {
        return push_stills(track, src, pushed);
    }
    let from = track.keyframe_before(track.kept.start);
    let until = if track.scan.reordered {
        usize::MAX
    } else {
        track.kept.end
    };
    push_source_frames(track, src, from, until, pushed)
}

/// Pushes the frames a decoder needs to show `track` from the in point to the out point (file
/// times), each lasting until the next so a hole holds the last picture — for a branch that
/// decodes and retimes them itself (the picture-in-picture composite).
///
/// # Errors
/// A damaged input, or the pipeline stopped taking frames.
pub fn feed_decoded(track: &VideoTrack, src: &gst_app::AppSrc) -> Result<()> {
    let from = track.keyframe_before(track.kept.start);
    let result = if track.scan.reordered {
        push_source_frames(track, src, from, usize::MAX, &AtomicU64::new(0))
    } else {
        push_held_frames(track, src, from)
    };
    let _ = src.end_of_stream();
    result
}

fn push_held_frames(track: &VideoTrack, src: &gst_app::AppSrc, from: usize) -> Result<()> {
    let out_rel = track.out_rel();
    frames_with_next(track, from, |frame, next_pts| {
        let until = next_pts.unwrap_or_else(|| out_rel.max(frame.pts + track.scan.frame_duration));
        let mut data = frame.data;
        let b = data.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(frame.pts as u64));
        b.set_dts(gst::ClockTime::NONE);
        b.set_duration(gst::ClockTime::from_nseconds(
            (until - frame.pts).max(1) as u64
        ));
        push(src, data)
    })
}

fn push_source_frames(
    track: &VideoTrack,
    src: &gst_app::AppSrc,
    from: usize,
    until: usize,
    pushed: &AtomicU64,
) -> Result<()> {
    let mut demuxer = Demuxer::open(&track.input.source)?;
    let mut index = 0usize;
    while let Some(frame) = demuxer.next_frame()? {
        let i = index;
        index += 1;
        if i < from {
            continue;
        }
        if i >= until {
            break;
        }
        let mut data = frame.data;
        let b = data.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(frame.pts as u64));
        b.set_dts(gst::ClockTime::NONE);
        b.set_duration(gst::ClockTime::from_nseconds(
            track.scan.frame_duration as u64,
        ));
        push(src, data)?;
        pushed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Pushes a stills track as constant-rate video (file times): each still again at every
/// instant of the output grid until the next still's time (see [`super::stills`]).
fn push_stills(track: &VideoTrack, src: &gst_app::AppSrc, pushed: &AtomicU64) -> Result<()> {
    let mut grid = Grid::new(track.in_rel(), track.out_rel());
    // Stored out of capture order (a confused sender): every still, in the order sent.
    let (from, until) = if track.scan.reordered {
        (0, usize::MAX)
    } else {
        (track.kept.start, track.kept.end)
    };
    frames_between_with_next(track, from, until, |still, next_pts| {
        for k in grid.frames_of(still.pts, next_pts) {
            let (pts, duration) = grid.frame(k);
            // A new buffer sharing the still's memory: no bytes are copied.
            let mut frame = still.data.copy();
            let b = frame.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(pts as u64));
            b.set_dts(gst::ClockTime::NONE);
            b.set_duration(gst::ClockTime::from_nseconds(duration as u64));
            b.unset_flags(gst::BufferFlags::DELTA_UNIT);
            push(src, frame)?;
            pushed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// The window a re-encoder keeps for `track`.
#[must_use]
pub fn retime_window(track: &VideoTrack) -> RetimeWindow {
    let sorted = track.scan.sorted_pts();
    RetimeWindow {
        first_shown: sorted.get(track.kept.start).copied().unwrap_or(0),
        in_rel: track.in_rel(),
        out_rel: track.out_rel(),
    }
}

struct Head {
    frames: Vec<gst::Buffer>,
    caps: Option<gst::Caps>,
}

/// Decodes the GOP holding the first shown frame and re-encodes frames up to `head_end`.
fn reencode_head(track: &VideoTrack, head_end: usize) -> Result<Head> {
    let codec = track.scan.codec;
    let pipeline = Pipeline::new(format!(
        "re-encoding the first GOP of {}",
        track.input.label().display()
    ));
    let src = gst_app::AppSrc::builder()
        .caps(&track.scan.caps)
        .format(gst::Format::Time)
        .build();
    let sink = gst_app::AppSink::builder().sync(false).build();
    let mut window = retime_window(track);
    // The head ends where copying resumes: frames at or after it are not re-encoded.
    let sorted = track.scan.sorted_pts();
    window.out_rel = sorted
        .get(head_end)
        .copied()
        .unwrap_or(track.out_rel())
        .min(track.out_rel());
    let gop = (track.scan.fps() * 2.0).round().max(1.0) as u32;
    let reencoder = Reencoder::new(codec, codec, track.scan.bitrate_kbps(), gop, window, None)?;
    let mut chain: Vec<&gst::Element> = vec![src.upcast_ref()];
    chain.extend(reencoder.elements.iter());
    chain.push(sink.upcast_ref());
    pipeline.chain(&chain)?;
    pipeline.play()?;
    let from = track.keyframe_before(track.kept.start);
    let pushed = AtomicU64::new(0);
    push_source_frames(track, &src, from, head_end, &pushed)?;
    let _ = src.end_of_stream();
    let mut frames = Vec::new();
    let mut caps = None;
    while let Some(sample) = pipeline.pull(&sink)? {
        if caps.is_none() {
            caps = sample.caps_owned();
        }
        // Encoders may shift timestamps (x264enc adds 1000 h so DTS never goes negative) and
        // say so in the segment: running time is the time we stamped.
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        if let Some(mut buffer) = sample.buffer_owned() {
            if let (Some(segment), Some(pts)) = (segment, buffer.pts()) {
                let b = buffer.make_mut();
                b.set_pts(segment.to_running_time(pts));
            }
            frames.push(buffer);
        }
    }
    pipeline.stop();
    Ok(Head { frames, caps })
}

/// Joins re-encoded head frames and copied frames into one stream the container's single
/// sample description can carry.
struct Splice {
    h264: bool,
    head_sets: Option<ParameterSets>,
    source_sets: Option<ParameterSets>,
    path: std::path::PathBuf,
}

impl Splice {
    fn new(track: &VideoTrack, head_caps: Option<&gst::Caps>) -> Self {
        let sets = |caps: Option<&gst::Caps>| {
            let s = caps?.structure(0)?;
            let record = s.get::<gst::Buffer>("codec_data").ok()?;
            let map = record.map_readable().ok()?;
            ParameterSets::from_avcc(map.as_slice())
        };
        let h264 = track.scan.codec == VideoCodec::H264;
        Self {
            h264,
            head_sets: if h264 { sets(head_caps) } else { None },
            source_sets: if h264 {
                sets(Some(&track.scan.caps))
            } else {
                None
            },
            path: track.input.label(),
        }
    }

    /// A re-encoded frame in the output's framing (H.264: the head's own parameter sets
    /// in-band before its keyframes, NAL lengths as the source's), decode time = presentation
    /// time (the encoder makes no B-frames; x264 offsets its DTS otherwise).
    fn head_frame(&mut self, frame: gst::Buffer) -> Result<gst::Buffer> {
        let keyframe = !frame.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let mut out = match (&self.h264, &self.head_sets, &self.source_sets) {
            (false, _, _) => frame.copy(),
            (true, Some(head), Some(source)) => {
                let map = frame
                    .map_readable()
                    .map_err(|e| MuxError::input(&self.path, e.to_string()))?;
                let relabelled = ParameterSets {
                    length_size: source.length_size,
                    nals: head.nals.clone(),
                };
                let data = relabelled
                    .frame(map.as_slice(), head.length_size, keyframe)
                    .ok_or_else(|| MuxError::input(&self.path, "re-encoded frame is malformed"))?;
                gst::Buffer::from_mut_slice(data)
            }
            (true, _, _) => {
                return Err(MuxError::input(
                    &self.path,
                    "H.264 without parameter sets (codec_data): cannot splice a re-encoded GOP",
                ));
            }
        };
        let b = out.make_mut();
        b.set_pts(frame.pts());
        b.set_dts(frame.pts());
        b.set_duration(frame.duration());
        b.set_flags(frame.flags());
        Ok(out)
    }
}
