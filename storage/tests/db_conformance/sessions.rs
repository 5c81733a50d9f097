//! The ingest server's tables: sessions, connection codes and join attempts, consents,
//! segments, clock-sync samples, CTI recordings (and uploads in parts) and mux jobs. Each test runs on both backends
//! (see `on_both_backends!` in the parent).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use storage::db::{
    ClockSample, CodeState, ConsentScope, CtiPart, CtiRecording, CtiUpload, DbError,
    MAX_CODE_FAILURES, MediaTrack, MetadataDb, MuxJobState, NewConnectionCode, NewSession,
    PartRecorded, SegmentRecord, SessionFilter, SessionRecord, SessionState,
};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use super::Fixture;

const T0: OffsetDateTime = datetime!(2025-06-02 09:00:00.250000 UTC);

fn minutes(n: i64) -> time::Duration {
    time::Duration::minutes(n)
}

fn new_session(group: &str) -> NewSession {
    NewSession {
        case_reference: None,
        session_id: Uuid::new_v4(),
        group: group.into(),
        created_by: "operator-17".into(),
        created_at: T0,
        wrapped_media_key: Uuid::new_v4().as_bytes().repeat(3),
    }
}

async fn session_in(db: &MetadataDb, group: &str) -> anyhow::Result<SessionRecord> {
    Ok(db.create_session(&new_session(group)).await?)
}

/// The keyed hash the ingest server would compute: HMAC-SHA256(server secret, group ‖ code).
fn code_hash(group: &str, code: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"test server secret").unwrap();
    mac.update(group.as_bytes());
    mac.update(&[0]);
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A code for `session`, issued at T0, valid for 10 minutes.
fn code_for(session: &SessionRecord, code: &str) -> NewConnectionCode {
    NewConnectionCode {
        code_hash: code_hash(&session.group, code),
        session_id: session.session_id,
        group: session.group.clone(),
        created_at: T0,
        expires_at: T0 + minutes(10),
    }
}

// --- Sessions ----------------------------------------------------------------------------

pub(crate) async fn session_lifecycle_and_listing(f: Fixture) -> anyhow::Result<()> {
    use SessionState::*;
    let db = &f.db;
    let new = NewSession {
        case_reference: Some("KYC-2026-0042 / Müller".into()),
        ..new_session("branch-berlin")
    };
    let created = db.create_session(&new).await?;
    assert_eq!(created.state, Created);
    assert_eq!(
        created.case_reference.as_deref(),
        Some("KYC-2026-0042 / Müller")
    );
    assert_eq!(created.state_changed_at, T0);
    assert_eq!(
        created.wrapped_media_key.as_deref(),
        Some(&new.wrapped_media_key[..])
    );
    assert_eq!(db.session(new.session_id).await?, Some(created.clone()));
    let debug = format!("{created:?}{new:?}");
    assert!(
        !debug.contains(&format!("{:?}", new.wrapped_media_key)),
        "{debug}"
    );
    assert!(debug.contains("[redacted, 48 bytes]"), "{debug}");

    let error = db.create_session(&new).await.unwrap_err();
    assert!(
        matches!(error, DbError::SessionExists { session_id } if session_id == new.session_id),
        "{error:?}"
    );
    let error = db
        .create_session(&NewSession {
            case_reference: None,
            group: " ".into(),
            ..new_session("x")
        })
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::EmptyField { .. }), "{error:?}");
    assert!(db.session(Uuid::new_v4()).await?.is_none());

    // Forward, one step at a time, each time stamped.
    let id = new.session_id;
    let steps = [
        (Created, Joined, 1),
        (Joined, Consented, 2),
        (Consented, Live, 3),
    ];
    for (from, to, minute) in steps {
        // Skipping a step is not an edge of the machine.
        if to != Joined {
            let error = db
                .transition_session(id, &[Created], to, T0, None)
                .await
                .unwrap_err();
            assert!(
                matches!(error, DbError::IllegalSessionTransition { .. }),
                "{error:?}"
            );
        }
        assert!(
            db.transition_session(id, &[from], to, T0 + minutes(minute), Some("ignored"))
                .await?
        );
        let now = db.session(id).await?.context("session")?;
        assert_eq!(
            (now.state, now.state_changed_at),
            (to, T0 + minutes(minute))
        );
        assert_eq!((now.ended_at, now.end_reason.as_deref()), (None, None));
        // Repeating it finds the session in the new state: nothing happens.
        assert!(
            !db.transition_session(id, &[from], to, T0 + minutes(9), None)
                .await?
        );
    }
    let error = db
        .transition_session(id, &[Live], Created, T0, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DbError::IllegalSessionTransition {
                from: Live,
                to: Created
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("live to created"), "{error}");

    // Ending is allowed from any of the listed states; only the current one matters.
    let end = T0 + minutes(20);
    assert!(
        db.transition_session(
            id,
            &[Created, Joined, Consented, Live],
            Ended,
            end,
            Some("operator")
        )
        .await?
    );
    let ended = db.session(id).await?.context("ended")?;
    assert_eq!(
        (ended.state, ended.ended_at, ended.end_reason.as_deref()),
        (Ended, Some(end), Some("operator"))
    );
    assert!(
        !db.transition_session(
            id,
            &[Created, Joined, Consented, Live],
            Ended,
            end + minutes(1),
            Some("again")
        )
        .await?
    );
    let error = db
        .transition_session(id, &[Ended], Ended, end, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::IllegalSessionTransition { .. }),
        "{error:?}"
    );
    assert!(
        !db.transition_session(Uuid::new_v4(), &[Created], Joined, T0, None)
            .await?
    );

    // Listing by state and group.
    let other = session_in(db, "branch-berlin").await?;
    let elsewhere = session_in(db, "branch-hamburg").await?;
    let ids = |list: Vec<SessionRecord>| {
        list.into_iter()
            .map(|s| s.session_id)
            .collect::<HashSet<_>>()
    };
    assert_eq!(
        ids(db.sessions(&SessionFilter::default()).await?),
        HashSet::from([id, other.session_id, elsewhere.session_id])
    );
    let berlin = SessionFilter {
        group: Some("branch-berlin".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(db.sessions(&berlin).await?),
        HashSet::from([id, other.session_id])
    );
    let berlin_open = SessionFilter {
        state: Some(Created),
        ..berlin
    };
    assert_eq!(
        ids(db.sessions(&berlin_open).await?),
        HashSet::from([other.session_id])
    );
    let ended_only = SessionFilter {
        state: Some(Ended),
        group: None,
    };
    assert_eq!(db.sessions(&ended_only).await?, vec![ended.clone()]);

    // Forgetting the media key, once.
    assert!(db.forget_session_media_key(id).await?);
    assert!(!db.forget_session_media_key(id).await?);
    let forgotten = db.session(id).await?.context("session")?;
    assert_eq!(forgotten.wrapped_media_key, None);
    assert!(format!("{forgotten:?}").contains("[forgotten]"));
    assert_eq!(
        db.session(other.session_id)
            .await?
            .context("other")?
            .wrapped_media_key
            .as_deref()
            .map(<[u8]>::len),
        Some(48)
    );
    Ok(())
}

