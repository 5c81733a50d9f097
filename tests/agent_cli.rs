//! `idv agent` as the outside runs it (the CLI contract), against a real `idv serve`: the
//! camera's test pattern and an X11 screen (Xvfb) are streamed with a region blinded, the
//! "remote support in progress" banner on that screen while the session runs; SIGTERM
//! makes the agent send what is unacknowledged, end the session and exit 0; the session is
//! then muxed (video-only: no call recording) with both tracks at their sizes. A wrong code
//! is refused with one line and a non-zero exit.

mod support;
#[path = "../agent/tests/common/xvfb.rs"]
mod xvfb;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::Server;
use xvfb::Xvfb;

/// Whether the agent's banner window is on `display`.
fn banner_shown(display: &str) -> bool {
    let tree = Command::new("xwininfo")
        .args(["-root", "-tree", "-display", display])
        .output()
        .unwrap();
    String::from_utf8_lossy(&tree.stdout).contains(agent::notice::BANNER_NAME)
}

fn agent(server: &Server, code: &str, screen: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idv"));
    command
        .args(["agent", "--server", &server.url, "--ca"])
        .arg(server.data.join("tls/cert.pem"))
        .args(["--code", code, "--camera", "test", "--screen", screen])
        .args([
            "--blind",
            "0,0,200,100",
            "--consent",
            "camera,screen,recording",
        ])
        .args(["--camera-fps", "15"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn the_agent_streams_an_x11_screen_and_a_sigterm_ends_the_session_cleanly() {
    let Some(display) = Xvfb::start(640, 360) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 2);
    let created = server.idv_out(&["session", "create", "--server", &server.url]);
    let mut fields = created.split_whitespace();
    let (session, code) = (fields.next().unwrap(), fields.next().unwrap());

    let screen = format!("x11{}", display.name);
    let mut child = agent(&server, code, &screen).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent runs until told to stop"
    );
    assert!(
        banner_shown(&display.name),
        "the notice is on the customer's screen while the session runs"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit 0 after SIGTERM: {stderr}");
    assert!(
        stderr.contains("REMOTE SUPPORT IN PROGRESS"),
        "the notice is shown: {stderr}"
    );
    assert!(stderr.contains("you ended the session"), "{stderr}");

    assert!(!banner_shown(&display.name), "and gone once it ended");
    let (status, _) = server.wait_recording(session);
    assert_eq!(status, "video-only");
    let sealed = dir.path().join("session.idvr");
    let manifest = server.sealed_recording(session, &sealed);
    let roles: Vec<&str> = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["role"].as_str())
        .collect();
    assert!(
        roles.contains(&"camera") && roles.contains(&"screen"),
        "{manifest}"
    );
    let end = server.idv_out(&["audit", "list"]);
    assert!(
        end.lines()
            .any(|l| l.contains("session.end") && l.contains("customer")),
        "the customer ended it:\n{end}"
    );
    server.stop();
}

#[test]
fn a_wrong_code_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 2);
    server.idv_out(&["session", "create", "--server", &server.url]);
    let output = agent(&server, "999999", "none")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("idv: the code was not accepted"),
        "{stderr}"
    );
    server.stop();
}
