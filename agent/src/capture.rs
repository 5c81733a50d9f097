//! Capture and encoding, one GStreamer pipeline per track, built in code. A video track:
//!
//! ```text
//! source → videoconvert → videoscale → videorate → I420 caps → [blinder] → x264enc → h264parse → appsink
//! ```
//!
//! Sources: `videotestsrc` (a moving ball, with a running clock drawn on it when the pango
//! plugin is there), `filesrc ! decodebin` played in real time, `v4l2src`, `ximagesrc`. The
//! encoder is x264 tuned for zero latency, a keyframe at least every two seconds and on
//! request. The microphone reference has a pipeline of its own ([`audio`]: Opus); a track a
//! browser sends over WebRTC is fed in as RTP packets ([`rtp`]) and encoded the same way. Each
//! encoded unit leaves through a [`Gate`] (pause, gaps, keyframe waits) into a bounded
//! channel; the streaming thread never waits on the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use proto::Track;
use tokio::sync::mpsc;

use crate::blinder::{self, Blinds, Plane};
use crate::clock;
use crate::config::{TrackSettings, VideoSource};
use crate::error::AgentError;

pub mod audio;
pub mod rtp;

/// One encoded unit, stamped on the agent clock.
#[derive(Debug)]
pub struct Captured {
    /// The track.
    pub track: Track,
    /// Capture time, agent monotonic ns.
    pub captured_at_ns: i64,
    /// Decodes on its own.
    pub keyframe: bool,
    /// Frames were dropped before this one (declared to the server).
    pub gap: bool,
    /// An H.264 Annex-B access unit, a screen-codec frame, a JPEG, or one Opus packet; empty
    /// for a pause marker.
    pub data: Vec<u8>,
}

/// How a pipeline encodes what it captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// H.264 (x264, zero latency) at the track's frame rate and bitrate.
    H264,
    /// A JPEG still every `every_s` seconds (screenshot mode).
    Jpeg {
        /// Seconds between stills.
        every_s: u32,
    },
    /// The screen codec (`screencodec`): only what changed, text lossless, at the track's
    /// frame rate; unchanged frames are heartbeats.
    Tiles,
}

/// The screen codec's encoder of a tiles pipeline, fed on the streaming thread.
struct TileEncoder {
    encoder: std::sync::Mutex<screencodec::Encoder>,
    key: AtomicBool,
}

/// What lets a track's frames out: the customer's pause, and the waits for a keyframe after a
/// resume or a drop.
#[derive(Debug, Default)]
pub struct Gate {
    paused: AtomicBool,
    want_key: AtomicBool,
    dropped: AtomicBool,
}

impl Gate {
    /// Stops letting frames out (the pause itself is declared by the session).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Lets frames out again, from the next keyframe.
    pub fn resume(&self) {
        self.want_key.store(true, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Whether the next frame let out must be a keyframe.
    fn wants_key(&self) -> bool {
        self.want_key.load(Ordering::SeqCst)
    }

    /// Whether the track is paused.
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// A frame could not be kept: the next one let out is a keyframe flagged as after a gap.
    pub fn dropped(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        self.want_key.store(true, Ordering::SeqCst);
    }

    /// Decides for one frame: `None` to drop it, else whether it follows a gap.
    fn admit(&self, keyframe: bool) -> Option<bool> {
        if self.is_paused() || (self.want_key.load(Ordering::SeqCst) && !keyframe) {
            return None;
        }
        Some(self.dropped.load(Ordering::SeqCst))
    }

    fn admitted(&self) {
        self.want_key.store(false, Ordering::SeqCst);
        self.dropped.store(false, Ordering::SeqCst);
    }
}

/// A running capture pipeline.
pub struct Capture {
    track: Track,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    quality: Quality,
    tiles: Option<Arc<TileEncoder>>,
    /// The track's gate.
    pub gate: Arc<Gate>,
    ended: Arc<AtomicBool>,
    /// [`Capture::stop`] ran (a pipeline is stopped once: a second stop would wait on a
    /// first one that hangs).
    stopped: AtomicBool,
}

/// What [`Capture::degrade`] turns down while the spill buffer fills.
enum Quality {
    /// A video track: the encoder's bitrate and the frame rate.
    Video {
        encoder: gst::Element,
        rate: gst::Element,
        settings: TrackSettings,
    },
    /// The microphone reference: the Opus encoder's bitrate.
    Audio {
        encoder: gst::Element,
        bitrate_bps: i32,
    },
}

fn element(factory: &str) -> Result<gst::Element, AgentError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| AgentError::Config(format!("GStreamer element {factory} is not installed")))
}

