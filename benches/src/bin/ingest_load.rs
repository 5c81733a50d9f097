//! The ingest load bench: N simulated agents on loopback against one `idv serve`
//! (benches/README.md, "Ingest load").
//!
//! Starts `idv serve` (TLS, its own data directory) or uses a running one, makes N sessions
//! through the HTTP API (create, join, consent), connects N agents to `wss://…/api/v1/agent`
//! speaking the media protocol through `proto` alone, and streams from each a 30 fps camera (a
//! keyframe every 2 s) and a screen frame every 200 ms. A frame's ack latency is the time from
//! handing it to the socket to reading the cumulative ack that covers it. The server's CPU time
//! and RSS are sampled from /proc before the agents connect, once they are connected and idle,
//! and under load. Prints a summary, then one `RESULT {json}` line (read by ingest_load.py).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt, TryStreamExt};
use proto::{
    AgentControl, AgentInfo, FrameFlags, FrameHeader, ServerControl, SessionCipher, SessionKey,
    Track, TrackSeqs,
};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Parser)]
#[command(about = "N simulated agents against one idv serve: loss, ack latency, CPU, memory")]
struct Args {
    /// Simulated agents (one session each).
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds streamed before measuring starts.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds over which the agents connect.
    #[arg(long, default_value_t = 10)]
    ramp: u64,
    /// Camera bitrate per agent, kbit/s.
    #[arg(long, default_value_t = 500)]
    camera_kbps: u64,
    /// Screen bitrate per agent, kbit/s.
    #[arg(long, default_value_t = 500)]
    screen_kbps: u64,
    /// Camera frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Camera keyframe interval, seconds (a keyframe weighs as much as 8 other frames).
    #[arg(long, default_value_t = 2)]
    keyframe_seconds: u32,
    /// A screen frame every this many camera frames (6 at 30 fps: every 200 ms).
    #[arg(long, default_value_t = 6)]
    screen_every: u32,
    /// The `idv` binary to start (default: next to this one).
    #[arg(long)]
    idv: Option<PathBuf>,
    /// Use this running server (`https://HOST:PORT`) instead of starting one.
    #[arg(long, requires = "data_dir")]
    server: Option<String>,
    /// The server's process id, for CPU and memory (with --server).
    #[arg(long, requires = "server")]
    pid: Option<u32>,
    /// The server's data directory (its tls/cert.pem and operator.token are used). Default
    /// with a started server: a fresh directory under $TMPDIR, removed afterwards. It must be
    /// on a real disk: on tmpfs an fsync costs nothing.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Sessions set up at once.
    #[arg(long, default_value_t = 8)]
    setup_parallel: usize,
}

/// What every agent streams, and when.
struct Plan {
    agents: usize,
    tick: Duration,
    keyframe_every: u64,
    screen_every: u64,
    camera_key: usize,
    camera_delta: usize,
    screen: usize,
    /// Streaming starts (each agent at its own phase within one tick).
    start: Instant,
    /// Latencies and bytes count from here…
    measure_from: Instant,
    /// …to here, when the agents stop sending.
    end: Instant,
    /// How long after `end` the agents wait for their last acks.
    drain: Duration,
    zeros: Vec<u8>,
}

impl Plan {
    fn new(args: &Args, start: Instant) -> Self {
        let fps = u64::from(args.fps.max(1));
        let gop = fps * u64::from(args.keyframe_seconds.max(1));
        let gop_bytes = args.camera_kbps * 125 * u64::from(args.keyframe_seconds.max(1));
        // A keyframe weighs as much as 8 other frames.
        let camera_delta = usize::try_from(gop_bytes / (gop - 1 + 8)).unwrap_or(usize::MAX);
        let screen_every = u64::from(args.screen_every.max(1));
        let screen = usize::try_from(args.screen_kbps * 125 * screen_every / fps).unwrap_or(0);
        let measure_from = start + Duration::from_secs(args.warmup);
        Self {
            agents: args.agents,
            tick: Duration::from_secs(1) / u32::try_from(fps).unwrap_or(30),
            keyframe_every: gop,
            screen_every,
            camera_key: 8 * camera_delta,
            camera_delta,
            screen,
            start,
            measure_from,
            end: measure_from + Duration::from_secs(args.duration),
            drain: Duration::from_secs(10),
            zeros: vec![0; (8 * camera_delta).max(screen)],
        }
    }
}

