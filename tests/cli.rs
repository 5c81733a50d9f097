//! The CLI contract other tests rely on: `idv seal | open | verify | manifest | keys |
//! audit`, exit codes and one-line reasons, run as a real process on a real data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn idv(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_idv"))
            .arg("--data-dir")
            .arg(self.path("data"))
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("IDV_BLOB_URL")
            .env("IDV_ACTOR", "cli:tester")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.idv(args);
        assert!(
            out.status.success(),
            "idv {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its one-line reason.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.idv(args);
        assert!(!out.status.success(), "idv {args:?} should have failed");
        let err = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("idv: ")).collect();
        assert_eq!(lines.len(), 1, "want one reason line, got: {err}");
        lines[0].to_owned()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).unwrap();
        self.s(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn header_len(archive: &Path) -> usize {
    let bytes = std::fs::read(archive).unwrap();
    usize::from(u16::from_le_bytes([bytes[10], bytes[11]]))
}

#[test]
fn seal_open_verify_round_trip_with_manifest() {
    let d = DataDir::new();
    for (name, len) in [("empty", 0), ("one", 1), ("big", 1_000_003)] {
        let plain = fixtures::pseudo_random_bytes(len as u64, len);
        let input = d.write(name, &plain);
        let archive = d.s(&format!("{name}.idvr"));
        let out = d.ok(&["seal", &input, "-o", &archive]);
        assert!(out.contains("sealed"), "{out}");
        assert!(d.ok(&["verify", &archive]).starts_with("ok: "));
        let opened = d.s(&format!("{name}.out"));
        d.ok(&["open", &archive, "-o", &opened]);
        assert!(std::fs::read(&opened).unwrap() == plain, "{name} differs");
        let manifest: serde_json::Value =
            serde_json::from_str(&d.ok(&["manifest", &archive])).unwrap();
        assert_eq!(manifest["bytes"], len);
        assert_eq!(
            manifest["sha256"],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plain))
        );
    }
}

#[test]
fn open_range_reads_any_byte_range() {
    let d = DataDir::new();
    let plain = fixtures::pseudo_random_bytes(3, 300_000);
    let input = d.write("in", &plain);
    let archive = d.s("a.idvr");
    d.ok(&["seal", &input, "-o", &archive]);
    for (a, b) in [
        (0, 0),
        (65_535, 65_536),
        (65_536, 131_071),
        (10, 299_999),
        (299_999, 299_999),
    ] {
        let out = d.s("range");
        d.ok(&["open", &archive, "--range", &format!("{a}-{b}"), "-o", &out]);
        assert_eq!(std::fs::read(&out).unwrap(), plain[a..=b], "range {a}-{b}");
    }
    let out = d.idv(&["open", &archive, "--range", "299990-", "-o", "-"]);
    assert_eq!(out.stdout, plain[299_990..]);
    let reason = d.fails(&["open", &archive, "--range", "300000-300010", "-o", "-"]);
    assert!(reason.contains("300000 bytes"), "{reason}");
}

#[test]
fn verify_names_the_damaged_chunk_and_fails() {
    let d = DataDir::new();
    let input = d.write("in", &fixtures::pseudo_random_bytes(4, 4 * 65_536));
    let archive = d.path("a.idvr");
    d.ok(&["seal", &input, "-o", &archive.display().to_string()]);
    let good = std::fs::read(&archive).unwrap();
    let chunk2 = header_len(&archive) + 2 * (65_536 + 16) + 100;

    let mut flipped = good.clone();
    flipped[chunk2] ^= 0x20;
    let bad = d.write("flipped.idvr", &flipped);
    let reason = d.fails(&["verify", &bad]);
    assert!(reason.contains("chunk 2 is corrupt"), "{reason}");

    let cut = d.write("cut.idvr", &good[..good.len() - 30_000]);
    assert!(d.fails(&["verify", &cut]).contains("truncated"));

    let mut longer = good.clone();
    longer.extend_from_slice(b"xyz");
    assert!(
        d.fails(&["verify", &d.write("long.idvr", &longer)])
            .contains("appended")
    );

    let not = d.write("note.txt", b"hello, this is not an archive");
    assert!(d.fails(&["verify", &not]).contains("not an idv archive"));
    // Opening a damaged archive fails too, and leaves no output file behind.
    let out = d.path("flipped.out");
    d.fails(&["open", &bad, "-o", &out.display().to_string()]);
    assert!(!out.exists());
}

