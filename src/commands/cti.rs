//! `idv cti push`: posts one call recording to the ingest server as the CTI system does — the
//! call record in the query, the file streamed as the body (or, with `--part-bytes`, in parts
//! as a recorder sends them while the call runs), every request signed with the CTI key
//! (`ingest::cti::client`). Prints `uploaded <recording id> (<n> bytes, archive <archive id>)`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ingest::cti::client::{CallInfo, CtiClient};

use super::Context;

#[derive(Debug, Subcommand)]
pub enum CtiCommand {
    /// Post a call recording (WAV, FLAC, Ogg, MP3, AAC, M4A) with its call record.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The server's base URL (`https://HOST:PORT`).
    #[arg(long)]
    server: String,
    /// The CTI system's call id.
    #[arg(long)]
    call_id: String,
    /// The session the call belongs to, if known.
    #[arg(long = "session")]
    session: Option<String>,
    /// A correlation key (e.g. operator extension and time) when the session is not known.
    #[arg(long)]
    correlation: Option<String>,
    /// Call start on the CTI clock (RFC 3339).
    #[arg(long)]
    started_at: String,
    /// Call end on the CTI clock (RFC 3339).
    #[arg(long)]
    ended_at: Option<String>,
    /// The server's certificate to trust (default: DATA_DIR/tls/cert.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The CTI signing key (default: DATA_DIR/cti.key).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Send the recording in parts of this many bytes, as a recorder does during the call
    /// (opened, each part acknowledged, then completed with the whole recording's SHA-256).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    part_bytes: Option<u64>,
    /// The recording.
    file: PathBuf,
}

pub async fn run(ctx: &Context, command: CtiCommand) -> anyhow::Result<()> {
    match command {
        CtiCommand::Push(args) => push(ctx, args).await,
    }
}

async fn push(ctx: &Context, args: PushArgs) -> anyhow::Result<()> {
    let data_dir = &ctx.storage.data_dir;
    let ca = args.ca.unwrap_or_else(|| data_dir.join("tls/cert.pem"));
    let key_path = args.key.unwrap_or_else(|| data_dir.join("cti.key"));
    let key = ingest::cti::CtiKey::from_file(&key_path)?;
    let client = CtiClient::new(&args.server, &ca, key)?;
    let call = CallInfo {
        call_id: args.call_id,
        started_at: args.started_at,
        ended_at: args.ended_at,
        session_id: args.session,
        correlation: args.correlation,
        filename: args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned),
    };
    let uploaded = match args.part_bytes {
        Some(part) => {
            let part = usize::try_from(part)?;
            client.push_in_parts(&call, &args.file, part).await
        }
        None => client.push(&call, &args.file).await,
    }
    .map_err(|e| anyhow::anyhow!("upload refused: {e}"))?;
    println!(
        "uploaded {} ({} bytes, archive {})",
        uploaded.recording_id, uploaded.bytes, uploaded.archive_id
    );
    Ok(())
}
