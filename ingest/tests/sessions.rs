//! Sessions over the real HTTPS API: the operator creates one and gets a code; the customer's
//! agent redeems it once, within its lifetime, for its group only; guessing is limited per
//! session-bound link and per source address; consent needs the agent's token; every step is
//! audited.

use std::time::Duration;

mod common;

use common::Harness;
use serde_json::json;
use storage::db::SessionState;

async fn harness(code_ttl: Duration) -> Harness {
    Harness::new(|c| c.code_ttl = code_ttl).await
}

async fn audit_actions(h: &Harness) -> Vec<(String, String)> {
    h.vault
        .audit()
        .entries(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action.clone(), e.outcome.as_str().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_code_opens_its_session_once_and_only_for_its_group() {
    let mut h = harness(Duration::from_secs(600)).await;
    let created = h.create().await;
    let code = created["code"].as_str().unwrap();
    assert_eq!(code.len(), 6);
    assert_eq!(created["group"], "default");

    let (status, err) = h.join(json!({ "code": code, "group": "other-bank" })).await;
    assert_eq!(
        (status, err["error"].as_str().unwrap()),
        (403, "the code is not valid")
    );

    let (status, joined) = h.join(json!({ "code": code, "group": "default" })).await;
    assert_eq!(status, 200);
    assert_eq!(joined["session_id"], created["session_id"]);
    assert_eq!(joined["media_key"].as_str().unwrap().len(), 64);

    let (status, _) = h.join(json!({ "code": code, "group": "default" })).await;
    assert_eq!(status, 403, "single use");

    let id = uuid::Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
    let session = h.vault.db().session(id).await.unwrap().unwrap();
    assert_eq!(session.state, SessionState::Joined);
    let actions = audit_actions(&h).await;
    assert!(actions.contains(&("session.create".into(), "success".into())));
    assert!(actions.contains(&("session.join".into(), "success".into())));
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == &("session.join".to_owned(), "denied".to_owned()))
            .count(),
        2
    );
    h.server.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn an_expired_code_opens_nothing() {
    let mut h = harness(Duration::ZERO).await;
    let created = h.create().await;
    let (status, _) = h
        .join(json!({ "code": created["code"], "group": "default" }))
        .await;
    assert_eq!(status, 403);
    h.server.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn a_session_bound_link_locks_after_five_wrong_codes() {
    let mut h = harness(Duration::from_secs(600)).await;
    let created = h.create().await;
    let right = created["code"].as_str().unwrap().to_owned();
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..5 {
        let (status, _) = h
            .join(json!({ "code": wrong, "group": "default", "session_id": created["session_id"] }))
            .await;
        assert_eq!(status, 403);
    }
    let (status, _) = h
        .join(json!({ "code": right, "group": "default", "session_id": created["session_id"] }))
        .await;
    assert_eq!(status, 403, "locked: even the right code is refused now");
    let log = h.vault.audit().entries(0, 1000).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.reason.as_deref() == Some("code locked after too many wrong attempts")),
        "the lock is audited"
    );
    h.server.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn a_source_that_keeps_guessing_is_refused_before_any_code_is_looked_at() {
    let mut h = harness(Duration::from_secs(600)).await;
    let created = h.create().await;
    let right = created["code"].as_str().unwrap().to_owned();
    for i in 0..ingest::session::MAX_SOURCE_FAILURES {
        let guess = format!(
            "{:06}",
            (right.parse::<u32>().unwrap() + 1 + i as u32) % 1_000_000
        );
        let (status, _) = h.join(json!({ "code": guess, "group": "default" })).await;
        assert_eq!(status, 403);
    }
    let (status, err) = h.join(json!({ "code": right, "group": "default" })).await;
    assert_eq!(status, 429, "{err}");
    // Nothing was spent: the session is still waiting for its customer.
    let id = uuid::Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        h.vault.db().session(id).await.unwrap().unwrap().state,
        SessionState::Created
    );
    h.server.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn consent_needs_the_agents_token_and_ending_is_for_the_operator() {
    let mut h = harness(Duration::from_secs(600)).await;
    let created = h.create().await;
    let (_, joined) = h
        .join(json!({ "code": created["code"], "group": "default" }))
        .await;
    let token = joined["session_token"].as_str().unwrap();
    let body = json!({ "scopes": ["camera", "screen", "recording"], "granted_by": "test device" });

    let forged = format!(
        "{}.{}",
        created["session_id"].as_str().unwrap(),
        "00".repeat(32)
    );
    for bad in ["", "nonsense", forged.as_str()] {
        let r = h
            .http
            .post(h.url("/consent"))
            .bearer_auth(bad)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "token {bad:?}");
    }
    let r = h
        .http
        .post(h.url("/consent"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad_scope = json!({ "scopes": ["mind_reading"], "granted_by": "x" });
    let r = h
        .http
        .post(h.url("/consent"))
        .bearer_auth(token)
        .json(&bad_scope)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let id = uuid::Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        h.vault.db().session(id).await.unwrap().unwrap().state,
        SessionState::Consented
    );
    assert_eq!(h.vault.db().consents(id).await.unwrap().len(), 3);

    // The agent's token does not end sessions; the operator's does.
    let end = h.url(&format!("/sessions/{id}/end"));
    let r = h.http.post(&end).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .post(&end)
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.vault.db().session(id).await.unwrap().unwrap().state,
        SessionState::Ended
    );
    let r = h
        .http
        .post(h.url("/consent"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no consent into an ended session");
    h.server.take().unwrap().shutdown().await.unwrap();
}
