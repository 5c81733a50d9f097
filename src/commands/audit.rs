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
                println!("ok: audit log intact ({entries} entries, head {})", hex::encode(head));
            }
            ChainReport::Broken { seq, problem } => {
                bail!("audit log broken at entry {seq}: {problem}");
            }
            other => bail!("audit log check: {other:?}"),
        },
        AuditCommand::List { limit } => {
            let entries = vault.audit().entries(0, i64::MAX).await?;
            let skip = entries.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
            for e in &entries[skip..] {
                let when = e.at.format(&time::format_description::well_known::Rfc3339)?;
                println!(
                    "{:>6}  {when}  {:<14} {:<16} {:<48} {:?}{}",
                    e.seq,
                    e.actor,
                    e.action,
                    e.object,
                    e.outcome,
                    e.reason.as_deref().map(|r| format!("  reason: {r}")).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
