//! The browser tests' side of the console scripts (`console/browser-tests/*.mjs`, headless
//! Debian Chromium driven by playwright-core): accounts for them, where they save screenshots,
//! running a script (and talking with it), and reading `idv agent`'s terminal.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Makes an account with `idv user add NAME ARGS…`; `NAME:PASSWORD` for the scripts.
pub fn add_user(data: &Path, name: &str, args: &[&str]) -> String {
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
/// Where browser tests save screenshots: `$CARGO_TARGET_DIR/browser-screenshots`.
pub fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
/// Runs a browser script with `vars`; its last line, parsed.
pub fn run_script(name: &str, vars: &[(&str, &str)]) -> serde_json::Value {
    run_script_talking(name, vars, |_| None)
}

/// Runs a browser script with `vars`, handing each line it prints to `heard` as it comes
/// (what `heard` answers goes to the script's standard input, one line); its last line,
/// parsed.
pub fn run_script_talking(
    name: &str,
    vars: &[(&str, &str)],
    mut heard: impl FnMut(&serde_json::Value) -> Option<serde_json::Value>,
) -> serde_json::Value {
    use std::io::{BufRead, Write};
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("console/browser-tests")
        .join(name);
    let mut command = Command::new("node");
    command
        .arg(&script)
        .env("IDV_SCREENSHOTS", screenshots())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .expect("node runs (scripts/bootstrap.sh installs playwright-core)");
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut answers = child.stdin.take().unwrap();
    let mut last = String::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        println!("{name}: {line}");
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(answer) = heard(&value)
        {
            writeln!(answers, "{answer}").unwrap();
            answers.flush().unwrap();
        }
        last = line;
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{name} failed:\n{last}\n{}",
        errors.join().unwrap()
    );
    serde_json::from_str(&last).unwrap()
}
/// `line` without ANSI colour sequences (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What `idv agent` writes on its terminal, line by line.
pub fn terminal_lines(agent: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (lines, heard) = std::sync::mpsc::channel();
    let stderr = agent.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("agent: {line}");
            let line = without_colours(&line);
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    heard
}