impl Plan {
    /// The frames of camera tick `tick`: (track, payload size, keyframe).
    fn frames(&self, tick: u64) -> Vec<(Track, usize, bool)> {
        let key = tick.is_multiple_of(self.keyframe_every);
        let camera = if key {
            self.camera_key
        } else {
            self.camera_delta
        };
        let mut frames = vec![(Track::Camera, camera, key)];
        if tick.is_multiple_of(self.screen_every) {
            // A full screen every 10 updates (2 s), dirty regions in between.
            let key = (tick / self.screen_every).is_multiple_of(10);
            frames.push((Track::Screen, self.screen, key));
        }
        frames
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A session joined and consented, as its agent knows it.
struct Joined {
    session: uuid::Uuid,
    token: String,
    key: SessionKey,
}

/// How one agent's run went.
#[derive(Default)]
struct AgentReport {
    sent: [u64; 2],
    acked: [u64; 2],
    /// Ack latencies of the frames sent in the measured window, µs, with the second of the
    /// window each frame was sent in.
    latencies_us: Vec<(u16, u32)>,
    /// Frame bytes sent in the measured window.
    bytes: u64,
    /// The server's close code and reason, or how the connection failed.
    failed: Option<String>,
}

impl AgentReport {
    fn zero_loss(&self) -> bool {
        self.failed.is_none() && self.sent == self.acked
    }
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_ticks: u64,
    rss_kib: u64,
    threads: u64,
}

impl Sample {
    fn of(pid: &str) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14,
        // stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("/proc/PID/stat")?
            .1
            .split_whitespace()
            .collect();
        let field = |n: usize| -> anyhow::Result<u64> { Ok(fields[n - 3].parse()?) };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Self {
            at: Instant::now(),
            cpu_ticks: field(14)? + field(15)?,
            rss_kib: kib("VmRSS:"),
            threads: kib("Threads:"),
        })
    }

    /// CPU used between two samples, % of one core (clock ticks are 1/100 s on Linux).
    fn cpu_percent(&self, later: &Self) -> f64 {
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        (later.cpu_ticks - self.cpu_ticks) as f64 / seconds
    }
}

/// The whole machine's busy and total CPU clock ticks (all cores), from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user)
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU clock ticks per thread name of process `pid` (threads of one name summed: the runtime's
/// workers, the blocking pool, the commit thread…).
fn thread_ticks(pid: &str) -> std::collections::BTreeMap<String, u64> {
    let mut ticks = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return ticks;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            *ticks.entry(name).or_default() += utime + stime;
        }
    }
    ticks
}

/// Per thread name, % of one core used between two `thread_ticks` (threads that came and went
/// in between count only while they were there).
fn thread_cpu(
    from: &std::collections::BTreeMap<String, u64>,
    to: &std::collections::BTreeMap<String, u64>,
    seconds: f64,
) -> std::collections::BTreeMap<String, f64> {
    to.iter()
        .map(|(name, &t)| {
            let before = from.get(name).copied().unwrap_or(0);
            (name.clone(), t.saturating_sub(before) as f64 / seconds)
        })
        .filter(|(_, pct)| *pct >= 0.5)
        .collect()
}

