//! `idv user add | list | disable | enable`: console accounts, in the data directory's vault
//! (the first admin is made this way; the admins' page does the same later).

use std::io::Read as _;

use anyhow::Context as _;
use clap::Subcommand;
use console::accounts::{self, AccountRequest};
use storage::db::Role;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Make an account; prints its password (generated unless --password-stdin) and, with
    /// --totp, the link to enrol its one-time codes. Both are shown once.
    Add {
        /// The login name (letters, digits, '.', '-', '_').
        name: String,
        /// Its roles: operator, supervisor, compliance, admin (comma-separated or repeated).
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
        /// Its group.
        #[arg(long, default_value = "default")]
        group: String,
        /// Where it may log in from (CIDR; repeat for several). Default: the group's list.
        #[arg(long = "allow")]
        allowed: Vec<String>,
        /// Require a one-time code (TOTP) at login.
        #[arg(long)]
        totp: bool,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts.
    List,
    /// Disable an account: logging in is refused and its console logins end now.
    Disable {
        /// The login name.
        name: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The login name.
        name: String,
    },
}

pub async fn run(ctx: &Context, command: UserCommand) -> anyhow::Result<()> {
    let vault = ctx.vault().await?;
    match command {
        UserCommand::Add {
            name,
            roles,
            group,
            allowed,
            totp,
            password_stdin,
        } => {
            let roles = roles
                .iter()
                .map(|r| {
                    Role::parse(r.trim()).with_context(|| {
                        format!("unknown role {r:?} (operator, supervisor, compliance, admin)")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let password = if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read the password from standard input")?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let made = accounts::add(
                &vault,
                AccountRequest {
                    name: name.clone(),
                    group: group.clone(),
                    roles: roles.clone(),
                    password,
                    allowed,
                    second_factor: totp,
                },
                &ctx.actor,
            )
            .await?;
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            println!("user {name} ({}) in group {group}", roles.join(", "));
            if let Some(password) = made.generated_password {
                println!("password: {password}");
            }
            if let Some(url) = made.totp_url {
                println!("one-time codes: {url}");
            }
        }
        UserCommand::List => {
            for user in vault.db().users().await? {
                let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                let allowed = if user.allowed_cidrs.is_empty() {
                    "group's addresses".to_owned()
                } else {
                    user.allowed_cidrs.join(",")
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}{}",
                    user.name,
                    user.group,
                    roles.join(","),
                    allowed,
                    if user.totp_wrapped.is_some() {
                        "totp"
                    } else {
                        "-"
                    },
                    if user.disabled { "\tdisabled" } else { "" }
                );
            }
        }
        UserCommand::Disable { name } => {
            let done = accounts::set_disabled(&vault, &name, true, &ctx.actor).await?;
            println!(
                "user {name} disabled{}; {} console logins ended",
                if done.was_disabled { " (already)" } else { "" },
                done.logins_ended
            );
        }
        UserCommand::Enable { name } => {
            let done = accounts::set_disabled(&vault, &name, false, &ctx.actor).await?;
            println!(
                "user {name} enabled{}",
                if done.was_disabled {
                    ""
                } else {
                    " (was not disabled)"
                }
            );
        }
    }
    Ok(())
}
