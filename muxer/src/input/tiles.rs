//! A screen track in the agent's screen codec (`screencodec`: only the changed parts of the
//! screen, text lossless) turned back into pictures the muxer already handles: each payload
//! is applied to a canvas, and every frame that changed the screen comes out as a JPEG still
//! of the whole canvas (quality 90), stamped as the frame was; heartbeats (nothing changed)
//! come out as nothing, so the previous picture is held. The stills then take the screenshot
//! path ([`crate::video::stills`]): H.264 (or VP8) at 5 fps, each picture held until the next.
//!
//! A payload that does not apply (a delta whose base was never seen) is skipped, with the
//! following deltas, until the next key frame: the screen holds its last good picture.

use jpeg_encoder::{ColorType, Encoder};

use super::frames::{FrameCodec, FrameFormat, FrameIter, FrameSource, RawFrame};
use crate::error::{MuxError, Result};

/// What the track's label ends with, in the manifest (`session …/screen (screen codec)`).
pub const LABEL_SUFFIX: &str = " (screen codec)";

/// JPEG quality of the pictures handed on (they are re-encoded to video after).
const QUALITY: u8 = 90;

/// A frame source whose payloads are screen-codec frames, read as JPEG stills.
pub struct ScreenTiles<S> {
    /// The track as stored.
    pub inner: S,
}

/// Whether a track's first payload is the screen codec's.
#[must_use]
pub fn is_screen_codec(first: &[u8]) -> bool {
    screencodec::is_screen_payload(first)
}

impl<S: FrameSource> FrameSource for ScreenTiles<S> {
    fn label(&self) -> String {
        format!("{}{LABEL_SUFFIX}", self.inner.label())
    }

    fn format(&self) -> FrameFormat {
        FrameFormat::new(FrameCodec::Jpeg)
    }

    fn frames(&self) -> Result<FrameIter<'_>> {
        let label = self.label();
        let mut decoder = screencodec::Decoder::new();
        let mut broken = false;
        let frames = self.inner.frames()?;
        Ok(Box::new(frames.filter_map(move |frame| {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => return Some(Err(e)),
            };
            let kind = match screencodec::FrameHeader::parse(&frame.data) {
                Ok(header) => header.kind,
                Err(e) => {
                    return Some(Err(MuxError::input(
                        std::path::Path::new(&label),
                        format!("not a screen-codec frame: {e}"),
                    )));
                }
            };
            if broken && kind != screencodec::FrameKind::Key {
                return None;
            }
            // Heartbeats go through the decoder too: it checks that no frame is missing.
            let canvas = match decoder.decode(&frame.data) {
                Ok(canvas) => canvas,
                Err(e) => {
                    tracing::warn!(source = label, error = %e, "screen frame skipped until the next key frame");
                    broken = true;
                    return None;
                }
            };
            broken = false;
            if kind == screencodec::FrameKind::Unchanged {
                return None;
            }
            Some(still(canvas, &label).map(|data| RawFrame {
                pts_ns: frame.pts_ns,
                keyframe: true,
                data,
            }))
        })))
    }
}

/// The canvas as a JPEG.
fn still(canvas: &screencodec::Canvas, label: &str) -> Result<Vec<u8>> {
    let fail = |e: String| MuxError::input(std::path::Path::new(label), e);
    let (width, height) = (canvas.width(), canvas.height());
    let row = width as usize * 4;
    // The encoder wants rows packed.
    let packed: std::borrow::Cow<'_, [u8]> = if canvas.stride() == row {
        std::borrow::Cow::Borrowed(&canvas.pixels()[..row * height as usize])
    } else {
        std::borrow::Cow::Owned(
            canvas
                .pixels()
                .chunks(canvas.stride())
                .take(height as usize)
                .flat_map(|r| r[..row].iter().copied())
                .collect(),
        )
    };
    let mut out = Vec::new();
    let encoder = Encoder::new(&mut out, QUALITY);
    encoder
        .encode(
            &packed,
            u16::try_from(width).map_err(|_| fail("screen too wide".into()))?,
            u16::try_from(height).map_err(|_| fail("screen too tall".into()))?,
            ColorType::Bgra,
        )
        .map_err(|e| fail(format!("cannot make a still of the screen: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::frames::MemoryFrames;

    fn screen(w: u32, h: u32, shade: u8) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| [shade, (i % 200) as u8, 40, 0])
            .collect()
    }

    #[test]
    fn changed_screens_become_stills_and_heartbeats_hold_the_picture() {
        let (w, h) = (64u32, 48u32);
        let mut encoder = screencodec::Encoder::new(screencodec::EncoderConfig::default()).unwrap();
        let mut frames = Vec::new();
        for (n, shade) in [10u8, 10, 10, 90, 90].into_iter().enumerate() {
            let pixels = screen(w, h, shade);
            let frame = screencodec::BgrxFrame::new(&pixels, w, h, w as usize * 4).unwrap();
            frames.push(RawFrame {
                pts_ns: n as i64 * 100_000_000,
                keyframe: n == 0,
                data: encoder.encode(&frame).unwrap(),
            });
        }
        assert!(is_screen_codec(&frames[0].data));
        let tiles = ScreenTiles {
            inner: MemoryFrames {
                label: "session x/screen".into(),
                format: FrameFormat::new(FrameCodec::H264AnnexB),
                frames,
            },
        };
        assert_eq!(tiles.format().codec, FrameCodec::Jpeg);
        let stills: Vec<RawFrame> = tiles.frames().unwrap().map(Result::unwrap).collect();
        let times: Vec<i64> = stills.iter().map(|f| f.pts_ns).collect();
        assert_eq!(
            times,
            [0, 300_000_000],
            "only the frames that changed the screen"
        );
        assert!(
            stills
                .iter()
                .all(|f| f.keyframe && f.data.starts_with(&[0xFF, 0xD8]))
        );
    }
}
