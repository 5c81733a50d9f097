//! `idv session create | end`: an operator's sessions, over the server's HTTPS API.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ingest::client::OperatorClient;
use uuid::Uuid;

use super::Context;

/// Where the server is and how to trust and authenticate to it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server, `https://host:port`.
    #[arg(long)]
    pub server: String,
    /// The server's certificate (default: DATA_DIR/tls/cert.pem).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The operator token file (default: DATA_DIR/operator.token).
    #[arg(long)]
    pub token: Option<PathBuf>,
}

impl ServerArgs {
    pub fn client(&self, ctx: &Context) -> anyhow::Result<OperatorClient> {
        let data = &ctx.storage.data_dir;
        let ca = self.ca.clone().unwrap_or_else(|| data.join("tls/cert.pem"));
        let token = self
            .token
            .clone()
            .unwrap_or_else(|| data.join("operator.token"));
        Ok(OperatorClient::new(&self.server, &ca, &token)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a session; prints its id and the one-time code to read to the customer.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// The case or customer reference (compliance officers search recordings by it).
        #[arg(long = "case")]
        case_reference: Option<String>,
    },
    /// End a session.
    End {
        #[command(flatten)]
        server: ServerArgs,
        /// The session.
        id: Uuid,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "ended by the operator")]
        reason: String,
    },
}

pub async fn run(ctx: &Context, command: SessionCommand) -> anyhow::Result<()> {
    match command {
        SessionCommand::Create {
            server,
            case_reference,
        } => {
            let created = server
                .client(ctx)?
                .create_session(case_reference.as_deref())
                .await
                .context("cannot create a session")?;
            println!("{} {}", created.session_id, created.code);
        }
        SessionCommand::End { server, id, reason } => {
            server
                .client(ctx)?
                .end_session(id, &reason)
                .await
                .with_context(|| format!("cannot end session {id}"))?;
            println!("ended {id}");
        }
    }
    Ok(())
}
