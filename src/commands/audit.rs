//! `idv audit verify | list`.

use anyhow::bail;
use clap::Subcommand;
use storage::audit::ChainReport;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; names the first edited, removed or reordered entry.
    Verify,
    /// Print the newest entries.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

pub async fn run(ctx: &Context, command: AuditCommand) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    match command {
        AuditCommand::Verify => match vault.audit().verify().await? {
            ChainReport::Intact { entries, head } => {
                println!(
                    "ok: audit log intact ({entries} entries, head {})",
                    hex::encode(head)
                );
            }
            broken @ ChainReport::Broken { .. } => bail!("{broken}"),
        },
        AuditCommand::List { limit } => {
            for e in vault.audit().latest(limit).await? {
                let when =
                    e.at.format(&time::format_description::well_known::Rfc3339)?;
                println!(
                    "{:>6}  {when}  {:<14} {:<16} {:<48} {:?}{}",
                    e.seq,
                    e.actor,
                    e.action,
                    e.object,
                    e.outcome,
                    e.reason
                        .as_deref()
                        .map(|r| format!("  reason: {r}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