/// Counts the server's `fdatasync` and `fsync` calls for `seconds` with `perf stat` (if perf is
/// installed and allowed to trace): started now, read with [`syncs_counted`].
fn count_syncs(pid: &str, seconds: u64) -> Option<tokio::process::Child> {
    tokio::process::Command::new("perf")
        .args([
            "stat",
            "-x,",
            "-e",
            "syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync",
            "-p",
            pid,
            "sleep",
            &seconds.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()
}

/// The syncs `perf stat` counted (`None` when it could not).
async fn syncs_counted(perf: Option<tokio::process::Child>) -> Option<u64> {
    let out = perf?.wait_with_output().await.ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.contains("syscalls:sys_enter_"))
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A started `idv serve`, stopped (and its data directory removed, if ours) on drop.
struct Server {
    child: Option<tokio::process::Child>,
    url: String,
    pid: Option<String>,
    data_dir: PathBuf,
    remove: bool,
}

impl Server {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        if let Some(url) = &args.server {
            return Ok(Self {
                child: None,
                url: url.trim_end_matches('/').to_owned(),
                pid: args.pid.map(|p| p.to_string()),
                data_dir: args.data_dir.clone().context("--server needs --data-dir")?,
                remove: false,
            });
        }
        let idv = match &args.idv {
            Some(idv) => idv.clone(),
            None => std::env::current_exe()?.with_file_name("idv"),
        };
        let (data_dir, remove) = match &args.data_dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!("idv-ingest-load-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&data_dir)?;
        let log = std::fs::File::create(data_dir.join("serve.log"))?;
        let mut child = tokio::process::Command::new(&idv)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--role", "ingest"])
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", idv.display()))?;
        let pid = child.id().map(|p| p.to_string());
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .context("idv serve did not start in time")??
                .with_context(|| {
                    format!(
                        "idv serve exited (see {})",
                        data_dir.join("serve.log").display()
                    )
                })?;
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.trim().to_owned();
            }
        };
        Ok(Self {
            child: Some(child),
            url,
            pid,
            data_dir,
            remove,
        })
    }

    /// Stops a started server (before its data directory is removed).
    async fn stop(mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill().await;
        }
    }

    /// The server's group-commit and checkpoint histograms from `/metrics`: each bucket's
    /// count by upper bound (ms), the count and the longest (ms).
    async fn journal_metrics(&self, http: &reqwest::Client) -> serde_json::Value {
        let Ok(response) = http.get(format!("{}/metrics", self.url)).send().await else {
            return serde_json::Value::Null;
        };
        let text = response.text().await.unwrap_or_default();
        let mut out = serde_json::Map::new();
        for (key, name) in [
            ("commit", "idv_journal_commit_seconds"),
            ("checkpoint", "idv_journal_checkpoint_seconds"),
        ] {
            let mut buckets = serde_json::Map::new();
            let mut summary = serde_json::Map::new();
            for line in text.lines().filter(|l| l.starts_with(name)) {
                let Some((metric, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let value: f64 = value.parse().unwrap_or(f64::NAN);
                if let Some(bound) = metric
                    .strip_prefix(&format!("{name}_bucket{{le=\""))
                    .and_then(|b| b.strip_suffix("\"}"))
                {
                    let ms = bound
                        .parse::<f64>()
                        .map_or(bound.to_owned(), |s| format!("{}", s * 1000.0));
                    buckets.insert(ms, json!(value));
                } else if metric == format!("{name}_count") {
                    summary.insert("count".into(), json!(value));
                } else if metric == format!("{name}_max") {
                    summary.insert("max_ms".into(), json!(value * 1000.0));
                }
            }
            summary.insert("buckets_le_ms".into(), serde_json::Value::Object(buckets));
            out.insert(key.into(), serde_json::Value::Object(summary));
        }
        serde_json::Value::Object(out)
    }

    fn sample(&self) -> Option<Sample> {
        self.pid.as_deref().and_then(|pid| Sample::of(pid).ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// The server's certificate as the one root both clients trust.
fn tls(cert_pem: &[u8]) -> anyhow::Result<(reqwest::Client, Arc<rustls::ClientConfig>)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem)?)
        .build()?;
    Ok((http, Arc::new(config)))
}

async fn post(
    http: &reqwest::Client,
    url: String,
    bearer: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = http.post(&url).json(&body);
    if !bearer.is_empty() {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {body}");
    }
    Ok(body)
}

/// A session created by the operator, joined with its code and consented to, as an agent does.
async fn session(http: &reqwest::Client, api: &str, operator: &str) -> anyhow::Result<Joined> {
    let created = post(http, format!("{api}/sessions"), operator, json!({})).await?;
    let joined = post(
        http,
        format!("{api}/join"),
        "",
        json!({ "code": created["code"], "group": "default" }),
    )
    .await?;
    let text = |v: &Value| v.as_str().map(str::to_owned).context("join answer");
    let token = text(&joined["session_token"])?;
    post(
        http,
        format!("{api}/consent"),
        &token,
        json!({ "scopes": ["camera", "screen", "recording"], "granted_by": "load" }),
    )
    .await?;
    Ok(Joined {
        session: text(&joined["session_id"])?.parse()?,
        token,
        key: SessionKey::from_slice(&hex::decode(text(&joined["media_key"])?)?)
            .context("a 32-byte media key")?,
    })
}

/// Opens the agent's WebSocket and says hello; returns once welcomed.
async fn connect(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    joined: &Joined,
) -> anyhow::Result<Socket> {
    // Small buffers: a thousand agents share this process.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(config),
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    )
    .await?;
    let hello = AgentControl::hello(
        proto::control::SessionToken::new(joined.token.clone()),
        AgentInfo {
            version: "ingest-load".into(),
            platform: std::env::consts::OS.into(),
            tracks: [Track::Camera, Track::Screen].into_iter().collect(),
        },
        TrackSeqs::new(),
    );
    ws.send(Message::Text(hello.to_json().into())).await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) => match ServerControl::from_json(&text)? {
            ServerControl::Welcome { session_id, .. } if session_id == joined.session => Ok(ws),
            other => bail!("expected welcome, got {other:?}"),
        },
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// One streaming agent.
struct Agent {
    sink: futures::stream::SplitSink<Socket, Message>,
    cipher: SessionCipher,
    plan: Arc<Plan>,
    /// Frames sent and not yet acknowledged, per track (camera, screen): seq and when sent.
    pending: [VecDeque<(u64, Instant)>; 2],
    report: AgentReport,
}

