//! The microphone reference: a low-rate recording of the customer's side, sent only so the
//! muxer can place the call centre's recording of the same voice on the timeline (it is never
//! played back). One pipeline, built in code:
//!
//! ```text
//! source → audioconvert → audioresample → S16LE mono 16 kHz → opusenc (20 kbit/s, 20 ms) → appsink
//! ```
//!
//! Sources: `audiotestsrc` (quiet pink noise), `filesrc ! decodebin` played in real time,
//! `alsasrc`, `pulsesrc`. Each Opus packet is one frame, flagged keyframe (a decoder can
//! start at any packet), stamped on the agent clock with the capture time of the **first
//! sample it decodes to**. `opusenc` stamps its first packet as if the encoder's look-ahead
//! (6.5 ms) were not in it and says so with a clipping meta; that look-ahead is taken off the
//! first packet's time, so every packet starts exactly where the previous one ended and
//! decoding the packets in order from the first gives the audio on the agent clock with
//! nothing to drop (`docs/PROTOCOL.md` §2).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_audio as gst_audio;
use proto::Track;
use tokio::sync::mpsc;

use super::{Capture, Captured, Gate, Quality, capture_time, decode_file, element, make, play};
use crate::config::MicSource;
use crate::error::AgentError;

/// The rate the microphone is resampled to before encoding: wideband speech, all the
/// alignment looks at (it works on 100 Hz – 3.6 kHz).
pub const RATE_HZ: i32 = 16_000;
/// The Opus bitrate, bit/s: about 9 MB an hour.
pub const BITRATE_BPS: i32 = 20_000;
/// The least the bitrate is lowered to while the spill buffer fills.
pub const MIN_BITRATE_BPS: i32 = 10_000;
/// Opus counts its look-ahead (the clipping meta) in 48 kHz samples, whatever the input rate.
const OPUS_CLOCK_HZ: u64 = 48_000;

impl Capture {
    /// Builds and starts the microphone reference's pipeline; its packets go to `out` on
    /// [`Track::MicReference`].
    ///
    /// # Errors
    /// [`AgentError::Capture`] when the source cannot be opened (no such device or file, no
    /// sound server), [`AgentError::Config`] for a missing GStreamer plugin.
    pub fn start_mic(source: &MicSource, out: mpsc::Sender<Captured>) -> Result<Self, AgentError> {
        gst::init().map_err(|e| AgentError::Config(format!("GStreamer: {e}")))?;
        let fail = |reason: String| AgentError::Capture {
            source_name: format!("microphone {source}"),
            reason,
        };
        let pipeline = gst::Pipeline::with_name("mic-reference-capture");
        // A sound source offers its own clock, and `capture_time` reads the pipeline's:
        // stamped against PulseAudio's, packets lay 111–217 ms off their 20 ms grid within
        // a second. On the system clock (the agent clock's own) the source slaves its
        // timestamps to it instead (agent/tests/sound_server.rs).
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let convert = element("audioconvert")?;
        let resample = element("audioresample")?;
        let raw_caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst_audio::AudioCapsBuilder::new_interleaved()
                    .format(gst_audio::AudioFormat::S16le)
                    .rate(RATE_HZ)
                    .channels(1)
                    .build(),
            )
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let encoder = element("opusenc")?;
        encoder.set_property("bitrate", BITRATE_BPS);
        encoder.set_property_from_str("frame-size", "20");
        encoder.set_property_from_str("audio-type", "voice");
        let sink = gst_app::AppSink::builder()
            .caps(&gst::Caps::builder("audio/x-opus").build())
            .sync(matches!(source, MicSource::File(_)))
            .max_buffers(16)
            .build();
        let chain = [&convert, &resample, &raw_caps, &encoder, sink.upcast_ref()];
        pipeline.add_many(chain).map_err(|e| fail(e.to_string()))?;
        gst::Element::link_many(chain).map_err(|e| fail(e.to_string()))?;
        add_source(&pipeline, source, &convert).map_err(&fail)?;

        let gate = Arc::new(Gate::default());
        let ended = Arc::new(AtomicBool::new(false));
        sink.set_callbacks(packet_callbacks(gate.clone(), ended.clone(), out));
        play(&pipeline).map_err(fail)?;
        Ok(Self {
            track: Track::MicReference,
            pipeline,
            sink,
            quality: Quality::Audio {
                encoder,
                bitrate_bps: BITRATE_BPS,
            },
            tiles: None,
            gate,
            ended,
            stopped: AtomicBool::new(false),
        })
    }
}

/// Adds the source elements in front of `convert`.
fn add_source(
    pipeline: &gst::Pipeline,
    source: &MicSource,
    convert: &gst::Element,
) -> Result<(), String> {
    let link = |src: &gst::Element| -> Result<(), String> {
        pipeline.add(src).map_err(|e| e.to_string())?;
        src.link(convert).map_err(|e| e.to_string())
    };
    match source {
        MicSource::Test => {
            // Noise, not a tone: a periodic signal correlates with itself at every period.
            let src = make("audiotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("wave", "pink-noise");
            src.set_property("volume", 0.25f64);
            link(&src)
        }
        MicSource::Alsa(device) => {
            let src = make("alsasrc")?;
            if let Some(device) = device {
                src.set_property("device", device.as_str());
            }
            link(&src)
        }
        MicSource::Pulse(device) => {
            let src = make("pulsesrc")?;
            if let Some(device) = device {
                src.set_property("device", device.as_str());
            }
            link(&src)
        }
        MicSource::File(path) => decode_file(pipeline, path, convert, "audio/"),
        MicSource::None => Err("no source".into()),
    }
}

/// Hands each Opus packet through the gate into `out`, stamped with the capture time of its
/// first decoded sample.
fn packet_callbacks(
    gate: Arc<Gate>,
    ended: Arc<AtomicBool>,
    out: mpsc::Sender<Captured>,
) -> gst_app::AppSinkCallbacks {
    let eos_flag = ended.clone();
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let Some(buffer) = sample.buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let Some(gap) = gate.admit(true) else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let captured_at_ns = capture_time(sink, &sample).saturating_sub(look_ahead_ns(buffer));
            let data = match buffer.map_readable() {
                // Never empty in practice (an Opus packet has its TOC byte); an empty frame
                // would read as a pause marker.
                Ok(map) if !map.is_empty() => map.as_slice().to_vec(),
                _ => return Ok(gst::FlowSuccess::Ok),
            };
            let packet = Captured {
                track: Track::MicReference,
                captured_at_ns,
                keyframe: true,
                gap,
                data,
            };
            match out.try_send(packet) {
                Ok(()) => gate.admitted(),
                Err(mpsc::error::TrySendError::Full(_)) => gate.dropped(),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(gst::FlowError::Eos),
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .eos(move |_| eos_flag.store(true, Ordering::SeqCst))
        .build()
}

/// How much of the packet's start `opusenc` left out of its timestamp: the encoder's
/// look-ahead on the first packet, nothing on the others.
fn look_ahead_ns(buffer: &gst::BufferRef) -> i64 {
    let Some(meta) = buffer.meta::<gst_audio::AudioClippingMeta>() else {
        return 0;
    };
    match meta.start() {
        gst::GenericFormattedValue::Default(Some(samples)) => {
            i64::try_from(*samples * 1_000_000_000 / OPUS_CLOCK_HZ).unwrap_or(0)
        }
        _ => 0,
    }
}
