//! The console in a real browser (headless Debian Chromium driven by playwright-core, see
//! `console/browser-tests/`): a real `idv serve`, accounts made with `idv user add`, a real
//! recording (`idv agent` on the test camera, muxed video-only) — then the script signs in
//! from a disallowed address and is refused, an operator is refused the recording, and a
//! compliance officer finds it, opens it for a reason, plays it, seeks, verifies it and finds
//! every step in the audit log; and an operator watches a running session live over WebRTC.
//! Screenshots land in `$CARGO_TARGET_DIR/browser-screenshots`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::Server;

fn add_user(data: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(data)
        .args(["user", "add", name])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("IDV_BLOB_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap();
    format!("{name}:{password}")
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A session created with `idv session create` and `idv agent` streaming the test camera into
/// it (15 fps, no screen).
fn session_with_agent(server: &Server) -> (String, Child) {
    let created = server.idv_out(&["session", "create", "--server", &server.url]);
    let mut words = created.split_whitespace();
    let (session, code) = (words.next().unwrap(), words.next().unwrap());
    let agent = Command::new(env!("CARGO_BIN_EXE_idv"))
        .args(["agent", "--server", &server.url, "--ca"])
        .arg(server.data.join("tls/cert.pem"))
        .args(["--code", code, "--camera", "test", "--screen", "none"])
        .args(["--consent", "camera,recording", "--camera-fps", "15"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (session.to_owned(), agent)
}

#[test]
fn compliance_plays_a_recording_in_chromium_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let compliance = add_user(&data, "carla", &["--role", "compliance"]);
    let operator = add_user(&data, "otto", &["--role", "operator"]);
    let faraway = add_user(
        &data,
        "fay",
        &["--role", "operator", "--allow", "10.0.0.0/8"],
    );
    let server = Server::start(&data, 2);

    // A real recording: the agent's test camera for a few seconds, no CTI audio in time.
    let (session, mut agent) = session_with_agent(&server);
    std::thread::sleep(Duration::from_secs(6));
    server.idv(&["session", "end", "--server", &server.url, &session]);
    assert!(
        agent.wait().unwrap().success(),
        "the agent stops when the session ends"
    );
    let (status, _) = server.wait_recording(&session);
    assert_eq!(
        status,
        "video-only",
        "{}",
        server.idv_out(&["recordings", "list", "--server", &server.url])
    );

    let result = run_script(
        "console.mjs",
        &[
            ("IDV_URL", &server.url),
            ("IDV_SESSION", &session),
            ("IDV_COMPLIANCE", &compliance),
            ("IDV_OPERATOR", &operator),
            ("IDV_FARAWAY", &faraway),
        ],
    );
    println!("BROWSER {result}");
    assert_eq!(result["ok"], true);
    server.stop();
}

/// Runs a browser script with `vars`; its last line, parsed.
fn run_script(name: &str, vars: &[(&str, &str)]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("console/browser-tests")
        .join(name);
    let mut command = Command::new("node");
    command.arg(&script).env("IDV_SCREENSHOTS", screenshots());
    for (k, v) in vars {
        command.env(k, v);
    }
    let out = command
        .output()
        .expect("node runs (scripts/bootstrap.sh installs playwright-core)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn an_operator_watches_a_running_session_live_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let operator = add_user(&data, "otto", &["--role", "operator"]);
    let server = Server::start(&data, 2);
    let (session, mut agent) = session_with_agent(&server);
    std::thread::sleep(Duration::from_secs(2));
    let result = run_script(
        "live.mjs",
        &[
            ("IDV_URL", &server.url),
            ("IDV_SESSION", &session),
            ("IDV_OPERATOR", &operator),
        ],
    );
    println!("BROWSER live {result}");
    assert_eq!(result["ok"], true);
    server.idv(&["session", "end", "--server", &server.url, &session]);
    assert!(agent.wait().unwrap().success());
    let log = server.idv_out(&["audit", "list"]);
    assert!(
        log.contains("session.watch"),
        "the watch is audited:\n{log}"
    );
    server.stop();
}