fn name_of(track: Track, source: &VideoSource) -> String {
    format!("{} {source}", track.name())
}

impl Capture {
    /// Builds and starts the pipeline of `track`; its frames go to `out`.
    ///
    /// # Errors
    /// [`AgentError::Capture`] when the source cannot be opened (a missing device, an
    /// unreadable file, no X display), [`AgentError::Config`] for a missing GStreamer plugin.
    pub fn start(
        track: Track,
        settings: &TrackSettings,
        encoding: Encoding,
        blinds: Option<Blinds>,
        out: mpsc::Sender<Captured>,
    ) -> Result<Self, AgentError> {
        let source_name = name_of(track, &settings.source);
        Self::start_from(
            track,
            settings,
            encoding,
            blinds,
            out,
            source_name,
            |pipeline, convert| add_source(pipeline, &settings.source, convert),
        )
    }

    /// [`Capture::start`] with the source elements added by `add_source` (which links them
    /// to the `convert` it is given, already in the pipeline); errors are named
    /// `source_name`.
    fn start_from(
        track: Track,
        settings: &TrackSettings,
        encoding: Encoding,
        blinds: Option<Blinds>,
        out: mpsc::Sender<Captured>,
        source_name: String,
        add_source: impl FnOnce(&gst::Pipeline, &gst::Element) -> Result<(), String>,
    ) -> Result<Self, AgentError> {
        gst::init().map_err(|e| AgentError::Config(format!("GStreamer: {e}")))?;
        let fail = |reason: String| AgentError::Capture {
            source_name: source_name.clone(),
            reason,
        };
        let pipeline = gst::Pipeline::with_name(&format!("{}-capture", track.name()));
        let convert = element("videoconvert")?;
        let scale = element("videoscale")?;
        let rate = element("videorate")?;
        let framerate = match encoding {
            Encoding::H264 | Encoding::Tiles => gst::Fraction::new(settings.fps as i32, 1),
            Encoding::Jpeg { every_s } => gst::Fraction::new(1, every_s.max(1) as i32),
        };
        let format = if encoding == Encoding::Tiles {
            "BGRx"
        } else {
            "I420"
        };
        let mut caps = gst::Caps::builder("video/x-raw")
            .field("format", format)
            .field("framerate", framerate);
        if let Some((w, h)) = settings.size {
            caps = caps.field("width", w as i32).field("height", h as i32);
        }
        let raw_caps = gst::ElementFactory::make("capsfilter")
            .property("caps", caps.build())
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let (encoder, parse, sink_caps) = match encoding {
            Encoding::H264 => (
                gst::ElementFactory::make("x264enc")
                    .property_from_str("tune", "zerolatency")
                    .property_from_str("speed-preset", "ultrafast")
                    .property("bitrate", settings.bitrate_kbps)
                    .property("key-int-max", settings.fps.max(1) * 2)
                    .property("bframes", 0u32)
                    .build()
                    .map_err(|_| {
                        AgentError::Config("GStreamer element x264enc is not installed".into())
                    })?,
                gst::ElementFactory::make("h264parse")
                    .property("config-interval", -1i32)
                    .build()
                    .map_err(|_| {
                        AgentError::Config("GStreamer element h264parse is not installed".into())
                    })?,
                gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .build(),
            ),
            Encoding::Tiles => (
                element("identity")?,
                element("identity")?,
                gst::Caps::builder("video/x-raw")
                    .field("format", "BGRx")
                    .build(),
            ),
            Encoding::Jpeg { .. } => (
                gst::ElementFactory::make("jpegenc")
                    .property("quality", 85i32)
                    .build()
                    .map_err(|_| {
                        AgentError::Config("GStreamer element jpegenc is not installed".into())
                    })?,
                element("identity")?,
                gst::Caps::builder("image/jpeg").build(),
            ),
        };
        let sink = gst_app::AppSink::builder()
            .caps(&sink_caps)
            .sync(matches!(settings.source, VideoSource::File(_)))
            .max_buffers(8)
            .build();

        let chain = [
            &convert,
            &scale,
            &rate,
            &raw_caps,
            &encoder,
            &parse,
            sink.upcast_ref(),
        ];
        pipeline.add_many(chain).map_err(|e| fail(e.to_string()))?;
        gst::Element::link_many(chain).map_err(|e| fail(e.to_string()))?;
        add_source(&pipeline, &convert).map_err(&fail)?;

        if let Some(blinds) = blinds {
            install_blinder(&raw_caps, blinds);
        }
        let gate = Arc::new(Gate::default());
        let ended = Arc::new(AtomicBool::new(false));
        let tiles = match encoding {
            Encoding::Tiles => {
                // Key frames only when needed: the first frame, after a drop or a resume, and
                // when the server asks (a new live watcher, one that lost frames). Each costs
                // several times a busy second of typing, and the transport loses nothing, so
                // a periodic one buys nothing (benches/README.md, "Screen codec").
                let config = screencodec::EncoderConfig {
                    keyframe_interval: 0,
                    ..screencodec::EncoderConfig::default()
                };
                let encoder = screencodec::Encoder::new(config)
                    .map_err(|e| AgentError::Config(format!("screen codec: {e}")))?;
                Some(Arc::new(TileEncoder {
                    encoder: std::sync::Mutex::new(encoder),
                    key: AtomicBool::new(false),
                }))
            }
            _ => None,
        };
        sink.set_callbacks(frame_callbacks(
            track,
            gate.clone(),
            ended.clone(),
            tiles.clone(),
            out,
        ));

        play(&pipeline).map_err(fail)?;
        Ok(Self {
            track,
            pipeline,
            sink,
            quality: Quality::Video {
                encoder,
                rate,
                settings: settings.clone(),
            },
            tiles,
            gate,
            ended,
            stopped: AtomicBool::new(false),
        })
    }

