//! Operators signed in to the web console use the ingest API from their browser with the
//! console's login cookie: they create sessions in their own group (as themselves in the
//! audit log), follow a session's notices (joined, consented, live, chat, blinds) without its
//! frames or key, chat with the customer both ways and end the session. Writes without the
//! login's CSRF token, requests from a foreign origin, other roles, other groups' sessions
//! and recordings are refused.

mod common;

use common::Harness;
use proto::{AgentControl, LiveMessage, LiveNotice, ServerControl, Track};
use serde_json::{Value, json};
use storage::db::{ConsoleSession, NewUser, Role};
use time::OffsetDateTime;

/// A signed-in console user: the cookie header and the CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

async fn login(h: &Harness, name: &str, group: &str, roles: &[Role]) -> Login {
    let db = h.vault.db();
    let user_id = uuid::Uuid::new_v4();
    db.insert_user(&NewUser {
        user_id,
        name: name.into(),
        group: group.into(),
        roles: roles.to_vec(),
        password_hash: "$argon2id$unused".into(),
        totp_wrapped: None,
        allowed_cidrs: Vec::new(),
        created_at: OffsetDateTime::now_utc(),
    })
    .await
    .unwrap();
    let token = format!("{name}-login-token-0123456789abcdef");
    let csrf = format!("{name}-csrf-0123456789abcdef");
    let now = OffsetDateTime::now_utc();
    db.insert_console_session(&ConsoleSession {
        token_hash: storage::db::login_token_hash(&token),
        user_id,
        csrf_token: csrf.clone(),
        source: "127.0.0.1".into(),
        created_at: now,
        expires_at: now + time::Duration::hours(1),
    })
    .await
    .unwrap();
    Login {
        cookie: format!("idv_console={token}"),
        csrf,
    }
}