pub(crate) async fn session_transition_race_has_one_winner(f: Fixture) -> anyhow::Result<()> {
    for _ in 0..5 {
        let session = session_in(&f.db, "g").await?;
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let db = f.db.clone();
                tokio::spawn(async move {
                    db.transition_session(
                        session.session_id,
                        &[SessionState::Created],
                        SessionState::Joined,
                        T0 + minutes(i),
                        None,
                    )
                    .await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await??);
        }
        assert_eq!(wins, 1, "exactly one of the racing transitions happens");
    }
    Ok(())
}

// --- Connection codes ----------------------------------------------------------------------

pub(crate) async fn connection_code_redeems_once_for_its_group(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "group-a").await?;
    let code = code_for(&session, "493817");
    let code_id = db.insert_connection_code(&code).await?;
    assert!(!format!("{code:?}").contains(&format!("{:?}", code.code_hash)));

    // Group binding: the same digits from group B hash differently, and even the right hash
    // with the wrong group does not redeem.
    let now = T0 + minutes(1);
    assert_eq!(
        db.redeem_connection_code(&code_hash("group-b", "493817"), "group-b", now)
            .await?,
        None
    );
    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-b", now)
            .await?,
        None
    );
    assert_eq!(
        db.redeem_connection_code(&code_hash("group-a", "493818"), "group-a", now)
            .await?,
        None
    );
    // A session-bound link naming another session does not redeem it either.
    let other = session_in(db, "group-a").await?;
    assert_eq!(
        db.redeem_session_code(other.session_id, &code.code_hash, "group-a", now)
            .await?,
        None
    );

    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-a", now)
            .await?,
        Some(session.session_id)
    );
    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-a", now)
            .await?,
        None,
        "single use"
    );
    let stored = db.connection_codes(session.session_id).await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].code_id, stored[0].state, stored[0].used_at),
        (code_id, CodeState::Used, Some(now))
    );
    assert_eq!(stored[0].code_hash, code.code_hash);
    assert!(format!("{:?}", stored[0]).contains("[redacted]"));

    // A session-bound link redeems its own session's code.
    let bound = code_for(&other, "000042");
    db.insert_connection_code(&bound).await?;
    assert_eq!(
        db.redeem_session_code(other.session_id, &bound.code_hash, "group-a", now)
            .await?,
        Some(other.session_id)
    );

    // Unknown sessions and bad hashes are refused.
    let error = db
        .insert_connection_code(&NewConnectionCode {
            session_id: Uuid::new_v4(),
            ..code_for(&session, "111111")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );
    let error = db
        .insert_connection_code(&NewConnectionCode {
            code_hash: b"123456".to_vec(),
            ..code_for(&session, "123456")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::InvalidCodeHash { len: 6 }),
        "{error:?}"
    );
    Ok(())
}

pub(crate) async fn connection_code_is_single_use_under_concurrency(
    f: Fixture,
) -> anyhow::Result<()> {
    for round in 0..5 {
        let session = session_in(&f.db, "group-a").await?;
        let code = code_for(&session, &format!("70000{round}"));
        f.db.insert_connection_code(&code).await?;
        let hash = Arc::new(code.code_hash);
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (db, hash) = (f.db.clone(), Arc::clone(&hash));
                tokio::spawn(async move {
                    db.redeem_connection_code(&hash, "group-a", T0 + minutes(2))
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await??);
        }
        assert_eq!(
            winners,
            [session.session_id],
            "round {round}: exactly one redemption wins"
        );
    }
    Ok(())
}