    /// The track.
    #[must_use]
    pub fn track(&self) -> Track {
        self.track
    }

    /// Asks the encoder for a keyframe as soon as it can (every Opus packet is one already).
    pub fn request_keyframe(&self) {
        if let Some(tiles) = &self.tiles {
            tiles.key.store(true, Ordering::SeqCst);
            return;
        }
        if matches!(self.quality, Quality::Audio { .. }) {
            return;
        }
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        self.sink.send_event(event);
    }

    /// Lowers (`degraded`) or restores the bitrate and frame rate: half of each while the
    /// spill buffer is filling (the microphone reference: half its bitrate, at least what
    /// Opus keeps intelligible).
    pub fn degrade(&self, degraded: bool) {
        let divisor = if degraded { 2 } else { 1 };
        match &self.quality {
            Quality::Video {
                encoder,
                rate,
                settings,
            } => {
                if encoder.find_property("bitrate").is_some() {
                    encoder.set_property("bitrate", (settings.bitrate_kbps / divisor).max(50));
                }
                rate.set_property("max-rate", (settings.fps / divisor).max(1) as i32);
            }
            Quality::Audio {
                encoder,
                bitrate_bps,
            } => {
                let halved = *bitrate_bps / if degraded { 2 } else { 1 };
                encoder.set_property("bitrate", halved.max(audio::MIN_BITRATE_BPS));
            }
        }
    }

    /// A fatal error the pipeline reported since it started, if any.
    #[must_use]
    pub fn error(&self) -> Option<String> {
        first_error(&self.pipeline)
    }

    /// Whether the source ran out (a file played to its end).
    #[must_use]
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Stops capturing, waiting at most [`STOP_PATIENCE`]: a source whose device or sound
    /// server hangs while it is released must not keep the agent from ending the session and
    /// exiting. (Seen with ALSA's PulseAudio plugin, `alsasrc device=pulse`, in 4 stops of 30:
    /// the ring buffer's release waits forever on the plugin's main loop.) A pipeline that
    /// does not stop in time is left to its thread, and said so.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let pipeline = self.pipeline.clone();
        let stopped = within(STOP_PATIENCE, move || {
            let _ = pipeline.set_state(gst::State::Null);
        });
        if !stopped {
            tracing::warn!(
                track = self.track.name(),
                patience = ?STOP_PATIENCE,
                "the capture pipeline did not stop in time; it is abandoned"
            );
        }
    }
}

