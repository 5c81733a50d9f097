//! The zstd stream under a screen stream: one zstd frame from each key frame to the next,
//! flushed at the end of every payload. A payload's bytes are compressed against everything
//! since the key frame — the JPEG tables of every frame after the first cost next to nothing,
//! and text, icons and window chrome seen once are found again — and a key frame starts a new
//! zstd frame, so it decodes on its own. The window is 1 MiB on both sides: that is all the
//! memory a decoder gives the stream.

use zstd::zstd_safe::{
    self, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer, ResetDirective,
};

use crate::error::{DecodeError, EncodeError};

/// log2 of the zstd window (1 MiB).
const WINDOW_LOG: u32 = 20;

fn zstd_error(code: usize) -> String {
    zstd_safe::get_error_name(code).to_string()
}

/// The encoder's side.
pub(crate) struct Packer {
    cctx: CCtx<'static>,
}

impl Packer {
    pub(crate) fn new(level: i32) -> Result<Self, EncodeError> {
        let backend = |what: &str| EncodeError::Backend(format!("zstd: {what}"));
        let mut cctx = CCtx::try_create().ok_or_else(|| backend("cannot create a context"))?;
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(|c| backend(&zstd_error(c)))?;
        cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG))
            .map_err(|c| backend(&zstd_error(c)))?;
        Ok(Packer { cctx })
    }

    /// Starts a new zstd frame (for a key frame).
    pub(crate) fn restart(&mut self) -> Result<(), EncodeError> {
        self.cctx
            .reset(ResetDirective::SessionOnly)
            .map(drop)
            .map_err(|c| EncodeError::Backend(format!("zstd: {}", zstd_error(c))))
    }

    /// Compresses `input` and flushes, appending to `out`.
    pub(crate) fn pack(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut source = InBuffer::around(input);
        out.reserve(zstd_safe::compress_bound(input.len()) + 64);
        loop {
            let at = out.len();
            let mut sink = OutBuffer::around_pos(out, at);
            let left = self
                .cctx
                .compress_stream2(
                    &mut sink,
                    &mut source,
                    zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush,
                )
                .map_err(|c| EncodeError::Backend(format!("zstd: {}", zstd_error(c))))?;
            if left == 0 && source.pos() == input.len() {
                return Ok(());
            }
            out.reserve(left.max(4096));
        }
    }
}

/// The decoder's side.
#[derive(Default)]
pub(crate) struct Unpacker {
    dctx: Option<DCtx<'static>>,
}

impl Unpacker {
    /// Starts over at a new zstd frame (for a key frame).
    pub(crate) fn restart(&mut self) -> Result<(), DecodeError> {
        let failed = |reason: String| DecodeError::TileStreamCorrupt {
            declared: 0,
            reason,
        };
        match &mut self.dctx {
            Some(dctx) => {
                dctx.reset(ResetDirective::SessionOnly)
                    .map_err(|c| failed(zstd_error(c)))?;
            }
            None => {
                let mut dctx = DCtx::try_create()
                    .ok_or_else(|| failed("cannot create a zstd context".into()))?;
                dctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
                    .map_err(|c| failed(zstd_error(c)))?;
                self.dctx = Some(dctx);
            }
        }
        Ok(())
    }

    /// Decompresses `packed`, which must give exactly `len` bytes, into `out`.
    pub(crate) fn unpack(
        &mut self,
        packed: &[u8],
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        let corrupt = |reason: String| DecodeError::TileStreamCorrupt {
            declared: len as u64,
            reason,
        };
        let Some(dctx) = self.dctx.as_mut() else {
            return Err(corrupt("no key frame started the stream".into()));
        };
        out.clear();
        out.resize(len, 0);
        let mut source = InBuffer::around(packed);
        let mut sink = OutBuffer::around(&mut out[..]);
        loop {
            let before = (source.pos(), sink.pos());
            dctx.decompress_stream(&mut sink, &mut source)
                .map_err(|c| corrupt(zstd_error(c)))?;
            if (source.pos(), sink.pos()) == before {
                break;
            }
        }
        let written = sink.pos();
        if written != len {
            return Err(corrupt(format!("it gives {written} bytes")));
        }
        if source.pos() != packed.len() {
            return Err(corrupt("it gives more bytes than declared".into()));
        }
        // Nothing may be left over for the next payload.
        let mut probe = [0u8; 1];
        let mut sink = OutBuffer::around(&mut probe[..]);
        dctx.decompress_stream(&mut sink, &mut InBuffer::around(&[]))
            .map_err(|c| corrupt(zstd_error(c)))?;
        if sink.pos() != 0 {
            return Err(corrupt("it gives more bytes than declared".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_compress_against_earlier_ones_and_a_restart_stands_alone() {
        let text: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut packer = Packer::new(1).unwrap();
        let mut unpacker = Unpacker::default();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        packer.pack(&text, &mut first).unwrap();
        packer.pack(&text, &mut second).unwrap();
        assert!(
            second.len() * 10 < first.len(),
            "{} vs {}",
            second.len(),
            first.len()
        );

        let mut out = Vec::new();
        unpacker.restart().unwrap();
        unpacker.unpack(&first, text.len(), &mut out).unwrap();
        assert_eq!(out, text);
        unpacker.unpack(&second, text.len(), &mut out).unwrap();
        assert_eq!(out, text);

        // Declared too short or too long: refused.
        packer.restart().unwrap();
        let mut third = Vec::new();
        packer.pack(&text, &mut third).unwrap();
        unpacker.restart().unwrap();
        assert!(unpacker.unpack(&third, text.len() - 1, &mut out).is_err());
        unpacker.restart().unwrap();
        assert!(unpacker.unpack(&third, text.len() + 1, &mut out).is_err());
        unpacker.restart().unwrap();
        unpacker.unpack(&third, text.len(), &mut out).unwrap();
        assert_eq!(out, text);
    }
}