pub(crate) async fn connection_code_expires(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "group-a").await?;
    let code = code_for(&session, "246810");
    db.insert_connection_code(&code).await?;

    // While it is open, its hash cannot be issued again.
    let twin = session_in(db, "group-a").await?;
    let again = NewConnectionCode {
        session_id: twin.session_id,
        created_at: T0 + minutes(5),
        expires_at: T0 + minutes(15),
        ..code.clone()
    };
    let error = db.insert_connection_code(&again).await.unwrap_err();
    assert!(matches!(error, DbError::ConnectionCodeInUse), "{error:?}");

    // Redeemable until just before expires_at, not at it.
    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-a", code.expires_at)
            .await?,
        None
    );
    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-a", code.expires_at + minutes(30))
            .await?,
        None
    );

    // Once expired, the same code may be issued to another session, which it then opens.
    let later = NewConnectionCode {
        created_at: T0 + minutes(11),
        expires_at: T0 + minutes(21),
        ..again
    };
    db.insert_connection_code(&later).await?;
    assert_eq!(
        db.connection_codes(session.session_id).await?[0].state,
        CodeState::Expired
    );
    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-a", T0 + minutes(12))
            .await?,
        Some(twin.session_id)
    );

    // The housekeeping sweep marks what is past expiry and nothing else.
    let third = session_in(db, "group-a").await?;
    db.insert_connection_code(&code_for(&third, "135790"))
        .await?;
    assert_eq!(db.expire_connection_codes(T0 + minutes(5)).await?, 0);
    assert_eq!(db.expire_connection_codes(T0 + minutes(10)).await?, 1);
    assert_eq!(
        db.connection_codes(third.session_id).await?[0].state,
        CodeState::Expired
    );

    // A still-valid code of a session the operator already ended opens nothing.
    let ended = session_in(db, "group-a").await?;
    let code = code_for(&ended, "864209");
    db.insert_connection_code(&code).await?;
    assert!(
        db.transition_session(
            ended.session_id,
            &[SessionState::Created],
            SessionState::Ended,
            T0,
            Some("operator")
        )
        .await?
    );
    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-a", T0 + minutes(1))
            .await?,
        None
    );
    Ok(())
}

pub(crate) async fn connection_code_locks_after_five_failures(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "group-a").await?;
    let code = code_for(&session, "314159");
    db.insert_connection_code(&code).await?;
    let now = T0 + minutes(1);
    for attempt in 1..MAX_CODE_FAILURES {
        assert_eq!(
            db.redeem_session_code(
                session.session_id,
                &code_hash("group-a", "000000"),
                "group-a",
                now
            )
            .await?,
            None
        );
        let failure = db
            .record_code_failure(session.session_id, now)
            .await?
            .context("an open code")?;
        assert_eq!((failure.failed_attempts, failure.locked), (attempt, false));
    }
    let fifth = db
        .record_code_failure(session.session_id, now)
        .await?
        .context("an open code")?;
    assert_eq!(
        (fifth.failed_attempts, fifth.locked),
        (MAX_CODE_FAILURES, true)
    );
    // Locked: even the right code no longer opens the session, and nothing is left to count.
    assert_eq!(
        db.redeem_session_code(session.session_id, &code.code_hash, "group-a", now)
            .await?,
        None
    );
    assert_eq!(
        db.redeem_connection_code(&code.code_hash, "group-a", now)
            .await?,
        None
    );
    assert_eq!(db.record_code_failure(session.session_id, now).await?, None);
    let stored = &db.connection_codes(session.session_id).await?[0];
    assert_eq!(
        (stored.state, stored.failed_attempts, stored.locked_at),
        (CodeState::Locked, MAX_CODE_FAILURES, Some(now))
    );

    // The operator issues a new code, which works; the lock freed the old hash too.
    let fresh = code_for(&session, "271828");
    db.insert_connection_code(&fresh).await?;
    assert_eq!(
        db.redeem_session_code(session.session_id, &fresh.code_hash, "group-a", now)
            .await?,
        Some(session.session_id)
    );

    // Concurrent wrong guesses are all counted: 8 at once against a fresh session lock it
    // at exactly the limit.
    let target = session_in(db, "group-a").await?;
    db.insert_connection_code(&code_for(&target, "999999"))
        .await?;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.record_code_failure(target.session_id, now).await })
        })
        .collect();
    let mut counted = Vec::new();
    for task in tasks {
        counted.extend(task.await??);
    }
    let mut attempts: Vec<u32> = counted.iter().map(|c| c.failed_attempts).collect();
    attempts.sort_unstable();
    assert_eq!(attempts, (1..=MAX_CODE_FAILURES).collect::<Vec<_>>());
    assert_eq!(counted.iter().filter(|c| c.locked).count(), 1);
    assert_eq!(
        db.connection_codes(target.session_id).await?[0].state,
        CodeState::Locked
    );
    Ok(())
}

pub(crate) async fn join_failures_are_counted_per_source(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    for minute in 0..6 {
        db.record_join_attempt("203.0.113.7", T0 + minutes(minute), false)
            .await?;
    }
    db.record_join_attempt("203.0.113.7", T0 + minutes(6), true)
        .await?;
    db.record_join_attempt("198.51.100.2", T0 + minutes(3), false)
        .await?;

    assert_eq!(db.join_failures_since("203.0.113.7", T0).await?, 6);
    assert_eq!(
        db.join_failures_since("203.0.113.7", T0 + minutes(4))
            .await?,
        2,
        "a window counts from its start"
    );
    assert_eq!(db.join_failures_since("198.51.100.2", T0).await?, 1);
    assert_eq!(db.join_failures_since("192.0.2.1", T0).await?, 0);
    let error = db.record_join_attempt("", T0, false).await.unwrap_err();
    assert!(matches!(error, DbError::EmptyField { .. }), "{error:?}");

    assert_eq!(db.prune_join_attempts(T0 + minutes(3)).await?, 3);
    assert_eq!(db.join_failures_since("203.0.113.7", T0).await?, 3);
    assert_eq!(db.join_failures_since("198.51.100.2", T0).await?, 1);
    assert_eq!(db.prune_join_attempts(T0 + minutes(60)).await?, 5);
    assert_eq!(db.join_failures_since("203.0.113.7", T0).await?, 0);
    Ok(())
}

// --- Consents ------------------------------------------------------------------------------

