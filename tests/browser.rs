//! The console in a real browser (headless Debian Chromium driven by playwright-core, see
//! `console/browser-tests/`): a real `idv serve`, accounts made with `idv user add`, a real
//! recording (`idv agent` on the test camera, muxed video-only) — then the script signs in
//! from a disallowed address and is refused, an operator is refused the recording, and a
//! compliance officer finds it, opens it for a reason, plays it, seeks, verifies it and finds
//! every step in the audit log; and an operator watches a running session live over WebRTC.
//! Screenshots land in `$CARGO_TARGET_DIR/browser-screenshots`.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::Server;
use support::browser::{add_user, run_script, run_script_talking, terminal_lines};

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

#[test]
fn an_operator_runs_a_session_in_chromium_live_view_chat_pause_blinds_and_end() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let operator = add_user(&data, "otto", &["--role", "operator"]);
    let server = Server::start(&data, 2);
    let mut agent: Option<Child> = None;
    let mut terminal = None;
    let result = run_script_talking(
        "operator.mjs",
        &[("IDV_URL", &server.url), ("IDV_OPERATOR", &operator)],
        |line| match line["step"].as_str() {
            // The code read off the page: the customer's agent joins with it.
            Some("code") => {
                let mut child = Command::new(env!("CARGO_BIN_EXE_idv"))
                    .args(["agent", "--server", &server.url, "--ca"])
                    .arg(server.data.join("tls/cert.pem"))
                    .args(["--code", line["code"].as_str().unwrap()])
                    .args(["--camera", "test", "--screen", "none"])
                    .args(["--consent", "camera,recording", "--camera-fps", "15"])
                    .env("IDV_LOG", "agent=info")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let lines = terminal_lines(&mut child);
                // Where the agent's clock starts, in wall-clock time: the script turns the
                // frames' RTP timestamps (the capture clock) into capture times with it.
                let origin = loop {
                    let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
                    if let Some((_, ns)) = line.split_once("clock_origin_unix_ns=") {
                        break ns.trim().parse::<i128>().unwrap();
                    }
                };
                terminal = Some(lines);
                agent = Some(child);
                Some(serde_json::json!({ "clock_origin_unix_ms": origin as f64 / 1e6 }))
            }
            // The operator wrote: the customer reads it on the terminal, answers, pauses,
            // resumes and hides a region.
            Some("chat_sent") => {
                let lines = terminal.as_ref().unwrap();
                let shown = loop {
                    let line = lines.recv_timeout(Duration::from_secs(20)).unwrap();
                    if line.contains("Hello from the bank") {
                        break line;
                    }
                };
                assert!(shown.contains("otto"), "the sender is named: {shown}");
                let stdin = agent.as_mut().unwrap().stdin.as_mut().unwrap();
                for command in [
                    "say Hello from the customer",
                    "pause",
                    "resume",
                    "blind 0,0,64,64",
                ] {
                    writeln!(stdin, "{command}").unwrap();
                    stdin.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                }
                None
            }
            _ => None,
        },
    );
    println!("BROWSER operator {result}");
    assert_eq!(result["ok"], true);
    let mut agent = agent.expect("the script showed a code");
    assert!(
        agent.wait().unwrap().success(),
        "the agent stops when the operator ends the session"
    );
    let session = result["session"].as_str().unwrap();
    let log = server.idv_out(&["audit", "list", "--limit", "200"]);
    let object = format!("session:{session}");
    for (actor, action) in [
        ("user:otto", "session.create"),
        ("user:otto", "session.follow"),
        ("user:otto", "session.watch"),
        ("user:otto", "session.chat"),
        ("customer:agent", "session.chat"),
        ("customer:agent", "session.pause"),
        ("customer:agent", "session.blinds"),
        ("user:otto", "session.end"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(actor) && l.contains(action) && l.contains(&object)),
            "{actor} {action} is audited:\n{log}"
        );
    }
    server.stop();
}