fn track_index(track: Track) -> usize {
    usize::from(track == Track::Screen)
}

/// Streams camera and screen frames until `plan.end`, then waits for the last acks.
async fn stream(ws: Socket, cipher: SessionCipher, plan: Arc<Plan>, index: usize) -> AgentReport {
    let (sink, mut messages) = ws.split();
    let phase = plan.tick.mul_f64(index as f64 / plan.agents.max(1) as f64);
    let mut ticks = tokio::time::interval_at(plan.start + phase, plan.tick);
    let drained = tokio::time::sleep_until(plan.end + plan.drain);
    tokio::pin!(drained);
    let mut agent = Agent {
        sink,
        cipher,
        plan,
        pending: Default::default(),
        report: AgentReport::default(),
    };
    let mut tick = 0u64;
    let mut sending = true;
    while sending || agent.pending.iter().any(|p| !p.is_empty()) {
        tokio::select! {
            biased;
            message = messages.next() => {
                if let Err(failure) = agent.received(message) {
                    agent.report.failed = Some(failure);
                    break;
                }
            }
            at = ticks.tick(), if sending => {
                if at >= agent.plan.end {
                    sending = false;
                    continue;
                }
                for (track, size, key) in agent.plan.frames(tick) {
                    if let Err(e) = agent.send(track, size, key).await {
                        agent.report.failed = Some(e.to_string());
                        sending = false;
                    }
                }
                tick += 1;
            }
            () = &mut drained => break,
        }
    }
    let _ = agent.sink.close().await;
    agent.report
}

impl Agent {
    /// Seals and sends the next frame of `track`.
    async fn send(
        &mut self,
        track: Track,
        size: usize,
        key: bool,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let t = track_index(track);
        self.report.sent[t] += 1;
        let seq = self.report.sent[t];
        let captured = i64::try_from(self.plan.start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        let flags = if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        };
        let header = FrameHeader::new(track, seq, captured).with_flags(flags);
        let bytes = (self.cipher)
            .seal(&header, &self.plan.zeros[..size])
            .expect("a frame seals");
        let sent = Instant::now();
        if sent >= self.plan.measure_from {
            self.report.bytes += bytes.len() as u64;
        }
        self.pending[t].push_back((seq, sent));
        self.sink.send(Message::Binary(bytes.into())).await
    }

