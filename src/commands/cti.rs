//! `idv cti push`: posts one call recording to the ingest server as the CTI system does — the
//! call record in the query, the file streamed as the body, the request signed with the CTI
//! key (`ingest::cti::sign`). Prints `uploaded <recording id> (<n> bytes, archive <archive id>)`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

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
    let pem = std::fs::read(&ca).with_context(|| format!("{}", ca.display()))?;
    let cert = reqwest::Certificate::from_pem(&pem)
        .with_context(|| format!("{}: not a PEM certificate", ca.display()))?;

    let digest = sha256_of(&args.file).await?;
    let mut url = reqwest::Url::parse(args.server.trim_end_matches('/'))
        .with_context(|| format!("--server {:?} is not a URL", args.server))?
        .join(ingest::cti::UPLOAD_PATH)?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("call_id", &args.call_id);
        query.append_pair("started_at", &args.started_at);
        if let Some(end) = &args.ended_at {
            query.append_pair("ended_at", end);
        }
        if let Some(session) = &args.session {
            query.append_pair("session_id", session);
        }
        if let Some(correlation) = &args.correlation {
            query.append_pair("correlation", correlation);
        }
        if let Some(name) = args.file.file_name().and_then(|n| n.to_str()) {
            query.append_pair("filename", name);
        }
    }
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = ingest::cti::sign(&key, "POST", &path_and_query, timestamp, &digest);

    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("{}", args.file.display()))?;
    let len = file.metadata().await?.len();
    let client = reqwest::Client::builder()
        .add_root_certificate(cert)
        .build()
        .context("cannot build the HTTPS client")?;
    let response = client
        .post(url)
        .header(ingest::cti::TIMESTAMP_HEADER, timestamp.to_string())
        .header(ingest::cti::DIGEST_HEADER, hex::encode(digest))
        .header(ingest::cti::SIGNATURE_HEADER, signature)
        .header(reqwest::header::CONTENT_LENGTH, len)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::from(file))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.server))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let why = body["error"].as_str().unwrap_or("no reason given");
        anyhow::bail!("upload refused ({status}): {why}");
    }
    let uploaded: ingest::cti::Uploaded = response
        .json()
        .await
        .context("the server's answer is not the expected JSON")?;
    println!(
        "uploaded {} ({} bytes, archive {})",
        uploaded.recording_id, uploaded.bytes, uploaded.archive_id
    );
    Ok(())
}

async fn sha256_of(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("{}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .with_context(|| format!("{}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