/// How long [`Capture::stop`] waits for a pipeline to stop.
pub const STOP_PATIENCE: Duration = Duration::from_secs(3);

/// Runs `work` on a thread of its own and waits for it at most `patience`: whether it
/// finished. Work that does not finish in time goes on, unwatched, on its thread.
fn within(patience: Duration, work: impl FnOnce() + Send + 'static) -> bool {
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("capture-stop".into())
        .spawn(move || {
            work();
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => finished.recv_timeout(patience).is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "no thread to stop a pipeline on");
            false
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Adds the source elements in front of `convert`.
fn add_source(
    pipeline: &gst::Pipeline,
    source: &VideoSource,
    convert: &gst::Element,
) -> Result<(), String> {
    let link = |chain: &[&gst::Element]| -> Result<(), String> {
        pipeline.add_many(chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(chain.iter().copied().chain([convert])).map_err(|e| e.to_string())
    };
    match source {
        VideoSource::Test => {
            let src = make("videotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("pattern", "ball");
            // A running clock on the picture, when the pango plugin is installed.
            match gst::ElementFactory::make("timeoverlay").build() {
                Ok(overlay) => {
                    let convert_in = make("videoconvert")?;
                    link(&[&src, &convert_in, &overlay])
                }
                Err(_) => link(&[&src]),
            }
        }
        VideoSource::V4l2(device) => {
            let src = make("v4l2src")?;
            src.set_property("device", device.to_string_lossy().as_ref());
            link(&[&src])
        }
        VideoSource::X11(display) => {
            let src = make("ximagesrc")?;
            if let Some(display) = display {
                src.set_property("display-name", display.as_str());
            }
            src.set_property("use-damage", false);
            src.set_property("show-pointer", true);
            link(&[&src])
        }
        VideoSource::File(path) => decode_file(pipeline, path, convert, "video/"),
        VideoSource::None => Err("no source".into()),
    }
}

/// Paints the blinds over each raw frame leaving `raw_caps`, before the encoder sees it.
/// A GStreamer element of `factory`, or why not (a source's error names it).
pub(super) fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element {factory} is not installed"))
}

/// Plays the media file at `path` into `convert` (already in `pipeline`): `filesrc` →
/// `decodebin`, whose first pad of `media` (`video/`, `audio/`) is linked to `convert`.
pub(super) fn decode_file(
    pipeline: &gst::Pipeline,
    path: &std::path::Path,
    convert: &gst::Element,
    media: &'static str,
) -> Result<(), String> {
    if !path.is_file() {
        return Err(format!("{} does not exist", path.display()));
    }
    let src = make("filesrc")?;
    src.set_property("location", path.to_string_lossy().as_ref());
    let decode = make("decodebin")?;
    pipeline
        .add_many([&src, &decode])
        .map_err(|e| e.to_string())?;
    src.link(&decode).map_err(|e| e.to_string())?;
    let convert = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let wanted = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().starts_with(media)))
            .unwrap_or(false);
        if let Some(convert) = convert.upgrade()
            && wanted
            && let Some(sink) = convert.static_pad("sink")
            && !sink.is_linked()
        {
            let _ = pad.link(&sink);
        }
    });
    Ok(())
}

