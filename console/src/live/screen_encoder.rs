//! The screen's video encoder: BGRx pictures (the screen codec's decoded screens, screenshot
//! stills) become H.264 for the browser, in one GStreamer pipeline built in code:
//!
//! ```text
//! appsrc (BGRx, live, PTS = agent capture time) → videoconvert → I420
//!   → x264enc (zero latency, ultrafast) → constrained baseline → appsink
//! ```
//!
//! Pictures are pushed only when the screen changed (and once a second when it did not, so
//! the browser's decoder has something to show after a loss); x264 in zero-latency mode hands
//! each one back encoded at once, with the same PTS, so the live view can stamp it with the
//! capture time. Nothing here touches the disk: pictures and access units live in memory.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tokio::sync::mpsc;

use super::error::{LiveError, Result};

/// Encoded pictures that may wait for the live view before the newest are dropped (and a
/// keyframe asked for instead).
const QUEUE: usize = 8;

/// Target bitrate, kbit/s: text on a screen needs more than a camera.
const BITRATE_KBPS: u32 = 2000;

/// The frame rate the encoder is told of (the agent's default screen rate).
const NOMINAL_FPS: i32 = 10;

/// At most this many pictures between keyframes (a browser that lost a packet asks for one
/// sooner, with a PLI).
const KEY_INT_MAX: u32 = 300;

/// One encoded access unit of the screen.
#[derive(Debug)]
pub struct EncodedPicture {
    /// H.264 Annex-B, SPS and PPS before every keyframe.
    pub access_unit: Bytes,
    /// Agent capture time of the picture, ns.
    pub captured_at_ns: i64,
    /// Decodes on its own.
    pub keyframe: bool,
}

/// A running screen encoder.
pub struct ScreenEncoder {
    pipeline: gst::Pipeline,
    source: gst_app::AppSrc,
    sink: gst_app::AppSink,
    encoded: mpsc::Receiver<EncodedPicture>,
    size: Option<(u32, u32)>,
    last_pts: Option<gst::ClockTime>,
}

impl std::fmt::Debug for ScreenEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenEncoder")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn element(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        LiveError::Encoder(format!(
            "GStreamer element {factory} is not installed (scripts/bootstrap.sh)"
        ))
    })
}