pub(crate) async fn consents_are_granted_revoked_and_kept(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "g").await?;
    let id = session.session_id;
    let device = "idv-agent 0.1 on Android 14 (Pixel 8)";
    for scope in ConsentScope::ALL {
        assert!(!db.has_consent(id, *scope).await?);
    }
    assert!(
        db.grant_consent(id, ConsentScope::Camera, device, T0 + minutes(1))
            .await?
    );
    assert!(
        db.grant_consent(id, ConsentScope::Recording, device, T0 + minutes(1))
            .await?
    );
    assert!(
        !db.grant_consent(id, ConsentScope::Camera, "someone else", T0 + minutes(2))
            .await?,
        "already in force"
    );
    assert!(db.has_consent(id, ConsentScope::Camera).await?);
    assert!(
        !db.has_consent(id, ConsentScope::FileTransfer).await?,
        "each scope needs its own consent"
    );

    assert!(
        db.revoke_consent(id, ConsentScope::Camera, T0 + minutes(5))
            .await?
    );
    assert!(
        !db.revoke_consent(id, ConsentScope::Camera, T0 + minutes(6))
            .await?
    );
    assert!(
        !db.revoke_consent(id, ConsentScope::Screen, T0 + minutes(6))
            .await?
    );
    assert!(!db.has_consent(id, ConsentScope::Camera).await?);
    assert!(
        db.grant_consent(id, ConsentScope::Camera, device, T0 + minutes(7))
            .await?
    );
    assert!(db.has_consent(id, ConsentScope::Camera).await?);

    let history = db.consents(id).await?;
    let summary: Vec<_> = history
        .iter()
        .map(|c| (c.scope, c.granted_at, c.revoked_at))
        .collect();
    let camera_first = (ConsentScope::Camera, T0 + minutes(1), Some(T0 + minutes(5)));
    let recording = (ConsentScope::Recording, T0 + minutes(1), None);
    assert_eq!(summary.len(), 3);
    assert!(
        summary[..2].contains(&camera_first) && summary[..2].contains(&recording),
        "{summary:?}"
    );
    assert_eq!(summary[2], (ConsentScope::Camera, T0 + minutes(7), None));
    assert!(
        history
            .iter()
            .all(|c| c.granted_by == device && c.session_id == id)
    );

    // Consents belong to one session.
    let other = session_in(db, "g").await?;
    assert!(
        !db.has_consent(other.session_id, ConsentScope::Recording)
            .await?
    );
    assert!(db.consents(other.session_id).await?.is_empty());
    let error = db
        .grant_consent(Uuid::new_v4(), ConsentScope::Screen, device, T0)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );
    let error = db
        .grant_consent(id, ConsentScope::Screen, "  ", T0)
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::EmptyField { .. }), "{error:?}");
    for scope in ConsentScope::ALL {
        assert_eq!(ConsentScope::parse(scope.as_str()), Some(*scope));
    }
    Ok(())
}

// --- Segments ------------------------------------------------------------------------------

fn segment(session_id: Uuid, track: MediaTrack, index: u64, seqs: (u64, u64)) -> SegmentRecord {
    SegmentRecord {
        session_id,
        track,
        index,
        location: format!("segments/{session_id}/{track}/{index:06}.seg"),
        first_seq: seqs.0,
        last_seq: seqs.1,
        first_ts: 1_000_000_000 + 33_333_333 * i64::try_from(seqs.0).unwrap(),
        last_ts: 1_000_000_000 + 33_333_333 * i64::try_from(seqs.1).unwrap(),
        bytes: 65_536 * (index + 1),
        sealed_at: T0 + minutes(i64::try_from(index).unwrap()),
    }
}