async fn post(h: &Harness, path: &str, login: &Login, csrf: Option<&str>) -> (u16, Value) {
    let mut request = h
        .http
        .post(h.url(path))
        .header("cookie", &login.cookie)
        .json(&json!({}));
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(h: &Harness, path: &str, login: &Login) -> (u16, Value) {
    let r = h
        .http
        .get(h.url(path))
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn audit(h: &Harness) -> Vec<String> {
    h.vault
        .audit()
        .latest(200)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {} {}", e.actor, e.action, e.object, e.outcome))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_operator_creates_in_their_group_and_forgeries_are_refused() {
    let h = Harness::new(|_| {}).await;
    let olga = login(&h, "olga", "retail", &[Role::Operator]).await;
    let carl = login(&h, "carl", "retail", &[Role::Compliance]).await;

    let (status, body) = post(&h, "/sessions", &olga, None).await;
    assert_eq!(status, 403, "a write without the CSRF token: {body}");
    let (status, _) = post(&h, "/sessions", &olga, Some("not-the-token")).await;
    assert_eq!(status, 403, "a wrong CSRF token");
    let foreign = h
        .http
        .post(h.url("/sessions"))
        .header("cookie", &olga.cookie)
        .header("x-csrf-token", &olga.csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403, "a request from another origin");
    let (status, _) = post(&h, "/sessions", &carl, Some(&carl.csrf)).await;
    assert_eq!(status, 403, "compliance officers do not start sessions");
    let stale = Login {
        cookie: "idv_console=nobody".into(),
        csrf: String::new(),
    };
    assert_eq!(post(&h, "/sessions", &stale, Some("x")).await.0, 401);

    let create = |body: Value| {
        h.http
            .post(h.url("/sessions"))
            .header("cookie", &olga.cookie)
            .header("x-csrf-token", &olga.csrf)
            .json(&body)
    };
    let too_long = create(json!({ "case_reference": "x".repeat(129) }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        too_long.status(),
        400,
        "a case reference over 128 characters"
    );
    let r = create(json!({ "case_reference": "  KYC-2026-0042  " }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["group"], "retail");
    let session = created["session_id"].as_str().unwrap().to_owned();
    let (status, who) = get(&h, "/whoami", &olga).await;
    assert_eq!((status, who["actor"].as_str()), (200, Some("user:olga")));

    // Her session's status; the bootstrap operator's (group default) is not hers.
    let (status, one) = get(&h, &format!("/sessions/{session}"), &olga).await;
    assert_eq!((status, one["state"].as_str()), (200, Some("created")));
    assert_eq!(one["case_reference"], "KYC-2026-0042");
    let other = h.create().await;
    let other = other["session_id"].as_str().unwrap();
    assert_eq!(get(&h, &format!("/sessions/{other}"), &olga).await.0, 404);
    let (status, open) = get(&h, "/sessions", &olga).await;
    assert_eq!(status, 200);
    let open: Vec<&str> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(open, [session.as_str()], "only her group's open sessions");

    // Console logins do not reach recordings (compliance opens those in the console).
    assert_eq!(get(&h, "/recordings", &olga).await.0, 403);
    assert_eq!(
        get(&h, &format!("/recordings/{session}/archive"), &olga)
            .await
            .0,
        403
    );
    // Nor end another group's session.
    let (status, _) = post(
        &h,
        &format!("/sessions/{other}/end"),
        &olga,
        Some(&olga.csrf),
    )
    .await;
    assert_eq!(status, 404);

    let (status, _) = post(
        &h,
        &format!("/sessions/{session}/end"),
        &olga,
        Some(&olga.csrf),
    )
    .await;
    assert_eq!(status, 200);
    let log = audit(&h).await;
    for wanted in [
        format!("user:olga session.create session:{session} success"),
        format!("user:olga session.end session:{session} success"),
        format!("user:olga session.end session:{other} denied"),
        format!("user:olga recording.download session:{session} denied"),
    ] {
        assert!(log.contains(&wanted), "{wanted} in {log:#?}");
    }
    let entries = h.vault.audit().latest(200).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action == "session.create"
                && e.reason.as_deref() == Some("case KYC-2026-0042")),
        "the case reference is in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_session_shows_joining_consent_chat_and_blinds_but_no_frames() {
    let h = Harness::new(|_| {}).await;
    let olga = login(&h, "olga", "default", &[Role::Operator]).await;
    let created = h.create().await;
    let session: uuid::Uuid = created["session_id"].as_str().unwrap().parse().unwrap();
    let path = format!("/sessions/{session}/live?frames=none");
    let origin = format!("https://{}", h.server().addr());

    // Her browser never gets the frames or the session's key.
    let with_frames = common::websocket(
        &h,
        &format!("/sessions/{session}/live"),
        &[("cookie", &olga.cookie), ("origin", &origin)],
    )
    .await;
    assert_eq!(with_frames.err(), Some(403));
    // A foreign page cannot open it with her cookie.
    let refused = common::websocket(
        &h,
        &path,
        &[("cookie", &olga.cookie), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let mut follower =
        common::websocket(&h, &path, &[("cookie", &olga.cookie), ("origin", &origin)])
            .await
            .unwrap();
    let state = |m: Option<LiveMessage>| match m {
        Some(LiveMessage::Notice(LiveNotice::Session { state, scopes })) => (state, scopes),
        other => panic!("expected where the session stands, got {other:?}"),
    };
    assert_eq!(
        state(common::next_live(&mut follower).await),
        ("created".into(), vec![])
    );

    // The customer joins and consents; the agent connects.
    let (status, joined) = h
        .join(json!({ "code": created["code"], "group": "default" }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(state(common::next_live(&mut follower).await).0, "joined");
    let token = joined["session_token"].as_str().unwrap().to_owned();
    let r = h
        .http
        .post(h.url("/consent"))
        .bearer_auth(&token)
        .json(&json!({ "scopes": ["camera", "recording"], "granted_by": "test agent" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (now, scopes) = state(common::next_live(&mut follower).await);
    assert_eq!(now, "consented");
    assert_eq!(scopes, ["camera", "recording"]);
    let key = hex::decode(joined["media_key"].as_str().unwrap()).unwrap();
    let joined = common::Joined {
        session,
        token,
        key: proto::SessionKey::from_slice(&key).unwrap(),
    };
    let (mut agent, _) = h.agent(&joined).await;
    assert_eq!(state(common::next_live(&mut follower).await).0, "live");

    // Frames are recorded, not sent to a notices-only follower.
    for seq in 1..=5u64 {
        agent
            .send_frame(Track::Camera, seq, b"a camera frame")
            .await;
    }
    agent.acked_through(Track::Camera, 5).await;

    // Chat both ways, the sender's own message echoed as confirmation.
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let say = |text: &str| Message::text(json!({ "type": "chat", "text": text }).to_string());
    follower.send(say("Hello, I am Olga")).await.unwrap();
    loop {
        match agent.control().await.unwrap() {
            ServerControl::Chat { from, text } => {
                assert_eq!((from.as_str(), text.as_str()), ("olga", "Hello, I am Olga"));
                break;
            }
            ServerControl::Ack { .. } | ServerControl::Keyframe { .. } => {}
            other => panic!("expected the chat, got {other:?}"),
        }
    }
    let chat = |m: Option<LiveMessage>| match m {
        Some(LiveMessage::Notice(LiveNotice::Chat { from, text, .. })) => (from, text),
        other => panic!("expected a chat message, got {other:?}"),
    };
    assert_eq!(
        chat(common::next_live(&mut follower).await),
        ("user:olga".into(), "Hello, I am Olga".into())
    );
    agent
        .send_text(
            AgentControl::Chat {
                text: "  Hi Olga  ".into(),
            }
            .to_json(),
        )
        .await;
    assert_eq!(
        chat(common::next_live(&mut follower).await),
        ("customer".into(), "Hi Olga".into())
    );
    // A message with control characters is refused with the reason; nothing reaches the agent.
    follower.send(say("bell \u{7}")).await.unwrap();
    match common::next_live(&mut follower).await {
        Some(LiveMessage::Notice(LiveNotice::Refused { request, reason })) => {
            assert_eq!(request, "chat");
            assert!(reason.contains("control characters"), "{reason}");
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    agent
        .send_text(
            AgentControl::Blinds {
                regions: 2,
                at_ns: 7,
            }
            .to_json(),
        )
        .await;
    match common::next_live(&mut follower).await {
        Some(LiveMessage::Notice(LiveNotice::Blinds { regions, at_ns })) => {
            assert_eq!((regions, at_ns), (2, 7));
        }
        other => panic!("expected the blinds, got {other:?}"),
    }

    h.end(session).await;
    match common::next_live(&mut follower).await {
        Some(LiveMessage::Notice(LiveNotice::Ended { .. })) => {}
        other => panic!("expected the end, got {other:?}"),
    }
    let log = audit(&h).await;
    let object = format!("session:{session}");
    for wanted in [
        format!("user:olga session.follow {object} success"),
        format!("user:olga session.chat {object} success"),
        format!("customer:agent session.chat {object} success"),
        format!("customer:agent session.blinds {object} success"),
    ] {
        assert!(log.contains(&wanted), "{wanted} in {log:#?}");
    }
}
