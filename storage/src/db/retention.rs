//! Retention: each group's retention period (days after a session ended that its recording is
//! kept) and legal holds that keep a session's recording whatever its age. What expires is
//! crypto-shredded by the caller ([`crate::Vault::shred`]).

use time::OffsetDateTime;
use uuid::Uuid;

use super::sessions::required;
use super::{DbError, MetadataDb, Result, from_micros, on_pool, parse_uuid, to_micros, uuid_text};

/// A legal hold on a session's recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    /// The session.
    pub session_id: Uuid,
    /// Who placed it.
    pub placed_by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub placed_at: OffsetDateTime,
}

impl MetadataDb {
    /// Sets how many days after their session ended `group`'s recordings are kept (`None`:
    /// until shredded by hand).
    ///
    /// # Errors
    /// [`DbError::EmptyField`] for an empty group; 0 days is refused as `EmptyField` too.
    pub async fn set_group_retention(&self, group: &str, days: Option<u32>) -> Result<()> {
        required("the group", group)?;
        if days == Some(0) {
            return Err(DbError::EmptyField {
                what: "the retention period (days)",
            });
        }
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO console_groups (name, retention_days) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET retention_days = excluded.retention_days",
        )
        .bind(group)
        .bind(days.map(i64::from))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(self.query_error("setting a group's retention"))
    }

    /// Every group with a retention period, and its days.
    pub async fn group_retentions(&self) -> Result<Vec<(String, u32)>> {
        let rows: Vec<(String, i64)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT name, retention_days FROM console_groups \
             WHERE retention_days IS NOT NULL ORDER BY name",
        )
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("reading retention periods"))?;
        Ok(rows
            .into_iter()
            .map(|(name, days)| (name, u32::try_from(days).unwrap_or(u32::MAX)))
            .collect())
    }

    /// Places a legal hold on `session`'s recording (a second hold keeps the first).
    pub async fn place_legal_hold(&self, hold: &LegalHold) -> Result<()> {
        required("who places the hold", &hold.placed_by)?;
        required("the hold's reason", &hold.reason)?;
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO legal_holds (session_id, placed_by, reason, placed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(uuid_text(hold.session_id))
        .bind(hold.placed_by.as_str())
        .bind(hold.reason.as_str())
        .bind(to_micros(hold.placed_at))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(self.query_error("placing a legal hold"))
    }

    /// Releases the hold on `session`; whether there was one.
    pub async fn release_legal_hold(&self, session: Uuid) -> Result<bool> {
        on_pool!(self, pool => sqlx::query("DELETE FROM legal_holds WHERE session_id = $1")
        .bind(uuid_text(session))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0))
        .map_err(self.query_error("releasing a legal hold"))
    }

    /// The hold on `session`, if any.
    pub async fn legal_hold(&self, session: Uuid) -> Result<Option<LegalHold>> {
        let row: Option<(String, String, String, i64)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT session_id, placed_by, reason, placed_at FROM legal_holds \
             WHERE session_id = $1",
        )
        .bind(uuid_text(session))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a legal hold"))?;
        row.map(|(id, placed_by, reason, at)| {
            Ok(LegalHold {
                session_id: parse_uuid("held session", &id)?,
                placed_by,
                reason,
                placed_at: from_micros("hold time", at)?,
            })
        })
        .transpose()
    }
}
