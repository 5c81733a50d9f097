//! The chunked AAC encoder (two encoders at once, stitched on the 1024-sample grid) must
//! sound like one encoder: the same signal is encoded in 2-second chunks and in one piece,
//! both are decoded, and around every seam the error against the input must be no worse than
//! the single encoder's there.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use muxer::audio::aac::{AacSettings, ChunkedAac};

const RATE: u32 = 32_000;
/// voaacenc's delay in samples: decoded sample `k` is input sample `k − DELAY`.
const DELAY: usize = 1600;

/// 9 s of speech-like sound: a gliding tone with a syllable rhythm, noise bursts (transients
/// that make the encoder switch to short blocks) and a click on every seam of 2 s chunks.
fn signal() -> Vec<i16> {
    let n = 9 * RATE as usize;
    let mut noise = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let syllable = (0.5 + 0.5 * (t * 2.0 * std::f64::consts::PI * 3.7).sin()).powi(2);
            let f = 220.0 + 180.0 * (t * 0.7).sin();
            let tone = (t * 2.0 * std::f64::consts::PI * f).sin() * 0.4 * syllable;
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let white = (noise >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let burst = if (t * 3.0).fract() < 0.04 {
                white * 0.8
            } else {
                white * 0.01
            };
            let click = if i % (2 * RATE as usize) < 8 {
                0.7
            } else {
                0.0
            };
            ((tone + burst + click) * 32_767.0 * 0.8) as i16
        })
        .collect()
}

/// Encodes `pcm` with `chunk_frames`-frame chunks and decodes it back.
fn round_trip(pcm: &[i16], chunk_frames: u64) -> Vec<f64> {
    gst::init().unwrap();
    let src = gst_app::AppSrc::builder().format(gst::Format::Time).build();
    let decoder = gst::ElementFactory::make("avdec_aac").build().unwrap();
    let convert = gst::ElementFactory::make("audioconvert").build().unwrap();
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .build(),
        )
        .sync(false)
        .build();
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([src.upcast_ref(), &decoder, &convert, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &decoder, &convert, sink.upcast_ref()]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let settings = AacSettings {
        rate_hz: RATE,
        channels: 1,
        bitrate: 48_000,
    };
    let decoded = std::thread::scope(|scope| {
        let pulling = scope.spawn(|| {
            let mut out = Vec::new();
            while let Ok(sample) = sink.pull_sample() {
                let buffer = sample.buffer().unwrap();
                let map = buffer.map_readable().unwrap();
                out.extend(
                    map.as_slice()
                        .chunks_exact(2)
                        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]]))),
                );
            }
            out
        });
        let mut aac = ChunkedAac::with_chunk_frames(settings, &src, chunk_frames);
        for block in pcm.chunks(4_800) {
            aac.write(block).unwrap();
        }
        // Silence flushes what the encoder holds, as the muxer does.
        aac.write(&[0; DELAY + 1024]).unwrap();
        aac.finish().unwrap();
        src.end_of_stream().unwrap();
        pulling.join().unwrap()
    });
    pipeline.set_state(gst::State::Null).unwrap();
    decoded
}

/// Error energy of `decoded` against the input in the 1024-sample window starting at `at`
/// (input time).
fn error_energy(input: &[i16], decoded: &[f64], at: usize) -> f64 {
    (at..at + 1024)
        .map(|k| (decoded[k + DELAY] - f64::from(input[k])).powi(2))
        .sum()
}

#[test]
fn chunks_stitch_without_a_seam() {
    let input = signal();
    let chunk_frames = 2 * u64::from(RATE) / 1024; // 62 frames, 1.984 s
    let chunked = round_trip(&input, chunk_frames);
    let single = round_trip(&input, u64::MAX / 4096);
    assert_eq!(chunked.len(), single.len(), "the same number of frames");
    assert!(
        chunked.len() >= input.len() + DELAY,
        "every input sample is in the stream"
    );

    let seams: Vec<usize> = (1..)
        .map(|c| c * chunk_frames as usize * 1024)
        .take_while(|&s| s + 4096 + DELAY < input.len())
        .collect();
    assert!(seams.len() >= 3, "the signal crosses several seams");
    let signal_energy: f64 = input[..1024].iter().map(|&s| f64::from(s).powi(2)).sum();
    for &seam in &seams {
        // Windows one frame before the seam to two after (decoded times shifted by the delay).
        for at in [seam - DELAY - 1024, seam - DELAY, seam - DELAY + 1024] {
            let (c, s) = (
                error_energy(&input, &chunked, at),
                error_energy(&input, &single, at),
            );
            println!("seam at {seam}: window {at}: chunked {c:.3e}, single {s:.3e}");
            assert!(
                c <= 2.0 * s + 1e-3 * signal_energy,
                "a glitch at the seam at sample {seam} (window {at}): error {c:.3e} vs {s:.3e}"
            );
        }
    }
}
