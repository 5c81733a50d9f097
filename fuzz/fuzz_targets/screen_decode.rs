//! Fuzzes the screen-codec decoder (`screencodec::Decoder`), which the server runs over the
//! agent's screen track: sequences of payloads, so delta frames, copies and reference screens
//! are reached, not only key frames. Nothing may panic or allocate beyond the decoder's limits;
//! a payload that is refused must leave the screen as it was; one that is accepted must give a
//! screen of the size its header names.
//!
//! Input: payloads one after the other, each `u32 length (little-endian) ‖ payload`. Random
//! bytes seldom get past the magic and the zstd stream, so the corpus is seeded with real
//! sessions encoded by `screencodec::Encoder` (typing, a scroll, a moved window, a photo); run
//! with `IDV_FUZZ_SEED_DIR=dir` and the target writes them into `dir` before fuzzing
//! (`scripts/fuzz.sh` does).

#![no_main]

use libfuzzer_sys::fuzz_target;
use screencodec::{BgrxFrame, Decoder, DecoderLimits, Encoder, EncoderConfig, FrameHeader};

/// Larger inputs are skipped: the decoder must cope with them, but they only slow fuzzing.
const MAX_INPUT: usize = 1 << 20;
/// Payloads decoded per input at most.
const MAX_PAYLOADS: usize = 16;
/// Small limits keep every input fast (and test that limits hold).
const LIMITS: DecoderLimits = DecoderLimits {
    max_width: 1024,
    max_height: 1024,
    max_pixels: 256 * 256,
};

fuzz_target!(init: write_seeds_if_asked(), |data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut decoder = Decoder::with_limits(LIMITS);
    let mut rest = data;
    for _ in 0..MAX_PAYLOADS {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let before = decoder.canvas().cloned();
        match decoder.decode(payload) {
            Ok(canvas) => {
                let header = FrameHeader::parse(payload).expect("an accepted payload parses");
                assert_eq!((canvas.width(), canvas.height()), (header.width, header.height));
                assert_eq!(canvas.pixels().len(), canvas.stride() * canvas.height() as usize);
                assert!(u64::from(header.width) * u64::from(header.height) <= LIMITS.max_pixels);
            }
            Err(e) => {
                assert_eq!(decoder.canvas().cloned(), before, "refused ({e}) but changed");
                assert!(decoder.last_header().is_none());
            }
        }
    }
});

/// Writes the seed corpus into `$IDV_FUZZ_SEED_DIR`, if set: whole encoded sessions at a few
/// tile sizes, framed as the target reads them.
fn write_seeds_if_asked() {
    let Some(dir) = std::env::var_os("IDV_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    for tile_size in [16u32, 32, 64] {
        let mut encoder = Encoder::new(EncoderConfig {
            tile_size,
            reference_after_still: 2,
            ..EncoderConfig::default()
        })
        .expect("encoder");
        let mut seed = Vec::new();
        for frame in session(96, 64) {
            let payload = encoder
                .encode(&BgrxFrame::new(&frame, 96, 64, 96 * 4).expect("frame"))
                .expect("encode");
            seed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            seed.extend_from_slice(&payload);
        }
        std::fs::write(dir.join(format!("seed-session-tile{tile_size}")), seed)
            .expect("write a seed");
    }
}

/// Frames of a small screen: text on white, a photo-like square, a line typed, the text
/// scrolled, the square moved away and back, nothing changing for a while.
fn session(w: usize, h: usize) -> Vec<Vec<u8>> {
    let mut screen = vec![255u8; w * h * 4];
    let set = |s: &mut Vec<u8>, x: usize, y: usize, c: [u8; 3]| {
        s[(y * w + x) * 4..(y * w + x) * 4 + 3].copy_from_slice(&c);
    };
    for y in 0..h {
        for x in 0..w / 2 {
            if (x * 7 + y * 3) % 11 == 0 && y % 9 < 7 {
                set(&mut screen, x, y, [0, 0, 0]);
            }
        }
    }
    let photo = |s: &mut Vec<u8>, x0: usize, y0: usize, t: usize| {
        for y in y0..y0 + 24 {
            for x in x0..x0 + 24 {
                let v = ((x * 13 + y * 7 + t * 31) % 97) as u8;
                set(s, x, y, [v * 2, 255 - v, v.wrapping_mul(5)]);
            }
        }
    };
    photo(&mut screen, 60, 30, 0);
    let mut frames = vec![screen.clone()];
    for i in 0..6 {
        set(&mut screen, 4 + i * 3, h - 4, [0, 0, 0]);
        frames.push(screen.clone());
    }
    let row = w * 4;
    screen.copy_within(9 * row..h * row, 0);
    frames.push(screen.clone());
    frames.push(screen.clone());
    frames.push(screen.clone());
    let before = screen.clone();
    photo(&mut screen, 60, 4, 1);
    frames.push(screen.clone());
    frames.push(before.clone());
    frames.push(before);
    frames
}
