//! `idv serve`: the server roles. Prints `listening on https://ADDR` once ready, then runs
//! until SIGINT or SIGTERM, when it stops accepting and drains what is in flight.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::Context;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Which roles this process runs.
    #[arg(long, value_enum, default_value_t = Role::All)]
    role: Role,
    /// Extra names or addresses for the self-signed certificate (repeatable).
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
    /// Seconds a connection code stays valid.
    #[arg(long, default_value_t = 600)]
    code_ttl_seconds: u64,
    /// Seconds after a session ends that its CTI recording may still arrive; past it the
    /// session is muxed video-only (flagged).
    #[arg(long, default_value_t = 900)]
    cti_deadline_seconds: u64,
    /// Seconds a shutdown waits for requests in flight.
    #[arg(long, default_value_t = 10)]
    drain_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Every role in one process (the single-machine default).
    All,
    /// Sessions, agent media and CTI intake.
    Ingest,
    /// A mux job worker (no listener).
    Muxer,
}

pub async fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let worker = matches!(args.role, Role::All | Role::Muxer).then(|| {
        let worker = muxer::worker::Worker::new(
            vault.clone(),
            muxer::worker::WorkerConfig::local(&ctx.storage.data_dir),
        );
        tokio::spawn(async move { worker.run(workers_stopped).await })
    });
    if args.role == Role::Muxer {
        println!("muxing: waiting for jobs");
        shutdown_signal().await;
        eprintln!("idv: shutting down (releasing the job in progress)");
    } else {
        let server = ingest::start(
            ingest::ServeConfig {
                listen: args.listen,
                data_dir: ctx.storage.data_dir.clone(),
                tls_names: args.tls_names,
                drain: Duration::from_secs(args.drain_seconds),
                code_ttl: Duration::from_secs(args.code_ttl_seconds),
                cti_deadline: Duration::from_secs(args.cti_deadline_seconds),
                ..ingest::ServeConfig::local(ctx.storage.data_dir.clone(), 0)
            },
            vault,
        )
        .await
        .context("cannot start the server")?;
        println!("listening on {}", server.url());
        let stop = server.shutdown_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("idv: shutting down (draining)");
            stop.shutdown();
        });
        server.wait().await.context("the server failed")?;
    }
    let _ = stop_workers.send(true);
    if let Some(worker) = worker {
        worker.await.context("the mux worker failed")?;
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
