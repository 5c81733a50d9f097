//! Making accounts: `idv user add` (the first admin is made this way) and the admins' page.
//! A password is generated when none is given and shown once; a second factor is an
//! `otpauth://` link shown once. Every account made is audited (`user.add`). Disabling one
//! (`idv user disable`, the admins' page) refuses its logins and ends the ones it has at once;
//! enabling lets it log in again; both are audited (`user.disable`, `user.enable`).

use storage::Vault;
use storage::archive::FileKey;
use storage::audit::{AuditEvent, Outcome};
use storage::db::{NewUser, Role};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::addresses::{AllowedAddresses, BadCidr};
use crate::auth::{password, totp};

/// What a new account needs.
#[derive(Debug, Clone)]
pub struct AccountRequest {
    /// The login name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Its roles (at least one).
    pub roles: Vec<Role>,
    /// The password; `None`: one is generated.
    pub password: Option<String>,
    /// Where it may log in from; empty: the group's list decides.
    pub allowed: Vec<String>,
    /// Whether it needs a one-time code at login.
    pub second_factor: bool,
}

/// A new account, with what is shown once.
#[derive(Debug)]
pub struct CreatedAccount {
    /// Its id.
    pub user_id: Uuid,
    /// The generated password, if none was given.
    pub generated_password: Option<String>,
    /// The link to enrol the second factor, if any.
    pub totp_url: Option<String>,
}

/// Why an account was not made.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Not a usable name.
    #[error("a user name is 1 to 64 letters, digits, '.', '-' or '_'")]
    BadName,
    /// No role.
    #[error("an account needs at least one role (operator, supervisor, compliance, admin)")]
    NoRole,
    /// The password.
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    /// An address list entry.
    #[error(transparent)]
    Address(#[from] BadCidr),
    /// Storage.
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl From<storage::db::DbError> for AccountError {
    fn from(e: storage::db::DbError) -> Self {
        Self::Storage(e.into())
    }
}

fn usable_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Makes an account as `by` (the audit actor).
///
/// # Errors
/// [`AccountError`]; a taken name is [`storage::db::DbError::UserExists`].
pub async fn add(
    vault: &Vault,
    request: AccountRequest,
    by: &str,
) -> Result<CreatedAccount, AccountError> {
    if !usable_name(&request.name) {
        return Err(AccountError::BadName);
    }
    if request.roles.is_empty() {
        return Err(AccountError::NoRole);
    }
    let allowed = AllowedAddresses::parse(&request.allowed)?;
    let generated_password = request.password.is_none().then(password::generate);
    let typed = request
        .password
        .clone()
        .or_else(|| generated_password.clone())
        .expect("one or the other");
    let password_hash = tokio::task::spawn_blocking(move || password::hash(&typed))
        .await
        .map_err(|e| password::PasswordError::Hash(e.to_string()))??;
    let user_id = Uuid::new_v4();
    let (totp_wrapped, totp_url) = if request.second_factor {
        let secret = FileKey::generate();
        let wrapped = vault.wrap_secret(&totp::context(user_id), &secret).await?;
        (
            Some(wrapped),
            Some(totp::enrolment_url(&secret, &request.name)),
        )
    } else {
        (None, None)
    };
    vault
        .db()
        .insert_user(&NewUser {
            user_id,
            name: request.name.clone(),
            group: request.group.clone(),
            roles: request.roles.clone(),
            password_hash,
            totp_wrapped,
            allowed_cidrs: allowed.to_strings(),
            created_at: OffsetDateTime::now_utc(),
        })
        .await?;
    let roles: Vec<&str> = request.roles.iter().map(|r| r.as_str()).collect();
    vault
        .audit()
        .append(AuditEvent {
            actor: by.to_owned(),
            action: "user.add".into(),
            object: format!("user:{}", request.name),
            reason: Some(format!(
                "group {}, roles {}{}",
                request.group,
                roles.join(","),
                if request.second_factor { ", TOTP" } else { "" }
            )),
            outcome: Outcome::Success,
        })
        .await?;
    Ok(CreatedAccount {
        user_id,
        generated_password,
        totp_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(usable_name("ana.lopez-2"));
        assert!(!usable_name(""));
        assert!(!usable_name("ana lopez"));
        assert!(!usable_name("<script>"));
        assert!(!usable_name(&"a".repeat(65)));
    }
}

/// What [`set_disabled`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisableOutcome {
    /// Whether the account was disabled before.
    pub was_disabled: bool,
    /// Console logins ended (disabling only).
    pub logins_ended: u64,
}

/// Why an account was not disabled or enabled.
#[derive(Debug, thiserror::Error)]
pub enum DisableError {
    /// No account of that name.
    #[error("there is no user called {0:?}")]
    NoSuchUser(String),
    /// Storage.
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl From<storage::db::DbError> for DisableError {
    fn from(e: storage::db::DbError) -> Self {
        Self::Storage(e.into())
    }
}

/// Disables (`disable`) or enables the account `name` as `by` (the audit actor), audited as
/// `user.disable` / `user.enable`. Disabling ends every console login of the account at once
/// (their next request is refused); logging in again is refused until it is enabled. Whether
/// `by` may do this (admins only, never themselves) is the caller's check.
///
/// # Errors
/// [`DisableError`].
pub async fn set_disabled(
    vault: &Vault,
    name: &str,
    disable: bool,
    by: &str,
) -> Result<DisableOutcome, DisableError> {
    let db = vault.db();
    let user = db
        .user_by_name(name)
        .await?
        .ok_or_else(|| DisableError::NoSuchUser(name.to_owned()))?;
    if !db.set_user_disabled(name, disable).await? {
        return Err(DisableError::NoSuchUser(name.to_owned()));
    }
    let logins_ended = if disable {
        db.delete_console_sessions_of(user.user_id).await?
    } else {
        0
    };
    let reason = match (disable, user.disabled) {
        (true, true) => format!("was disabled already; {logins_ended} console logins ended"),
        (true, false) => format!("{logins_ended} console logins ended"),
        (false, true) => "may log in again".to_owned(),
        (false, false) => "was not disabled".to_owned(),
    };
    vault
        .audit()
        .append(AuditEvent {
            actor: by.to_owned(),
            action: if disable {
                "user.disable"
            } else {
                "user.enable"
            }
            .into(),
            object: format!("user:{name}"),
            reason: Some(reason),
            outcome: Outcome::Success,
        })
        .await?;
    Ok(DisableOutcome {
        was_disabled: user.disabled,
        logins_ended,
    })
}