pub(crate) async fn segments_record_durable_progress(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let id = session_in(db, "g").await?.session_id;
    assert_eq!(db.last_seq(id, MediaTrack::Camera).await?, None);

    let cam0 = segment(id, MediaTrack::Camera, 0, (0, 149));
    let cam1 = segment(id, MediaTrack::Camera, 1, (150, 299));
    // Seqs may skip (frames lost before they were acknowledged are resent, not skipped, but
    // a gap-flagged stretch has no frames).
    let cam2 = segment(id, MediaTrack::Camera, 2, (320, 320));
    let screen0 = segment(id, MediaTrack::Screen, 0, (0, 9));
    for seg in [&cam0, &screen0, &cam1, &cam2] {
        db.insert_segment(seg).await?;
    }
    assert_eq!(db.last_seq(id, MediaTrack::Camera).await?, Some(320));
    assert_eq!(db.last_seq(id, MediaTrack::Screen).await?, Some(9));
    assert_eq!(db.last_seq(id, MediaTrack::MicReference).await?, None);
    assert_eq!(
        db.segments(id, Some(MediaTrack::Camera)).await?,
        vec![cam0.clone(), cam1.clone(), cam2.clone()]
    );
    assert_eq!(
        db.segments(id, None).await?,
        vec![cam0.clone(), cam1, cam2.clone(), screen0]
    );

    // A retry of a recorded segment, and anything that would go back, are refused.
    let error = db.insert_segment(&cam2).await.unwrap_err();
    assert!(
        matches!(error, DbError::SegmentExists { index: 2, .. }),
        "{error:?}"
    );
    let overlapping = segment(id, MediaTrack::Camera, 3, (300, 400));
    let error = db.insert_segment(&overlapping).await.unwrap_err();
    assert!(
        matches!(
            error,
            DbError::SegmentOutOfOrder {
                index: 3,
                last_seq: 320,
                ..
            }
        ),
        "{error:?}"
    );
    let old_index = SegmentRecord {
        index: 1,
        ..segment(id, MediaTrack::Camera, 5, (400, 410))
    };
    let error = db.insert_segment(&old_index).await.unwrap_err();
    assert!(
        matches!(error, DbError::SegmentExists { index: 1, .. }),
        "{error:?}"
    );
    let skipped_ahead = segment(id, MediaTrack::Camera, 9, (400, 410));
    db.insert_segment(&skipped_ahead).await?;
    let error = db
        .insert_segment(&segment(id, MediaTrack::Camera, 4, (500, 510)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SegmentOutOfOrder { .. }),
        "index below the last is refused: {error:?}"
    );

    let reversed = SegmentRecord {
        last_seq: 5,
        ..segment(id, MediaTrack::Screen, 1, (10, 20))
    };
    let error = db.insert_segment(&reversed).await.unwrap_err();
    assert!(
        matches!(error, DbError::SegmentRangeReversed { what: "seq", .. }),
        "{error:?}"
    );
    let huge = segment(id, MediaTrack::Screen, 1, (10, 20));
    let huge = SegmentRecord {
        last_seq: u64::MAX,
        ..huge
    };
    let error = db.insert_segment(&huge).await.unwrap_err();
    assert!(
        matches!(
            error,
            DbError::OutOfRange {
                value: u64::MAX,
                ..
            }
        ),
        "{error:?}"
    );
    let error = db
        .insert_segment(&segment(Uuid::new_v4(), MediaTrack::Camera, 0, (0, 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );

    // A restart: another handle sees the same durable progress.
    let again = f.reopen().await?;
    assert_eq!(again.last_seq(id, MediaTrack::Camera).await?, Some(410));
    Ok(())
}

// --- Clock-sync samples --------------------------------------------------------------------

pub(crate) async fn clock_samples_are_kept_as_they_came(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let id = session_in(db, "g").await?.session_id;
    let other = session_in(db, "g").await?.session_id;
    let utc = 1_748_854_800_000_000_000_i64;
    let sample = |n: i64| ClockSample {
        t1: 5_000_000_000 + n * 1_000_000_000,
        t2: utc + n * 1_000_000_000 + 12_345_678,
        t3: utc + n * 1_000_000_000 + 12_400_000,
        t4: 5_000_000_000 + n * 1_000_000_000 + 25_000_000 - n,
    };
    // Out of numeric order on purpose: arrival order is what is kept.
    let first: Vec<_> = [3, 1, 2].into_iter().map(sample).collect();
    let second: Vec<_> = (4..40).rev().map(sample).collect();
    db.insert_clock_samples(id, &first).await?;
    db.insert_clock_samples(other, &[sample(100)]).await?;
    db.insert_clock_samples(id, &second).await?;
    db.insert_clock_samples(id, &[]).await?;
    let stored = db.clock_samples(id).await?;
    assert_eq!(stored, [first, second].concat());
    assert_eq!(db.clock_samples(other).await?, [sample(100)]);

    let error = db
        .insert_clock_samples(Uuid::new_v4(), &[sample(1), sample(2)])
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );
    let extremes = ClockSample {
        t1: i64::MIN,
        t2: i64::MAX,
        t3: 0,
        t4: -1,
    };
    db.insert_clock_samples(other, &[extremes]).await?;
    assert_eq!(db.clock_samples(other).await?, [sample(100), extremes]);
    Ok(())
}

// --- CTI recordings ------------------------------------------------------------------------

fn cti(call_id: &str, session_id: Option<Uuid>, key: Option<&str>) -> CtiRecording {
    let recording_id = Uuid::new_v4();
    CtiRecording {
        recording_id,
        call_id: call_id.into(),
        session_id,
        correlation_key: key.map(Into::into),
        started_at: T0 + minutes(1),
        ended_at: Some(T0 + minutes(14)),
        location: format!("cti/{recording_id}.idvr"),
        archive_id: Some(Uuid::new_v4()),
        received_at: T0 + minutes(15),
    }
}

pub(crate) async fn cti_recordings_attach_to_sessions(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "g").await?.session_id;
    let other = session_in(db, "g").await?.session_id;

    // Posted with its session id.
    let direct = cti("call-1001", Some(session), None);
    db.insert_cti_recording(&direct).await?;
    assert_eq!(
        db.cti_recording(direct.recording_id).await?,
        Some(direct.clone())
    );
    let error = db
        .insert_cti_recording(&cti("call-1001", Some(session), None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DbError::CtiCallExists { call_id, .. } if call_id == "call-1001"),
        "{error:?}"
    );
    let error = db.insert_cti_recording(&direct).await.unwrap_err();
    assert!(
        matches!(error, DbError::CtiRecordingExists { .. }),
        "{error:?}"
    );

    // Posted with a correlation key only, still in progress; attached later.
    let key = "ext-4711@2025-06-02T09:01";
    let pending = CtiRecording {
        ended_at: None,
        archive_id: None,
        ..cti("call-1002", None, Some(key))
    };
    let unrelated = cti("call-1003", None, Some("ext-0815@2025-06-02T09:01"));
    db.insert_cti_recording(&pending).await?;
    db.insert_cti_recording(&unrelated).await?;
    assert_eq!(
        db.unattached_cti_recordings(key).await?,
        vec![pending.clone()]
    );
    assert_eq!(
        db.cti_recordings_for_session(session).await?,
        vec![direct.clone()]
    );

    assert!(
        db.attach_cti_recording(pending.recording_id, session)
            .await?
    );
    assert!(
        !db.attach_cti_recording(pending.recording_id, other).await?,
        "an attachment is not moved"
    );
    assert!(!db.attach_cti_recording(Uuid::new_v4(), session).await?);
    assert!(db.unattached_cti_recordings(key).await?.is_empty());
    let attached = db.cti_recordings_for_session(session).await?;
    assert_eq!(attached.len(), 2);
    assert!(attached.contains(&direct));
    assert!(attached.contains(&CtiRecording {
        session_id: Some(session),
        ..pending
    }));
    assert!(db.cti_recordings_for_session(other).await?.is_empty());

    // The same call id may appear in another session, not twice in one.
    let twin = cti("call-1001", None, None);
    db.insert_cti_recording(&twin).await?;
    let error = db
        .attach_cti_recording(twin.recording_id, session)
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::CtiCallExists { .. }), "{error:?}");
    assert!(db.attach_cti_recording(twin.recording_id, other).await?);
    let error = db
        .attach_cti_recording(unrelated.recording_id, Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );
    let error = db
        .insert_cti_recording(&cti("call-9", Some(Uuid::new_v4()), None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );
    Ok(())
}

