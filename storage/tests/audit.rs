//! The audit log's suite, written once and run against SQLite and PostgreSQL: entries chain by
//! the documented encoding (checked against an independent implementation here), concurrent
//! appends form one chain, and each kind of tampering, done directly on the tables the way
//! someone with database access could, is found and named.

#[path = "common/pg.rs"]
mod pg;

use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, SqlitePool};
use storage::audit::{AuditEntry, AuditEvent, AuditLog, ChainBreak, ChainReport, Outcome};
use storage::db::{DbError, MetadataDb};
use time::OffsetDateTime;

/// The log under test, a raw connection to its tables, and a way to open it again.
struct Fixture {
    log: AuditLog,
    raw: Raw,
    place: Place,
}

enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(pg::PgSchema),
}

/// Evaluates `$body` with `$pool` bound to the raw pool of either backend.
macro_rules! on_raw {
    ($raw:expr, $pool:ident => $body:expr) => {
        match &$raw {
            Raw::Sqlite($pool) => $body,
            Raw::Postgres($pool) => $body,
        }
    };
}

impl Fixture {
    async fn sqlite(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let db = MetadataDb::open(dir.path(), None).await?;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("idv.db"))
            .busy_timeout(Duration::from_secs(5));
        let raw = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(Fixture {
            log: AuditLog::new(db),
            raw: Raw::Sqlite(raw),
            place: Place::Sqlite(dir),
        })
    }

    async fn postgres(schema: pg::PgSchema) -> anyhow::Result<Self> {
        let db = MetadataDb::connect_in_schema(&schema.url, &schema.name).await?;
        let raw = schema.raw_pool().await?;
        Ok(Fixture {
            log: AuditLog::new(db),
            raw: Raw::Postgres(raw),
            place: Place::Postgres(schema),
        })
    }

    /// Another handle with its own connections, as a second idv process would have.
    async fn second_process(&self) -> anyhow::Result<MetadataDb> {
        Ok(match &self.place {
            Place::Sqlite(dir) => MetadataDb::open(dir.path(), None).await?,
            Place::Postgres(schema) => {
                MetadataDb::connect_in_schema(&schema.url, &schema.name).await?
            }
        })
    }

    /// Runs SQL (possibly several statements) directly on the tables.
    async fn exec(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        on_raw!(self.raw, pool => sqlx::raw_sql(sql).execute(pool).await.map(|r| r.rows_affected()))
    }

    /// Drops the triggers that refuse changes, as an attacker with database access could.
    async fn allow_tampering(&self) -> anyhow::Result<()> {
        match self.raw {
            Raw::Sqlite(_) => {
                self.exec(
                    "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
                     DROP TRIGGER audit_head_no_delete; DROP TRIGGER audit_head_advances_by_one;",
                )
                .await?
            }
            Raw::Postgres(_) => {
                self.exec(
                    "DROP TRIGGER audit_log_append_only ON audit_log; \
                     DROP TRIGGER audit_head_advances_by_one ON audit_head;",
                )
                .await?
            }
        };
        Ok(())
    }

    async fn set_hash(&self, seq: i64, hash: &[u8]) -> anyhow::Result<()> {
        let changed = on_raw!(self.raw, pool => sqlx::query(
            "UPDATE audit_log SET hash = $1 WHERE seq = $2",
        )
        .bind(hash)
        .bind(seq)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        anyhow::ensure!(changed == 1, "no entry {seq}");
        Ok(())
    }

    /// Rewrites an entry's actor and, if `rehash`, its hash to match, as a careful forger would.
    async fn rewrite_actor(
        &self,
        entry: &AuditEntry,
        actor: &str,
        rehash: bool,
    ) -> anyhow::Result<()> {
        let forged = AuditEntry {
            actor: actor.into(),
            ..entry.clone()
        };
        let hash = if rehash {
            expected_hash(&forged)
        } else {
            entry.hash
        };
        let changed = on_raw!(self.raw, pool => sqlx::query(
            "UPDATE audit_log SET actor = $1, hash = $2 WHERE seq = $3",
        )
        .bind(actor)
        .bind(&hash[..])
        .bind(entry.seq)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        anyhow::ensure!(changed == 1, "no entry {}", entry.seq);
        Ok(())
    }

    async fn delete(&self, seqs: &[i64]) -> anyhow::Result<()> {
        for &seq in seqs {
            let deleted = on_raw!(self.raw, pool => sqlx::query("DELETE FROM audit_log WHERE seq = $1")
                .bind(seq)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
            anyhow::ensure!(deleted == 1, "no entry {seq}");
        }
        Ok(())
    }

    /// Exchanges the positions of two entries (everything else about them stays).
    async fn swap(&self, a: i64, b: i64) -> anyhow::Result<()> {
        const PARKED: i64 = 1_000_000_000;
        for (from, to) in [(a, PARKED), (b, a), (PARKED, b)] {
            let moved = on_raw!(self.raw, pool => sqlx::query("UPDATE audit_log SET seq = $1 WHERE seq = $2")
                .bind(to)
                .bind(from)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
            anyhow::ensure!(moved == 1, "no entry {from}");
        }
        Ok(())
    }

    /// Inserts a well-formed entry straight into the table, bypassing the head.
    async fn insert_raw(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        on_raw!(self.raw, pool => sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, object, reason, outcome, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(entry.seq)
        .bind(micros(entry.at))
        .bind(entry.actor.as_str())
        .bind(entry.action.as_str())
        .bind(entry.object.as_str())
        .bind(entry.reason.as_deref())
        .bind(entry.outcome.as_str())
        .bind(&entry.prev_hash[..])
        .bind(&entry.hash[..])
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}

/// Generates `sqlite::NAME` and `postgres::NAME` tests that run `NAME(fixture)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    let fixture = super::Fixture::sqlite(tempfile::tempdir()?).await?;
                    super::$name(fixture).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::pg::run(|schema| async move {
                        super::$name(super::Fixture::postgres(schema).await?).await
                    })
                    .await
                }
            )*
        }
    };
}

