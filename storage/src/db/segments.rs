//! Durable media segments: each row is one sealed segment file in the blob store, with the
//! range of frames it holds. The highest recorded seq of a track is what the server has
//! acknowledged durably, and where a resuming agent continues after a server restart.

use tracing::instrument;
use uuid::Uuid;

use time::OffsetDateTime;

use super::sessions::{required, session_reference_error};
use super::{
    DbError, MetadataDb, Result, constraint_violation, from_micros, on_pool, parse_uuid, read_u64,
    stored_enum, stored_u64, to_micros, uuid_text,
};

stored_enum! {
    /// A media track of a session.
    pub enum MediaTrack as "media track" {
        /// The customer's camera.
        Camera => "camera",
        /// The customer's screen.
        Screen => "screen",
        /// Screenshots taken when no stream can be held (they share the screen's timeline).
        Screenshot => "screenshot",
        /// The agent's low-rate microphone reference.
        MicReference => "mic_reference",
    }
}

/// One sealed segment of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    /// The session.
    pub session_id: Uuid,
    /// The track.
    pub track: MediaTrack,
    /// Its place among the track's segments, from 0.
    pub index: u64,
    /// Where it is in the blob store.
    pub location: String,
    /// The first frame's seq.
    pub first_seq: u64,
    /// The last frame's seq.
    pub last_seq: u64,
    /// The first frame's capture timestamp (agent monotonic clock, nanoseconds).
    pub first_ts: i64,
    /// The last frame's capture timestamp (agent monotonic clock, nanoseconds).
    pub last_ts: i64,
    /// Its length in the blob store.
    pub bytes: u64,
    /// When it was sealed and stored.
    pub sealed_at: OffsetDateTime,
}

/// The columns a [`SegmentRow`] reads, for `concat!` into query texts.
macro_rules! segment_columns {
    () => {
        "session_id, track, segment_index, location, first_seq, last_seq, first_ts, last_ts, \
         bytes, sealed_at"
    };
}

/// The columns of `segment_columns!`, in order.
type SegmentRow = (String, String, i64, String, i64, i64, i64, i64, i64, i64);

fn from_row(row: SegmentRow) -> Result<SegmentRecord> {
    let (session_id, track, index, location, first_seq, last_seq, first_ts, last_ts, bytes, at) =
        row;
    Ok(SegmentRecord {
        session_id: parse_uuid("segment's session id", &session_id)?,
        track: MediaTrack::from_stored(&track)?,
        index: read_u64("segment index", index)?,
        location,
        first_seq: read_u64("segment first seq", first_seq)?,
        last_seq: read_u64("segment last seq", last_seq)?,
        first_ts,
        last_ts,
        bytes: read_u64("segment length", bytes)?,
        sealed_at: from_micros("segment seal time", at)?,
    })
}

impl MetadataDb {
    /// Records a sealed segment. It must come after everything recorded for its track: a
    /// higher index than any recorded, and a first seq above the track's last durable seq
    /// (seqs may skip, never go back). Refused with [`DbError::SegmentExists`] if the index
    /// is taken (e.g. a retry after the first attempt did commit: nothing to do) and with
    /// [`DbError::SegmentOutOfOrder`] otherwise. A track's segments are recorded by the one
    /// connection that holds it, so this check does not need to serialise concurrent writers
    /// of one track.
    #[instrument(skip_all, fields(session_id = %seg.session_id, track = %seg.track, index = seg.index))]
    pub async fn insert_segment(&self, seg: &SegmentRecord) -> Result<()> {
        required("the segment location", &seg.location)?;
        if seg.last_seq < seg.first_seq {
            return Err(DbError::SegmentRangeReversed {
                index: seg.index,
                what: "seq",
            });
        }
        if seg.last_ts < seg.first_ts {
            return Err(DbError::SegmentRangeReversed {
                index: seg.index,
                what: "timestamp",
            });
        }
        let index = stored_u64("the segment index", seg.index)?;
        let first_seq = stored_u64("the segment's first seq", seg.first_seq)?;
        let last_seq = stored_u64("the segment's last seq", seg.last_seq)?;
        let bytes = stored_u64("the segment length", seg.bytes)?;
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO segments (session_id, track, segment_index, location, first_seq, \
             last_seq, first_ts, last_ts, bytes, sealed_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
             WHERE NOT EXISTS (SELECT 1 FROM segments \
                               WHERE session_id = $1 AND track = $2 \
                               AND (segment_index >= $3 OR last_seq >= $5))",
        )
        .bind(uuid_text(seg.session_id))
        .bind(seg.track.as_str())
        .bind(index)
        .bind(seg.location.as_str())
        .bind(first_seq)
        .bind(last_seq)
        .bind(seg.first_ts)
        .bind(seg.last_ts)
        .bind(bytes)
        .bind(to_micros(seg.sealed_at))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1));
        let exists = || DbError::SegmentExists {
            session_id: seg.session_id,
            track: seg.track,
            index: seg.index,
        };
        let inserted = inserted.map_err(|e| {
            if constraint_violation(&e) == Some(sqlx::error::ErrorKind::UniqueViolation) {
                exists()
            } else {
                session_reference_error(self, seg.session_id, "recording a segment")(e)
            }
        })?;
        if inserted {
            return Ok(());
        }
        let recorded = self.segments(seg.session_id, Some(seg.track)).await?;
        if recorded.iter().any(|other| other.index == seg.index) {
            return Err(exists());
        }
        Err(DbError::SegmentOutOfOrder {
            session_id: seg.session_id,
            track: seg.track,
            index: seg.index,
            last_seq: recorded.iter().map(|s| s.last_seq).max().unwrap_or(0),
        })
    }

    /// A session's segments, of one track or of all, by track and then index.
    pub async fn segments(
        &self,
        session_id: Uuid,
        track: Option<MediaTrack>,
    ) -> Result<Vec<SegmentRecord>> {
        let rows: Vec<SegmentRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", segment_columns!(), " FROM segments \
             WHERE session_id = $1 AND ($2 IS NULL OR track = $2) \
             ORDER BY track, segment_index"
        ))
        .bind(uuid_text(session_id))
        .bind(track.map(MediaTrack::as_str))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing segments"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// The highest seq of the track that is durable (in a recorded segment), or `None` if
    /// nothing is: what the server acknowledges to a resuming agent after a restart.
    pub async fn last_seq(&self, session_id: Uuid, track: MediaTrack) -> Result<Option<u64>> {
        let (max,): (Option<i64>,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT MAX(last_seq) FROM segments WHERE session_id = $1 AND track = $2",
        )
        .bind(uuid_text(session_id))
        .bind(track.as_str())
        .fetch_one(pool)
        .await)
        .map_err(self.query_error("reading a track's last durable seq"))?;
        max.map(|seq| read_u64("segment last seq", seq)).transpose()
    }
}
