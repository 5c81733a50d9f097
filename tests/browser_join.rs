//! The customer join page in a real browser (headless Debian Chromium with its fake camera,
//! driven by playwright-core, see `console/browser-tests/join.mjs`): a real `idv serve`, a
//! session made with `idv session create`; the customer opens `/join`, types the code,
//! consents, sends the camera for a few seconds — chatting both ways with an operator on the
//! session page — and leaves. Then the recording is checked as
//! compliance would get it: `idv recordings list` until it is muxed (video-only: no CTI audio),
//! `idv recordings get`, `idv open`, and the camera's video measured with ffprobe.
//! Screenshots land in `$CARGO_TARGET_DIR/browser-screenshots`.

mod support;

use std::path::Path;
use std::process::Command;

use support::Server;
use support::browser::{add_user, run_script};

/// How long the customer sends the camera.
const SENDING_S: u64 = 5;

/// `ffprobe` of the first video stream: (duration in seconds, frames, codec, width × height).
fn probe_video(file: &Path) -> (f64, u64, String, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,duration",
        ])
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe runs (scripts/bootstrap.sh installs ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = &probed["streams"][0];
    let number = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .or_else(|| v.as_f64())
            .unwrap_or(0.0)
    };
    (
        number(&stream["duration"]),
        number(&stream["nb_read_frames"]) as u64,
        stream["codec_name"].as_str().unwrap_or_default().to_owned(),
        format!("{}x{}", stream["width"], stream["height"]),
    )
}

#[test]
fn a_customer_sends_the_camera_from_the_join_page_and_it_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let adviser = add_user(&data, "otto", &["--role", "operator"]);
    let server = Server::start(&data, 2);
    let created = server.idv_out(&["session", "create", "--server", &server.url]);
    let mut words = created.split_whitespace();
    let (session, code) = (words.next().unwrap(), words.next().unwrap());

    let result = run_script(
        "join.mjs",
        &[
            ("IDV_URL", &server.url),
            ("IDV_CODE", code),
            ("IDV_SECONDS", &SENDING_S.to_string()),
            ("IDV_OPERATOR", &adviser),
            ("IDV_SESSION", session),
        ],
    );
    println!("BROWSER join {result}");
    assert_eq!(result["ok"], true);
    assert!(
        result["chat"]["to_customer_ms"].is_number(),
        "the adviser and the customer chatted both ways: {result}"
    );
    let frames_sealed = result["left"]["frames"]["camera"].as_u64().unwrap();

    // The customer's leave ended the session; the recording follows (no CTI audio in time).
    let (status, _) = server.wait_recording(session);
    assert_eq!(
        status,
        "video-only",
        "{}",
        server.idv_out(&["recordings", "list", "--server", &server.url])
    );
    let sealed = dir.path().join("join.idvr");
    let manifest = server.sealed_recording(session, &sealed);
    assert_eq!(manifest["session"]["session_id"], session);
    let plain = dir.path().join("join.mp4");
    server.idv(&[
        "open",
        sealed.to_str().unwrap(),
        "-o",
        plain.to_str().unwrap(),
        "--reason",
        "join page browser test",
    ]);
    let (duration_s, frames, codec, size) = probe_video(&plain);
    println!(
        "JOIN recorded: {frames} frames of {codec} {size} over {duration_s:.2} s \
         ({frames_sealed} frames sealed by the bridge; browser sent {}; negotiated {}; \
         offered {}; connected {} ms after Join)",
        result["sent"], result["codec"], result["offered"], result["connected_ms"]
    );
    assert_eq!(codec, "h264");
    assert!(
        duration_s >= (SENDING_S - 2) as f64,
        "{duration_s} s of camera recorded"
    );
    assert!(frames >= 30, "{frames} frames recorded");
    let log = server.idv_out(&["audit", "list"]);
    for action in ["session.join.webrtc", "session.join.end", "session.consent"] {
        assert!(log.contains(action), "{action} is audited:\n{log}");
    }
    server.stop();
}
