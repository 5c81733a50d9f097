//! One mux, end to end: read the inputs, put them on the timeline, choose the cuts, plan each
//! track, build the output pipeline (appsrc per track → encoder where needed → `mp4mux` in
//! fragmented mode or `matroskamux` in streaming mode → appsink) and stream its bytes into
//! the caller's writer — the sealed archive — as they come, so memory stays bounded however
//! long the call. Returns the manifest to seal with them.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::align::{self, AlignSettings, ReferenceInput};
use crate::audio::{AudioInput, AudioOutput, AudioTrack};
use crate::error::{MuxError, Result};
use crate::input::audio::AudioFile;
use crate::input::video::{VideoCodec, VideoScan, VideoSource};
use crate::input::{fingerprint, fingerprint_video};
use crate::manifest::{
    ClockRecord, CutRecord, InputRecord, MANIFEST_VERSION, Manifest, TrackRecord, TrackRole,
    rfc3339,
};
use crate::pipeline::{self, Pipeline, element};
use crate::timeline::{CtiClock, CutPoints, UtcNanos};
use crate::video::{self, PipBranch, PipLayout, VideoInput, VideoMode, VideoTrack};

/// The container (and with it the codecs) of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Fragmented MP4: H.264 + AAC.
    #[default]
    Mp4,
    /// Matroska: VP8/VP9 + Opus.
    Mkv,
}

impl OutputFormat {
    fn video_codec(self, input: VideoCodec) -> VideoCodec {
        match (self, input) {
            (Self::Mp4, _) => VideoCodec::H264,
            (Self::Mkv, VideoCodec::Vp9) => VideoCodec::Vp9,
            (Self::Mkv, _) => VideoCodec::Vp8,
        }
    }

    fn audio_codec(self) -> &'static str {
        match self {
            Self::Mp4 => "aac",
            Self::Mkv => "opus",
        }
    }

    /// Audio rate, and the priming the encoder puts before the first real sample that
    /// players do not skip on their own (see [`crate::audio`]): `voaacenc` delays by 1600
    /// samples at any rate (measured by the sync tests: 1024 of priming plus its 576-sample
    /// look-ahead); Opus says its pre-skip in its header. AAC runs at 32 kHz at least: an
    /// fragmented MP4 ends on a whole AAC frame of 1024 samples, and only from 32 kHz up is
    /// that shorter than a video frame (the duration contract); at 8 kHz it would be 128 ms.
    fn audio_output(self, input_rate_hz: u32) -> AudioOutput {
        match self {
            Self::Mp4 => AudioOutput {
                rate_hz: match input_rate_hz {
                    44_100 | 48_000 => input_rate_hz,
                    _ => 32_000,
                },
                skip: 1600,
                tail: 1600 + 1024,
                aac_bitrate_per_channel: Some(AAC_BITRATE_PER_CHANNEL),
            },
            Self::Mkv => AudioOutput {
                rate_hz: 48_000,
                skip: 0,
                tail: 0,
                aac_bitrate_per_channel: None,
            },
        }
    }

    fn container(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4 (fragmented)",
            Self::Mkv => "matroska (streaming)",
        }
    }
}

/// How the video tracks are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One track per input (camera, then screen).
    #[default]
    Tracks,
    /// The same, plus a first track with the camera composited over the screen (see
    /// [`crate::video::pip`]). Needs a screen.
    Pip,
}

/// AAC bit rate per channel.
const AAC_BITRATE_PER_CHANNEL: i32 = 48_000;

/// What to mux.
#[derive(Debug, Clone)]
pub struct MuxRequest {
    /// The camera file and when its first frame was captured.
    pub camera: VideoInput,
    /// The screen file, if any.
    pub screen: Option<VideoInput>,
    /// The CTI recording and its call record.
    pub audio: AudioInput,
    /// The agent's microphone reference, when sent: refines the CTI's offset (never muxed).
    pub reference: Option<ReferenceInput>,
    /// An explicit in point (verification start), instead of the latest start.
    pub in_point: Option<UtcNanos>,
    /// An explicit out point (verification end), instead of the earliest end.
    pub out_point: Option<UtcNanos>,
    /// The output container.
    pub format: OutputFormat,
    /// Separate tracks, or a picture-in-picture composite as well.
    pub layout: Layout,
}

