//! Picture-in-picture (`--layout pip`): one more video track in which the camera, scaled to a
//! quarter of the width, sits in the bottom-right corner of the screen. It is made in addition
//! to the camera and screen tracks (which stay as they were recorded) and comes first, so a
//! player that shows only one video track shows both pictures.
//!
//! Both inputs are decoded from the keyframe before the in point and retimed exactly like a
//! transcoded track (see [`super::encode::RetimeWindow`]); each decoded frame lasts until the
//! next one, so a hole in either input holds its last picture, and an input that starts later
//! than the in point leaves a black area until its first frame. `compositor` draws at the
//! camera's frame rate on the output timeline; the result is clamped to `[0, out − in)` and
//! encoded like a transcoded track.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::VideoTrack;
use super::encode::{RetimeWindow, encode_chain};
use super::feed::retime_window;
use crate::error::Result;
use crate::input::video::VideoCodec;
use crate::pipeline::{Pipeline, element};

/// The composite picture is never larger than this (a 4K screen is scaled down).
const MAX_SIZE: (i32, i32) = (1920, 1080);
/// Used when a file does not say its picture size.
const FALLBACK_SIZE: (i32, i32) = (1280, 720);

/// Where each picture goes, in pixels of the composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipLayout {
    /// Composite width (the screen, scaled to fit [`MAX_SIZE`]).
    pub width: i32,
    /// Composite height.
    pub height: i32,
    /// The camera inset: x, y, width, height.
    pub inset: (i32, i32, i32, i32),
    /// Output frame rate (the camera's).
    pub framerate: (i32, i32),
}

impl PipLayout {
    /// The layout for a camera of `camera` pixels over a screen of `screen` pixels.
    #[must_use]
    pub fn new(camera: (i32, i32), screen: (i32, i32), framerate: (i32, i32)) -> Self {
        let screen = known_size(screen);
        let scale = (f64::from(MAX_SIZE.0) / f64::from(screen.0))
            .min(f64::from(MAX_SIZE.1) / f64::from(screen.1))
            .min(1.0);
        let width = even(f64::from(screen.0) * scale);
        let height = even(f64::from(screen.1) * scale);
        let camera = known_size(camera);
        let inset_w = even(f64::from(width) / 4.0).max(2);
        let inset_h =
            even(f64::from(inset_w) * f64::from(camera.1) / f64::from(camera.0)).clamp(2, height);
        let margin = even(f64::from(width) / 40.0);
        Self {
            width,
            height,
            inset: (
                (width - inset_w - margin).max(0),
                (height - inset_h - margin).max(0),
                inset_w,
                inset_h,
            ),
            framerate: if framerate.0 > 0 && framerate.1 > 0 {
                framerate
            } else {
                (30, 1)
            },
        }
    }

    /// Raw frames out of the compositor.
    fn caps(&self) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", self.width)
            .field("height", self.height)
            .field(
                "framerate",
                gst::Fraction::new(self.framerate.0, self.framerate.1),
            )
            .build()
    }
}

fn known_size((w, h): (i32, i32)) -> (i32, i32) {
    if w > 0 && h > 0 {
        (w, h)
    } else {
        FALLBACK_SIZE
    }
}

fn even(x: f64) -> i32 {
    ((x / 2.0).round() as i32) * 2
}

/// The composite branch, built into a pipeline: feed `camera` and `screen` with
/// [`super::feed::feed_decoded`], link `last` to the muxer.
pub struct PipBranch {
    /// Takes the camera's frames (file times).
    pub camera: gst_app::AppSrc,
    /// Takes the screen's frames (file times).
    pub screen: gst_app::AppSrc,
    /// The branch's last element (encoded composite).
    pub last: gst::Element,
    /// Composite frames made so far.
    pub frames: Arc<AtomicU64>,
}

