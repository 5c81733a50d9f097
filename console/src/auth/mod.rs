//! Who is using the console: logins (password, then the address list, then the second
//! factor when the user has one), the browser sessions they open, and logouts — every
//! attempt audited (`console.login`, `console.logout`, actor `user:NAME`).
//!
//! A login gives the browser a random 256-bit token in a `Secure; HttpOnly; SameSite=Strict`
//! cookie; the database keeps only its SHA-256 with the user, where it logged in from, a CSRF
//! token that every write must carry, and an expiry (8 hours).

pub mod addresses;
pub mod password;
pub mod throttle;
pub mod totp;

use std::net::IpAddr;

use storage::Vault;
use storage::audit::{AuditEvent, Outcome};
use storage::db::{ConsoleSession, UserRecord};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use addresses::AllowedAddresses;

/// How long a login lasts.
pub const LOGIN_LIFETIME: time::Duration = time::Duration::hours(8);

/// Why a login was refused (the audit log says which; the browser is told as little).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// No such user, or the wrong password.
    #[error("wrong name or password")]
    WrongCredentials,
    /// The account is disabled.
    #[error("this account is disabled")]
    Disabled,
    /// The user may not log in from this address.
    #[error("this account may not log in from {0}")]
    AddressNotAllowed(IpAddr),
    /// The one-time code is missing or wrong.
    #[error("the one-time code is missing or wrong")]
    SecondFactor,
    /// Too many failed sign-ins for this name or from this address: wait.
    #[error("too many failed sign-ins: try again in 15 minutes")]
    TooManyAttempts,
    /// The database, keyring or audit log failed.
    #[error("the console cannot check logins now: {0}")]
    Storage(#[from] storage::Error),
}

impl From<storage::db::DbError> for LoginError {
    fn from(e: storage::db::DbError) -> Self {
        Self::Storage(e.into())
    }
}

/// A browser's new login: the cookie's token (never stored) and the CSRF token.
#[derive(Debug)]
pub struct NewLogin {
    /// Goes in the cookie.
    pub token: String,
    /// Goes in every form and write request.
    pub csrf: String,
}

/// A request's logged-in user.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// Who.
    pub user: UserRecord,
    /// The CSRF token of this login.
    pub csrf: String,
    token_hash: [u8; 32],
}

impl LoggedIn {
    /// The audit actor (`user:NAME`).
    #[must_use]
    pub fn actor(&self) -> String {
        actor(&self.user.name)
    }

    /// Whether `presented` is this login's CSRF token (compared in constant time).
    #[must_use]
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

fn actor(name: &str) -> String {
    // A name typed at the login form is shown as typed, but never more than 64 characters.
    let name: String = name.chars().take(64).collect();
    format!("user:{name}")
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    hex::encode(bytes)
}

/// The hash of a random password nobody knows, verified when the name is unknown so that an
/// unknown name takes as long as a known one.
fn decoy_hash() -> String {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY
        .get_or_init(|| password::hash(&password::generate()).expect("a generated password hashes"))
        .clone()
}

/// Checks logins and the browser sessions they open.
#[derive(Clone)]
pub struct Authenticator {
    vault: Vault,
    throttle: std::sync::Arc<throttle::Throttle>,
}

impl Authenticator {
    /// Logins against `vault`'s users.
    #[must_use]
    pub fn new(vault: Vault) -> Self {
        Self {
            vault,
            throttle: std::sync::Arc::default(),
        }
    }

    /// Logs `name` in from `source`, auditing the outcome either way.
    ///
    /// # Errors
    /// [`LoginError`].
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        otp: Option<&str>,
        source: IpAddr,
    ) -> Result<NewLogin, LoginError> {
        let now = std::time::Instant::now();
        let checked = if self.throttle.refuses(name, source, now) {
            Err(LoginError::TooManyAttempts)
        } else {
            let checked = self.check(name, password, otp, source).await;
            match &checked {
                Ok(_) => self.throttle.succeeded(name),
                Err(LoginError::Storage(_)) => {}
                Err(_) => self.throttle.failed(name, source, now),
            }
            checked
        };
        let (outcome, reason) = match &checked {
            Ok(_) => (Outcome::Success, format!("from {source}")),
            Err(LoginError::Storage(e)) => (Outcome::Failed, format!("from {source}: {e}")),
            Err(e) => (Outcome::Denied, format!("from {source}: {e}")),
        };
        self.vault
            .audit()
            .append(AuditEvent {
                actor: actor(name),
                action: "console.login".into(),
                object: "console".into(),
                reason: Some(reason),
                outcome,
            })
            .await
            .map_err(|e| LoginError::Storage(e.into()))?;
        let user = checked?;
        let (token, csrf) = (random_hex(), random_hex());
        let now = OffsetDateTime::now_utc();
        self.vault
            .db()
            .insert_console_session(&ConsoleSession {
                token_hash: storage::db::login_token_hash(&token),
                user_id: user.user_id,
                csrf_token: csrf.clone(),
                source: source.to_string(),
                created_at: now,
                expires_at: now + LOGIN_LIFETIME,
            })
            .await?;
        Ok(NewLogin { token, csrf })
    }

    async fn check(
        &self,
        name: &str,
        password: &str,
        otp: Option<&str>,
        source: IpAddr,
    ) -> Result<UserRecord, LoginError> {
        let user = self.vault.db().user_by_name(name).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let typed = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            password::verify(&typed, &stored.unwrap_or_else(decoy_hash))
        })
        .await
        .unwrap_or(false);
        let user = match user {
            Some(user) if matches => user,
            _ => return Err(LoginError::WrongCredentials),
        };
        if user.disabled {
            return Err(LoginError::Disabled);
        }
        let list = if user.allowed_cidrs.is_empty() {
            self.vault.db().group_cidrs(&user.group).await?
        } else {
            user.allowed_cidrs.clone()
        };
        // A list that no longer parses allows nobody rather than everybody.
        let allowed = AllowedAddresses::parse(&list).is_ok_and(|a| a.allows(source));
        if !allowed {
            return Err(LoginError::AddressNotAllowed(source));
        }
        if let Some(wrapped) = &user.totp_wrapped {
            let secret = self
                .vault
                .unwrap_secret(&totp::context(user.user_id), wrapped)
                .await?;
            let now = OffsetDateTime::now_utc().unix_timestamp().unsigned_abs();
            let code = otp.unwrap_or_default();
            if !totp::check(&secret, &user.name, code, now) {
                return Err(LoginError::SecondFactor);
            }
        }
        Ok(user)
    }

    /// The login a cookie's `token` stands for, if it is valid and its user still may log in.
    ///
    /// # Errors
    /// The database fails.
    pub async fn session(&self, token: &str) -> Result<Option<LoggedIn>, storage::Error> {
        let login = self
            .vault
            .db()
            .login(token, OffsetDateTime::now_utc())
            .await?;
        Ok(login.map(|login| LoggedIn {
            user: login.user,
            csrf: login.session.csrf_token,
            token_hash: login.session.token_hash,
        }))
    }

    /// Ends a login (audited).
    ///
    /// # Errors
    /// The database or the audit log fails.
    pub async fn logout(&self, login: &LoggedIn) -> Result<(), storage::Error> {
        self.vault
            .db()
            .delete_console_session(&login.token_hash)
            .await?;
        self.vault
            .audit()
            .append(AuditEvent {
                actor: login.actor(),
                action: "console.logout".into(),
                object: "console".into(),
                reason: None,
                outcome: Outcome::Success,
            })
            .await?;
        Ok(())
    }
}
