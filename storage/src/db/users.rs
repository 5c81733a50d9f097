//! The web console's people: users with a group, roles, a password hash, an optional TOTP
//! secret (wrapped by the keyring: this crate stores it as opaque bytes) and the addresses
//! they may log in from; their groups' address lists; and the browsers logged in as them
//! (only a hash of each cookie's token is stored).

use std::fmt;

use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use tracing::instrument;
use uuid::Uuid;

use super::sessions::required;
use super::{
    DbError, MetadataDb, Result, constraint_violation, from_micros, on_pool, parse_uuid,
    stored_enum, to_micros, uuid_text,
};

stored_enum! {
    /// What a user may do. Roles separate duties: operators run sessions but cannot open
    /// recordings; compliance officers open recordings but cannot start sessions; admins
    /// manage users, groups and retention and cannot read recordings without the compliance
    /// role; supervisors watch their group's operators' sessions.
    pub enum Role as "role" {
        /// Runs live sessions.
        Operator => "operator",
        /// Oversees the operators of a group.
        Supervisor => "supervisor",
        /// Finds, verifies, plays and exports sealed recordings.
        Compliance => "compliance",
        /// Manages users, groups, address lists and retention.
        Admin => "admin",
    }
}

/// A user as created.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// A fresh id.
    pub user_id: Uuid,
    /// The login name (unique).
    pub name: String,
    /// The group whose sessions and recordings the user works with.
    pub group: String,
    /// What the user may do (at least one).
    pub roles: Vec<Role>,
    /// The password's argon2id hash, as a PHC string.
    pub password_hash: String,
    /// The TOTP secret, wrapped by the caller; `None`: no second factor.
    pub totp_wrapped: Option<Vec<u8>>,
    /// Where the user may log in from (CIDRs); empty: the group's list decides.
    pub allowed_cidrs: Vec<String>,
    /// When.
    pub created_at: OffsetDateTime,
}

/// A user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The id.
    pub user_id: Uuid,
    /// The login name.
    pub name: String,
    /// The group.
    pub group: String,
    /// The roles.
    pub roles: Vec<Role>,
    /// The password's argon2id hash.
    pub password_hash: String,
    /// The wrapped TOTP secret, if the user has a second factor.
    pub totp_wrapped: Option<Vec<u8>>,
    /// Where the user may log in from; empty: the group's list decides.
    pub allowed_cidrs: Vec<String>,
    /// A disabled user cannot log in.
    pub disabled: bool,
    /// When the user was created.
    pub created_at: OffsetDateTime,
}

impl UserRecord {
    /// Whether the user has `role`.
    #[must_use]
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("group", &self.group)
            .field("roles", &self.roles)
            .field("second_factor", &self.totp_wrapped.is_some())
            .field("allowed_cidrs", &self.allowed_cidrs)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("group", &self.group)
            .field("roles", &self.roles)
            .field("second_factor", &self.totp_wrapped.is_some())
            .field("allowed_cidrs", &self.allowed_cidrs)
            .finish_non_exhaustive()
    }
}

/// A browser logged in as a user.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the cookie's token.
    pub token_hash: [u8; 32],
    /// Whose.
    pub user_id: Uuid,
    /// The token every write must carry (CSRF).
    pub csrf_token: String,
    /// The address it logged in from.
    pub source: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// Valid until.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("user_id", &self.user_id)
            .field("source", &self.source)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A browser's login found by its cookie's token: the user (enabled) and the login.
#[derive(Debug, Clone)]
pub struct Login {
    /// Who.
    pub user: UserRecord,
    /// The login (its CSRF token, source, expiry).
    pub session: ConsoleSession,
}