fn install_blinder(raw_caps: &gst::Element, blinds: Blinds) {
    let Some(pad) = raw_caps.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let regions = blinds.regions();
        if regions.is_empty() {
            return gst::PadProbeReturn::Ok;
        }
        let Some(video) = pad
            .current_caps()
            .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
        else {
            // Never let a frame through unpainted.
            return gst::PadProbeReturn::Drop;
        };
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let buffer = buffer.make_mut();
        let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &video)
        else {
            return gst::PadProbeReturn::Drop;
        };
        if video.format() == gst_video::VideoFormat::Bgrx {
            let stride = frame.plane_stride()[0] as usize;
            let (width, height) = (video.width(), video.height());
            let Ok(data) = frame.plane_data_mut(0) else {
                return gst::PadProbeReturn::Drop;
            };
            blinder::paint_bgrx(data, stride, width, height, &regions);
            return gst::PadProbeReturn::Ok;
        }
        for (index, subsampling) in [(0u32, 1u32), (1, 2), (2, 2)] {
            let stride = frame.plane_stride()[index as usize] as usize;
            let (width, height) = (
                video.width().div_ceil(subsampling),
                video.height().div_ceil(subsampling),
            );
            let Ok(data) = frame.plane_data_mut(index) else {
                return gst::PadProbeReturn::Drop;
            };
            blinder::paint(
                Plane {
                    data,
                    stride,
                    width,
                    height,
                    subsampling,
                },
                &regions,
            );
        }
        gst::PadProbeReturn::Ok
    });
}