// --- Mux jobs ------------------------------------------------------------------------------

const LEASE: Duration = Duration::from_secs(60);

pub(crate) async fn a_late_cti_recording_expedites_the_queued_job(
    f: Fixture,
) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "g").await?.session_id;
    assert!(!db.expedite_mux_job(session, T0).await?, "no job yet");
    // Ended without CTI audio: video only, after the deadline.
    db.enqueue_mux_job(session, true, T0 + minutes(15)).await?;
    assert_eq!(db.claim_mux_job("w", T0 + minutes(1), LEASE).await?, None);
    // The recording arrives: due now, with audio.
    assert!(db.expedite_mux_job(session, T0 + minutes(2)).await?);
    let claimed = db
        .claim_mux_job("w", T0 + minutes(2), LEASE)
        .await?
        .context("due now")?;
    assert!(!claimed.video_only);
    // A running job is not changed.
    assert!(!db.expedite_mux_job(session, T0 + minutes(3)).await?);
    Ok(())
}

pub(crate) async fn mux_job_enqueue_is_idempotent(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "g").await?.session_id;
    let job = db.enqueue_mux_job(session, false, T0).await?;
    assert_eq!(
        (job.session_id, job.state, job.video_only, job.attempts),
        (session, MuxJobState::Queued, false, 0)
    );
    assert_eq!(
        (job.not_before, job.claimed_by.as_deref(), job.lease_until),
        (T0, None, None)
    );
    let again = db.enqueue_mux_job(session, true, T0 + minutes(30)).await?;
    assert_eq!(again, job, "the first job stands");
    assert_eq!(db.mux_job(job.job_id).await?, Some(job.clone()));
    assert_eq!(db.mux_job_for_session(session).await?, Some(job.clone()));
    assert_eq!(db.mux_jobs(None).await?, vec![job.clone()]);
    assert!(db.mux_jobs(Some(MuxJobState::Running)).await?.is_empty());

    let late = session_in(db, "g").await?.session_id;
    let video_only = db.enqueue_mux_job(late, true, T0 + minutes(30)).await?;
    assert!(video_only.video_only);
    // Not due yet: only the first one is claimed.
    let claimed = db
        .claim_mux_job("worker-a", T0 + minutes(1), LEASE)
        .await?
        .context("due job")?;
    assert_eq!(claimed.job_id, job.job_id);
    assert_eq!(
        db.claim_mux_job("worker-a", T0 + minutes(1), LEASE).await?,
        None
    );
    // (Completed first: its lease would have expired by then, making it claimable again.)
    assert!(
        db.complete_mux_job(job.job_id, "worker-a", Uuid::new_v4(), T0 + minutes(2))
            .await?
    );
    assert_eq!(
        db.claim_mux_job("worker-a", T0 + minutes(30), LEASE)
            .await?
            .map(|j| j.job_id),
        Some(video_only.job_id)
    );

    let error = db
        .enqueue_mux_job(Uuid::new_v4(), false, T0)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );
    Ok(())
}

pub(crate) async fn mux_job_claims_are_exclusive(f: Fixture) -> anyhow::Result<()> {
    const JOBS: usize = 20;
    const WORKERS: usize = 8;
    let mut queued = HashSet::new();
    for _ in 0..JOBS {
        let session = session_in(&f.db, "g").await?.session_id;
        queued.insert(f.db.enqueue_mux_job(session, false, T0).await?.job_id);
    }
    let claimed_total = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (db, total) = (f.db.clone(), Arc::clone(&claimed_total));
            tokio::spawn(async move {
                let worker = format!("worker-{w}");
                let mut mine = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                // A claimer may come up empty while others hold rows; keep going until every
                // job is taken.
                while total.load(Ordering::SeqCst) < JOBS {
                    anyhow::ensure!(
                        tokio::time::Instant::now() < deadline,
                        "claiming took too long"
                    );
                    match db.claim_mux_job(&worker, T0 + minutes(1), LEASE).await? {
                        Some(job) => {
                            anyhow::ensure!(job.claimed_by.as_deref() == Some(worker.as_str()));
                            anyhow::ensure!(job.attempts == 1, "claimed once: {job:?}");
                            total.fetch_add(1, Ordering::SeqCst);
                            mine.push(job.job_id);
                        }
                        None => tokio::task::yield_now().await,
                    }
                }
                anyhow::Ok((worker, mine))
            })
        })
        .collect();
    let mut owner: HashMap<Uuid, String> = HashMap::new();
    for task in tasks {
        let (worker, mine) = task.await??;
        for job in mine {
            if let Some(first) = owner.insert(job, worker.clone()) {
                anyhow::bail!("job {job} was claimed by {first} and {worker}");
            }
        }
    }
    assert_eq!(
        owner.keys().copied().collect::<HashSet<_>>(),
        queued,
        "every job claimed exactly once"
    );
    assert_eq!(
        f.db.claim_mux_job("late", T0 + minutes(1), LEASE).await?,
        None
    );
    let running = f.db.mux_jobs(Some(MuxJobState::Running)).await?;
    assert_eq!(running.len(), JOBS);
    for job in running {
        ensure!(
            owner[&job.job_id] == job.claimed_by.context("claimant")?,
            "stored claimant matches"
        );
    }
    Ok(())
}