/// What the database keeps of a login cookie's token: its SHA-256.
#[must_use]
pub fn login_token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn join_list<T: AsRef<str>>(items: &[T]) -> String {
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(",")
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_roles(text: &str) -> Result<Vec<Role>> {
    split_list(text)
        .iter()
        .map(|r| Role::from_stored(r))
        .collect()
}

macro_rules! user_columns {
    () => {
        "user_id, name, group_name, roles, password_hash, totp_wrapped, allowed_cidrs, disabled, \
         created_at"
    };
}

type UserRow = (
    String,
    String,
    String,
    String,
    String,
    Option<Vec<u8>>,
    String,
    bool,
    i64,
);

fn from_row(row: UserRow) -> Result<UserRecord> {
    let (user_id, name, group, roles, password_hash, totp_wrapped, cidrs, disabled, created_at) =
        row;
    Ok(UserRecord {
        user_id: parse_uuid("user id", &user_id)?,
        name,
        group,
        roles: parse_roles(&roles)?,
        password_hash,
        totp_wrapped,
        allowed_cidrs: split_list(&cidrs),
        disabled,
        created_at: from_micros("user creation time", created_at)?,
    })
}

impl MetadataDb {
    /// Creates a user.
    ///
    /// # Errors
    /// [`DbError::UserExists`] when the name is taken; [`DbError::EmptyField`] for an empty
    /// name, group, role list or hash.
    #[instrument(skip(self, user), fields(name = %user.name))]
    pub async fn insert_user(&self, user: &NewUser) -> Result<()> {
        required("the user's name", &user.name)?;
        required("the user's group", &user.group)?;
        required("the password hash", &user.password_hash)?;
        if user.roles.is_empty() {
            return Err(DbError::EmptyField {
                what: "the user's roles",
            });
        }
        let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO users (user_id, name, group_name, roles, password_hash, totp_wrapped, \
             allowed_cidrs, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(uuid_text(user.user_id))
        .bind(user.name.as_str())
        .bind(user.group.as_str())
        .bind(join_list(&roles))
        .bind(user.password_hash.as_str())
        .bind(user.totp_wrapped.as_deref())
        .bind(join_list(&user.allowed_cidrs))
        .bind(false)
        .bind(to_micros(user.created_at))
        .execute(pool)
        .await
        .map(|_| ()));
        inserted.map_err(|e| match constraint_violation(&e) {
            Some(ErrorKind::UniqueViolation) => DbError::UserExists {
                name: user.name.clone(),
            },
            _ => self.query_error("creating a user")(e),
        })
    }

    /// The user called `name`, if there is one.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", user_columns!(), " FROM users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a user"))?;
        row.map(from_row).transpose()
    }

    /// The user with id `user_id`, if there is one.
    pub async fn user(&self, user_id: Uuid) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", user_columns!(), " FROM users WHERE user_id = $1"
        ))
        .bind(uuid_text(user_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a user"))?;
        row.map(from_row).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", user_columns!(), " FROM users ORDER BY name"
        ))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing users"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// Disables (`true`) or enables (`false`) the user called `name`; whether there is one.
    /// Disabling does not end the user's logins: [`Self::delete_console_sessions_of`] does.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        on_pool!(self, pool => sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
        .bind(disabled)
        .bind(name)
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0))
        .map_err(self.query_error("disabling or enabling a user"))
    }

    /// Forgets every console login of `user_id` (every browser signed in as them); how many
    /// there were.
    pub async fn delete_console_sessions_of(&self, user_id: Uuid) -> Result<u64> {
        on_pool!(self, pool => sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
        .bind(uuid_text(user_id))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(self.query_error("ending a user's console logins"))
    }

    /// Sets where the users of `group` may log in from (those without a list of their own);
    /// empty: anywhere.
    pub async fn set_group_cidrs(&self, group: &str, cidrs: &[String]) -> Result<()> {
        required("the group", group)?;
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO console_groups (name, allowed_cidrs) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET allowed_cidrs = excluded.allowed_cidrs",
        )
        .bind(group)
        .bind(join_list(cidrs))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(self.query_error("setting a group's addresses"))
    }

    /// Where the users of `group` may log in from; empty: anywhere.
    pub async fn group_cidrs(&self, group: &str) -> Result<Vec<String>> {
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT allowed_cidrs FROM console_groups WHERE name = $1",
        )
        .bind(group)
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a group's addresses"))?;
        Ok(row.map(|(cidrs,)| split_list(&cidrs)).unwrap_or_default())
    }

    /// Records a browser's login.
    pub async fn insert_console_session(&self, session: &ConsoleSession) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO console_sessions (token_hash, user_id, csrf_token, source, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session.token_hash.as_slice())
        .bind(uuid_text(session.user_id))
        .bind(session.csrf_token.as_str())
        .bind(session.source.as_str())
        .bind(to_micros(session.created_at))
        .bind(to_micros(session.expires_at))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(self.query_error("recording a console login"))
    }

    /// The login whose token hashes to `token_hash`, if it is still valid at `now`.
    pub async fn console_session(
        &self,
        token_hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<ConsoleSession>> {
        let row: Option<(String, String, String, i64, i64)> =
            on_pool!(self, pool => sqlx::query_as(
            "SELECT user_id, csrf_token, source, created_at, expires_at FROM console_sessions \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash.as_slice())
        .bind(to_micros(now))
        .fetch_optional(pool)
        .await)
            .map_err(self.query_error("reading a console login"))?;
        row.map(|(user_id, csrf_token, source, created_at, expires_at)| {
            Ok(ConsoleSession {
                token_hash: *token_hash,
                user_id: parse_uuid("console session's user", &user_id)?,
                csrf_token,
                source,
                created_at: from_micros("console login time", created_at)?,
                expires_at: from_micros("console login expiry", expires_at)?,
            })
        })
        .transpose()
    }

    /// The login behind a cookie's `token`, if it is valid at `now` and its user is not
    /// disabled. The console and the ingest API (which takes console logins for operators)
    /// both look logins up here.
    pub async fn login(&self, token: &str, now: OffsetDateTime) -> Result<Option<Login>> {
        let Some(session) = self.console_session(&login_token_hash(token), now).await? else {
            return Ok(None);
        };
        let user = self.user(session.user_id).await?.filter(|u| !u.disabled);
        Ok(user.map(|user| Login { user, session }))
    }

    /// Forgets a login (logout); whether there was one.
    pub async fn delete_console_session(&self, token_hash: &[u8; 32]) -> Result<bool> {
        on_pool!(self, pool => sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
        .bind(token_hash.as_slice())
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0))
        .map_err(self.query_error("forgetting a console login"))
    }
}
