//! `idv demo`: the whole flow on the embedded defaults, narrated, through the same commands a
//! bank would run. It starts `idv serve` (ingest, mux worker and console in one process),
//! makes an admin, an operator and a compliance officer (`idv user add`; passwords printed
//! once), creates a session (`idv session create`), runs `idv agent` on the test camera and
//! screen for a few seconds, pushes a generated call recording covering the same time
//! (`idv cti push`), ends the session, waits until the sealed recording exists, prints the
//! console's address and what to click — and leaves the server running until Ctrl-C (or
//! returns at once with `--exit-when-ready`, which is how the tests run it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Args;

use super::Context;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the server listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: String,
    /// Return once the recording is sealed instead of serving until Ctrl-C.
    #[arg(long)]
    exit_when_ready: bool,
    /// Seconds of camera and screen the demo's agent sends.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
}

/// `idv --data-dir DIR ARGS…` as a child of this process.
struct Idv {
    exe: PathBuf,
    data: PathBuf,
}

impl Idv {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.exe);
        command.arg("--data-dir").arg(&self.data).args(args);
        command
    }

    /// Runs `args` to completion; its standard output.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let Output {
            status,
            stdout,
            stderr,
        } = self
            .command(args)
            .output()
            .with_context(|| format!("cannot run idv {}", args[0]))?;
        ensure!(
            status.success(),
            "idv {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&stderr).trim()
        );
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }
}

/// The server child; stopped (SIGTERM, then waited for) when dropped.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

pub async fn run(ctx: &Context, args: DemoArgs) -> anyhow::Result<()> {
    let idv = Idv {
        exe: std::env::current_exe().context("cannot find the idv binary")?,
        data: ctx.storage.data_dir.clone(),
    };
    println!("idv demo — data directory {}", idv.data.display());

    // 1. Accounts, before the server opens the database (made once; kept across runs).
    let mut made = Vec::new();
    for (name, roles) in [
        ("demo-admin", "admin"),
        ("demo-operator", "operator"),
        ("demo-compliance", "compliance"),
    ] {
        let vault = ctx.vault().await?;
        if vault.db().user_by_name(name).await?.is_some() {
            made.push(format!(
                "   {name} ({roles}): exists already (its password was printed when it was made)"
            ));
            continue;
        }
        drop(vault);
        let out = idv.run(&["user", "add", name, "--role", roles])?;
        let password = out
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .context("idv user add printed no password")?;
        made.push(format!("   {name} ({roles}): password {password}"));
    }
    println!("1. console accounts (passwords shown once — keep them):");
    for line in &made {
        println!("{line}");
    }

    // 2. The server: ingest, mux worker and console in one process.
    let mut child = idv
        .command(&[
            "serve",
            "--listen",
            &args.listen,
            "--cti-deadline-seconds",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start idv serve")?;
    let stdout = child.stdout.take().context("no output from idv serve")?;
    let serving = Serving(child);
    let url = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        for line in BufReader::new(stdout).lines() {
            if let Some(url) = line?.strip_prefix("listening on ") {
                return Ok(url.trim().to_owned());
            }
        }
        bail!("idv serve stopped before listening (is the port taken? try --listen 127.0.0.1:0)")
    })
    .await??;
    println!("2. idv serve is up at {url} (ingest API, mux worker and console)");

    // 3. A session, and the customer's agent on it.
    let created = idv.run(&["session", "create", "--server", &url])?;
    let mut words = created.split_whitespace();
    let (session, code) = (
        words.next().context("no session id")?.to_owned(),
        words.next().context("no code")?.to_owned(),
    );
    println!("3. operator created session {session}; the customer types code {code}");
    let ca = idv.data.join("tls/cert.pem");
    let started = time::OffsetDateTime::now_utc();
    let mut agent = idv
        .command(&["agent", "--server", &url, "--ca"])
        .arg(&ca)
        .args(["--code", &code, "--camera", "test", "--screen", "test"])
        .args(["--consent", "camera,screen,recording"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start idv agent")?;
    println!(
        "4. idv agent streams the test camera and screen for {} s (consent: camera, screen, recording)",
        args.seconds
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;

    // 4. The call centre's recording of the same call, then the end.
    let wav = idv.data.join(format!("demo-call-{session}.wav"));
    let ended = time::OffsetDateTime::now_utc();
    let seconds = u32::try_from((ended - started).whole_seconds().max(1)).unwrap_or(10);
    fixtures::write_beep_wav(std::fs::File::create(&wav)?, 8000, seconds)?;
    let rfc3339 =
        |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339);
    let pushed = idv.run(&[
        "cti",
        "push",
        "--server",
        &url,
        "--call-id",
        &format!("demo-{session}"),
        "--session",
        &session,
        "--started-at",
        &rfc3339(started)?,
        "--ended-at",
        &rfc3339(ended)?,
        &wav.display().to_string(),
    ]);
    let _ = std::fs::remove_file(&wav); // sealed on arrival: no plaintext copy stays
    pushed?;
    println!("5. idv cti push sent the call recording ({seconds} s, 8 kHz) — sealed on arrival");
    idv.run(&["session", "end", "--server", &url, &session])?;
    let agent_done = tokio::task::spawn_blocking(move || agent.wait()).await??;
    ensure!(agent_done.success(), "idv agent did not stop cleanly");
    println!("6. the operator ended the session; the agent flushed and stopped");

    // 5. The sealed recording.
    let waited = Instant::now();
    let (status, archive) = loop {
        let list = idv.run(&["recordings", "list", "--server", &url])?;
        if let Some(line) = list.lines().find(|l| l.starts_with(&session)) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !matches!(fields.get(1), Some(&"queued" | &"muxing")) {
                break (
                    fields[1].to_owned(),
                    fields.get(2).copied().unwrap_or("-").to_owned(),
                );
            }
        }
        ensure!(
            waited.elapsed() < Duration::from_secs(180),
            "the recording was not sealed within 3 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(status != "failed", "the mux failed: see the server's log");
    println!("7. muxed and sealed: recording of {session} is {status}, archive {archive}");
    println!(
        "\nconsole: {url}/  (the certificate is self-signed: {})",
        ca.display()
    );
    println!(
        "  · sign in as demo-compliance → Recordings → Open… → state a reason → play, seek, Verify"
    );
    println!("  · then Audit log: every step, with your reason, and the chain's status");
    println!("  · sign in as demo-operator and try the same: refused, and that is audited too");
    println!(
        "  · or on the command line: idv --data-dir {} audit list",
        idv.data.display()
    );
    if args.exit_when_ready {
        drop(serving);
        return Ok(());
    }
    println!("\nthe server keeps running; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    drop(serving);
    Ok(())
}
