//! `idv keys rotate | list | shred`.

use clap::Subcommand;
use uuid::Uuid;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new key-encryption key active and rewrap every archive header under it
    /// (payloads are not re-encrypted); destroy old keys no archive needs.
    Rotate,
    /// List key-encryption keys (ids and dates only, never key bytes).
    List,
    /// Crypto-shred an archive: destroy its retention key so it can never be read again.
    Shred {
        /// The archive id.
        archive_id: Uuid,
        /// Why (recorded with the destruction and in the audit log).
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(ctx: &Context, command: KeysCommand) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    match command {
        KeysCommand::Rotate => {
            let report = vault
                .rotate_keys(&ctx.access(Some("key rotation".into())))
                .await?;
            println!(
                "rotated: {} is active; {} archive(s) rewrapped, {} unreachable, destroyed {}",
                report.active_kek,
                report.rewrapped.len(),
                report.unreachable.len(),
                if report.destroyed_keks.is_empty() {
                    "none".to_owned()
                } else {
                    report.destroyed_keks.join(", ")
                },
            );
            for (id, why) in &report.unreachable {
                println!("  not rewrapped: archive {id}: {why} (its old key is kept)");
            }
        }
        KeysCommand::List => {
            for kek in vault.keyring_keks().await? {
                let when = kek
                    .created_at
                    .format(&time::format_description::well_known::Rfc3339)?;
                println!(
                    "{}  created {when}{}",
                    kek.id,
                    if kek.active { "  (active)" } else { "" }
                );
            }
        }
        KeysCommand::Shred { archive_id, reason } => {
            vault.shred(archive_id, &ctx.access(Some(reason))).await?;
            println!("shredded: archive {archive_id} can never be read again");
        }
    }
    Ok(())
}