#[test]
fn key_rotation_rewraps_headers_and_leaves_payload_bytes_alone() {
    let d = DataDir::new();
    let plain = fixtures::pseudo_random_bytes(5, 200_000);
    let input = d.write("in", &plain);
    let archive = d.path("a.idvr");
    let a = archive.display().to_string();
    d.ok(&["seal", &input, "-o", &a]);
    let before = std::fs::read(&archive).unwrap();
    let body_before = before[header_len(&archive)..].to_vec();

    let out = d.ok(&["keys", "rotate"]);
    assert!(
        out.contains("kek-0002 is active") && out.contains("1 archive(s) rewrapped"),
        "{out}"
    );
    assert!(out.contains("destroyed kek-0001"), "{out}");
    let after = std::fs::read(&archive).unwrap();
    assert_eq!(
        after[header_len(&archive)..],
        body_before[..],
        "payload must not be re-encrypted"
    );
    assert_ne!(
        after[..header_len(&archive)],
        before[..header_len(&archive)]
    );
    let keys = d.ok(&["keys", "list"]);
    assert!(
        keys.contains("kek-0002") && keys.contains("(active)") && !keys.contains("kek-0001"),
        "{keys}"
    );

    let opened = d.s("out");
    d.ok(&["open", &a, "-o", &opened]);
    assert!(std::fs::read(&opened).unwrap() == plain);
    // The old header (wrapped by a destroyed KEK) no longer opens.
    let stale = d.write("stale.idvr", &before);
    assert!(d.fails(&["verify", &stale]).contains("wrong key"));
}

#[test]
fn shredded_archives_can_never_be_read_again() {
    let d = DataDir::new();
    let input = d.write("in", b"customer voice");
    let a = d.s("a.idvr");
    let sealed = d.ok(&["seal", &input, "-o", &a]);
    let id = sealed
        .split("archive ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let copy = d.write("backup-copy.idvr", &std::fs::read(&a).unwrap());
    d.ok(&["keys", "shred", &id, "--reason", "retention ended"]);
    for archive in [&a, &copy] {
        let reason = d.fails(&["open", archive, "-o", "-"]);
        assert!(reason.contains("crypto-shredded"), "{reason}");
    }
    let audit = d.ok(&["audit", "list", "--limit", "100"]);
    assert!(
        audit.contains("archive.shred") && audit.contains("retention ended"),
        "{audit}"
    );
}

#[test]
fn archives_from_another_data_dir_do_not_open() {
    let (d, other) = (DataDir::new(), DataDir::new());
    let a = d.s("a.idvr");
    d.ok(&["seal", &d.write("in", b"x"), "-o", &a]);
    let reason = other.fails(&["verify", &a]);
    assert!(reason.contains("unknown key"), "{reason}");
}

#[test]
fn bad_input_leaves_nothing_behind() {
    let d = DataDir::new();
    let reason = d.fails(&["seal", &d.s("missing.wav"), "-o", &d.s("out.idvr")]);
    assert!(reason.contains("missing.wav"), "{reason}");
    let leftovers: Vec<_> = std::fs::read_dir(d.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out.idvr"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn every_archive_access_is_in_an_intact_audit_log() {
    let d = DataDir::new();
    let a = d.s("a.idvr");
    d.ok(&[
        "seal",
        &d.write("in", b"abc"),
        "-o",
        &a,
        "--reason",
        "case 42",
    ]);
    d.ok(&["verify", &a]);
    d.ok(&["open", &a, "-o", "-", "--reason", "complaint review"]);
    d.fails(&["verify", &d.write("junk.idvr", b"junk")]);
    let list = d.ok(&["audit", "list"]);
    for want in [
        "archive.seal",
        "archive.verify",
        "archive.open",
        "case 42",
        "complaint review",
        "cli:tester",
        "Failed",
    ] {
        assert!(list.contains(want), "audit list lacks {want}:\n{list}");
    }
    assert!(
        d.ok(&["audit", "verify"])
            .starts_with("ok: audit log intact (4 entries")
    );
}

#[test]
fn demo_runs_the_whole_flow_on_the_embedded_defaults() {
    let d = DataDir::new();
    let out = d.ok(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--exit-when-ready",
        "--seconds",
        "4",
    ]);
    for step in [
        "demo-compliance (compliance): password ",
        "idv serve is up at https://127.0.0.1:",
        "the customer types code ",
        "idv cti push sent the call recording",
        "muxed and sealed: recording of ",
        "console: https://127.0.0.1:",
    ] {
        assert!(out.contains(step), "{step:?} in:\n{out}");
    }
    assert!(
        out.contains(" is muxed, archive "),
        "with the call's audio:\n{out}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(d.path("data"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wav"))
        .collect();
    assert!(leftovers.is_empty(), "no plaintext call recording left");
    // A second run keeps the accounts and adds a recording.
    let again = d.ok(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--exit-when-ready",
        "--seconds",
        "3",
    ]);
    assert!(
        again.contains("demo-compliance (compliance): exists already"),
        "{again}"
    );
    assert!(again.contains("muxed and sealed"), "{again}");
}

