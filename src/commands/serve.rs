//! `idv serve`: the server roles. Prints `listening on https://ADDR` once ready, then runs
//! until SIGINT or SIGTERM, when it stops accepting and drains what is in flight.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::Context;
use super::serve_settings::{ServeFile, seconds};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (TOML; see the README); flags given here override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, printed at start) [default: 127.0.0.1:8443].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Which roles this process runs [default: all].
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// Extra names or addresses for the self-signed certificate (repeatable).
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
    /// Seconds a connection code stays valid [default: 600].
    #[arg(long)]
    code_ttl_seconds: Option<u64>,
    /// Seconds after a session ends that its CTI recording may still arrive; past it the
    /// session is muxed video-only (flagged) [default: 900].
    #[arg(long)]
    cti_deadline_seconds: Option<u64>,
    /// Seconds a shutdown waits for requests in flight [default: 10].
    #[arg(long)]
    drain_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every role in one process (the single-machine default).
    All,
    /// Sessions, agent media and CTI intake.
    Ingest,
    /// A mux job worker (no listener).
    Muxer,
    /// The web console alone (pages for operators, compliance, admins).
    Console,
}

pub async fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ServeFile::load(path)?,
        None => ServeFile::default(),
    };
    let role = args.role.or(file.role).unwrap_or(Role::All);
    let data_dir = ctx.storage.data_dir.clone();
    let defaults = ingest::ServeConfig::local(data_dir.clone(), 0);
    let config = ingest::ServeConfig {
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
        tls_names: if args.tls_names.is_empty() {
            file.tls_names.unwrap_or_default()
        } else {
            args.tls_names
        },
        drain: seconds(args.drain_seconds.or(file.drain_seconds).unwrap_or(10)),
        code_ttl: seconds(
            args.code_ttl_seconds
                .or(file.code_ttl_seconds)
                .unwrap_or(600),
        ),
        cti_deadline: seconds(
            args.cti_deadline_seconds
                .or(file.cti_deadline_seconds)
                .unwrap_or(900),
        ),
        max_payload: file.limits.max_frame_bytes.unwrap_or(defaults.max_payload),
        max_bytes_per_sec: file
            .limits
            .max_session_bytes_per_sec
            .unwrap_or(defaults.max_bytes_per_sec),
        max_cti_bytes: file.limits.max_cti_bytes.unwrap_or(defaults.max_cti_bytes),
        heap_trim_interval: file
            .heap_trim_ms
            .map_or(defaults.heap_trim_interval, Duration::from_millis),
        session_idle: file
            .session_idle_seconds
            .map_or(defaults.session_idle, seconds),
        cti_upload_idle: file
            .cti_upload_idle_seconds
            .map_or(defaults.cti_upload_idle, seconds),
        commit_interval: file
            .spool
            .commit_interval_ms
            .map_or(defaults.commit_interval, Duration::from_millis),
        apply_interval: file
            .spool
            .apply_interval_ms
            .map_or(defaults.apply_interval, Duration::from_millis),
        checkpoint_every: file
            .spool
            .checkpoint_seconds
            .map_or(defaults.checkpoint_every, seconds),
        checkpoint_bytes: file
            .spool
            .checkpoint_bytes
            .unwrap_or(defaults.checkpoint_bytes),
        segments: ingest::SegmentPolicy {
            max_bytes: file
                .spool
                .segment_bytes
                .unwrap_or(defaults.segments.max_bytes),
            max_age: file
                .spool
                .segment_seconds
                .map_or(defaults.segments.max_age, seconds),
        },
        ..defaults
    };
    let mut worker_config = muxer::worker::WorkerConfig::local(&data_dir);
    if let Some(lease) = file.muxer.lease_seconds {
        worker_config.lease = seconds(lease);
    }
    if let Some(attempts) = file.muxer.max_attempts {
        worker_config.max_attempts = attempts;
    }

    let vault = ctx.vault().await?;
    // Crypto-shredding what is past its group's retention, hourly, where the console runs.
    let retention = matches!(role, Role::All | Role::Console).then(|| {
        tokio::spawn(console::recordings::retention::run(
            vault.clone(),
            std::time::Duration::from_secs(3600),
        ))
    });
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let worker = matches!(role, Role::All | Role::Muxer).then(|| {
        let worker = muxer::worker::Worker::new(vault.clone(), worker_config);
        tokio::spawn(async move { worker.run(workers_stopped).await })
    });
    if role == Role::Muxer {
        println!("muxing: waiting for jobs");
        shutdown_signal().await;
        eprintln!("idv: shutting down (releasing the job in progress)");
    } else if role == Role::Console {
        let live = file.console.live_source()?;
        serve_console(&config, vault, live).await?;
    } else {
        let console = (role == Role::All).then(|| console::ConsoleState::new(vault.clone()));
        let config = ingest::ServeConfig {
            extra_routes: console.clone().map(console::router),
            ..config
        };
        let data_dir = config.data_dir.clone();
        let server = ingest::start(config, vault)
            .await
            .context("cannot start the server")?;
        if let Some(console) = console {
            // The console watches live sessions through this server's own fan-out.
            let source = console::LiveSource {
                server: server.url().parse().context("the server's URL")?,
                ca_pem: std::fs::read(data_dir.join("tls/cert.pem"))
                    .context("cannot read the server's certificate")?,
                token: std::fs::read_to_string(data_dir.join("operator.token"))
                    .context("cannot read the operator token")?
                    .trim()
                    .to_owned(),
            };
            let _ = console.live_source.set(source);
        }
        println!("listening on {}", server.url());
        let stop = server.shutdown_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("idv: shutting down (draining)");
            stop.shutdown();
        });
        server.wait().await.context("the server failed")?;
    }
    if let Some(retention) = retention {
        retention.abort();
    }
    let _ = stop_workers.send(true);
    if let Some(worker) = worker {
        worker.await.context("the mux worker failed")?;
    }
    Ok(())
}

/// `--role console`: the console's pages alone, on the data directory's certificate; live
/// views and the join page reach sessions through `live` (`[console]` in the config), else
/// they answer 503.
async fn serve_console(
    config: &ingest::ServeConfig,
    vault: storage::Vault,
    live: Option<console::LiveSource>,
) -> anyhow::Result<()> {
    let tls = ingest::tls::TlsFiles::under(&config.data_dir)
        .load_or_create(&config.tls_names)
        .context("cannot prepare the TLS certificate")?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(tls)),
    )?
    .handle(handle.clone());
    let state = console::ConsoleState::new(vault);
    if let Some(live) = live {
        let _ = state.live_source.set(live);
    }
    let app = console::router(state);
    println!("listening on https://{addr}");
    let drain = config.drain;
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("idv: shutting down (draining)");
        handle.graceful_shutdown(Some(drain));
    });
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("the console failed")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
