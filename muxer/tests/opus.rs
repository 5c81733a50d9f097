//! Ogg Opus CTI recordings read sample-exact: the length known at open is the length decoded and
//! the recorded length, the beeps come out when they were recorded (pre-skip dropped), and
//! damaged files are refused with one line, never a panic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fixtures::media::{AudioTruth, CtiContainer, CtiEncoding, CtiRecording, beep_onsets};
use muxer::MuxError;
use muxer::input::audio::AudioFile;

const OPUS_HZ: u32 = 48_000;

fn recording(rate_hz: u32, channels: u16) -> CtiRecording {
    CtiRecording {
        encoding: CtiEncoding::Pcm16,
        container: CtiContainer::OggOpus,
        rate_hz,
        channels,
        duration: Duration::from_millis(6_010),
        beeps: [0.5, 2.345, 4.0205].map(Duration::from_secs_f64).to_vec(),
        drift_ppm: 0.0,
        ..CtiRecording::default()
    }
}

fn write(dir: &Path, name: &str, cti: &CtiRecording) -> (PathBuf, AudioTruth) {
    let path = dir.join(name);
    let truth = cti.write(&path).expect("Ogg Opus fixture");
    (path, truth)
}

/// Every frame of `file`, interleaved.
fn decode_all(file: &mut AudioFile) -> Vec<f32> {
    let mut all = Vec::new();
    let mut block = Vec::new();
    while file.read(&mut block).expect("decodes") > 0 {
        all.extend_from_slice(&block);
    }
    all
}

#[test]
fn ogg_opus_opens_with_its_exact_length_and_the_beeps_where_they_were_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for (rate_hz, channels) in [(48_000, 2), (16_000, 1), (44_100, 1)] {
        let cti = recording(rate_hz, channels);
        let (path, truth) = write(dir.path(), &format!("{rate_hz}-{channels}.opus"), &cti);
        let mut file = AudioFile::open(&path).expect("opens");
        assert_eq!(file.info.rate_hz, OPUS_HZ);
        assert_eq!(file.info.channels, channels);
        assert_eq!(file.info.codec, "opus");

        // The recorded length at 48 kHz. From 8/12/16/24/48 kHz Opus's own resampler makes
        // exactly 48000 / rate samples of each; 44.1 kHz goes through `audioresample`, whose
        // output length rounds.
        let truth_48k = truth.samples as f64 * f64::from(OPUS_HZ) / f64::from(rate_hz);
        let length_error = file.info.frames as f64 - truth_48k;
        println!(
            "OPUS {rate_hz} Hz × {channels}: {} frames at open, truth {truth_48k:.2} ({length_error:+.2})",
            file.info.frames
        );
        assert!(length_error.abs() <= 1.0, "{length_error}");

        let samples = decode_all(&mut file);
        let ch = usize::from(channels);
        assert_eq!(
            samples.len() as u64,
            file.info.frames * u64::from(channels),
            "decoding gives the length known at open"
        );

        // ffmpeg's own Opus decoder (not libopus) honours pre-skip and end trim too: the same
        // samples, to rounding.
        let ffmpeg = ffmpeg_f32(&path);
        assert_eq!(
            ffmpeg.len(),
            samples.len(),
            "ffmpeg decodes as many samples"
        );
        let worst = ffmpeg
            .iter()
            .zip(&samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "OPUS {rate_hz} Hz × {channels}: largest difference from ffmpeg's decoding {worst:e}"
        );
        assert!(worst < 1e-3, "{worst}");

        let customer: Vec<f32> = samples.iter().step_by(ch).copied().collect();
        let found = beep_onsets(&customer, OPUS_HZ);
        assert_eq!(found.len(), truth.beep_sample_onsets.len(), "{found:?}");
        for (f, t) in found.iter().zip(&truth.beep_sample_onsets) {
            let error_ms = (f / f64::from(OPUS_HZ) - t / f64::from(rate_hz)) * 1000.0;
            println!("OPUS {rate_hz} Hz × {channels}: beep at {t} samples: {error_ms:+.3} ms");
            // Ignoring the pre-skip (312 samples) would put every beep 6.5 ms late.
            assert!(error_ms.abs() <= 1.0, "beep {error_ms:+.3} ms off");
        }
    }
}

/// `path` decoded by `ffmpeg` to interleaved `f32` at 48 kHz.
fn ffmpeg_f32(path: &Path) -> Vec<f32> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "f32le", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The reason of a [`MuxError::Input`], which must be one line.
fn refused(path: &Path) -> String {
    match AudioFile::open(path) {
        Err(e @ MuxError::Input { .. }) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            println!("REFUSED {line}");
            line
        }
        Err(e) => panic!("{}: not an input error: {e}", path.display()),
        Ok(f) => panic!("{}: opened: {:?}", path.display(), f.info),
    }
}