on_both_backends!(
    empty_log_is_intact,
    appends_chain_by_the_documented_encoding,
    database_refuses_changes_to_the_log,
    edited_field_is_named,
    edited_hash_is_named,
    removed_entry_is_named,
    removed_run_of_entries_is_counted,
    removed_newest_entries_are_named,
    swapped_entries_are_reordered,
    swapped_neighbours_are_reordered,
    rehashed_entry_unlinks_its_successor,
    replaced_newest_entry_mismatches_the_head,
    entry_written_beyond_the_head_is_named,
    missing_head_is_reported,
    concurrent_appends_form_one_chain,
    verification_pages_through_long_logs,
    invalid_events_are_refused,
);

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).expect("in range")
}

/// The documented encoding (storage::audit's module docs), implemented independently.
fn expected_hash(entry: &AuditEntry) -> [u8; 32] {
    let mut message = Vec::new();
    let mut field = |bytes: &[u8]| {
        message.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        message.extend_from_slice(bytes);
    };
    field(b"idv-audit-v1");
    field(&entry.prev_hash);
    field(&entry.seq.to_be_bytes());
    field(&micros(entry.at).to_be_bytes());
    field(entry.actor.as_bytes());
    field(entry.action.as_bytes());
    field(entry.object.as_bytes());
    match &entry.reason {
        None => field(&[0]),
        Some(reason) => field(&[&[1], reason.as_bytes()].concat()),
    }
    field(entry.outcome.as_str().as_bytes());
    Sha256::digest(&message).into()
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        actor: format!("operator:op{}", i % 3),
        action: ["recording.play", "recording.export", "session.create"][i % 3].into(),
        object: format!("archive:{i:04}"),
        reason: (!i.is_multiple_of(4)).then(|| format!("KYC review #{i} — Prüfung")),
        outcome: [Outcome::Success, Outcome::Denied, Outcome::Failed][i % 3],
    }
}

async fn fill(f: &Fixture, n: usize) -> anyhow::Result<Vec<AuditEntry>> {
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        entries.push(f.log.append(event(i)).await?);
    }
    Ok(entries)
}

fn broken_at(report: ChainReport) -> anyhow::Result<ChainBreak> {
    match report {
        ChainReport::Broken { seq, problem } => {
            assert_eq!(seq, problem.seq());
            Ok(problem)
        }
        intact => anyhow::bail!("tampering went unnoticed: {intact}"),
    }
}

async fn empty_log_is_intact(f: Fixture) -> anyhow::Result<()> {
    assert_eq!(
        f.log.verify().await?,
        ChainReport::Intact {
            entries: 0,
            head: [0; 32]
        }
    );
    assert!(f.log.entries(0, 10).await?.is_empty());
    Ok(())
}

