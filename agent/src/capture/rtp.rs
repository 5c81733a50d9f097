//! A video track fed with RTP packets rather than captured from a device: a customer's browser
//! sends its camera (or screen) over WebRTC, and whoever receives the packets (the console's
//! join bridge) pushes each one here. They are put back in order, depayloaded and decoded,
//! then go down the same chain as a captured picture — scale, rate, x264 zero latency, the
//! [`Gate`](super::Gate), the agent clock — so the session gets the same H.264 track an
//! agent's camera would give it:
//!
//! ```text
//! appsrc (RTP) → rtpjitterbuffer (mode none) → rtph264depay → avdec_h264 ┐
//!                                            → rtpvp8depay  → vp8dec     ┴→ videoconvert → … → x264enc → appsink
//! ```
//!
//! **Timing.** The appsrc stamps each packet with its arrival (pipeline running time); the
//! jitter buffer, in `mode=none`, gives a frame the arrival of the stream's first packet plus
//! its RTP time since that packet (90 kHz). A frame's time is therefore when the browser
//! captured it, on this process's clock — off by the first packet's network delay only
//! (nothing on loopback, a few ms on a LAN) — and the gaps between frames are the browser's,
//! not the network's jitter. [`Capture`]'s usual running-time → agent-clock step does the
//! rest, and the clock-sync pings of the link put the frames on the server's timeline.
//!
//! **Keyframes.** The depayloader asks upstream for a keyframe when it starts or finds frames
//! missing; the feed passes each such request to `keyframe_wanted` (the receiver sends the
//! browser an RTCP PLI). The server's keyframe requests go to this pipeline's own x264, as for
//! any capture.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use proto::Track;
use tokio::sync::mpsc;

use super::{Capture, Captured, Encoding, make};
use crate::config::{TrackSettings, VideoSource};
use crate::error::AgentError;

/// The RTP video codecs a fed track decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpCodec {
    /// H.264 (RFC 6184), packetization mode 1.
    H264,
    /// VP8 (RFC 7741).
    Vp8,
}

impl RtpCodec {
    /// The RTP encoding name (`H264`, `VP8`).
    #[must_use]
    pub fn encoding_name(self) -> &'static str {
        match self {
            RtpCodec::H264 => "H264",
            RtpCodec::Vp8 => "VP8",
        }
    }

    fn depayloader(self) -> &'static str {
        match self {
            RtpCodec::H264 => "rtph264depay",
            RtpCodec::Vp8 => "rtpvp8depay",
        }
    }

    fn decoder(self) -> &'static str {
        match self {
            RtpCodec::H264 => "avdec_h264",
            RtpCodec::Vp8 => "vp8dec",
        }
    }
}

impl std::fmt::Display for RtpCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// Where the RTP packets of a fed track go in.
#[derive(Debug, Clone)]
pub struct RtpFeed {
    src: gst_app::AppSrc,
}

impl RtpFeed {
    /// Pushes one RTP packet (header and payload, as received; SRTP already removed).
    /// `false` once the pipeline has stopped taking packets.
    pub fn push(&self, packet: Vec<u8>) -> bool {
        self.src
            .push_buffer(gst::Buffer::from_mut_slice(packet))
            .is_ok()
    }
}

impl Capture {
    /// Starts a `track` fed with RTP packets of `codec` (90 kHz), encoded like a captured
    /// camera with `settings` (its `source` is not used); its frames go to `out`. Pushing
    /// packets into the returned [`RtpFeed`] is all it needs; `keyframe_wanted` is called
    /// (on a streaming thread: it must not block) whenever the decoder needs a keyframe.
    ///
    /// # Errors
    /// [`AgentError::Config`] when a GStreamer element is missing, [`AgentError::Capture`]
    /// when the pipeline does not start.
    pub fn start_rtp(
        track: Track,
        settings: &TrackSettings,
        codec: RtpCodec,
        out: mpsc::Sender<Captured>,
        keyframe_wanted: impl Fn() + Send + Sync + 'static,
    ) -> Result<(Self, RtpFeed), AgentError> {
        let settings = TrackSettings {
            source: VideoSource::None,
            ..settings.clone()
        };
        let mut feed = None;
        let capture = Self::start_from(
            track,
            &settings,
            Encoding::H264,
            None,
            out,
            format!("{} over WebRTC ({codec})", track.name()),
            |pipeline, convert| {
                let src = add_rtp_source(pipeline, convert, codec, keyframe_wanted)?;
                feed = Some(RtpFeed { src });
                Ok(())
            },
        )?;
        let feed = feed.expect("the source is added before the pipeline starts");
        Ok((capture, feed))
    }
}

/// Adds `appsrc → rtpjitterbuffer → depayloader → decoder` in front of `convert`.
fn add_rtp_source(
    pipeline: &gst::Pipeline,
    convert: &gst::Element,
    codec: RtpCodec,
    keyframe_wanted: impl Fn() + Send + Sync + 'static,
) -> Result<gst_app::AppSrc, String> {
    let caps = gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("clock-rate", 90_000i32)
        .field("encoding-name", codec.encoding_name())
        .build();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .is_live(true)
        .do_timestamp(true)
        .format(gst::Format::Time)
        .build();
    let jitter = make("rtpjitterbuffer")?;
    // RTP timestamps only: frames keep the browser's spacing from the first packet on.
    jitter.set_property_from_str("mode", "none");
    let depay = make(codec.depayloader())?;
    for property in ["request-keyframe", "wait-for-keyframe"] {
        if depay.find_property(property).is_some() {
            depay.set_property(property, true);
        }
    }
    let decode = make(codec.decoder())?;
    let chain = [src.upcast_ref(), &jitter, &depay, &decode];
    pipeline.add_many(chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(chain.into_iter().chain([convert])).map_err(|e| e.to_string())?;

    let pad = src.static_pad("src").ok_or("appsrc without a src pad")?;
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(event) = info.event()
            && gstreamer_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
        {
            keyframe_wanted();
        }
        gst::PadProbeReturn::Ok
    });
    Ok(src)
}
