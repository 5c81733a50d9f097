//! Clock-sync samples: the four timestamps of each NTP-style exchange on a session's media
//! connection, stored exactly as they came, so the agent-to-UTC mapping can be fitted again
//! whenever a recording is re-muxed.

use tracing::instrument;
use uuid::Uuid;

use super::sessions::session_reference_error;
use super::{MetadataDb, Result, on_pool, uuid_text};

/// One exchange: the agent sends at `t1`, the server receives at `t2` and answers at `t3`,
/// the agent receives at `t4`. All in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClockSample {
    /// Agent send time (agent monotonic clock).
    pub t1: i64,
    /// Server receive time (server UTC, since the Unix epoch).
    pub t2: i64,
    /// Server send time (server UTC, since the Unix epoch).
    pub t3: i64,
    /// Agent receive time (agent monotonic clock).
    pub t4: i64,
}

impl MetadataDb {
    /// Stores a batch of samples for a session, in order, all or none (one transaction).
    /// Refused with [`super::DbError::SessionNotFound`] for an unknown session.
    #[instrument(skip_all, fields(%session_id, samples = samples.len()))]
    pub async fn insert_clock_samples(
        &self,
        session_id: Uuid,
        samples: &[ClockSample],
    ) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let session = uuid_text(session_id);
        let stored: std::result::Result<(), sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            for sample in samples {
                sqlx::query(
                    "INSERT INTO clock_samples (session_id, t1, t2, t3, t4) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(session.as_str())
                .bind(sample.t1)
                .bind(sample.t2)
                .bind(sample.t3)
                .bind(sample.t4)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await);
        stored.map_err(session_reference_error(
            self,
            session_id,
            "storing clock-sync samples",
        ))
    }

    /// Every sample of a session, in the order stored.
    pub async fn clock_samples(&self, session_id: Uuid) -> Result<Vec<ClockSample>> {
        let rows: Vec<(i64, i64, i64, i64)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT t1, t2, t3, t4 FROM clock_samples WHERE session_id = $1 ORDER BY id",
        )
        .bind(uuid_text(session_id))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("reading clock-sync samples"))?;
        Ok(rows
            .into_iter()
            .map(|(t1, t2, t3, t4)| ClockSample { t1, t2, t3, t4 })
            .collect())
    }
}
