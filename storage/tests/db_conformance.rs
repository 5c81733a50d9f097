//! The metadata database's conformance suite: each behaviour is written once and run against
//! SQLite (a file in a temporary directory) and PostgreSQL (a fresh schema), plus the checks
//! that only make sense for one backend or for none (URL handling).

#[path = "common/pg.rs"]
mod pg;
#[path = "db_conformance/sessions.rs"]
mod sessions;
#[path = "db_conformance/users.rs"]
mod users;

use sessions::*;
use users::*;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use storage::db::{ArchiveRecord, ArchiveState, Backend, DbError, MetadataDb};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

/// An open database plus what it takes to open it again.
struct Fixture {
    db: MetadataDb,
    place: Place,
}

enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(pg::PgSchema),
}

impl Fixture {
    /// A second, independent handle on the same database (runs the migrations again).
    async fn reopen(&self) -> anyhow::Result<MetadataDb> {
        Ok(match &self.place {
            Place::Sqlite(dir) => MetadataDb::open(dir.path(), None).await?,
            Place::Postgres(schema) => {
                MetadataDb::connect_in_schema(&schema.url, &schema.name).await?
            }
        })
    }

    fn expected_backend(&self) -> Backend {
        match self.place {
            Place::Sqlite(_) => Backend::Sqlite,
            Place::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Generates `sqlite::NAME` and `postgres::NAME` tests that run `NAME(fixture)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    let dir = tempfile::tempdir()?;
                    let db = storage::db::MetadataDb::open(dir.path(), None).await?;
                    let fixture = super::Fixture { db, place: super::Place::Sqlite(dir) };
                    super::$name(fixture).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::pg::run(|schema| async move {
                        let db = storage::db::MetadataDb::connect_in_schema(
                            &schema.url,
                            &schema.name,
                        )
                        .await?;
                        let fixture = super::Fixture { db, place: super::Place::Postgres(schema) };
                        super::$name(fixture).await
                    })
                    .await
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_are_idempotent,
    archive_round_trip_and_listing,
    archive_rewrap_moves_it_between_keks,
    archive_shredding_follows_key_destruction,
    archive_needs_its_retention_key_first,
    retention_key_destruction_keeps_evidence,
    failed_seal_cleanup,
    session_lifecycle_and_listing,
    session_transition_race_has_one_winner,
    connection_code_redeems_once_for_its_group,
    connection_code_is_single_use_under_concurrency,
    connection_code_expires,
    connection_code_locks_after_five_failures,
    join_failures_are_counted_per_source,
    consents_are_granted_revoked_and_kept,
    segments_record_durable_progress,
    clock_samples_are_kept_as_they_came,
    cti_recordings_attach_to_sessions,
    cti_uploads_take_parts_in_order_and_complete_once,
    mux_job_enqueue_is_idempotent,
    a_late_cti_recording_expedites_the_queued_job,
    mux_job_claims_are_exclusive,
    mux_job_expired_lease_is_reclaimed,
    mux_job_failure_retry_and_release,
    users_are_unique_by_name_and_keep_their_roles,
    group_address_lists_are_set_and_replaced,
    console_logins_expire_and_log_out,
    users_are_disabled_and_enabled_and_their_logins_ended,
    retention_periods_and_legal_holds,
    recording_grants_expire_and_are_played_once,
);

fn random_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    secret
}

fn archive_record(kek_id: &str, created_at: OffsetDateTime) -> ArchiveRecord {
    let archive_id = Uuid::new_v4();
    ArchiveRecord {
        archive_id,
        key_id: Uuid::new_v4(),
        kek_id: kek_id.into(),
        location: format!("blob:archives/{archive_id}.idvr"),
        payload_len: 1_234_567,
        sealed_len: 1_240_000,
        created_at,
        state: ArchiveState::Sealed,
    }
}

/// Stores a key and then the archive record, the order sealing uses; returns the secret.
async fn seal(db: &MetadataDb, rec: &ArchiveRecord) -> anyhow::Result<[u8; 32]> {
    let secret = random_secret();
    db.insert_retention_key(rec.key_id, rec.archive_id, &secret)
        .await?;
    db.insert_archive(rec).await?;
    Ok(secret)
}

async fn migrations_are_idempotent(f: Fixture) -> anyhow::Result<()> {
    assert_eq!(f.db.backend(), f.expected_backend());
    let rec = archive_record("kek-1", datetime!(2025-03-01 09:30:00.123456 UTC));
    let secret = seal(&f.db, &rec).await?;

    let again = f.reopen().await?;
    let third = f.reopen().await?;
    assert_eq!(again.archive(rec.archive_id).await?, Some(rec.clone()));
    let key = third
        .retention_key(rec.key_id)
        .await?
        .context("key survives reopening")?;
    assert_eq!(key.secret.as_deref(), Some(&secret));
    // The first handle still works alongside the new ones.
    assert_eq!(f.db.archives().await?, vec![rec]);
    again.close().await;
    third.close().await;
    Ok(())
}

async fn archive_round_trip_and_listing(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let newest = archive_record("kek-1", datetime!(2025-06-01 12:00:00.000001 UTC));
    let oldest = ArchiveRecord {
        location: "file:/var/lib/idv/archives/a.idvr".into(),
        // Beyond 4 GiB and 2^32, so no 32-bit column slips through.
        payload_len: 5 << 40,
        sealed_len: (5 << 40) + 4096,
        ..archive_record("kek-1", datetime!(2024-01-31 23:59:59.999999 UTC))
    };
    let middle = archive_record("kek-2", datetime!(2025-01-01 00:00:00 +02:00));
    for rec in [&newest, &oldest, &middle] {
        seal(db, rec).await?;
    }

    assert_eq!(db.archive(oldest.archive_id).await?, Some(oldest.clone()));
    assert_eq!(db.archive(newest.archive_id).await?, Some(newest.clone()));
    let stored_middle = db.archive(middle.archive_id).await?.context("middle")?;
    assert_eq!(stored_middle.created_at, middle.created_at);
    assert_eq!(stored_middle.created_at.offset(), time::UtcOffset::UTC);
    assert_eq!(db.archive(Uuid::new_v4()).await?, None);

    let listed: Vec<Uuid> = db.archives().await?.iter().map(|a| a.archive_id).collect();
    assert_eq!(
        listed,
        [oldest.archive_id, middle.archive_id, newest.archive_id]
    );
    Ok(())
}

async fn archive_rewrap_moves_it_between_keks(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let first = archive_record("kek-old", datetime!(2025-01-01 00:00 UTC));
    let second = archive_record("kek-old", datetime!(2025-01-02 00:00 UTC));
    let other = archive_record("kek-new", datetime!(2025-01-03 00:00 UTC));
    for rec in [&second, &first, &other] {
        seal(db, rec).await?;
    }
    let ids = |recs: Vec<ArchiveRecord>| recs.into_iter().map(|r| r.archive_id).collect::<Vec<_>>();

    assert_eq!(
        ids(db.archives_wrapped_by("kek-old").await?),
        [first.archive_id, second.archive_id]
    );
    db.set_archive_kek(first.archive_id, "kek-new").await?;
    assert_eq!(
        ids(db.archives_wrapped_by("kek-old").await?),
        [second.archive_id]
    );
    assert_eq!(
        ids(db.archives_wrapped_by("kek-new").await?),
        [first.archive_id, other.archive_id]
    );
    let moved = db.archive(first.archive_id).await?.context("first")?;
    assert_eq!(moved.kek_id, "kek-new");
    assert_eq!(moved.state, ArchiveState::Sealed);
    assert!(db.archives_wrapped_by("kek-unknown").await?.is_empty());

    let missing = Uuid::new_v4();
    let error = db.set_archive_kek(missing, "kek-new").await.unwrap_err();
    assert!(
        matches!(error, DbError::ArchiveNotFound { archive_id } if archive_id == missing),
        "{error:?}"
    );
    Ok(())
}

async fn archive_shredding_follows_key_destruction(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let rec = archive_record("kek-1", datetime!(2025-02-02 02:02 UTC));
    let keep = archive_record("kek-1", datetime!(2025-02-03 02:02 UTC));
    seal(db, &rec).await?;
    seal(db, &keep).await?;

    let error = db.mark_archive_shredded(rec.archive_id).await.unwrap_err();
    assert!(
        matches!(error, DbError::RetentionKeyNotDestroyed { key_id, .. } if key_id == rec.key_id),
        "{error:?}"
    );
    assert_eq!(
        db.archive(rec.archive_id).await?.context("rec")?.state,
        ArchiveState::Sealed
    );

    assert!(
        db.destroy_retention_key(rec.key_id, OffsetDateTime::now_utc(), "retention ended")
            .await?
    );
    db.mark_archive_shredded(rec.archive_id).await?;
    db.mark_archive_shredded(rec.archive_id).await?; // a second time changes nothing
    let shredded = db.archive(rec.archive_id).await?.context("rec")?;
    assert_eq!(shredded.state, ArchiveState::Shredded);
    assert_eq!(shredded.kek_id, "kek-1");

    let wrapped: Vec<Uuid> = db
        .archives_wrapped_by("kek-1")
        .await?
        .iter()
        .map(|a| a.archive_id)
        .collect();
    assert_eq!(
        wrapped,
        [keep.archive_id],
        "shredded archives need no rewrap"
    );
    assert_eq!(
        db.archives().await?.len(),
        2,
        "shredded records stay listed"
    );

    let error = db
        .set_archive_kek(rec.archive_id, "kek-2")
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::ArchiveShredded { .. }),
        "{error:?}"
    );
    let error = db.delete_archive(rec.archive_id).await.unwrap_err();
    assert!(
        matches!(error, DbError::ArchiveShredded { .. }),
        "{error:?}"
    );
    assert!(db.archive(rec.archive_id).await?.is_some());
    let error = db.mark_archive_shredded(Uuid::new_v4()).await.unwrap_err();
    assert!(
        matches!(error, DbError::ArchiveNotFound { .. }),
        "{error:?}"
    );
    Ok(())
}

async fn archive_needs_its_retention_key_first(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let rec = archive_record("kek-1", datetime!(2025-04-04 04:04 UTC));
    let error = db.insert_archive(&rec).await.unwrap_err();
    assert!(
        matches!(error, DbError::RetentionKeyMissing { key_id, .. } if key_id == rec.key_id),
        "{error:?}"
    );
    assert!(error.to_string().contains("store the retention key before"));

    // A key stored for another archive does not count.
    let other_archive = Uuid::new_v4();
    db.insert_retention_key(rec.key_id, other_archive, &random_secret())
        .await?;
    let error = db.insert_archive(&rec).await.unwrap_err();
    assert!(
        matches!(error, DbError::RetentionKeyMissing { .. }),
        "{error:?}"
    );
    assert_eq!(db.archive(rec.archive_id).await?, None);

    let proper = archive_record("kek-1", datetime!(2025-04-04 04:05 UTC));
    seal(db, &proper).await?;
    let error = db.insert_archive(&proper).await.unwrap_err();
    assert!(
        matches!(error, DbError::ArchiveExists { archive_id, .. } if archive_id == proper.archive_id),
        "{error:?}"
    );

    let huge = ArchiveRecord {
        payload_len: u64::MAX,
        ..archive_record("kek-1", datetime!(2025-04-04 04:06 UTC))
    };
    db.insert_retention_key(huge.key_id, huge.archive_id, &random_secret())
        .await?;
    let error = db.insert_archive(&huge).await.unwrap_err();
    assert!(
        matches!(
            error,
            DbError::TooLarge {
                value: u64::MAX,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(db.archives().await?, vec![proper]);
    Ok(())
}

async fn retention_key_destruction_keeps_evidence(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let (key_id, archive_id) = (Uuid::new_v4(), Uuid::new_v4());
    let secret = random_secret();
    let before = OffsetDateTime::now_utc() - Duration::from_secs(1);
    db.insert_retention_key(key_id, archive_id, &secret).await?;

    let stored = db.retention_key(key_id).await?.context("stored key")?;
    assert_eq!(stored.key_id, key_id);
    assert_eq!(stored.archive_id, archive_id);
    assert_eq!(stored.secret.as_deref(), Some(&secret));
    assert!(stored.created_at >= before && stored.created_at <= OffsetDateTime::now_utc());
    assert_eq!(
        (stored.destroyed_at, stored.destroy_reason.as_deref()),
        (None, None)
    );
    let debug = format!("{stored:?}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(!debug.contains(&hex::encode(secret)), "{debug}");
    assert!(!debug.contains(&format!("{secret:?}")), "{debug}");

    let error = db
        .insert_retention_key(key_id, Uuid::new_v4(), &random_secret())
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::RetentionKeyExists { .. }),
        "{error:?}"
    );
    let error = db
        .insert_retention_key(Uuid::new_v4(), archive_id, &random_secret())
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::RetentionKeyExists { .. }),
        "{error:?}"
    );

    let error = db
        .destroy_retention_key(key_id, OffsetDateTime::now_utc(), "  ")
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::MissingDestroyReason), "{error:?}");

    let at = datetime!(2031-12-31 23:00:00.654321 UTC);
    let reason = "retention period of 10 years ended (policy KYC-7)";
    assert!(db.destroy_retention_key(key_id, at, reason).await?);
    let destroyed = db.retention_key(key_id).await?.context("destroyed key")?;
    assert!(destroyed.secret.is_none());
    assert_eq!(destroyed.destroyed_at, Some(at));
    assert_eq!(destroyed.destroy_reason.as_deref(), Some(reason));
    assert_eq!(destroyed.created_at, stored.created_at);
    assert!(format!("{destroyed:?}").contains("[destroyed]"));

    let later = datetime!(2032-01-01 00:00 UTC);
    assert!(!db.destroy_retention_key(key_id, later, "again").await?);
    let unchanged = db.retention_key(key_id).await?.context("still there")?;
    assert_eq!(
        unchanged.destroyed_at,
        Some(at),
        "first destruction is kept"
    );
    assert_eq!(unchanged.destroy_reason.as_deref(), Some(reason));
    assert!(
        !db.destroy_retention_key(Uuid::new_v4(), later, "unknown")
            .await?
    );
    assert!(db.retention_key(Uuid::new_v4()).await?.is_none());
    Ok(())
}

async fn failed_seal_cleanup(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let rec = archive_record("kek-1", datetime!(2025-05-05 05:05 UTC));
    seal(db, &rec).await?;

    let error = db.delete_retention_key(rec.key_id).await.unwrap_err();
    assert!(
        matches!(error, DbError::RetentionKeyInUse { key_id } if key_id == rec.key_id),
        "{error:?}"
    );
    assert!(db.retention_key(rec.key_id).await?.is_some());

    db.delete_archive(rec.archive_id).await?;
    assert_eq!(db.archive(rec.archive_id).await?, None);
    db.delete_retention_key(rec.key_id).await?;
    assert!(db.retention_key(rec.key_id).await?.is_none());

    // Cleaning up what is already gone is not an error.
    db.delete_archive(rec.archive_id).await?;
    db.delete_retention_key(rec.key_id).await?;

    // A key stored before a seal that failed early, with no archive record yet.
    let (orphan_key, orphan_archive) = (Uuid::new_v4(), Uuid::new_v4());
    db.insert_retention_key(orphan_key, orphan_archive, &random_secret())
        .await?;
    db.delete_retention_key(orphan_key).await?;
    assert!(db.retention_key(orphan_key).await?.is_none());
    assert!(db.archives().await?.is_empty());
    Ok(())
}

// --- SQLite only -------------------------------------------------------------------------

/// Names of the SQLite files that hold `needle`.
fn sqlite_files_holding(dir: &Path, needle: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut holding = Vec::new();
    for name in ["idv.db", "idv.db-wal", "idv.db-shm", "idv.db-journal"] {
        let bytes = match std::fs::read(dir.join(name)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).context(name),
        };
        if bytes.windows(needle.len()).any(|window| window == needle) {
            holding.push(name.to_string());
        }
    }
    Ok(holding)
}

/// A connection of its own to the SQLite file, as another process would have.
async fn raw_sqlite(dir: &Path) -> anyhow::Result<sqlx::SqlitePool> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("idv.db"))
        .busy_timeout(Duration::from_secs(5));
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?)
}

#[tokio::test]
async fn sqlite_destroyed_key_bytes_leave_the_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = MetadataDb::open(dir.path(), None).await?;
    let mut sealed = Vec::new();
    for day in 1..=28 {
        let created = datetime!(2025-02-01 00:00 UTC) + time::Duration::days(day - 1);
        let rec = archive_record("kek-1", created);
        let secret = seal(&db, &rec).await?;
        sealed.push((rec, secret));
    }
    let (victim, victim_secret) = &sealed[13];
    let (neighbour, neighbour_secret) = &sealed[14];
    // And the key of a seal that failed before its archive was recorded.
    let (orphan_key, orphan_secret) = (Uuid::new_v4(), random_secret());
    db.insert_retention_key(orphan_key, Uuid::new_v4(), &orphan_secret)
        .await?;

    // Move everything into the main file first, so that what is tested below is that the
    // bytes are overwritten in place (secure_delete), not merely left behind in the WAL.
    let raw = raw_sqlite(dir.path()).await?;
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&raw)
        .await?;
    ensure!(busy == 0, "checkpoint was blocked");
    for secret in [victim_secret, &orphan_secret] {
        assert_eq!(
            sqlite_files_holding(dir.path(), secret)?,
            ["idv.db"],
            "a live key must be findable for this test to mean anything"
        );
    }

    let at = OffsetDateTime::now_utc();
    assert!(
        db.destroy_retention_key(victim.key_id, at, "customer erasure request")
            .await?
    );
    let left = sqlite_files_holding(dir.path(), victim_secret)?;
    assert!(left.is_empty(), "destroyed key bytes still in {left:?}");

    // Deleting a whole row leaves its cell in the page's free space: only secure_delete
    // overwrites it.
    db.delete_retention_key(orphan_key).await?;
    let left = sqlite_files_holding(dir.path(), &orphan_secret)?;
    assert!(left.is_empty(), "deleted key bytes still in {left:?}");
    assert_eq!(
        sqlite_files_holding(dir.path(), neighbour_secret)?,
        ["idv.db"]
    );
    let intact = db
        .retention_key(neighbour.key_id)
        .await?
        .context("neighbour")?;
    assert_eq!(intact.secret.as_deref(), Some(neighbour_secret));
    let gone = db
        .retention_key(victim.key_id)
        .await?
        .context("victim row")?;
    assert!(gone.secret.is_none());
    assert_eq!(
        db.archive(victim.archive_id)
            .await?
            .context("victim")?
            .state,
        ArchiveState::Sealed
    );

    raw.close().await;
    db.close().await;
    // Closing checkpoints again; still nothing.
    assert!(sqlite_files_holding(dir.path(), victim_secret)?.is_empty());
    assert!(sqlite_files_holding(dir.path(), &orphan_secret)?.is_empty());
    Ok(())
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_file_is_readable_by_its_owner_only() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("nested/data");
    let db = MetadataDb::open(&data_dir, None).await?;
    seal(&db, &archive_record("kek-1", OffsetDateTime::UNIX_EPOCH)).await?;
    for name in ["idv.db", "idv.db-wal"] {
        let mode = std::fs::metadata(data_dir.join(name))?.permissions().mode();
        assert_eq!(mode & 0o077, 0, "{name} has mode {mode:o}");
    }
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn sqlite_urls_name_the_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let elsewhere = dir.path().join("elsewhere/meta.sqlite");
    let url = format!("sqlite://{}", elsewhere.display());

    let db = MetadataDb::open(&dir.path().join("data"), Some(&url)).await?;
    assert_eq!(db.backend(), Backend::Sqlite);
    let rec = archive_record("kek-1", OffsetDateTime::UNIX_EPOCH);
    seal(&db, &rec).await?;
    db.close().await;
    assert!(elsewhere.is_file());
    assert!(!dir.path().join("data/idv.db").exists());

    let by_url = MetadataDb::connect(&format!("sqlite:{}", elsewhere.display())).await?;
    assert_eq!(by_url.archive(rec.archive_id).await?, Some(rec));
    by_url.close().await;

    // An empty DATABASE_URL means "not set".
    let default = MetadataDb::open(&dir.path().join("data"), Some("")).await?;
    assert!(dir.path().join("data/idv.db").is_file());
    assert!(default.archives().await?.is_empty());
    default.close().await;
    Ok(())
}

#[tokio::test]
async fn sqlite_file_that_is_not_a_database_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("idv.db");
    std::fs::write(&path, vec![b'x'; 8192])?;
    let started = std::time::Instant::now();
    let error = MetadataDb::open(dir.path(), None).await.unwrap_err();
    assert!(matches!(error, DbError::OpenSqlite { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "the message names the file: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once, not after retries"
    );
    assert_eq!(
        std::fs::read(&path)?,
        vec![b'x'; 8192],
        "the file is left alone"
    );
    Ok(())
}

// --- No database needed --------------------------------------------------------------------

#[tokio::test]
async fn unusable_urls_are_refused_without_echoing_secrets() {
    for url in [
        "mysql://idv:s3cret-pw@db.example/idv",
        "sqlite::memory:",
        "sqlite://",
        "sqlite:///tmp/x.db?mode=ro",
        "idv-s3cret-pw",
    ] {
        let error = MetadataDb::connect(url).await.unwrap_err();
        assert!(
            matches!(error, DbError::UnsupportedUrl { .. }),
            "{url}: {error:?}"
        );
        let text = format!("{error} {error:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("postgres://"),
            "the message says what to use: {text}"
        );
    }
    let error = MetadataDb::connect_in_schema("postgres://u@127.0.0.1/db", "x; DROP TABLE y")
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::UnsupportedUrl { .. }), "{error:?}");
    let error = MetadataDb::connect_in_schema("sqlite:///tmp/x.db", "idv")
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::UnsupportedUrl { .. }), "{error:?}");
}

#[tokio::test]
async fn unreachable_postgres_is_named_without_its_password() {
    // Port 1 on loopback refuses at once.
    let error = MetadataDb::open(
        Path::new("/nonexistent"),
        Some("postgresql://idv_app:hunter2-pw@127.0.0.1:1/idv_meta"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DbError::ConnectPostgres { .. }),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(shown.contains("idv_app@127.0.0.1:1/idv_meta"), "{shown}");
    assert!(shown.contains("DATABASE_URL"), "{shown}");
    let mut everything = format!("{error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        everything.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(!everything.contains("hunter2"), "{everything}");
}
