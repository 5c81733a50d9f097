//! `idv serve` as a real process: it prints where it listens, answers over TLS with the
//! certificate it wrote to the data directory, and exits 0 after draining on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn serve_listens_on_tls_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = spawn_server(&data);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let health = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let who = http
        .get(format!("{url}/api/v1/whoami"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 200);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

/// Starts `idv serve` on a free port over `data`; returns the child and its URL.
fn spawn_server(data: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--drain-seconds", "2"])
        .env_remove("DATABASE_URL")
        .env_remove("IDV_BLOB_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (child, url)
}

/// A mono 8 kHz 16-bit PCM WAV of `samples` samples.
fn wav(samples: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let sample = ((f64::from(i) * 0.05).sin() * 10_000.0) as i16;
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

#[test]
fn cti_push_uploads_a_signed_recording() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = spawn_server(&data);
    let recording = dir.path().join("call-42.wav");
    let audio = wav(8000);
    std::fs::write(&recording, &audio).unwrap();
    let push = |call_id: &str, file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_idv"))
            .arg("--data-dir")
            .arg(&data)
            .args(["cti", "push", "--server", &url, "--call-id", call_id])
            .args(["--correlation", "ext-4711@2026-11-21T09:00Z"])
            .args(["--started-at", "2026-11-21T10:00:00+01:00"])
            .args(["--ended-at", "2026-11-21T10:00:01+01:00"])
            .arg(file)
            .output()
            .unwrap()
    };

    let out = push("call-42", &recording);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let rest = lines[0].strip_prefix("uploaded ").unwrap();
    let (id, rest) = rest.split_once(' ').unwrap();
    uuid::Uuid::parse_str(id).unwrap();
    let expected = format!("({} bytes, archive ", audio.len());
    assert!(rest.starts_with(&expected), "{rest}");
    let archive = rest
        .strip_prefix(&expected)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap();
    uuid::Uuid::parse_str(archive).unwrap();

    // The same call again: refused, one line on stderr, non-zero exit.
    let again = push("call-42", &recording);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("idv: ") && stderr.contains("409"),
        "{stderr}"
    );

    // Not audio: refused.
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "meeting notes, not a recording").unwrap();
    let refused = push("call-43", &junk);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("idv: ") && stderr.contains("415"),
        "{stderr}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
}

/// The operator's script contract: `session create` prints "<id> <code>", `session end`
/// ends it; a session in which nothing was recorded has no recording: `recordings list` does
/// not show it and `recordings get` says so in one line. (A recorded session's way to
/// `muxed` is `tests/recording.rs`.)
#[test]
fn session_and_recordings_commands_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = spawn_server(&data);
    let idv = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_idv"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let out = idv(&["session", "create", "--server", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let (id, code) = line.trim().split_once(' ').unwrap();
    uuid::Uuid::parse_str(id).unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{line}"
    );

    let out = idv(&["session", "end", "--server", &url, id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = idv(&["recordings", "list", "--server", &url]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "");

    let target = dir.path().join("r.idvr");
    let out = idv(&[
        "recordings",
        "get",
        "--server",
        &url,
        id,
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no such recording"), "{err}");
    assert!(!target.exists());

    let wrong = idv(&[
        "session",
        "end",
        "--server",
        &url,
        &uuid::Uuid::new_v4().to_string(),
    ]);
    assert!(!wrong.status.success());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Settings come from `--config idv.toml` under the flags; a key the server does not know is
/// refused at start, naming it, rather than leaving a default silently in force.
#[test]
fn serve_reads_its_settings_file_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("idv.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nrole = \"ingest\"\ncode_ttl_seconds = 60\n\n[limits]\n\
         max_frame_bytes = 65536\n\n[spool]\nsegment_bytes = 1048576\nsegment_seconds = 60\n\
         commit_interval_ms = 1\ncheckpoint_seconds = 5\ncheckpoint_bytes = 8388608\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("IDV_BLOB_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("listening on https://127.0.0.1:"),
        "{first:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ncti_dedline_seconds = 5\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("IDV_BLOB_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cti_dedline_seconds"), "{stderr}");

    // A segment of no bytes would close a log after every batch: refused, naming the key.
    std::fs::write(&config, "[spool]\nsegment_bytes = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("IDV_BLOB_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spool.segment_bytes must be at least 1"),
        "{stderr}"
    );
}
