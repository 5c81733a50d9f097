//! The screen as pictures: the agent's screen-codec payloads (`docs/SCREEN_CODEC.md`) decoded
//! back into the screen, and screenshot-mode JPEG stills decoded into the same kind of
//! picture, both BGRx in memory for the [`super::screen_encoder`].

use screencodec::{Canvas, Decoder, FrameKind};

/// The largest screenshot decoded (the screen codec decoder's default limits).
const MAX_STILL_SIDE: usize = 8192;

/// What one payload did to the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenChange {
    /// The picture changed (a key or delta payload).
    Changed,
    /// A heartbeat: the screen is as it was.
    Unchanged,
}

/// The screen codec's decoder for one live view.
#[derive(Default)]
pub struct ScreenPictures {
    decoder: Decoder,
}

impl std::fmt::Debug for ScreenPictures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenPictures")
            .field("screen", &self.screen().map(|c| (c.width(), c.height())))
            .finish()
    }
}

impl ScreenPictures {
    /// Applies one payload. After an error the decoder takes only a key payload.
    ///
    /// # Errors
    /// The codec's [`screencodec::DecodeError`] (a corrupt payload, a delta without the key
    /// before it).
    pub fn apply(&mut self, payload: &[u8]) -> Result<ScreenChange, screencodec::DecodeError> {
        let kind = screencodec::FrameHeader::parse(payload)?.kind;
        self.decoder.decode(payload)?;
        Ok(match kind {
            FrameKind::Unchanged => ScreenChange::Unchanged,
            _ => ScreenChange::Changed,
        })
    }

    /// The screen as last decoded, if a key payload has been.
    #[must_use]
    pub fn screen(&self) -> Option<&Canvas> {
        self.decoder.canvas()
    }
}

/// A screenshot decoded: `width × height` BGRx pixels, rows packed.
#[derive(Debug)]
pub struct Still {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// BGRx bytes (the fourth byte is opaque alpha, ignored).
    pub pixels: Vec<u8>,
}

/// Decodes a screenshot's JPEG.
///
/// # Errors
/// A description of why it is not a usable JPEG.
pub fn decode_still(jpeg: &[u8]) -> Result<Still, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::BGRA)
        .set_max_width(MAX_STILL_SIDE)
        .set_max_height(MAX_STILL_SIDE);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
    decoder
        .decode_headers()
        .map_err(|e| format!("not a JPEG: {e}"))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| "a JPEG without dimensions".to_owned())?;
    let size = width * height * 4;
    if decoder.output_buffer_size() != Some(size) {
        return Err("the JPEG does not decode to BGRA".into());
    }
    let mut pixels = vec![0; size];
    decoder
        .decode_into(&mut pixels)
        .map_err(|e| format!("a broken JPEG: {e}"))?;
    Ok(Still {
        width: u32::try_from(width).map_err(|_| "too wide")?,
        height: u32::try_from(height).map_err(|_| "too high")?,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_payload_stream_becomes_pictures_and_heartbeats() {
        let (w, h) = (64u32, 48u32);
        let mut encoder = screencodec::Encoder::new(screencodec::EncoderConfig::default()).unwrap();
        let mut pixels = vec![0u8; (w * h * 4) as usize];
        let mut pictures = ScreenPictures::default();
        let first = encoder
            .encode(&screencodec::BgrxFrame::new(&pixels, w, h, w as usize * 4).unwrap())
            .unwrap();
        assert_eq!(pictures.apply(&first).unwrap(), ScreenChange::Changed);
        let same = encoder
            .encode(&screencodec::BgrxFrame::new(&pixels, w, h, w as usize * 4).unwrap())
            .unwrap();
        assert_eq!(pictures.apply(&same).unwrap(), ScreenChange::Unchanged);
        pixels[0..4].copy_from_slice(&[10, 20, 30, 0]);
        let changed = encoder
            .encode(&screencodec::BgrxFrame::new(&pixels, w, h, w as usize * 4).unwrap())
            .unwrap();
        assert_eq!(pictures.apply(&changed).unwrap(), ScreenChange::Changed);
        assert_eq!(pictures.screen().unwrap().bgr(0, 0), Some([10, 20, 30]));
        // A delta out of order is refused and the picture stays.
        assert!(pictures.apply(&same).is_err());
        assert_eq!(pictures.screen().unwrap().bgr(0, 0), Some([10, 20, 30]));
    }

    #[test]
    fn garbage_is_not_a_still() {
        assert!(decode_still(b"not a jpeg").is_err());
    }
}