/// One Ogg page, split into its parts (RFC 3533).
struct Page {
    header: Vec<u8>,
    lacing: Vec<u8>,
    body: Vec<u8>,
}

impl Page {
    fn split(bytes: &[u8]) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            assert_eq!(&bytes[at..at + 4], b"OggS");
            let segments = usize::from(bytes[at + 26]);
            let lacing = bytes[at + 27..at + 27 + segments].to_vec();
            let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
            let body_at = at + 27 + segments;
            pages.push(Page {
                header: bytes[at..at + 27].to_vec(),
                lacing,
                body: bytes[body_at..body_at + body_len].to_vec(),
            });
            at = body_at + body_len;
        }
        pages
    }

    fn is_end_of_stream(&self) -> bool {
        self.header[5] & 0x04 != 0
    }

    /// The page's bytes with its checksum computed afresh.
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        out[22..26].fill(0);
        out[26] = self.lacing.len() as u8;
        out.extend_from_slice(&self.lacing);
        out.extend_from_slice(&self.body);
        let crc = ogg_crc(&out);
        out[22..26].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Ogg's CRC-32: polynomial 0x04c11db7, not reflected, zero initial value and final XOR.
fn ogg_crc(bytes: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in bytes {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn join(pages: &[Page]) -> Vec<u8> {
    pages.iter().flat_map(Page::bytes).collect()
}

/// Deterministic noise.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

#[test]
fn truncated_or_damaged_ogg_opus_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the middle is outside the last 64 KiB, which the demuxer scans for the
    // end-of-stream page when it opens the file.
    let cti = CtiRecording {
        duration: Duration::from_secs(20),
        ..recording(48_000, 1)
    };
    let (good, _) = write(dir.path(), "good.opus", &cti);
    let bytes = std::fs::read(&good).unwrap();
    let pages = Page::split(&bytes);
    assert!(pages.len() >= 6, "{} pages", pages.len());
    assert_eq!(join(&pages), bytes, "the page writer reproduces the file");
    let bad = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };

    // Cut off mid-page, and cut at a page boundary (every page intact, the last one missing).
    let reason = refused(&bad("cut.opus", &bytes[..bytes.len() * 3 / 5]));
    assert!(reason.contains("truncated"), "{reason}");
    let without_last = join(&pages[..pages.len() - 1]);
    assert!(!pages[pages.len() - 2].is_end_of_stream());
    let reason = refused(&bad("no-end.opus", &without_last));
    assert!(reason.contains("truncated"), "{reason}");

    // Garbage over the middle of an audio page: its checksum fails, the demuxer skips it, and
    // the samples it held are missing.
    let mut overwritten = bytes.clone();
    let middle = bytes.len() / 2;
    overwritten[middle..middle + 200].copy_from_slice(&garbage(200, 1));
    let reason = refused(&bad("overwritten.opus", &overwritten));
    assert!(reason.contains("granule positions jump"), "{reason}");
    // The same near the end: the demuxer's scan for the last page stops at the bad one.
    let mut overwritten = bytes.clone();
    let near_end = bytes.len() - 3000;
    overwritten[near_end..near_end + 200].copy_from_slice(&garbage(200, 2));
    let reason = refused(&bad("overwritten-end.opus", &overwritten));
    assert!(reason.contains("damaged"), "{reason}");

    // Garbage pages with valid checksums: the bodies of two audio pages replaced.
    let mut forged = Page::split(&bytes);
    for (i, page) in forged.iter_mut().enumerate().skip(3).take(2) {
        page.body = garbage(page.body.len(), i as u64);
    }
    let reason = refused(&bad("forged.opus", &join(&forged)));
    assert!(reason.contains("damaged"), "{reason}");

    // The whole file's audio pages as garbage behind a valid header.
    let mut noise = Page::split(&bytes);
    for (i, page) in noise.iter_mut().enumerate().skip(2) {
        page.body = garbage(page.body.len(), 100 + i as u64);
    }
    refused(&bad("noise.opus", &join(&noise)));
}

#[test]
fn opus_channel_mappings_other_than_mono_or_stereo_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = write(dir.path(), "good.opus", &recording(48_000, 2));
    // Family 1 (Vorbis order; symphonia maps it) and 255 (unordered; symphonia does not): the
    // same stereo stream, described with a mapping table (1 stream, 1 coupled, channels 0, 1).
    for family in [1u8, 255] {
        let mut pages = Page::split(&std::fs::read(&good).unwrap());
        let head = &mut pages[0].body;
        head[18] = family;
        head.extend_from_slice(&[1, 1, 0, 1]);
        pages[0].lacing = vec![head.len() as u8];
        let path = dir.path().join(format!("family-{family}.opus"));
        std::fs::write(&path, join(&pages)).unwrap();
        let reason = refused(&path);
        assert!(
            reason.contains(&format!("channel mapping family {family}")),
            "{reason}"
        );
    }
}
