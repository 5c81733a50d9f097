//! The web console's tables: users with their roles and address lists, groups' address
//! lists, and logged-in browsers. Each test runs on both backends (see `on_both_backends!`).

use anyhow::ensure;
use storage::db::{ConsoleSession, DbError, NewUser, Role};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use super::Fixture;

fn user(name: &str, roles: &[Role]) -> NewUser {
    NewUser {
        user_id: Uuid::new_v4(),
        name: name.into(),
        group: "branch-7".into(),
        roles: roles.to_vec(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        totp_wrapped: None,
        allowed_cidrs: vec!["10.1.0.0/16".into(), "192.0.2.7/32".into()],
        created_at: datetime!(2026-11-21 09:00 UTC),
    }
}

pub async fn users_are_unique_by_name_and_keep_their_roles(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let ana = user("ana", &[Role::Operator, Role::Supervisor]);
    db.insert_user(&ana).await?;
    let mut bo = user("bo", &[Role::Compliance]);
    bo.totp_wrapped = Some(vec![7; 60]);
    bo.allowed_cidrs.clear();
    db.insert_user(&bo).await?;

    let read = db.user_by_name("ana").await?.expect("ana exists");
    ensure!(read.user_id == ana.user_id && read.group == "branch-7");
    ensure!(read.roles == [Role::Operator, Role::Supervisor]);
    ensure!(read.has(Role::Operator) && !read.has(Role::Compliance));
    ensure!(read.allowed_cidrs == ana.allowed_cidrs && !read.disabled);
    ensure!(read.created_at == ana.created_at && read.totp_wrapped.is_none());
    let read = db.user(bo.user_id).await?.expect("bo by id");
    ensure!(read.totp_wrapped == Some(vec![7; 60]) && read.allowed_cidrs.is_empty());
    ensure!(db.user_by_name("nobody").await?.is_none());
    let names: Vec<String> = db.users().await?.into_iter().map(|u| u.name).collect();
    ensure!(names == ["ana", "bo"], "{names:?}");

    let taken = db.insert_user(&user("ana", &[Role::Admin])).await;
    ensure!(
        matches!(&taken, Err(DbError::UserExists { name }) if name == "ana"),
        "{taken:?}"
    );
    let roleless = db.insert_user(&user("cy", &[])).await;
    ensure!(
        matches!(roleless, Err(DbError::EmptyField { .. })),
        "{roleless:?}"
    );
    Ok(())
}

pub async fn group_address_lists_are_set_and_replaced(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    ensure!(
        db.group_cidrs("branch-7").await?.is_empty(),
        "no list: anywhere"
    );
    db.set_group_cidrs("branch-7", &["10.0.0.0/8".into()])
        .await?;
    db.set_group_cidrs("branch-7", &["10.0.0.0/8".into(), "2001:db8::/32".into()])
        .await?;
    ensure!(db.group_cidrs("branch-7").await? == ["10.0.0.0/8", "2001:db8::/32"]);
    ensure!(db.group_cidrs("branch-8").await?.is_empty());
    Ok(())
}

pub async fn console_logins_expire_and_log_out(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let ana = user("ana", &[Role::Operator]);
    db.insert_user(&ana).await?;
    let now = OffsetDateTime::now_utc();
    let login = ConsoleSession {
        token_hash: [3; 32],
        user_id: ana.user_id,
        csrf_token: "csrf-1".into(),
        source: "127.0.0.1".into(),
        created_at: now,
        expires_at: now + time::Duration::hours(8),
    };
    db.insert_console_session(&login).await?;
    let read = db.console_session(&[3; 32], now).await?.expect("valid");
    ensure!(read.user_id == ana.user_id && read.csrf_token == "csrf-1");
    ensure!(
        db.console_session(&[4; 32], now).await?.is_none(),
        "other token"
    );
    ensure!(
        db.console_session(&[3; 32], now + time::Duration::hours(9))
            .await?
            .is_none(),
        "expired"
    );
    ensure!(db.delete_console_session(&[3; 32]).await?);
    ensure!(!db.delete_console_session(&[3; 32]).await?, "once");
    ensure!(
        db.console_session(&[3; 32], now).await?.is_none(),
        "logged out"
    );
    Ok(())
}

pub async fn users_are_disabled_and_enabled_and_their_logins_ended(
    f: Fixture,
) -> anyhow::Result<()> {
    let db = &f.db;
    let (ana, bo) = (user("ana", &[Role::Operator]), user("bo", &[Role::Admin]));
    db.insert_user(&ana).await?;
    db.insert_user(&bo).await?;
    let now = OffsetDateTime::now_utc();
    for (hash, who) in [([5; 32], &ana), ([6; 32], &ana), ([7; 32], &bo)] {
        db.insert_console_session(&ConsoleSession {
            token_hash: hash,
            user_id: who.user_id,
            csrf_token: "csrf".into(),
            source: "127.0.0.1".into(),
            created_at: now,
            expires_at: now + time::Duration::hours(8),
        })
        .await?;
    }
    ensure!(db.set_user_disabled("ana", true).await?);
    ensure!(db.user_by_name("ana").await?.expect("ana").disabled);
    ensure!(
        !db.user_by_name("bo").await?.expect("bo").disabled,
        "only ana"
    );
    ensure!(!db.set_user_disabled("nobody", true).await?, "no such user");
    ensure!(db.delete_console_sessions_of(ana.user_id).await? == 2);
    ensure!(db.console_session(&[5; 32], now).await?.is_none());
    ensure!(db.console_session(&[6; 32], now).await?.is_none());
    ensure!(
        db.console_session(&[7; 32], now).await?.is_some(),
        "bo's stays"
    );
    ensure!(db.delete_console_sessions_of(ana.user_id).await? == 0);
    ensure!(db.set_user_disabled("ana", false).await?);
    ensure!(!db.user_by_name("ana").await?.expect("ana").disabled);
    Ok(())
}

pub async fn retention_periods_and_legal_holds(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    db.set_group_cidrs("branch-7", &["10.0.0.0/8".into()])
        .await?;
    db.set_group_retention("branch-7", Some(90)).await?;
    db.set_group_retention("branch-8", Some(30)).await?;
    db.set_group_retention("branch-9", None).await?;
    ensure!(
        db.group_retentions().await? == [("branch-7".to_owned(), 90), ("branch-8".to_owned(), 30)],
        "{:?}",
        db.group_retentions().await?
    );
    ensure!(
        db.group_cidrs("branch-7").await? == ["10.0.0.0/8"],
        "the address list stays"
    );
    ensure!(matches!(
        db.set_group_retention("branch-7", Some(0)).await,
        Err(DbError::EmptyField { .. })
    ));
    db.set_group_retention("branch-8", None).await?;
    ensure!(db.group_retentions().await?.len() == 1);

    let session = session_of_branch_7(db).await?;
    let hold = storage::db::LegalHold {
        session_id: session,
        placed_by: "user:carla".into(),
        reason: "litigation 2026-77".into(),
        placed_at: datetime!(2026-11-21 10:00 UTC),
    };
    db.place_legal_hold(&hold).await?;
    let mut second = hold.clone();
    second.reason = "another".into();
    db.place_legal_hold(&second).await?;
    ensure!(
        db.legal_hold(session).await? == Some(hold),
        "the first hold stays"
    );
    ensure!(db.release_legal_hold(session).await?);
    ensure!(!db.release_legal_hold(session).await?);
    ensure!(db.legal_hold(session).await?.is_none());
    Ok(())
}

pub(crate) async fn recording_grants_expire_and_are_played_once(f: Fixture) -> anyhow::Result<()> {
    let db = &f.db;
    let carla = user("carla", &[Role::Compliance]);
    db.insert_user(&carla).await?;
    let session = session_of_branch_7(db).await?;
    let grant = storage::db::RecordingGrant {
        grant_hash: storage::db::grant_hash("the grant's id"),
        user_id: carla.user_id,
        session_id: session,
        archive_id: Uuid::new_v4(),
        reason: "dispute 2026-881".into(),
        opened_at: datetime!(2026-11-21 10:00 UTC),
        expires_at: datetime!(2026-11-21 10:30 UTC),
    };
    db.insert_recording_grant(&grant).await?;
    let hash = grant.grant_hash;
    ensure!(
        db.recording_grant(&hash, datetime!(2026-11-21 10:29 UTC))
            .await?
            == Some(grant)
    );
    ensure!(
        db.recording_grant(&hash, datetime!(2026-11-21 10:30 UTC))
            .await?
            .is_none(),
        "expired"
    );
    ensure!(
        db.recording_grant(
            &storage::db::grant_hash("another id"),
            datetime!(2026-11-21 10:01 UTC)
        )
        .await?
        .is_none()
    );
    ensure!(db.mark_recording_grant_played(&hash).await?, "first play");
    ensure!(!db.mark_recording_grant_played(&hash).await?, "played once");
    ensure!(
        db.delete_expired_recording_grants(datetime!(2026-11-21 10:29 UTC))
            .await?
            == 0
    );
    ensure!(
        db.delete_expired_recording_grants(datetime!(2026-11-21 11:00 UTC))
            .await?
            == 1
    );
    Ok(())
}

/// A session of group `branch-7`.
async fn session_of_branch_7(db: &storage::db::MetadataDb) -> anyhow::Result<Uuid> {
    let session = Uuid::new_v4();
    db.create_session(&storage::db::NewSession {
        case_reference: None,
        session_id: session,
        group: "branch-7".into(),
        created_by: "op".into(),
        created_at: datetime!(2026-11-21 09:00 UTC),
        wrapped_media_key: vec![1; 40],
    })
    .await?;
    Ok(session)
}