async fn appends_chain_by_the_documented_encoding(f: Fixture) -> anyhow::Result<()> {
    let before = OffsetDateTime::now_utc() - Duration::from_secs(1);
    let appended = fill(&f, 7).await?;
    let after = OffsetDateTime::now_utc() + Duration::from_secs(1);

    let mut prev = [0u8; 32];
    for (i, entry) in appended.iter().enumerate() {
        let wanted = event(i);
        assert_eq!(entry.seq, i as i64 + 1);
        assert_eq!(
            entry.prev_hash, prev,
            "entry {} links to its predecessor",
            entry.seq
        );
        assert_eq!(entry.hash, expected_hash(entry), "entry {} hash", entry.seq);
        assert_eq!(entry.computed_hash(), entry.hash);
        assert!(entry.at >= before && entry.at <= after);
        assert_eq!(
            entry.at.nanosecond() % 1_000,
            0,
            "times are kept to the microsecond"
        );
        assert_eq!(
            (
                &entry.actor,
                &entry.action,
                &entry.object,
                &entry.reason,
                entry.outcome
            ),
            (
                &wanted.actor,
                &wanted.action,
                &wanted.object,
                &wanted.reason,
                wanted.outcome
            )
        );
        prev = entry.hash;
    }

    assert_eq!(f.log.entries(0, 100).await?, appended);
    let page: Vec<i64> = f.log.entries(2, 3).await?.iter().map(|e| e.seq).collect();
    assert_eq!(page, [3, 4, 5]);
    assert!(f.log.entries(7, 10).await?.is_empty());
    assert!(
        f.log.entries(0, -1).await?.is_empty(),
        "a negative limit yields none"
    );

    let report = f.log.verify().await?;
    assert_eq!(
        report,
        ChainReport::Intact {
            entries: 7,
            head: prev
        }
    );
    assert!(report.to_string().contains(&hex::encode(prev)));
    Ok(())
}

async fn database_refuses_changes_to_the_log(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 3).await?;
    for sql in [
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM audit_head",
        "UPDATE audit_head SET seq = 1",
    ] {
        let error = f.exec(sql).await.expect_err(sql);
        let message = error.to_string();
        assert!(
            message.contains("append-only") || message.contains("audit_head"),
            "{sql}: {message}"
        );
    }
    assert!(matches!(
        f.log.verify().await?,
        ChainReport::Intact { entries: 3, .. }
    ));
    Ok(())
}

async fn edited_field_is_named(f: Fixture) -> anyhow::Result<()> {
    let entries = fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.rewrite_actor(&entries[3], "operator:mallory", false)
        .await?;
    let problem = broken_at(f.log.verify().await?)?;
    assert_eq!(problem, ChainBreak::Edited { seq: 4 });
    assert_eq!(
        problem.to_string(),
        "entry 4 was edited: its stored hash does not match its contents"
    );
    Ok(())
}

async fn edited_hash_is_named(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.set_hash(7, &[0xab; 32]).await?;
    assert_eq!(
        broken_at(f.log.verify().await?)?,
        ChainBreak::Edited { seq: 7 }
    );
    Ok(())
}

async fn removed_entry_is_named(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.delete(&[5]).await?;
    let problem = broken_at(f.log.verify().await?)?;
    assert_eq!(problem, ChainBreak::Removed { seq: 5, count: 1 });
    assert!(
        problem.to_string().starts_with("entry 5 was removed"),
        "{problem}"
    );
    Ok(())
}

async fn removed_run_of_entries_is_counted(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.delete(&[5, 6, 7]).await?;
    let problem = broken_at(f.log.verify().await?)?;
    assert_eq!(problem, ChainBreak::Removed { seq: 5, count: 3 });
    assert!(
        problem
            .to_string()
            .starts_with("entries 5 to 7 were removed"),
        "{problem}"
    );
    Ok(())
}

async fn removed_newest_entries_are_named(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.delete(&[10, 9]).await?;
    let problem = broken_at(f.log.verify().await?)?;
    assert_eq!(
        problem,
        ChainBreak::TailRemoved {
            seq: 9,
            head_seq: 10
        }
    );
    assert!(
        problem
            .to_string()
            .starts_with("entries 9 to 10 were removed from the end")
    );
    Ok(())
}

async fn swapped_entries_are_reordered(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.swap(3, 8).await?;
    let problem = broken_at(f.log.verify().await?)?;
    assert_eq!(
        problem,
        ChainBreak::Reordered {
            seq: 3,
            found_at: 8
        }
    );
    assert!(
        problem
            .to_string()
            .contains("entry 3 is stored at position 8"),
        "{problem}"
    );
    Ok(())
}

async fn swapped_neighbours_are_reordered(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.swap(5, 6).await?;
    assert_eq!(
        broken_at(f.log.verify().await?)?,
        ChainBreak::Reordered {
            seq: 5,
            found_at: 6
        }
    );
    Ok(())
}

async fn rehashed_entry_unlinks_its_successor(f: Fixture) -> anyhow::Result<()> {
    let entries = fill(&f, 10).await?;
    f.allow_tampering().await?;
    // A forger who recomputes the edited entry's hash still breaks the next entry's link.
    f.rewrite_actor(&entries[4], "operator:mallory", true)
        .await?;
    let problem = broken_at(f.log.verify().await?)?;
    assert_eq!(problem, ChainBreak::Unlinked { seq: 6 });
    assert!(
        problem
            .to_string()
            .starts_with("entry 6 does not chain to entry 5")
    );
    Ok(())
}