    /// Takes in a message from the server: an ack settles the frames it covers. Err: how the
    /// connection ended.
    fn received(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), String> {
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map_or("closed".into(), |f| format!("{} {}", f.code, f.reason)));
            }
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the connection ended".into()),
        };
        match ServerControl::from_json(&text) {
            Ok(ServerControl::Ack { track, seq }) => {
                let t = track_index(track);
                let now = Instant::now();
                while let Some(&(s, sent)) = self.pending[t].front()
                    && s <= seq
                {
                    self.pending[t].pop_front();
                    if sent >= self.plan.measure_from {
                        let us = now.duration_since(sent).as_micros();
                        let second = sent.duration_since(self.plan.measure_from).as_secs();
                        (self.report.latencies_us).push((
                            u16::try_from(second).unwrap_or(u16::MAX),
                            u32::try_from(us).unwrap_or(u32::MAX),
                        ));
                    }
                }
                self.report.acked[t] = self.report.acked[t].max(seq);
                Ok(())
            }
            Ok(ServerControl::Close(close)) => {
                Err(format!("{} {}", close.code.to_u16(), close.reason))
            }
            _ => Ok(()),
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load_before = load_average();
    let server = Server::start(&args).await?;
    let cert = std::fs::read(server.data_dir.join("tls/cert.pem")).context("tls/cert.pem")?;
    let operator = std::fs::read_to_string(server.data_dir.join("operator.token"))
        .context("operator.token")?
        .trim()
        .to_owned();
    let (http, tls) = tls(&cert)?;
    let api = format!("{}/api/v1", server.url);
    let agent_url = format!(
        "{}/api/v1/agent",
        server.url.replacen("https://", "wss://", 1)
    );
    eprintln!(
        "server {} (pid {}), data in {}; load average {load_before}",
        server.url,
        server.pid.as_deref().unwrap_or("?"),
        server.data_dir.display()
    );

    let setup = Instant::now();
    let joined: Vec<Joined> = futures::stream::iter(0..args.agents)
        .map(|_| session(&http, &api, &operator))
        .buffer_unordered(args.setup_parallel.max(1))
        .try_collect()
        .await?;
    eprintln!(
        "{} sessions created, joined and consented in {:.1} s",
        joined.len(),
        setup.elapsed().as_secs_f64()
    );
    let before = server.sample();

    // Connect, spread over the ramp.
    let ramp_start = Instant::now();
    let mut connecting = Vec::new();
    for (i, joined) in joined.into_iter().enumerate() {
        let (url, tls) = (agent_url.clone(), tls.clone());
        let at = ramp_start + Duration::from_secs(args.ramp).mul_f64(i as f64 / args.agents as f64);
        connecting.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let ws = connect(&url, tls, &joined).await;
            (ws, SessionCipher::new(&joined.key, joined.session))
        }));
    }
    let mut agents = Vec::new();
    let mut connect_failures = Vec::new();
    for task in connecting {
        match task.await? {
            (Ok(ws), cipher) => agents.push((ws, cipher)),
            (Err(e), _) => connect_failures.push(e.to_string()),
        }
    }
    eprintln!(
        "{} agents connected in {:.1} s ({} failed{})",
        agents.len(),
        ramp_start.elapsed().as_secs_f64(),
        connect_failures.len(),
        connect_failures
            .first()
            .map_or(String::new(), |e| format!(": {e}"))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_from = server.sample();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = server.sample();

    // Stream.
    let plan = Arc::new(Plan::new(
        &args,
        Instant::now() + Duration::from_millis(100),
    ));
    eprintln!(
        "streaming: camera {} B keyframes, {} B others at {} fps; screen {} B every {:.0} ms; \
         {} s warm-up, {} s measured",
        plan.camera_key,
        plan.camera_delta,
        args.fps,
        plan.screen,
        plan.tick.as_secs_f64() * 1000.0 * plan.screen_every as f64,
        args.warmup,
        args.duration
    );
    let connected = agents.len();
    let streams: Vec<_> = agents
        .into_iter()
        .enumerate()
        .map(|(i, (ws, cipher))| tokio::spawn(stream(ws, cipher, plan.clone(), i)))
        .collect();
    let me = std::process::id().to_string();
    tokio::time::sleep_until(plan.measure_from).await;
    // Wall-clock time of the measured window's start, to line `p99_by_second_ms` up with
    // what else was recorded meanwhile (the server's log, `vmstat`, disk statistics).
    let measured_from_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let (load_from, client_from) = (server.sample(), Sample::of(&me)?);
    let machine_from = machine_ticks();
    let threads_from = server.pid.as_deref().map(thread_ticks).unwrap_or_default();
    let perf = server
        .pid
        .as_deref()
        .and_then(|pid| count_syncs(pid, args.duration.saturating_sub(1).max(1)));
    let mut rss_max = 0;
    while Instant::now() + Duration::from_secs(1) < plan.end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(server.sample().map_or(0, |s| s.rss_kib));
    }
    tokio::time::sleep_until(plan.end).await;
    let (load_to, client_to) = (server.sample(), Sample::of(&me)?);
    let threads_to = server.pid.as_deref().map(thread_ticks).unwrap_or_default();
    let load_during = load_average();
    let syncs = syncs_counted(perf).await;
    let machine_to = machine_ticks();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    // % of one core, like the per-process figures.
    let machine_busy = (machine_to.0 - machine_from.0) as f64
        / (machine_to.1 - machine_from.1).max(1) as f64
        * 100.0
        * cores;
    let mut reports = Vec::new();
    for task in streams {
        reports.push(task.await?);
    }

    // Report.
    let held = reports.iter().filter(|r| r.zero_loss()).count();
    let refused: Vec<&str> = reports.iter().filter_map(|r| r.failed.as_deref()).collect();
    let sent: u64 = reports.iter().map(|r| r.sent.iter().sum::<u64>()).sum();
    let acked: u64 = reports.iter().map(|r| r.acked.iter().sum::<u64>()).sum();
    let mut latencies: Vec<u32> = reports
        .iter()
        .flat_map(|r| r.latencies_us.iter().map(|&(_, us)| us))
        .collect();
    latencies.sort_unstable();
    // Each second's p99: whether the tail is spread out or comes in bursts (checkpoints).
    let mut by_second = vec![Vec::new(); usize::try_from(args.duration).unwrap_or(0) + 1];
    for &(second, us) in reports.iter().flat_map(|r| &r.latencies_us) {
        if let Some(bucket) = by_second.get_mut(usize::from(second)) {
            bucket.push(us);
        }
    }
    let p99_by_second: Vec<f64> = by_second
        .iter_mut()
        .filter(|b| !b.is_empty())
        .map(|b| {
            b.sort_unstable();
            (percentile(b, 0.99) * 10.0).round() / 10.0
        })
        .collect();
    let journal = server.journal_metrics(&http).await;
    let mbps = reports.iter().map(|r| r.bytes).sum::<u64>() as f64 * 8.0
        / 1e6
        / args.duration.max(1) as f64;
    let per_agent = |rss: Option<u64>| {
        before
            .zip(rss)
            .map(|(b, rss)| (rss as f64 - b.rss_kib as f64) / connected.max(1) as f64)
    };
    let cpu = |a: Option<Sample>, b: Option<Sample>| a.zip(b).map(|(a, b)| a.cpu_percent(&b));
    let result = json!({
        "agents": args.agents,
        "connected": connected,
        "held": held,
        "failed": refused.len(),
        "first_failure": refused.first(),
        "frames_sent": sent,
        "frames_acked": acked,
        "acks_measured": latencies.len(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "p99_by_second_ms": p99_by_second,
        "measured_from_unix_ms": measured_from_unix_ms,
        "journal": journal,
        "max_ms": percentile(&latencies, 1.0),
        "mbit_s": mbps,
        "server_cpu_idle_pct": cpu(idle_from, idle),
        "server_cpu_load_pct": cpu(load_from, load_to),
        "client_cpu_load_pct": client_from.cpu_percent(&client_to),
        "machine_cpu_load_pct": machine_busy,
        "rss_before_kib": before.map(|s| s.rss_kib),
        "rss_idle_kib": idle.map(|s| s.rss_kib),
        "rss_load_max_kib": rss_max,
        "rss_per_agent_idle_kib": per_agent(idle.map(|s| s.rss_kib)),
        "rss_per_agent_load_kib": per_agent(Some(rss_max)),
        "server_threads_load": load_to.map(|s| s.threads),
        "server_thread_cpu_pct": thread_cpu(&threads_from, &threads_to, args.duration.max(1) as f64),
        "server_syncs_per_s": syncs.map(|n| n as f64 / args.duration.saturating_sub(1).max(1) as f64),
        "camera_kbps": args.camera_kbps,
        "screen_kbps": args.screen_kbps,
        "duration_s": args.duration,
        "load_average_before": load_before,
        "load_average_during": load_during,
    });
    eprintln!(
        "{held}/{} agents held with zero loss; ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         {mbps:.1} Mbit/s",
        args.agents,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    println!("RESULT {result}");
    server.stop().await;
    Ok(())
}