impl PipBranch {
    /// Builds the branch into `pipeline`, encoding the composite as `codec`.
    ///
    /// # Errors
    /// A missing plugin or a failed link.
    pub fn build(
        pipeline: &Pipeline,
        layout: &PipLayout,
        camera: &VideoTrack,
        screen: &VideoTrack,
        codec: VideoCodec,
    ) -> Result<Self> {
        let compositor = element("compositor")?;
        compositor.set_property_from_str("background", "black");
        let caps = element("capsfilter")?;
        caps.set_property("caps", layout.caps());
        let fps = f64::from(layout.framerate.0) / f64::from(layout.framerate.1);
        let gop = (fps * 2.0).round().max(1.0) as u32;
        // About 0.1 bit per pixel per frame: screens are mostly still, text needs to stay sharp.
        let bitrate_kbps =
            ((f64::from(layout.width * layout.height) * fps * 0.1 / 1000.0) as u32).max(300);
        let mut chain = vec![compositor.clone(), caps.clone()];
        chain.extend(encode_chain(codec, bitrate_kbps, gop)?);
        chain.push(element("queue")?);
        let refs: Vec<&gst::Element> = chain.iter().collect();
        pipeline.chain(&refs)?;

        // Nothing past the out point: the compositor's last frame may overhang it.
        let duration = camera.cuts.duration();
        let frames = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&frames);
        let clamp = RetimeWindow {
            first_shown: 0,
            in_rel: 0,
            out_rel: duration,
        };
        let clamp_pad = caps.static_pad("src").expect("capsfilter has a src pad");
        clamp.attach(&clamp_pad);
        clamp_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counted.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });

        let (w, h) = (layout.width, layout.height);
        let screen_src = input(pipeline, screen, &compositor, (0, 0, w, h), 0)?;
        let camera_src = input(pipeline, camera, &compositor, layout.inset, 1)?;
        Ok(Self {
            camera: camera_src,
            screen: screen_src,
            last: chain.pop().expect("non-empty"),
            frames,
        })
    }
}

/// appsrc → decoder (retimed) → queue (the compositor converts pixel formats itself) → a compositor pad placed at `rect`.
fn input(
    pipeline: &Pipeline,
    track: &VideoTrack,
    compositor: &gst::Element,
    (x, y, w, h): (i32, i32, i32, i32),
    zorder: u32,
) -> Result<gst_app::AppSrc> {
    let src = gst_app::AppSrc::builder()
        .name(format!("pip-{:?}", track.input.role).to_lowercase())
        .caps(&track.scan.caps)
        .format(gst::Format::Time)
        .block(true)
        .max_bytes(4 << 20)
        .build();
    let decoder = element(track.scan.codec.decoder())?;
    let queue = element("queue")?;
    retime_window(track).attach(&decoder.static_pad("src").expect("decoders have a src pad"));
    pipeline.chain(&[src.upcast_ref(), &decoder, &queue])?;
    let pad = compositor
        .request_pad_simple("sink_%u")
        .ok_or_else(|| pipeline.error(compositor.name(), "no sink pad"))?;
    pad.set_property("xpos", x);
    pad.set_property("ypos", y);
    pad.set_property("width", w);
    pad.set_property("height", h);
    pad.set_property("zorder", zorder);
    queue
        .static_pad("src")
        .expect("queue has a src pad")
        .link(&pad)
        .map_err(|e| pipeline.error(compositor.name(), format!("{e:?}")))?;
    Ok(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_camera_takes_a_quarter_of_the_width_in_the_bottom_right_corner() {
        let l = PipLayout::new((640, 480), (1280, 720), (30, 1));
        assert_eq!((l.width, l.height), (1280, 720));
        assert_eq!(l.inset, (1280 - 320 - 32, 720 - 240 - 32, 320, 240));
        assert_eq!(l.framerate, (30, 1));
    }

    #[test]
    fn a_large_screen_is_scaled_down_and_sizes_stay_even() {
        let l = PipLayout::new((1280, 720), (3840, 2160), (25, 1));
        assert_eq!((l.width, l.height), (1920, 1080));
        let (x, y, w, h) = l.inset;
        assert_eq!((w, h), (480, 270));
        assert!(x + w <= l.width && y + h <= l.height);
        let odd = PipLayout::new((333, 333), (1001, 667), (0, 0));
        assert_eq!((odd.width % 2, odd.height % 2, odd.inset.2 % 2), (0, 0, 0));
        assert_eq!(odd.framerate, (30, 1), "unknown rate → 30 fps");
    }
}