/// Muxes `request` into `out`, calling `progress` with the fraction done (0..=1).
///
/// # Errors
/// Unreadable or mismatched inputs, impossible cuts, a pipeline failure, or a write failure.
/// Whatever was written to `out` by then must be discarded (the vault does).
pub fn mux(
    request: &MuxRequest,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(f64),
) -> Result<Manifest> {
    pipeline::init()?;
    if request.layout == Layout::Pip && request.screen.is_none() {
        return Err(MuxError::Request(
            "the picture-in-picture layout needs a screen track".into(),
        ));
    }
    let mut videos = vec![request.camera.clone()];
    videos.extend(request.screen.clone());
    let videos_to_hash: Vec<_> = videos.iter().map(|v| v.source.clone()).collect();
    let files_to_hash: Vec<_> = std::iter::once(request.audio.path.clone())
        .chain(request.reference.iter().map(|r| r.path.clone()))
        .collect();

    std::thread::scope(|scope| {
        // Hash the inputs while the scan reads them too (page cache shared).
        let hashing = scope.spawn(move || {
            videos_to_hash
                .iter()
                .map(fingerprint_video)
                .chain(files_to_hash.iter().map(|p| fingerprint(p)))
                .collect::<Result<Vec<_>>>()
        });
        let started = std::time::Instant::now();
        let scans = videos
            .iter()
            .map(|v| VideoScan::of(&v.source))
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(elapsed = ?started.elapsed(), "video scanned");
        let audio_file = AudioFile::open(&request.audio.path)?;
        tracing::debug!(elapsed = ?started.elapsed(), "audio opened");
        let clock = CtiClock::new(
            request.audio.start,
            request.audio.end,
            audio_file.info.frames,
            audio_file.info.rate_hz,
        )?;
        // Refined against the microphone reference before any cut is chosen.
        let recorded = clock;
        let (clock, alignment) = match &request.reference {
            Some(reference) => {
                let settings = AlignSettings::default();
                let (clock, found) =
                    align::refine(reference, &request.audio.path, clock, &settings)?;
                (clock, Some(found))
            }
            None => (clock, None),
        };
        tracing::debug!(elapsed = ?started.elapsed(), "CTI offset checked");
        let mut spans: Vec<_> = scans
            .iter()
            .zip(&videos)
            .map(|(s, v)| VideoTrack::span(s, v.start))
            .collect();
        spans.push(clock.span());
        let cuts = CutPoints::choose(&spans, request.in_point, request.out_point)?;
        let tracks: Vec<VideoTrack> = videos
            .iter()
            .zip(scans)
            .map(|(v, s)| {
                let codec = request.format.video_codec(s.codec);
                VideoTrack::plan(v.clone(), s, cuts, codec)
            })
            .collect();
        let audio_info = audio_file.info.clone();
        let audio = AudioTrack::plan(
            audio_file,
            clock,
            cuts,
            request.format.audio_output(audio_info.rate_hz),
        );
        let audio_gaps = audio.gaps.clone();
        let audio_samples = audio.output_samples();

        let pip = (request.layout == Layout::Pip).then(|| {
            let (camera, screen) = (&tracks[0].scan, &tracks[1].scan);
            PipLayout::new(camera.size, screen.size, camera.framerate.unwrap_or((0, 0)))
        });
        let units = run_pipeline(request.format, &tracks, pip.as_ref(), audio, out, progress)?;
        tracing::debug!(elapsed = ?started.elapsed(), "muxed");

        let hashes = hashing.join().expect("hashing does not panic")?;
        tracing::debug!(elapsed = ?started.elapsed(), "inputs hashed");
        let mut inputs: Vec<InputRecord> = tracks
            .iter()
            .zip(&hashes)
            .map(|(t, (sha256, bytes))| InputRecord {
                role: t.input.role.into(),
                file: match &t.input.source {
                    VideoSource::File(path) => file_name(path),
                    VideoSource::Frames(frames) => frames.label(),
                },
                bytes: *bytes,
                sha256: sha256.clone(),
                codec: format!("{:?}", t.scan.codec).to_lowercase(),
                start: rfc3339(t.input.start),
                end: rfc3339(t.input.start.plus(t.scan.end())),
                units: t.scan.frame_pts.len() as u64,
            })
            .collect();
        // Hashed in order: the videos, the CTI recording, the reference if any.
        let (audio_sha, audio_bytes) = hashes[videos.len()].clone();
        inputs.push(InputRecord {
            role: TrackRole::CtiAudio,
            file: file_name(&request.audio.path),
            bytes: audio_bytes,
            sha256: audio_sha,
            codec: audio_info.codec.clone(),
            start: rfc3339(recorded.start),
            end: rfc3339(recorded.span().end),
            units: audio_info.frames,
        });
        if let Some((reference, found)) = request.reference.as_ref().zip(alignment.as_ref()) {
            let (sha256, bytes) = hashes[videos.len() + 1].clone();
            inputs.push(InputRecord {
                role: TrackRole::MicReference,
                file: file_name(&reference.path),
                bytes,
                sha256,
                codec: found.reference.codec.clone(),
                start: rfc3339(found.reference_span.start),
                end: rfc3339(found.reference_span.end),
                units: found.reference.frames,
            });
        }
        let first = usize::from(pip.is_some());
        let mut out_tracks: Vec<TrackRecord> = pip
            .iter()
            .map(|l| TrackRecord {
                index: 0,
                role: TrackRole::Composite,
                codec: format!("{:?}", request.format.video_codec(tracks[0].scan.codec))
                    .to_lowercase(),
                made_by: format!(
                    "camera at {}×{} over the screen at {}×{}, encoded",
                    l.inset.2, l.inset.3, l.width, l.height
                ),
                units: units.composite,
            })
            .collect();
        out_tracks.extend(tracks.iter().enumerate().map(|(i, t)| TrackRecord {
                index: first + i,
                role: t.input.role.into(),
                codec: format!("{:?}", request.format.video_codec(t.scan.codec)).to_lowercase(),
                made_by: match t.mode {
                    VideoMode::Passthrough => "passthrough".into(),
                    VideoMode::ReencodedHead { frames } => {
                        format!("passthrough; the first {frames} frames (partial GOP at the in point) re-encoded")
                    }
                    VideoMode::Transcode(_) => "transcoded".into(),
                },
                units: units.tracks.get(i).copied().unwrap_or(0),
            }));
        out_tracks.push(TrackRecord {
            index: first + tracks.len(),
            role: TrackRole::CtiAudio,
            codec: request.format.audio_codec().into(),
            made_by: format!(
                "resampled {} Hz → {} Hz on the timeline ({}); {} channel(s) kept",
                audio_info.rate_hz,
                request.format.audio_output(audio_info.rate_hz).rate_hz,
                clock.drift_ppm().map_or_else(
                    || "no end time: nominal rate".into(),
                    |p| format!("drift {p:+.1} ppm corrected")
                ),
                audio_info.channels
            ),
            units: audio_samples,
        });
        let mut gaps: Vec<_> = tracks.iter().flat_map(|t| t.gaps.clone()).collect();
        gaps.extend(audio_gaps);
        let gaps = gaps
            .into_iter()
            .map(|g| g.relative_to(cuts.in_point))
            .collect();
        Ok(Manifest {
            kind: "mux",
            manifest_version: MANIFEST_VERSION,
            tool: concat!("idv ", env!("CARGO_PKG_VERSION")).into(),
            gstreamer: gst::version_string().to_string(),
            container: request.format.container(),
            inputs,
            clock: ClockRecord {
                method: align::clock_method(request.audio.end.is_some(), alignment.as_ref()),
                nominal_rate_hz: audio_info.rate_hz,
                effective_rate_hz: clock.effective_rate_hz(),
                drift_ppm: clock.drift_ppm(),
                audio_offset_s: (clock.start.0 - request.camera.start.0) as f64 / 1e9,
                refined_by_ms: alignment.as_ref().map(|a| a.applied_ns as f64 / 1e6),
                reference_correction_ms: alignment
                    .as_ref()
                    .and_then(|a| a.found_ns())
                    .map(|ns| ns as f64 / 1e6),
                confidence: alignment.as_ref().map(align::Alignment::confidence),
                agent_clock: None,
            },
            cuts: CutRecord {
                r#in: rfc3339(cuts.in_point),
                out: rfc3339(cuts.out_point),
                duration_s: cuts.duration() as f64 / 1e9,
                // Without an explicit point, `CutPoints::choose` takes exactly these.
                in_chosen_by: if request.in_point.is_some() {
                    "requested"
                } else {
                    "latest start"
                },
                out_chosen_by: if request.out_point.is_some() {
                    "requested"
                } else {
                    "earliest end"
                },
            },
            tracks: out_tracks,
            gaps,
            muxed_at: rfc3339(
                UtcNanos::from_datetime(time::OffsetDateTime::now_utc()).unwrap_or(UtcNanos(0)),
            ),
        })
    })
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Frames muxed per video track.
struct Units {
    tracks: Vec<u64>,
    composite: u64,
}

/// Builds and runs the output pipeline (the composite first when `pip` is given, then the
/// video tracks, then the audio).
fn run_pipeline(
    format: OutputFormat,
    tracks: &[VideoTrack],
    pip: Option<&PipLayout>,
    audio: AudioTrack,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(f64),
) -> Result<Units> {
    let pipeline = Pipeline::new("muxing");
    let muxer = match format {
        OutputFormat::Mp4 => {
            let m = element("mp4mux")?;
            m.set_property("fragment-duration", 1000u32);
            m.set_property("streamable", true);
            m
        }
        OutputFormat::Mkv => {
            let m = element("matroskamux")?;
            m.set_property("streamable", true);
            m.set_property("writing-app", concat!("idv ", env!("CARGO_PKG_VERSION")));
            m
        }
    };
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(16)
        .build();
    pipeline.chain(&[&muxer, sink.upcast_ref()])?;

    let composite = match pip {
        Some(layout) => {
            let codec = format.video_codec(tracks[0].scan.codec);
            let branch = PipBranch::build(&pipeline, layout, &tracks[0], &tracks[1], codec)?;
            link_to_muxer(&pipeline, &branch.last, &muxer, "video_%u")?;
            Some(branch)
        }
        None => None,
    };
    let mut video_srcs = Vec::new();
    for (i, track) in tracks.iter().enumerate() {
        let src = gst_app::AppSrc::builder()
            .name(format!("video{i}"))
            .caps(&video::feed::appsrc_caps(track))
            .format(gst::Format::Time)
            .block(true)
            .max_bytes(8 << 20)
            .build();
        let mut chain: Vec<gst::Element> = vec![src.clone().upcast()];
        if let VideoMode::Transcode(codec) = track.mode {
            let gop = (track.scan.fps() * 2.0).round().max(1.0) as u32;
            let reencoder = video::Reencoder::new(
                track.scan.codec,
                codec,
                track.scan.bitrate_kbps(),
                gop,
                video::feed::retime_window(track),
            )?;
            chain.extend(reencoder.elements);
        }
        chain.push(element("queue")?);
        let refs: Vec<&gst::Element> = chain.iter().collect();
        pipeline.chain(&refs)?;
        link_to_muxer(
            &pipeline,
            chain.last().expect("non-empty"),
            &muxer,
            "video_%u",
        )?;
        video_srcs.push(src);
    }

    let audio_caps = audio.caps();
    let mut audio_src = gst_app::AppSrc::builder()
        .name("audio")
        .format(gst::Format::Time)
        .block(true)
        .max_bytes(1 << 20);
    if let Some(caps) = &audio_caps {
        audio_src = audio_src.caps(caps);
    }
    let audio_src = audio_src.build();
    let mut audio_chain: Vec<gst::Element> = vec![audio_src.clone().upcast()];
    if format == OutputFormat::Mkv {
        // AAC is encoded by the feeder (see `audio::aac`); Opus here.
        let encoder = element("opusenc")?;
        encoder.set_property("bitrate", 32_000i32 * i32::from(audio.file.info.channels));
        audio_chain.extend([element("audioconvert")?, encoder]);
    }
    audio_chain.push(element("queue")?);
    let refs: Vec<&gst::Element> = audio_chain.iter().collect();
    pipeline.chain(&refs)?;
    link_to_muxer(
        &pipeline,
        audio_chain.last().expect("non-empty"),
        &muxer,
        "audio_%u",
    )?;

    pipeline.play()?;
    let total_samples = audio.output_samples().max(1);
    let pushed_audio = AtomicU64::new(0);
    let pushed_video: Vec<AtomicU64> = tracks.iter().map(|_| AtomicU64::new(0)).collect();

    std::thread::scope(|scope| -> Result<Units> {
        let feeders: Vec<_> = tracks
            .iter()
            .zip(&video_srcs)
            .zip(&pushed_video)
            .map(|((track, src), pushed)| scope.spawn(move || video::feed(track, src, pushed)))
            .collect();
        let audio_feeder = scope.spawn(|| audio.feed(&audio_src, &pushed_audio));
        let composite_feeders: Vec<_> = composite
            .iter()
            .flat_map(|b| [(&tracks[0], &b.camera), (&tracks[1], &b.screen)])
            .map(|(track, src)| scope.spawn(move || video::feed_decoded(track, src)))
            .collect();

        let written = drain(&pipeline, &sink, out, &mut || {
            progress(pushed_audio.load(Ordering::Relaxed) as f64 / total_samples as f64);
        });
        if written.is_err() {
            // Unblock the feeders: a stopped pipeline refuses their pushes.
            pipeline.stop();
        }
        let mut errors: Vec<MuxError> = feeders
            .into_iter()
            .chain(composite_feeders)
            .filter_map(|f| f.join().expect("feeders do not panic").err())
            .collect();
        errors.extend(audio_feeder.join().expect("feeders do not panic").err());
        // A damaged input explains everything after it; otherwise the pipeline's own error
        // says more than a feeder that found the pipeline stopped.
        if let Some(i) = errors
            .iter()
            .position(|e| matches!(e, MuxError::Input { .. }))
        {
            return Err(errors.swap_remove(i));
        }
        written?;
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        progress(1.0);
        Ok(Units {
            tracks: pushed_video
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .collect(),
            composite: composite
                .as_ref()
                .map_or(0, |b| b.frames.load(Ordering::Relaxed)),
        })
    })
}

/// Links `from` to a new request pad of `muxer` (explicitly: linking by caps could hand a
/// video stream an audio pad).
fn link_to_muxer(
    pipeline: &Pipeline,
    from: &gst::Element,
    muxer: &gst::Element,
    template: &str,
) -> Result<()> {
    let pad = muxer
        .request_pad_simple(template)
        .ok_or_else(|| pipeline.error(muxer.name(), format!("no {template} pad")))?;
    let src = from
        .static_pad("src")
        .expect("the last element has a src pad");
    src.link(&pad)
        .map(|_| ())
        .map_err(|e| pipeline.error(muxer.name(), format!("{template}: {e:?}")))
}

/// Writes the muxer's output to `out` until end of stream.
fn drain(
    pipeline: &Pipeline,
    sink: &gst_app::AppSink,
    out: &mut dyn Write,
    tick: &mut dyn FnMut(),
) -> Result<()> {
    while let Some(sample) = pipeline.pull(sink)? {
        if let Some(buffer) = sample.buffer() {
            let map = buffer
                .map_readable()
                .map_err(|e| pipeline.error("appsink", e))?;
            out.write_all(map.as_slice()).map_err(MuxError::Output)?;
        }
        tick();
    }
    pipeline.check_bus()?;
    pipeline.stop();
    Ok(())
}