/// Hands each access unit through the gate into `out`, stamped on the agent clock.
fn frame_callbacks(
    track: Track,
    gate: Arc<Gate>,
    ended: Arc<AtomicBool>,
    tiles: Option<Arc<TileEncoder>>,
    out: mpsc::Sender<Captured>,
) -> gst_app::AppSinkCallbacks {
    let eos_flag = ended.clone();
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let Some(buffer) = sample.buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let encoded = match &tiles {
                Some(tiles) => {
                    if gate.is_paused() {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    match encode_tiles(tiles, &sample, gate.wants_key()) {
                        Some(encoded) => Some(encoded),
                        None => return Ok(gst::FlowSuccess::Ok),
                    }
                }
                None => None,
            };
            let keyframe = match &encoded {
                Some((_, key)) => *key,
                None => !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            };
            let Some(gap) = gate.admit(keyframe) else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let captured_at_ns = capture_time(sink, &sample);
            let data = match encoded {
                Some((data, _)) => data,
                None => match buffer.map_readable() {
                    Ok(map) => map.as_slice().to_vec(),
                    Err(_) => return Ok(gst::FlowSuccess::Ok),
                },
            };
            let frame = Captured {
                track,
                captured_at_ns,
                keyframe,
                gap,
                data,
            };
            match out.try_send(frame) {
                Ok(()) => gate.admitted(),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    gate.dropped();
                    if tiles.is_none() {
                        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                            .all_headers(true)
                            .build();
                        sink.send_event(event);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(gst::FlowError::Eos),
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .eos(move |_| eos_flag.store(true, Ordering::SeqCst))
        .build()
}

/// When `sample` was captured, on the agent clock: its presentation time, as a running time
/// of the pipeline's clock (through the sample's segment: x264 shifts its output by 1000
/// hours so that no decoding time is negative), carried over by how long ago that was. It can
/// lie a little ahead of the clock: a live test source hands a buffer on as its first sample
/// is due, so the packets an encoder cuts from its end are stamped after now.
fn capture_time(sink: &gst_app::AppSink, sample: &gst::Sample) -> i64 {
    let pts = sample.buffer().and_then(|b| b.pts());
    let running_pts = match sample.segment() {
        Some(segment) => segment
            .downcast_ref::<gst::ClockTime>()
            .and_then(|segment| segment.to_running_time(pts)),
        None => pts,
    };
    match (sink.clock(), sink.base_time(), running_pts) {
        (Some(clock), Some(base), Some(pts)) => {
            let running = clock.time().saturating_sub(base);
            let ago = i128::from(running.nseconds()) - i128::from(pts.nseconds());
            clock::now_ns().saturating_sub(i64::try_from(ago).unwrap_or(i64::MAX))
        }
        _ => clock::now_ns(),
    }
}

/// Sets `pipeline` playing; the source's error (a missing device, an unreadable file) if it
/// cannot, with the pipeline stopped again.
fn play(pipeline: &gst::Pipeline) -> Result<(), String> {
    let started = pipeline.set_state(gst::State::Playing);
    if let Some(error) = first_error(pipeline) {
        let _ = pipeline.set_state(gst::State::Null);
        return Err(error);
    }
    started.map(|_| ()).map_err(|e| {
        let _ = pipeline.set_state(gst::State::Null);
        format!("cannot start: {e}")
    })
}

/// Encodes one raw BGRx sample with the screen codec: (payload, key frame). A key frame is
/// made when `want_key` or a key was requested. `None` when the sample cannot be read (the
/// encoder then makes its next frame a key frame).
fn encode_tiles(
    tiles: &TileEncoder,
    sample: &gst::Sample,
    want_key: bool,
) -> Option<(Vec<u8>, bool)> {
    let info = sample
        .caps()
        .and_then(|caps| gst_video::VideoInfo::from_caps(caps).ok())?;
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let stride = usize::try_from(*info.stride().first()?).ok()?;
    let frame = screencodec::BgrxFrame::new(map.as_slice(), info.width(), info.height(), stride)
        .map_err(|e| tracing::warn!(error = %e, "a screen frame the codec cannot take"))
        .ok()?;
    let mut encoder = tiles.encoder.lock().expect("tile encoder lock");
    if want_key || tiles.key.swap(false, Ordering::SeqCst) {
        encoder.request_keyframe();
    }
    let mut out = Vec::new();
    match encoder.encode_into(&frame, &mut out) {
        Ok(summary) => Some((out, summary.kind == screencodec::FrameKind::Key)),
        Err(e) => {
            tracing::warn!(error = %e, "screen codec failed on a frame");
            None
        }
    }
}

/// The first error message waiting on the pipeline's bus.
fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(error) = message.view() {
            let detail = error.debug().map(|d| d.to_string()).unwrap_or_default();
            let detail = detail.lines().last().unwrap_or_default().to_owned();
            return Some(if detail.is_empty() {
                error.error().to_string()
            } else {
                format!("{} ({detail})", error.error())
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_that_hangs_is_left_behind_after_the_patience() {
        let started = std::time::Instant::now();
        assert!(!within(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(5));
        }));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(within(Duration::from_secs(5), || {}));
    }

    /// A pipeline whose streaming thread is stuck (here in the sink's callback, as a sound
    /// server's plugin can be in its main loop) cannot be stopped; it is abandoned in time,
    /// and stops once the thread is free again.
    #[test]
    fn a_pipeline_that_cannot_stop_is_abandoned_in_time() {
        gst::init().unwrap();
        let pipeline = gst::parse::launch("videotestsrc is-live=true ! appsink name=sink")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let (stuck, free) = std::sync::mpsc::channel::<()>();
        let (entered, in_callback) = std::sync::mpsc::channel::<()>();
        let free = std::sync::Mutex::new(free);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |_| {
                    let _ = entered.send(());
                    let _ = free.lock().unwrap().recv();
                    Err(gst::FlowError::Flushing)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).unwrap();
        in_callback.recv_timeout(Duration::from_secs(10)).unwrap();

        let started = std::time::Instant::now();
        let (p, done) = (pipeline.clone(), Arc::new(AtomicBool::new(false)));
        let stopped = Arc::clone(&done);
        assert!(!within(Duration::from_millis(300), move || {
            let _ = p.set_state(gst::State::Null);
            stopped.store(true, Ordering::SeqCst);
        }));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!done.load(Ordering::SeqCst), "the stop is still stuck");

        drop(stuck); // the streaming thread goes on, and the abandoned stop finishes
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(pipeline.current_state(), gst::State::Null);
    }

    #[test]
    fn the_gate_waits_for_a_keyframe_after_a_resume_or_a_drop() {
        let gate = Gate::default();
        assert_eq!(gate.admit(false), Some(false));
        gate.pause();
        assert_eq!(gate.admit(true), None);
        gate.resume();
        assert_eq!(gate.admit(false), None, "a resume starts at a keyframe");
        assert_eq!(gate.admit(true), Some(false));
        gate.admitted();
        assert_eq!(gate.admit(false), Some(false));
        gate.dropped();
        assert_eq!(gate.admit(false), None);
        assert_eq!(
            gate.admit(true),
            Some(true),
            "the keyframe after a drop marks the gap"
        );
        gate.admitted();
        assert_eq!(gate.admit(false), Some(false));
    }
}
