//! Retention on a real vault: a recording past its group's retention is crypto-shredded and
//! can never be opened again; one on legal hold, a recent one, and one of a group without a
//! retention period are kept; a second pass shreds nothing more; everything is audited.

mod common;

use common::Console;
use console::recordings::retention;
use storage::db::{ArchiveState, LegalHold, NewSession, SessionState};
use storage::{Access, ArchiveLocation};
use time::OffsetDateTime;
use uuid::Uuid;

/// A session of `group` that ended `days_ago`, with a sealed recording; its archive id.
async fn ended_recording(console: &Console, group: &str, days_ago: i64) -> (Uuid, Uuid) {
    let db = console.vault.db();
    let session = Uuid::new_v4();
    let ended = OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    db.create_session(&NewSession {
        case_reference: None,
        session_id: session,
        group: group.into(),
        created_by: "op".into(),
        created_at: ended - time::Duration::minutes(20),
        wrapped_media_key: vec![1; 40],
    })
    .await
    .unwrap();
    assert!(
        db.transition_session(
            session,
            &[SessionState::Created],
            SessionState::Ended,
            ended,
            Some("done")
        )
        .await
        .unwrap()
    );
    db.enqueue_mux_job(session, false, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let job = db
        .claim_mux_job(
            "w",
            OffsetDateTime::now_utc(),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap()
        .unwrap();
    let archive = console
        .vault
        .seal_to_blob(
            std::io::Cursor::new(b"a recording of the call".to_vec()),
            &format!("recordings/{session}.idvr"),
            serde_json::json!({}),
            &Access::new("muxer@test", None),
        )
        .await
        .unwrap();
    db.complete_mux_job(
        job.job_id,
        "w",
        archive.archive_id,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    (session, archive.archive_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_past_their_retention_are_shredded_unless_held() {
    let console = Console::start().await;
    let db = console.vault.db();
    db.set_group_retention("branch-7", Some(30)).await.unwrap();
    let (expired, expired_archive) = ended_recording(&console, "branch-7", 40).await;
    let (held, held_archive) = ended_recording(&console, "branch-7", 40).await;
    let (recent, recent_archive) = ended_recording(&console, "branch-7", 1).await;
    let (forever, forever_archive) = ended_recording(&console, "branch-9", 400).await;
    db.place_legal_hold(&LegalHold {
        session_id: held,
        placed_by: "user:carla".into(),
        reason: "litigation 2026-77".into(),
        placed_at: OffsetDateTime::now_utc(),
    })
    .await
    .unwrap();

    let pass = retention::enforce(&console.vault, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(pass.shredded, [expired]);
    assert_eq!(pass.held, [held]);

    let state = |id| async move { db.archive(id).await.unwrap().unwrap().state };
    assert_eq!(state(expired_archive).await, ArchiveState::Shredded);
    for kept in [held_archive, recent_archive, forever_archive] {
        assert_eq!(state(kept).await, ArchiveState::Sealed);
    }
    // Shredded means unreadable, for good.
    let record = db.archive(expired_archive).await.unwrap().unwrap();
    let Some(ArchiveLocation::Blob(key)) = ArchiveLocation::parse(&record.location) else {
        panic!("stored in the blob store");
    };
    let opened = console
        .vault
        .sealed_blob(&key, &Access::new("user:carla", Some("check".into())))
        .await;
    assert!(opened.is_err(), "a shredded recording cannot be opened");
    let log = console.vault.audit().latest(100).await.unwrap();
    assert!(log.iter().any(|e| e.action == "retention.shred"
        && e.object == format!("session:{expired}")
        && e.actor == retention::ACTOR
        && e.reason.as_deref() == Some("retention of 30 days for group branch-7 ended")));
    assert!(
        log.iter().any(
            |e| e.action == "archive.shred" && e.object == format!("archive:{expired_archive}")
        )
    );

    // Nothing more the second time; releasing the hold lets the next pass shred it.
    let again = retention::enforce(&console.vault, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(again.shredded.is_empty());
    assert!(db.release_legal_hold(held).await.unwrap());
    let released = retention::enforce(&console.vault, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(released.shredded, [held]);
    let _ = (recent, forever);
}
