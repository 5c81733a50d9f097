//! `idv recordings list | get`: sealed recordings on a server, for scripts and tests.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use uuid::Uuid;

use super::Context;
use super::session::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// One line per recording: session id, status, archive id (or `-`).
    List(ServerArgs),
    /// Download a session's sealed archive (`idv open --data-dir` of the server decrypts it).
    Get {
        #[command(flatten)]
        server: ServerArgs,
        /// The session.
        session: Uuid,
        /// Where to write the archive.
        #[arg(short, long)]
        output: PathBuf,
    },
}

pub async fn run(ctx: &Context, command: RecordingsCommand) -> anyhow::Result<()> {
    match command {
        RecordingsCommand::List(server) => {
            for r in server
                .client(ctx)?
                .recordings()
                .await
                .context("cannot list recordings")?
            {
                let archive = r
                    .archive_id
                    .map_or_else(|| "-".to_owned(), |a| a.to_string());
                println!("{} {} {archive}", r.session_id, r.status);
            }
        }
        RecordingsCommand::Get {
            server,
            session,
            output,
        } => {
            let bytes = server
                .client(ctx)?
                .download(session, &output)
                .await
                .with_context(|| format!("cannot get the recording of session {session}"))?;
            println!("wrote {} ({})", output.display(), super::human_bytes(bytes));
        }
    }
    Ok(())
}
