//! `idv`: the one binary. It parses the command line and hands each command to the crate that
//! owns the work; what it prints and how it shows progress is all it decides for itself.

mod commands;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Recording pipeline for remote identity verification: sealed archives, keys and audit.
#[derive(Debug, Parser)]
#[command(name = "idv", version, about)]
struct Cli {
    /// Data directory: keyring, metadata database, local blobs.
    #[arg(long, global = true, env = "IDV_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite file (`postgres://…`).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// S3-compatible blob store instead of DATA_DIR/blobs (`s3://bucket/prefix`).
    #[arg(long, global = true, env = "IDV_BLOB_URL")]
    blob_url: Option<String>,
    /// Who is acting, for the audit log (default: cli:$USER).
    #[arg(long, global = true, env = "IDV_ACTOR")]
    actor: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seal a file into an encrypted, authenticated archive.
    Seal(commands::archive::SealArgs),
    /// Decrypt an archive (or a byte range of it) to a file.
    Open(commands::archive::OpenArgs),
    /// Check every chunk and the manifest of an archive.
    Verify(commands::archive::VerifyArgs),
    /// Print an archive's manifest.
    Manifest(commands::archive::ManifestArgs),
    /// Put CTI audio and camera (and screen) video on one timeline, cut, mux and seal.
    Mux(commands::mux::MuxArgs),
    /// Key-encryption keys: rotate, list, crypto-shred an archive.
    Keys {
        #[command(subcommand)]
        command: commands::keys::KeysCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
    /// Run the server (TLS; writes DATA_DIR/tls/cert.pem, DATA_DIR/operator.token and
    /// DATA_DIR/cti.key).
    Serve(commands::serve::ServeArgs),
    /// An operator's sessions on a server: create (prints id and code), end.
    Session {
        #[command(subcommand)]
        command: commands::session::SessionCommand,
    },
    /// Sealed recordings on a server: list, get.
    Recordings {
        #[command(subcommand)]
        command: commands::recordings::RecordingsCommand,
    },
    /// The CTI system's side: post call recordings to a server.
    Cti {
        #[command(subcommand)]
        command: commands::cti::CtiCommand,
    },
    /// The customer's agent: redeem a code, consent, stream camera and screen until the
    /// session ends.
    Agent(commands::agent::AgentArgs),
    /// Retention: each group's period, legal holds, a shredding pass now.
    Retention {
        #[command(subcommand)]
        command: commands::retention::RetentionCommand,
    },
    /// Console accounts: add (prints the password once), list.
    User {
        #[command(subcommand)]
        command: commands::user::UserCommand,
    },
    /// Run the whole flow on the embedded defaults and say what happened: server, accounts,
    /// a session with the agent, a CTI recording, the sealed result, the console's address.
    Demo(commands::demo::DemoArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IDV_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idv: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = commands::Context {
        storage: storage::StorageConfig {
            data_dir: cli.data_dir,
            database_url: cli.database_url,
            blob_url: cli.blob_url,
        },
        actor: cli.actor.unwrap_or_else(commands::default_actor),
    };
    match cli.command {
        Command::Seal(args) => commands::archive::seal(&ctx, args).await,
        Command::Open(args) => commands::archive::open(&ctx, args).await,
        Command::Verify(args) => commands::archive::verify(&ctx, args).await,
        Command::Manifest(args) => commands::archive::manifest(&ctx, args).await,
        Command::Mux(args) => commands::mux::run(&ctx, args).await,
        Command::Keys { command } => commands::keys::run(&ctx, command).await,
        Command::Audit { command } => commands::audit::run(&ctx, command).await,
        Command::Serve(args) => commands::serve::run(&ctx, args).await,
        Command::Session { command } => commands::session::run(&ctx, command).await,
        Command::Cti { command } => commands::cti::run(&ctx, command).await,
        Command::Recordings { command } => commands::recordings::run(&ctx, command).await,
        Command::Agent(args) => commands::agent::run(args).await,
        Command::User { command } => commands::user::run(&ctx, command).await,
        Command::Retention { command } => commands::retention::run(&ctx, command).await,
        Command::Demo(args) => commands::demo::run(&ctx, args).await,
    }
}
