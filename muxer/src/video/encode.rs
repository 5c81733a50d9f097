//! Decode → retime → encode chains, for a re-encoded first GOP or a whole transcoded track.
//! The retiming probe sits between decoder and encoder: frames are pushed with their file
//! times (decoding needs the GOP from its keyframe), and the probe drops what lies before the
//! frame on screen at the in point or at/after the out point, and turns file time into output
//! time (the frame on screen at the in point starts at 0, shortened, not moved). The encoded
//! frames are clamped to the out point once more: x264enc drops the durations it is given and
//! `h264parse` fills in a whole frame, which would run a last frame cut short past the out
//! point (by up to a frame: 200 ms for screenshots at 5 fps).

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::error::{MuxError, Result};
use crate::input::video::VideoCodec;
use crate::pipeline::element;

/// An encoder for `codec`, tuned for archives made faster than real time on two cores.
///
/// # Errors
/// [`MuxError::MissingElement`] when the plugin is missing; [`MuxError::Request`] for JPEG
/// (an input codec only).
pub fn encoder_for(
    codec: VideoCodec,
    bitrate_kbps: u32,
    keyframe_every: u32,
) -> Result<gst::Element> {
    let enc = match codec {
        VideoCodec::H264 => {
            let e = element("x264enc")?;
            e.set_property_from_str("speed-preset", "veryfast");
            e.set_property_from_str("tune", "zerolatency");
            e.set_property("bitrate", bitrate_kbps);
            e.set_property("key-int-max", keyframe_every);
            e.set_property("bframes", 0u32);
            e
        }
        VideoCodec::Vp8 | VideoCodec::Vp9 => {
            let e = element(if codec == VideoCodec::Vp8 {
                "vp8enc"
            } else {
                "vp9enc"
            })?;
            e.set_property("deadline", 1i64);
            e.set_property("cpu-used", 8i32);
            e.set_property("threads", 2i32);
            e.set_property("target-bitrate", (bitrate_kbps * 1000) as i32);
            e.set_property("keyframe-max-dist", keyframe_every as i32);
            e
        }
        VideoCodec::Jpeg => {
            return Err(MuxError::Request(
                "JPEG stills are an input only: they are encoded as H.264 or VP8".into(),
            ));
        }
    };
    Ok(enc)
}

/// Raw frames → `to`, in the stream format the muxers take (H.264: `avc`, whole frames).
///
/// # Errors
/// A missing plugin.
pub fn encode_chain(
    to: VideoCodec,
    bitrate_kbps: u32,
    keyframe_every: u32,
) -> Result<Vec<gst::Element>> {
    let mut elements = vec![encoder_for(to, bitrate_kbps, keyframe_every)?];
    if to == VideoCodec::H264 {
        let caps = element("capsfilter")?;
        caps.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        );
        elements.push(element("h264parse")?);
        elements.push(caps);
    }
    Ok(elements)
}

/// A decode → retime → encode chain (not yet in a pipeline).
pub struct Reencoder {
    /// The elements, in link order.
    pub elements: Vec<gst::Element>,
}

impl Reencoder {
    /// Decodes `from`, keeps frames whose file time is in `[first_shown, out_rel)`, shifts
    /// them by `-in_rel` (clamping the first to 0), brings them to `canvas` (raw caps: size,
    /// format, rate) when given — stills of differing sizes, see [`super::stills`] — and
    /// encodes them as `to`.
    ///
    /// # Errors
    /// A missing plugin.
    pub fn new(
        from: VideoCodec,
        to: VideoCodec,
        bitrate_kbps: u32,
        keyframe_every: u32,
        window: RetimeWindow,
        canvas: Option<gst::Caps>,
    ) -> Result<Self> {
        let decoder = element(from.decoder())?;
        let convert = element("videoconvert")?;
        window.attach(
            &convert
                .static_pad("src")
                .expect("videoconvert has a src pad"),
        );
        let mut elements = vec![decoder, convert];
        if let Some(canvas) = canvas {
            // Letterboxed (`add-borders`, the default) when a picture has another shape.
            let scale = element("videoscale")?;
            let filter = element("capsfilter")?;
            filter.set_property("caps", canvas);
            elements.extend([scale, filter]);
        }
        elements.extend(encode_chain(to, bitrate_kbps, keyframe_every)?);
        let last = elements.last().expect("an encoder");
        end_by(
            &last
                .static_pad("src")
                .expect("the encoder chain has a src pad"),
            window.out_rel - window.in_rel,
        );
        Ok(Self { elements })
    }
}