async fn replaced_newest_entry_mismatches_the_head(f: Fixture) -> anyhow::Result<()> {
    let entries = fill(&f, 10).await?;
    f.allow_tampering().await?;
    f.rewrite_actor(&entries[9], "operator:mallory", true)
        .await?;
    assert_eq!(
        broken_at(f.log.verify().await?)?,
        ChainBreak::HeadMismatch { seq: 10 }
    );
    Ok(())
}

async fn entry_written_beyond_the_head_is_named(f: Fixture) -> anyhow::Result<()> {
    let entries = fill(&f, 10).await?;
    let mut forged = AuditEntry {
        seq: 11,
        prev_hash: entries[9].hash,
        actor: "operator:mallory".into(),
        ..entries[9].clone()
    };
    forged.hash = expected_hash(&forged);
    f.insert_raw(&forged).await?;
    let problem = broken_at(f.log.verify().await?)?;
    assert_eq!(
        problem,
        ChainBreak::BeyondHead {
            seq: 11,
            head_seq: 10
        }
    );

    let error = f.log.append(event(0)).await.unwrap_err();
    assert!(
        matches!(error, DbError::AuditSeqTaken { seq: 11 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("idv audit verify"));
    Ok(())
}

async fn missing_head_is_reported(f: Fixture) -> anyhow::Result<()> {
    fill(&f, 4).await?;
    f.allow_tampering().await?;
    f.exec("DELETE FROM audit_head").await?;
    assert_eq!(
        broken_at(f.log.verify().await?)?,
        ChainBreak::HeadMissing { seq: 5 }
    );
    let error = f.log.append(event(0)).await.unwrap_err();
    assert!(matches!(error, DbError::AuditHeadMissing), "{error:?}");
    Ok(())
}

async fn concurrent_appends_form_one_chain(f: Fixture) -> anyhow::Result<()> {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let other = AuditLog::new(f.second_process().await?);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        // Half the writers use a second pool, as a second idv process would.
        let log = if task % 2 == 0 {
            f.log.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let entry = log
                    .append(AuditEvent {
                        actor: format!("operator:task{task}"),
                        ..event(task * EACH + i)
                    })
                    .await?;
                seqs.push(entry.seq);
            }
            Ok::<_, DbError>(seqs)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let seqs = joined.context("append task panicked")??;
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's appends stay in order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = (TASKS * EACH) as i64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "200 contiguous seqs, none twice"
    );

    let stored = f.log.entries(0, 1_000).await?;
    assert_eq!(stored.len(), TASKS * EACH);
    for pair in stored.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "entry {}", pair[1].seq);
    }
    assert_eq!(
        f.log.verify().await?,
        ChainReport::Intact {
            entries: total as u64,
            head: stored[stored.len() - 1].hash
        }
    );
    Ok(())
}

async fn verification_pages_through_long_logs(f: Fixture) -> anyhow::Result<()> {
    // More entries than one verification page (256), appended by a few writers.
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..4 {
        let log = f.log.clone();
        tasks.spawn(async move {
            for i in 0..150 {
                log.append(event(task * 150 + i)).await?;
            }
            Ok::<_, DbError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("append task panicked")??;
    }
    assert!(matches!(
        f.log.verify().await?,
        ChainReport::Intact { entries: 600, .. }
    ));
    let late = f.log.entries(579, 1).await?;
    f.allow_tampering().await?;
    f.rewrite_actor(&late[0], "operator:mallory", false).await?;
    assert_eq!(
        broken_at(f.log.verify().await?)?,
        ChainBreak::Edited { seq: 580 }
    );
    Ok(())
}

async fn invalid_events_are_refused(f: Fixture) -> anyhow::Result<()> {
    let cases = [
        (
            AuditEvent {
                actor: " ".into(),
                ..event(1)
            },
            "actor",
        ),
        (
            AuditEvent {
                object: String::new(),
                ..event(1)
            },
            "object",
        ),
        (
            AuditEvent {
                reason: Some("a\0b".into()),
                ..event(1)
            },
            "reason",
        ),
        (
            AuditEvent {
                action: "x\0".into(),
                ..event(1)
            },
            "action",
        ),
    ];
    for (bad, named) in cases {
        let error = f.log.append(bad).await.unwrap_err();
        assert!(
            matches!(error, DbError::InvalidAuditEvent { field, .. } if field == named),
            "{error:?}"
        );
    }
    assert_eq!(
        f.log.verify().await?,
        ChainReport::Intact {
            entries: 0,
            head: [0; 32]
        }
    );
    Ok(())
}