#[test]
fn rotation_keeps_old_keys_while_an_archive_is_unreachable() {
    let d = DataDir::new();
    let (a, b) = (d.s("a.idvr"), d.s("b.idvr"));
    d.ok(&["seal", &d.write("in", b"first call"), "-o", &a]);
    d.ok(&["seal", &d.write("in2", b"second call"), "-o", &b]);
    let moved = d.s("moved.idvr");
    std::fs::rename(&b, &moved).unwrap();
    let out = d.ok(&["keys", "rotate"]);
    assert!(
        out.contains("1 archive(s) rewrapped, 1 unreachable, destroyed none"),
        "{out}"
    );
    assert!(
        d.ok(&["verify", &moved]).starts_with("ok: "),
        "the moved archive still opens"
    );
    std::fs::rename(&moved, &b).unwrap();
    let out = d.ok(&["keys", "rotate"]);
    assert!(out.contains("destroyed kek-0001, kek-0002"), "{out}");
    assert!(d.ok(&["verify", &a]).starts_with("ok: ") && d.ok(&["verify", &b]).starts_with("ok: "));
}

/// A 6 s camera clip (flashes at 1 s and 4 s) and a 7 s µ-law call starting 0.5 s earlier.
fn small_call(d: &DataDir) -> (String, String) {
    use fixtures::media::{CameraClip, CtiRecording};
    use std::time::Duration;
    CameraClip {
        width: 160,
        height: 120,
        frames: 180,
        flash_frames: vec![30, 120],
        ..CameraClip::default()
    }
    .write(&d.path("camera.mp4"))
    .unwrap();
    CtiRecording {
        duration: Duration::from_secs(7),
        beeps: vec![Duration::from_millis(1500), Duration::from_millis(4500)],
        ..CtiRecording::default()
    }
    .write(&d.path("cti.wav"))
    .unwrap();
    (d.s("camera.mp4"), d.s("cti.wav"))
}

const CAMERA_START: &str = "2026-11-21T10:00:00.000Z";
const CALL_START: &str = "2026-11-21T09:59:59.500Z";

fn mux_args<'a>(video: &'a str, audio: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "mux",
        "--video",
        video,
        "--video-start",
        CAMERA_START,
        "--audio",
        audio,
        "--audio-start",
        CALL_START,
        "-o",
        out,
    ]
}

fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn mux_seals_a_playable_recording_with_its_manifest() {
    let d = DataDir::new();
    let (video, audio) = small_call(&d);
    let out = d.s("call.idvr");
    let printed = d.ok(&mux_args(&video, &audio, &out));
    assert!(printed.starts_with("muxed "), "{printed}");
    d.ok(&["verify", &out]);

    let manifest: serde_json::Value = serde_json::from_str(&d.ok(&["manifest", &out])).unwrap();
    assert_eq!(manifest["kind"], "mux");
    assert_eq!(
        manifest["inputs"][0]["sha256"],
        sha256_hex(&d.path("camera.mp4"))
    );
    assert_eq!(
        manifest["inputs"][1]["sha256"],
        sha256_hex(&d.path("cti.wav"))
    );
    assert_eq!(manifest["inputs"][1]["codec"], "pcm_mulaw");
    assert_eq!(manifest["cuts"]["in"], "2026-11-21T10:00:00Z");
    assert_eq!(manifest["cuts"]["out"], "2026-11-21T10:00:06Z");
    assert_eq!(manifest["clock"]["audio_offset_s"], -0.5);

    d.ok(&["open", &out, "-o", &d.s("call.mp4")]);
    fixtures::media::ffprobe_ok(&d.path("call.mp4")).unwrap();
    fixtures::media::gst_discoverer_ok(&d.path("call.mp4")).unwrap();
    let m = fixtures::media::measure_with_ffmpeg(&d.path("call.mp4"), 0).unwrap();
    assert_eq!(m.flashes.len(), 2);
    for (flash, beep) in m.flashes.iter().zip(&m.beeps) {
        let sync_ms = (beep.as_secs_f64() - flash.as_secs_f64()) * 1000.0;
        assert!(sync_ms.abs() <= 10.0, "audio − video {sync_ms} ms");
    }
    let audit = d.ok(&["audit", "list"]);
    assert!(audit.contains("archive.mux"), "{audit}");
}

#[test]
fn mux_with_a_screen_and_the_pip_layout_makes_three_video_tracks() {
    let d = DataDir::new();
    let (video, audio) = small_call(&d);
    let out = d.s("pip.idvr");
    let mut args = mux_args(&video, &audio, &out);
    // The same clip stands in for the screen, started 1 s later.
    args.extend([
        "--screen",
        &video,
        "--screen-start",
        "2026-11-21T10:00:01Z",
        "--layout",
        "pip",
    ]);
    d.ok(&args);
    let manifest: serde_json::Value = serde_json::from_str(&d.ok(&["manifest", &out])).unwrap();
    let roles: Vec<_> = manifest["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, ["composite", "camera", "screen", "cti_audio"]);
    assert_eq!(manifest["cuts"]["in"], "2026-11-21T10:00:01Z");
    d.ok(&["open", &out, "-o", &d.s("pip.mp4")]);
    fixtures::media::ffprobe_ok(&d.path("pip.mp4")).unwrap();
    fixtures::media::gst_discoverer_ok(&d.path("pip.mp4")).unwrap();

    let mut no_screen = mux_args(&video, &audio, &out);
    no_screen.extend(["--layout", "pip"]);
    // clap refuses it before anything runs, naming the missing argument.
    let refused = d.idv(&no_screen);
    assert!(!refused.status.success());
    let err = String::from_utf8(refused.stderr).unwrap();
    assert!(err.contains("--screen <SCREEN>"), "{err}");
}

#[test]
fn mux_refuses_bad_inputs_in_one_line_and_leaves_nothing_behind() {
    let d = DataDir::new();
    let (video, audio) = small_call(&d);
    let out = d.s("call.idvr");
    let wav = std::fs::read(d.path("cti.wav")).unwrap();
    let corrupt_header = d.write(
        "corrupt.wav",
        &[b"RIFF\x10\x00\x00\x00WAVEfmt ".as_slice(), &[0xff; 8]].concat(),
    );
    let truncated_wav = d.write("truncated.wav", &wav[..wav.len() / 2]);
    let mp4 = std::fs::read(d.path("camera.mp4")).unwrap();
    let truncated_mp4 = d.write("truncated.mp4", &mp4[..mp4.len() / 2]);
    let noise = d.write("noise.mkv", &fixtures::pseudo_random_bytes(7, 100_000));
    let missing = d.s("missing.wav");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            mux_args(&video, &corrupt_header, &out),
            "corrupt WAV header",
        ),
        (mux_args(&video, &truncated_wav, &out), "truncated"),
        (mux_args(&truncated_mp4, &audio, &out), "truncated.mp4"),
        (mux_args(&noise, &audio, &out), "noise.mkv"),
        (mux_args(&audio, &audio, &out), "cti.wav"),
        (mux_args(&video, &missing, &out), "missing.wav"),
    ];
    for (args, expected) in &cases {
        let reason = d.fails(args);
        assert!(reason.contains(expected), "{args:?}: {reason}");
    }
    let mut no_overlap = mux_args(&video, &audio, &out);
    no_overlap[8] = "2026-11-21T11:00:00Z";
    let reason = d.fails(&no_overlap);
    assert!(reason.contains("do not overlap"), "{reason}");
    let mut bad_cut = mux_args(&video, &audio, &out);
    bad_cut.extend([
        "--in",
        "2026-11-21T10:00:04Z",
        "--out-point",
        "2026-11-21T10:00:02Z",
    ]);
    let reason = d.fails(&bad_cut);
    assert!(reason.contains("before the in point"), "{reason}");

    let leftovers: Vec<_> = std::fs::read_dir(d.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("call.idvr"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Every attempt is audited, and none as a success.
    let audit = d.ok(&["audit", "list", "--limit", "100"]);
    let muxes: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("archive.mux"))
        .collect();
    assert_eq!(muxes.len(), cases.len() + 2, "{audit}");
    assert!(muxes.iter().all(|l| l.contains("Failed")), "{audit}");
}