pub(crate) async fn mux_job_expired_lease_is_reclaimed(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "g").await?.session_id;
    let job = db.enqueue_mux_job(session, false, T0).await?;
    let start = T0 + minutes(1);
    let first = db
        .claim_mux_job("worker-a", start, LEASE)
        .await?
        .context("claim")?;
    assert_eq!(
        (first.attempts, first.claimed_at, first.lease_until),
        (1, Some(start), Some(start + LEASE))
    );

    // Renewing keeps it; a lease that has not run out is not taken over.
    let renewed_until = start + Duration::from_secs(90);
    assert!(
        db.renew_mux_job(job.job_id, "worker-a", renewed_until)
            .await?
    );
    assert!(
        !db.renew_mux_job(job.job_id, "worker-b", renewed_until)
            .await?,
        "only the claimant renews"
    );
    assert_eq!(
        db.claim_mux_job("worker-b", start + LEASE, LEASE).await?,
        None
    );

    // worker-a stops renewing (it crashed); after the lease, worker-b takes the job over.
    let takeover = renewed_until;
    let second = db
        .claim_mux_job("worker-b", takeover, LEASE)
        .await?
        .context("reclaim")?;
    assert_eq!(
        (second.job_id, second.attempts, second.claimed_by.as_deref()),
        (job.job_id, 2, Some("worker-b"))
    );

    // worker-a comes back: it can neither renew, fail, release nor complete.
    let stale_archive = Uuid::new_v4();
    assert!(
        !db.renew_mux_job(job.job_id, "worker-a", takeover + LEASE)
            .await?
    );
    assert!(
        !db.complete_mux_job(job.job_id, "worker-a", stale_archive, takeover)
            .await?
    );
    assert!(
        !db.fail_mux_job(job.job_id, "worker-a", "late", None, takeover)
            .await?
    );
    assert!(!db.release_mux_job(job.job_id, "worker-a").await?);

    let archive = Uuid::new_v4();
    let done_at = takeover + minutes(2);
    assert!(
        db.complete_mux_job(job.job_id, "worker-b", archive, done_at)
            .await?
    );
    let done = db.mux_job(job.job_id).await?.context("job")?;
    assert_eq!(
        (
            done.state,
            done.archive_id,
            done.finished_at,
            done.lease_until
        ),
        (MuxJobState::Done, Some(archive), Some(done_at), None)
    );
    assert_eq!(done.claimed_by.as_deref(), Some("worker-b"));
    // Done is done: never claimed, completed or failed again.
    assert!(
        !db.complete_mux_job(job.job_id, "worker-b", Uuid::new_v4(), done_at)
            .await?
    );
    assert_eq!(
        db.claim_mux_job("worker-c", done_at + minutes(60), LEASE)
            .await?,
        None
    );
    assert_eq!(db.mux_jobs(Some(MuxJobState::Done)).await?, vec![done]);
    Ok(())
}

pub(crate) async fn mux_job_failure_retry_and_release(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "g").await?.session_id;
    let job = db.enqueue_mux_job(session, true, T0).await?;
    db.claim_mux_job("worker-a", T0, LEASE)
        .await?
        .context("claim")?;

    // A failure with a retry time queues it again from then on.
    let retry_at = T0 + minutes(5);
    assert!(
        db.fail_mux_job(
            job.job_id,
            "worker-a",
            "gst: no element \"x264enc\"",
            Some(retry_at),
            T0 + minutes(1)
        )
        .await?
    );
    let queued = db.mux_job(job.job_id).await?.context("job")?;
    assert_eq!(
        (
            queued.state,
            queued.not_before,
            queued.lease_until,
            queued.finished_at
        ),
        (MuxJobState::Queued, retry_at, None, None)
    );
    assert_eq!(queued.error.as_deref(), Some("gst: no element \"x264enc\""));
    assert!(
        !db.complete_mux_job(job.job_id, "worker-a", Uuid::new_v4(), T0)
            .await?,
        "not running any more"
    );
    assert_eq!(
        db.claim_mux_job("worker-b", retry_at - minutes(1), LEASE)
            .await?,
        None
    );

    // Released on shutdown: queued again at once, the attempt not counted.
    let second = db
        .claim_mux_job("worker-b", retry_at, LEASE)
        .await?
        .context("claim after retry time")?;
    assert_eq!(second.attempts, 2);
    assert!(db.release_mux_job(job.job_id, "worker-b").await?);
    let released = db.mux_job(job.job_id).await?.context("job")?;
    assert_eq!(
        (released.state, released.attempts, released.lease_until),
        (MuxJobState::Queued, 1, None)
    );

    // A failure without a retry time is final.
    let third = db
        .claim_mux_job("worker-c", retry_at, LEASE)
        .await?
        .context("claim after release")?;
    assert_eq!(third.attempts, 2);
    let error = db
        .fail_mux_job(job.job_id, "worker-c", "", None, retry_at)
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::EmptyField { .. }), "{error:?}");
    assert!(
        db.fail_mux_job(
            job.job_id,
            "worker-c",
            "CTI audio unreadable",
            None,
            retry_at + minutes(1)
        )
        .await?
    );
    let failed = db.mux_job(job.job_id).await?.context("job")?;
    assert_eq!(
        (failed.state, failed.finished_at, failed.archive_id),
        (MuxJobState::Failed, Some(retry_at + minutes(1)), None)
    );
    assert_eq!(
        db.claim_mux_job("worker-d", retry_at + minutes(600), LEASE)
            .await?,
        None
    );
    assert_eq!(db.mux_jobs(Some(MuxJobState::Failed)).await?, vec![failed]);
    let error = db.claim_mux_job(" ", T0, LEASE).await.unwrap_err();
    assert!(matches!(error, DbError::EmptyField { .. }), "{error:?}");
    Ok(())
}