impl ScreenEncoder {
    /// Builds and starts the pipeline; it waits for the first picture.
    ///
    /// # Errors
    /// [`LiveError::Encoder`] when GStreamer or one of its elements (x264enc: plugins-ugly) is
    /// missing, or the pipeline does not start.
    pub fn start() -> Result<Self> {
        gst::init().map_err(|e| LiveError::Encoder(format!("GStreamer: {e}")))?;
        let pipeline = gst::Pipeline::with_name("live-screen-encoder");
        let source = gst_app::AppSrc::builder()
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            // Never block the live view: a picture that does not fit is dropped by appsrc.
            .block(false)
            .max_bytes(64 << 20)
            .build();
        let convert = element("videoconvert")?;
        let raw = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .build(),
            )
            .build()
            .map_err(|e| LiveError::Encoder(e.to_string()))?;
        let encoder = gst::ElementFactory::make("x264enc")
            .property_from_str("tune", "zerolatency")
            .property_from_str("speed-preset", "ultrafast")
            .property("bitrate", BITRATE_KBPS)
            .property("key-int-max", KEY_INT_MAX)
            .property("bframes", 0u32)
            .build()
            .map_err(|_| {
                LiveError::Encoder(
                    "GStreamer element x264enc is not installed (gstreamer1.0-plugins-ugly)".into(),
                )
            })?;
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .field("profile", "constrained-baseline")
                    .build(),
            )
            .sync(false)
            .max_buffers(QUEUE as u32)
            .build();
        let chain = [
            source.upcast_ref::<gst::Element>(),
            &convert,
            &raw,
            &encoder,
            sink.upcast_ref(),
        ];
        pipeline
            .add_many(chain)
            .map_err(|e| LiveError::Encoder(e.to_string()))?;
        gst::Element::link_many(chain).map_err(|e| LiveError::Encoder(e.to_string()))?;

        let (out, encoded) = mpsc::channel(QUEUE);
        let overflow_sink = sink.downgrade();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let Ok(map) = buffer.map_readable() else {
                        return Err(gst::FlowError::Error);
                    };
                    // x264enc shifts PTS by 1000 hours (room for DTS before PTS) and its segment
                    // with it: the running time is the PTS the picture went in with.
                    let running = sample
                        .segment()
                        .and_then(|segment| segment.downcast_ref::<gst::ClockTime>())
                        .zip(buffer.pts())
                        .and_then(|(segment, pts)| segment.to_running_time(pts))
                        .or(buffer.pts());
                    let picture = EncodedPicture {
                        access_unit: Bytes::copy_from_slice(map.as_slice()),
                        captured_at_ns: running
                            .map_or(0, |t| i64::try_from(t.nseconds()).unwrap_or(i64::MAX)),
                        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    };
                    match out.try_send(picture) {
                        Ok(()) => Ok(gst::FlowSuccess::Ok),
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // The browser's stream now misses a reference: start again from
                            // a keyframe rather than show a broken picture.
                            tracing::debug!("the live view is behind; a screen frame dropped");
                            if let Some(sink) = overflow_sink.upgrade() {
                                request_keyframe(&sink);
                            }
                            Ok(gst::FlowSuccess::Ok)
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => Err(gst::FlowError::Flushing),
                    }
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).map_err(|e| {
            let _ = pipeline.set_state(gst::State::Null);
            LiveError::Encoder(format!("the screen encoder does not start: {e}"))
        })?;
        Ok(Self {
            pipeline,
            source,
            sink,
            encoded,
            size: None,
            last_pts: None,
        })
    }

    /// Encodes one picture: `height` rows of `width` BGRx pixels, `stride` bytes apart,
    /// captured at `captured_at_ns` on the agent clock. An odd width or height loses its last
    /// column or row (4:2:0 video needs even sides).
    ///
    /// # Errors
    /// [`LiveError::Encoder`] when the pipeline failed, or for a picture under 2 × 2 pixels.
    pub fn push(
        &mut self,
        pixels: &[u8],
        stride: usize,
        width: u32,
        height: u32,
        captured_at_ns: i64,
    ) -> Result<()> {
        if let Some(error) = self.error() {
            return Err(LiveError::Encoder(error));
        }
        let (even_w, even_h) = (width & !1, height & !1);
        if even_w < 2 || even_h < 2 || stride < width as usize * 4 {
            return Err(LiveError::Encoder(format!(
                "a {width}x{height} picture cannot be encoded"
            )));
        }
        if self.size != Some((even_w, even_h)) {
            let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, even_w, even_h)
                // A nominal rate: x264's rate control needs one, and without it (0/1) x264
                // holds every picture back until the next arrives. Pictures still come only
                // when the screen changed; their PTS says when.
                .fps(gst::Fraction::new(NOMINAL_FPS, 1))
                .build()
                .and_then(|info| info.to_caps())
                .map_err(|e| LiveError::Encoder(e.to_string()))?;
            self.source.set_caps(Some(&caps));
            self.size = Some((even_w, even_h));
        }
        let row = even_w as usize * 4;
        let mut packed = Vec::with_capacity(row * even_h as usize);
        for y in 0..even_h as usize {
            packed.extend_from_slice(&pixels[y * stride..y * stride + row]);
        }
        // PTS is the capture time; it must grow, even if two pictures share a timestamp.
        let mut pts = gst::ClockTime::from_nseconds(u64::try_from(captured_at_ns).unwrap_or(0));
        if let Some(last) = self.last_pts
            && pts <= last
        {
            pts = last + gst::ClockTime::from_useconds(1);
        }
        self.last_pts = Some(pts);
        let mut buffer = gst::Buffer::from_mut_slice(packed);
        buffer
            .get_mut()
            .expect("a new buffer is writable")
            .set_pts(pts);
        self.source
            .push_buffer(buffer)
            .map_err(|e| LiveError::Encoder(format!("the screen encoder stopped: {e}")))?;
        Ok(())
    }

    /// Makes the next picture a keyframe (a browser asked with a PLI or FIR).
    pub fn request_keyframe(&self) {
        request_keyframe(&self.sink);
    }

    /// The next encoded picture (`None` once the pipeline stopped).
    pub async fn next(&mut self) -> Option<EncodedPicture> {
        self.encoded.recv().await
    }

    /// A fatal error the pipeline reported, if any.
    fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|message| match message.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
    }
}

fn request_keyframe(sink: &gst_app::AppSink) {
    let event = gst_video::UpstreamForceKeyUnitEvent::builder()
        .all_headers(true)
        .build();
    sink.send_event(event);
}

impl Drop for ScreenEncoder {
    fn drop(&mut self) {
        // Nothing is written anywhere, so no EOS to wait for: stop at once.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_picture_comes_out_at_once_as_h264_with_its_capture_time() {
        let mut encoder = ScreenEncoder::start().unwrap();
        let (w, h) = (161u32, 121u32); // odd sides lose a column and a row
        let mut pixels = vec![0u8; (w * h * 4) as usize];
        for i in 0..10i64 {
            pixels[(i as usize) * 64] = 0xff;
            let captured = 5_000_000_000 + i * 100_000_000;
            encoder
                .push(&pixels, w as usize * 4, w, h, captured)
                .unwrap();
            let picture = tokio::time::timeout(std::time::Duration::from_secs(5), encoder.next())
                .await
                .expect("zero latency: out before the next picture goes in")
                .unwrap();
            assert_eq!(picture.captured_at_ns, captured);
            assert_eq!(picture.keyframe, i == 0, "picture {i}");
            assert!(picture.access_unit.starts_with(&[0, 0, 0, 1]));
        }
        encoder.request_keyframe();
        encoder
            .push(&pixels, w as usize * 4, w, h, 6_000_000_000)
            .unwrap();
        let picture = encoder.next().await.unwrap();
        assert!(picture.keyframe, "a keyframe on request");
    }
}