#[test]
fn mux_refines_a_wrong_call_start_against_the_microphone_reference() {
    use fixtures::media::{CtiContainer, CtiEncoding, CtiRecording, Voice};
    use std::time::Duration;
    let d = DataDir::new();
    let (video, _) = small_call(&d);
    // `small_call`'s call with the customer talking, and the agent's microphone hearing the
    // same talk from the camera's start (0.5 s into the call) with its own noise.
    let talk = |from_ms| {
        Some(Voice {
            seed: 5,
            from: Duration::from_millis(from_ms),
        })
    };
    CtiRecording {
        duration: Duration::from_secs(7),
        beeps: vec![Duration::from_millis(1500), Duration::from_millis(4500)],
        voice: talk(0),
        ..CtiRecording::default()
    }
    .write(&d.path("talk.wav"))
    .unwrap();
    CtiRecording {
        encoding: CtiEncoding::Pcm16,
        container: CtiContainer::Flac,
        rate_hz: 16_000,
        duration: Duration::from_secs(6),
        beeps: vec![Duration::from_millis(1000), Duration::from_millis(4000)],
        noise_seed: 3,
        voice: talk(500),
        ..CtiRecording::default()
    }
    .write(&d.path("mic.flac"))
    .unwrap();
    let (audio, mic, out) = (d.s("talk.wav"), d.s("mic.flac"), d.s("call.idvr"));
    let mut args = mux_args(&video, &audio, &out);
    args[8] = "2026-11-21T09:59:59.850Z"; // the PBX's clock: 350 ms late
    let mut no_start = args.clone();
    no_start.extend(["--reference", &mic]);
    let refused = d.idv(&no_start);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--reference-start"));

    args.extend(["--reference", &mic, "--reference-start", CAMERA_START]);
    d.ok(&args);
    let manifest: serde_json::Value = serde_json::from_str(&d.ok(&["manifest", &out])).unwrap();
    let clock = &manifest["clock"];
    let refined = clock["refined_by_ms"].as_f64().unwrap();
    assert!((refined + 350.0).abs() <= 2.0, "{clock}");
    assert!(clock["confidence"].as_f64().unwrap() >= 0.5, "{clock}");
    assert!((clock["audio_offset_s"].as_f64().unwrap() + 0.5).abs() < 0.002);
    assert_eq!(manifest["inputs"][1]["start"], "2026-11-21T09:59:59.85Z");
    assert_eq!(manifest["inputs"][2]["role"], "mic_reference");
    assert_eq!(
        manifest["inputs"][2]["sha256"],
        sha256_hex(&d.path("mic.flac"))
    );
    assert_eq!(manifest["tracks"].as_array().unwrap().len(), 2, "not muxed");

    d.ok(&["open", &out, "-o", &d.s("call.mp4")]);
    let m = fixtures::media::measure_with_ffmpeg(&d.path("call.mp4"), 0).unwrap();
    assert_eq!((m.flashes.len(), m.beeps.len()), (2, 2));
    for (flash, beep) in m.flashes.iter().zip(&m.beeps) {
        let sync_ms = (beep.as_secs_f64() - flash.as_secs_f64()) * 1000.0;
        assert!(sync_ms.abs() <= 10.0, "audio − video {sync_ms} ms");
    }
}