// --- CTI uploads in parts --------------------------------------------------------------------

fn upload(call_id: &str, session_id: Option<Uuid>, key: Option<&str>) -> CtiUpload {
    CtiUpload {
        upload_id: Uuid::new_v4(),
        call_id: call_id.into(),
        session_id,
        correlation_key: key.map(Into::into),
        started_at: T0 + minutes(1),
        source_name: Some("call.wav".into()),
        opened_at: T0 + minutes(1),
        recording_id: None,
    }
}

fn part(upload_id: Uuid, n: u64, at: OffsetDateTime) -> CtiPart {
    CtiPart {
        upload_id,
        part: n,
        archive_id: Uuid::new_v4(),
        location: format!("cti/uploads/{upload_id}/{n:06}.idvr"),
        bytes: 1000 + n,
        sha256: [n as u8; 32],
        received_at: at,
    }
}

pub(crate) async fn cti_uploads_take_parts_in_order_and_complete_once(
    f: Fixture,
) -> anyhow::Result<()> {
    let db = &f.db;
    let session = session_in(db, "g").await?.session_id;
    let open = upload("call-2001", Some(session), None);
    db.insert_cti_upload(&open).await?;
    assert_eq!(db.cti_upload(open.upload_id).await?, Some(open.clone()));
    assert_eq!(
        db.open_cti_upload("call-2001", Some(session), None).await?,
        Some(open.clone())
    );
    assert_eq!(db.open_cti_upload("call-2001", None, None).await?, None);
    let error = db
        .insert_cti_upload(&upload("call-2001", Some(session), None))
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::CtiUploadOpen { .. }), "{error:?}");
    let error = db
        .insert_cti_upload(&upload("call-2002", Some(Uuid::new_v4()), None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::SessionNotFound { .. }),
        "{error:?}"
    );

    // Parts in order only; a resend or a skip is not recorded.
    let id = open.upload_id;
    assert_eq!(
        db.insert_cti_part(&part(id, 1, T0 + minutes(2))).await?,
        PartRecorded::OutOfOrder { expected: 0 }
    );
    for n in 0..3 {
        assert_eq!(
            db.insert_cti_part(&part(id, n, T0 + minutes(2 + n as i64)))
                .await?,
            PartRecorded::Recorded
        );
    }
    assert_eq!(
        db.insert_cti_part(&part(id, 1, T0 + minutes(9))).await?,
        PartRecorded::OutOfOrder { expected: 3 }
    );
    let parts = db.cti_parts(id).await?;
    assert_eq!(parts.iter().map(|p| p.part).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(
        parts[2],
        CtiPart {
            archive_id: parts[2].archive_id,
            ..part(id, 2, T0 + minutes(4))
        }
    );

    // Idle by its newest part, not by its opening.
    assert!(db.idle_cti_uploads(T0 + minutes(4)).await?.is_empty());
    assert_eq!(
        db.idle_cti_uploads(T0 + minutes(5)).await?,
        vec![open.clone()]
    );
    let empty = upload("call-2003", None, Some("ext-1@T0"));
    db.insert_cti_upload(&empty).await?;
    assert!(!db.drop_empty_cti_upload(id).await?, "it has parts");
    assert!(db.drop_empty_cti_upload(empty.upload_id).await?);
    assert_eq!(db.cti_upload(empty.upload_id).await?, None);

    // Completed once: the recording, the mark and the parts' removal go together.
    let recording = cti("call-2001", Some(session), None);
    db.complete_cti_upload(id, &recording).await?;
    assert_eq!(
        db.cti_recording(recording.recording_id).await?,
        Some(recording.clone())
    );
    assert_eq!(
        db.cti_upload(id).await?.and_then(|u| u.recording_id),
        Some(recording.recording_id)
    );
    assert!(db.cti_parts(id).await?.is_empty());
    assert_eq!(
        db.open_cti_upload("call-2001", Some(session), None).await?,
        None
    );
    let again = cti("call-2001b", Some(session), None);
    let error = db.complete_cti_upload(id, &again).await.unwrap_err();
    assert!(
        matches!(error, DbError::CtiUploadNotOpen { .. }),
        "{error:?}"
    );
    assert_eq!(
        db.cti_recording(again.recording_id).await?,
        None,
        "rolled back"
    );
    assert_eq!(
        db.insert_cti_part(&part(id, 0, T0)).await?,
        PartRecorded::OutOfOrder { expected: 0 },
        "a completed upload takes no parts"
    );

    // Two completions of one unattached upload at once: one recording.
    let racing = upload("call-2004", None, Some("ext-2@T0"));
    db.insert_cti_upload(&racing).await?;
    db.insert_cti_part(&part(racing.upload_id, 0, T0)).await?;
    let (a, b) = (
        cti("call-2004", None, Some("ext-2@T0")),
        cti("call-2004", None, Some("ext-2@T0")),
    );
    let other = f.reopen().await?;
    let (ra, rb) = tokio::join!(
        db.complete_cti_upload(racing.upload_id, &a),
        other.complete_cti_upload(racing.upload_id, &b)
    );
    ensure!(ra.is_ok() != rb.is_ok(), "one winner: {ra:?} {rb:?}");
    assert_eq!(db.unattached_cti_recordings("ext-2@T0").await?.len(), 1);
    Ok(())
}
