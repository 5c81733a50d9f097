//! `idv agent`: the customer's side of a session (contract: keep stable).
//!
//! ```text
//! idv agent --server URL [--ca FILE] --code 123456 [--camera …] [--screen …]
//!           [--blind x,y,w,h]… [--consent …]
//!           [--mic-reference test|file:PATH|alsa[:DEVICE]|pulse[:DEVICE]|none]
//! ```
//!
//! It runs until the session ends (either side) or it gets SIGINT/SIGTERM, then sends what the
//! server has not acknowledged, ends the session and exits 0. While it runs, lines typed on its
//! standard input are the customer's controls: `pause`, `resume`, `blind x,y,w,h[;x,y,w,h…]`,
//! `unblind`, `end`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use agent::config::parse_consent;
use agent::{AgentConfig, CustomerAction, MicSource, Region, VideoSource};
use anyhow::Context as _;
use clap::Args;
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server's base URL (`https://HOST:PORT`).
    #[arg(long)]
    server: String,
    /// The server certificate to trust (PEM); the public web PKI when absent.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The 6-digit code the customer was given.
    #[arg(long)]
    code: String,
    /// The bank's group whose app this is.
    #[arg(long, default_value = "default")]
    group: String,
    /// Camera: test, file:PATH, v4l2:/dev/videoN, none.
    #[arg(long, default_value = "test")]
    camera: VideoSource,
    /// Screen: x11[:DISPLAY], test, file:PATH, none.
    #[arg(long, default_value = "none")]
    screen: VideoSource,
    /// Screen encoding: tiles (only what changed, text lossless) or h264.
    #[arg(long, default_value = "tiles")]
    screen_codec: agent::ScreenCodec,
    /// A screen region to hide before encoding (x,y,w,h; repeat for several).
    #[arg(long = "blind")]
    blinds: Vec<Region>,
    /// What the customer consents to (camera,screen,recording,…); asked when absent.
    #[arg(long)]
    consent: Option<String>,
    /// Microphone reference, a low-rate Opus recording that lets the muxer place the call
    /// centre's audio exactly (needs the `recording` consent): test, file:PATH,
    /// alsa[:DEVICE], pulse[:DEVICE], none.
    #[arg(long, default_value = "none")]
    mic_reference: MicSource,
    /// Camera frames per second.
    #[arg(long, default_value_t = 30)]
    camera_fps: u32,
    /// Camera bitrate, kbit/s.
    #[arg(long, default_value_t = 500)]
    camera_kbps: u32,
    /// Screen frames per second.
    #[arg(long, default_value_t = 10)]
    screen_fps: u32,
    /// Screen bitrate, kbit/s.
    #[arg(long, default_value_t = 1000)]
    screen_kbps: u32,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let server = url::Url::parse(&args.server)
        .with_context(|| format!("--server {:?} is not a URL", args.server))?;
    let mut config = AgentConfig::new(server, args.code);
    config.ca = args.ca;
    config.group = args.group;
    config.camera.source = args.camera;
    config.camera.fps = args.camera_fps;
    config.camera.bitrate_kbps = args.camera_kbps;
    config.screen.source = args.screen;
    config.screen.fps = args.screen_fps;
    config.screen.bitrate_kbps = args.screen_kbps;
    config.screen_codec = args.screen_codec;
    config.mic_reference = args.mic_reference;
    config.blinds = args.blinds;
    config.consent = Some(match args.consent {
        Some(scopes) => parse_consent(&scopes)?,
        None => ask_consent(&config)?,
    });

    let (actions, actions_rx) = mpsc::channel(16);
    spawn_terminal_controls(actions.clone());
    let signals = actions.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = signals.send(CustomerAction::End).await;
    });
    let outcome = agent::run(config, actions_rx).await?;
    tracing::info!(session = %outcome.session_id, dropped = outcome.dropped, "agent done");
    Ok(())
}

/// Asks the customer on the terminal, scope by scope.
fn ask_consent(
    config: &AgentConfig,
) -> anyhow::Result<std::collections::BTreeSet<proto::ConsentScope>> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "consent is required: run on a terminal to be asked, or pass --consent camera,screen,recording"
        );
    }
    let recording = if config.mic_reference.is_some() {
        // The microphone is recorded under this consent: the customer hears it asked.
        "record this session for the bank, with a low-quality recording of your microphone \
         used only to time the call's audio"
    } else {
        "record this session for the bank"
    };
    let mut questions = vec![(proto::ConsentScope::Recording, recording)];
    if config.camera.source.is_some() {
        questions.push((proto::ConsentScope::Camera, "send your camera"));
    }
    if config.screen.source.is_some() {
        questions.push((proto::ConsentScope::Screen, "share your screen"));
    }
    let mut granted = std::collections::BTreeSet::new();
    let stdin = std::io::stdin();
    for (scope, what) in questions {
        eprint!("Allow the bank to {what}? [y/N] ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            granted.insert(scope);
        }
    }
    Ok(granted)
}

/// Lines on standard input are the customer's controls.
fn spawn_terminal_controls(actions: mpsc::Sender<CustomerAction>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            let action = match line.split_once(' ').unwrap_or((line, "")) {
                ("pause", _) => CustomerAction::Pause,
                ("resume", _) => CustomerAction::Resume,
                ("end", _) => CustomerAction::End,
                ("unblind", _) => CustomerAction::Blind(Vec::new()),
                ("say", text) => CustomerAction::Chat(text.to_owned()),
                ("blind", regions) => match regions
                    .split(';')
                    .map(str::parse::<Region>)
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(regions) => CustomerAction::Blind(regions),
                    Err(e) => {
                        eprintln!("{e}");
                        continue;
                    }
                },
                ("", _) => continue,
                (other, _) => {
                    eprintln!(
                        "unknown command {other:?} (pause, resume, blind x,y,w,h, unblind, say TEXT, end)"
                    );
                    continue;
                }
            };
            if actions.blocking_send(action).is_err() {
                break;
            }
        }
    });
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
