//! `idv retention set | hold | release | run`: how long each group's recordings are kept,
//! legal holds, and a pass of crypto-shredding now (`idv serve` runs one every hour).

use anyhow::Context as _;
use clap::Subcommand;
use storage::db::LegalHold;
use uuid::Uuid;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Keep GROUP's recordings this many days after their session ended (or --keep: until
    /// shredded by hand).
    Set {
        group: String,
        #[arg(long, conflicts_with = "keep", required_unless_present = "keep")]
        days: Option<u32>,
        #[arg(long)]
        keep: bool,
    },
    /// Place a legal hold on a session's recording: never shredded while it holds.
    Hold {
        session: Uuid,
        /// Why (kept with the hold and in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Release a legal hold.
    Release { session: Uuid },
    /// Shred what is past its retention now.
    Run,
}

pub async fn run(ctx: &Context, command: RetentionCommand) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    let audit = |action: &str, object: String, reason: Option<String>| storage::audit::AuditEvent {
        actor: ctx.actor.clone(),
        action: action.to_owned(),
        object,
        reason,
        outcome: storage::audit::Outcome::Success,
    };
    match command {
        RetentionCommand::Set { group, days, keep } => {
            let days = if keep { None } else { days };
            vault.db().set_group_retention(&group, days).await?;
            let what = days.map_or("kept until shredded by hand".to_owned(), |d| {
                format!("{d} days")
            });
            vault
                .audit()
                .append(audit(
                    "retention.set",
                    format!("group:{group}"),
                    Some(what.clone()),
                ))
                .await?;
            println!("group {group}: recordings {what}");
        }
        RetentionCommand::Hold { session, reason } => {
            vault
                .db()
                .place_legal_hold(&LegalHold {
                    session_id: session,
                    placed_by: ctx.actor.clone(),
                    reason: reason.clone(),
                    placed_at: time::OffsetDateTime::now_utc(),
                })
                .await
                .context("cannot place the hold")?;
            vault
                .audit()
                .append(audit(
                    "retention.hold",
                    format!("session:{session}"),
                    Some(reason),
                ))
                .await?;
            println!("session {session}: on legal hold");
        }
        RetentionCommand::Release { session } => {
            let released = vault.db().release_legal_hold(session).await?;
            anyhow::ensure!(released, "session {session} has no legal hold");
            vault
                .audit()
                .append(audit(
                    "retention.release",
                    format!("session:{session}"),
                    None,
                ))
                .await?;
            println!("session {session}: hold released");
        }
        RetentionCommand::Run => {
            let pass =
                console::recordings::retention::enforce(&vault, time::OffsetDateTime::now_utc())
                    .await?;
            for session in &pass.shredded {
                println!("shredded\t{session}");
            }
            for session in &pass.held {
                println!("held\t{session}");
            }
            println!(
                "{} shredded, {} kept by a legal hold",
                pass.shredded.len(),
                pass.held.len()
            );
        }
    }
    Ok(())
}