/// Cuts the duration of every buffer leaving `pad` that would run past `end` (output time,
/// nanoseconds). Compares running times: encoders may offset their timestamps and say so in
/// the segment (x264enc adds 1000 h).
fn end_by(pad: &gst::Pad, end: i64) {
    let segment: Arc<Mutex<Option<gst::FormattedSegment<gst::ClockTime>>>> = Arc::default();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(event) = info.event() {
                if let gst::EventView::Segment(s) = event.view() {
                    *segment.lock().expect("not poisoned") =
                        s.segment().downcast_ref::<gst::ClockTime>().cloned();
                }
                return gst::PadProbeReturn::Ok;
            }
            let Some(buffer) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let start = segment
                .lock()
                .expect("not poisoned")
                .as_ref()
                .zip(buffer.pts())
                .and_then(|(s, pts)| s.to_running_time(pts));
            if let (Some(start), Some(duration)) = (start, buffer.duration()) {
                let start = start.nseconds() as i64;
                if start + duration.nseconds() as i64 > end {
                    let cut = (end - start).max(1) as u64;
                    buffer
                        .make_mut()
                        .set_duration(gst::ClockTime::from_nseconds(cut));
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// Which decoded frames a [`Reencoder`] keeps and how it shifts them (file times, ns).
#[derive(Debug, Clone, Copy)]
pub struct RetimeWindow {
    /// File time of the frame on screen at the in point.
    pub first_shown: i64,
    /// The in point in file time.
    pub in_rel: i64,
    /// The out point in file time.
    pub out_rel: i64,
}

impl RetimeWindow {
    /// Retimes every buffer leaving `pad` (decoded frames in file time), dropping those
    /// outside the window.
    pub fn attach(self, pad: &gst::Pad) {
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pts) = buffer.pts().map(|p| p.nseconds() as i64) else {
                return gst::PadProbeReturn::Drop;
            };
            match self.retime(pts, buffer.duration().map(|d| d.nseconds() as i64)) {
                Some((new_pts, duration)) => {
                    let b = buffer.make_mut();
                    b.set_pts(gst::ClockTime::from_nseconds(new_pts as u64));
                    b.set_dts(gst::ClockTime::NONE);
                    if let Some(d) = duration {
                        b.set_duration(gst::ClockTime::from_nseconds(d as u64));
                    }
                    gst::PadProbeReturn::Ok
                }
                None => gst::PadProbeReturn::Drop,
            }
        });
    }

    /// Output `(pts, duration)` of the decoded frame at file time `pts`, or `None` to drop it.
    #[must_use]
    pub fn retime(&self, pts: i64, duration: Option<i64>) -> Option<(i64, Option<i64>)> {
        if pts < self.first_shown || pts >= self.out_rel {
            return None;
        }
        let start = pts.max(self.in_rel);
        let end = duration.map(|d| (pts + d).min(self.out_rel));
        Some((start - self.in_rel, end.map(|e| (e - start).max(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_on_screen_at_the_in_point_starts_at_zero_shortened() {
        let w = RetimeWindow {
            first_shown: 1_000,
            in_rel: 1_400,
            out_rel: 5_000,
        };
        assert_eq!(w.retime(900, Some(100)), None, "before the shown frame");
        assert_eq!(w.retime(1_000, Some(1_000)), Some((0, Some(600))));
        assert_eq!(w.retime(2_000, Some(1_000)), Some((600, Some(1_000))));
        assert_eq!(
            w.retime(4_500, Some(1_000)),
            Some((3_100, Some(500))),
            "ends at out"
        );
        assert_eq!(w.retime(5_000, Some(1_000)), None, "at the out point");
    }
}
