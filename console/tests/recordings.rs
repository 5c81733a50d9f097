//! Compliance over real TLS on a real vault: a sealed recording in the blob store is found by
//! the search, opened only with a stated reason, played by HTTP ranges (decrypted on the fly,
//! byte for byte the plaintext, seeking anywhere), verified, and exported sealed; an operator
//! is refused at every door; every step — refusals included — is in the audit log, whose
//! chain the audit page reports intact.

mod common;

use common::{Console, hidden_csrf};
use storage::db::Role;
use time::OffsetDateTime;
use uuid::Uuid;

/// A session of group `branch-7` run by `operator`, muxed into a sealed archive of `plain`.
async fn recorded_session(console: &Console, operator: &str, plain: &[u8]) -> Uuid {
    let manifest =
        serde_json::json!({"kind": "idv recording", "container": "mp4", "note": "<b>escaped?</b>"});
    console.recorded_session(operator, plain, manifest).await
}

fn plaintext() -> Vec<u8> {
    // 9 MiB that differ everywhere: a wrong offset shows.
    (0..9u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compliance_officer_finds_opens_plays_verifies_and_exports_for_a_reason() {
    let console = Console::start().await;
    let plain = plaintext();
    let session = recorded_session(&console, "op-ana", &plain).await;
    let other = recorded_session(&console, "op-bo", b"another recording").await;
    let (password, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let browser = console.browser();
    assert_eq!(
        console
            .sign_in(&browser, "carla", &password, "")
            .await
            .status(),
        303
    );

    // Search: by operator, by case reference, by session prefix, by status.
    let found = |query: &'static str| {
        let browser = browser.clone();
        let url = format!("{}/recordings?{query}", console.url);
        async move { browser.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let html = found("operator=op-ana").await;
    assert!(
        html.contains(&session.to_string()) && !html.contains(&other.to_string()),
        "{html}"
    );
    let html = found("case=kyc-OP-BO").await;
    assert!(
        html.contains(&other.to_string()) && !html.contains(&session.to_string()),
        "by any part of the case reference, in any case: {html}"
    );
    assert!(
        html.contains("Case KYC-op-bo"),
        "the case is listed: {html}"
    );
    let html = found("status=failed").await;
    assert!(html.contains("No recording matches."));
    let today = OffsetDateTime::now_utc().date();
    let html = browser
        .get(format!(
            "{}/recordings?from={today}&to={today}&status=muxed",
            console.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&session.to_string()) && html.contains(&other.to_string()));
    let bad = found("from=yesterday").await;
    assert!(bad.contains("is not a date"), "{bad}");

    // Opening needs a reason.
    let page = browser
        .get(format!("{}/recordings/{session}", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Reason"), "the reason form first");
    let csrf = hidden_csrf(&page);
    let no_reason = browser
        .post(format!("{}/recordings/{session}/open", console.url))
        .form(&[("reason", "look"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(no_reason.status(), 400);
    let forged = browser
        .post(format!("{}/recordings/{session}/open", console.url))
        .form(&[("reason", "customer complaint 2026-114"), ("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let opened = browser
        .post(format!("{}/recordings/{session}/open", console.url))
        .form(&[
            ("reason", "customer complaint 2026-114"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 303);
    let location = opened.headers()["location"].to_str().unwrap().to_owned();
    let grant = location.split("grant=").nth(1).unwrap().to_owned();
    let page = browser
        .get(format!("{}{location}", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("customer complaint 2026-114"));
    assert!(
        page.contains("&#60;b&#62;escaped?&#60;/b&#62;") && !page.contains("<b>escaped"),
        "the manifest is escaped: {page}"
    );
    assert!(page.contains(&format!("/recordings/{session}/media?grant={grant}")));

    // Play: ranges as a player asks, including a seek near the end.
    let media = format!("{}/recordings/{session}/media?grant={grant}", console.url);
    for (range, from, to) in [
        ("bytes=0-1023", 0usize, 1023usize),
        ("bytes=5000000-5065535", 5_000_000, 5_065_535),
        ("bytes=-4096", plain.len() - 4096, plain.len() - 1),
    ] {
        let response = browser
            .get(&media)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {from}-{to}/{}", plain.len()).as_str()
        );
        assert!(
            response.bytes().await.unwrap() == plain[from..=to],
            "{range}: the plaintext"
        );
    }
    let open_ended = browser
        .get(&media)
        .header("range", "bytes=1048576-")
        .send()
        .await
        .unwrap();
    assert_eq!(open_ended.status(), 206);
    let body = open_ended.bytes().await.unwrap();
    assert_eq!(body.len(), 4 << 20, "capped per response");
    assert!(body == plain[1 << 20..(1 << 20) + (4 << 20)]);
    let beyond = browser
        .get(&media)
        .header("range", "bytes=99999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    let stranger = console.browser();
    assert_eq!(
        stranger.get(&media).send().await.unwrap().status(),
        401,
        "the grant is not enough"
    );

    // Verify and export.
    let verified = browser
        .post(format!("{}/recordings/{session}/verify", console.url))
        .form(&[("grant", grant.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        verified.contains("Intact: every chunk and the manifest check out"),
        "{verified}"
    );
    let sealed = browser
        .get(format!(
            "{}/recordings/{session}/archive?grant={grant}",
            console.url
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(sealed.len() > plain.len(), "the sealed archive, as stored");
    assert!(
        !sealed.windows(64).any(|w| w == &plain[4096..4160]),
        "still encrypted"
    );

    // The audit log has each step with the reason, and its chain is intact.
    let audit = browser
        .get(format!("{}/audit?actor=user:carla", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("audit log intact"), "{audit}");
    for action in [
        "recording.view",
        "recording.play",
        "recording.verify",
        "recording.export",
        "archive.open",
        "console.login",
    ] {
        assert!(audit.contains(action), "{action} in the audit page");
    }
    let log = console.vault.audit().latest(100).await.unwrap();
    let plays = log.iter().filter(|e| e.action == "recording.play").count();
    assert_eq!(
        plays, 1,
        "playing is audited once per opening, not per range"
    );
    assert!(
        log.iter()
            .filter(|e| e.action.starts_with("recording.")
                && e.outcome == storage::audit::Outcome::Success)
            .all(|e| e.reason.as_deref() == Some("customer complaint 2026-114"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_is_refused_recordings_and_the_audit_log_and_it_is_audited() {
    let console = Console::start().await;
    let session = recorded_session(&console, "op-ana", b"a recording").await;
    let (password, _) = console
        .add("otto", &[Role::Operator, Role::Admin], &[], false)
        .await;
    let browser = console.browser();
    assert_eq!(
        console
            .sign_in(&browser, "otto", &password, "")
            .await
            .status(),
        303
    );
    for path in [
        "/recordings".to_owned(),
        format!("/recordings/{session}"),
        "/audit".to_owned(),
    ] {
        let response = browser
            .get(format!("{}{path}", console.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let me: serde_json::Value = browser
        .get(format!("{}/console/me", console.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let opened = browser
        .post(format!("{}/recordings/{session}/open", console.url))
        .form(&[
            ("reason", "just curious about it"),
            ("csrf", me["csrf"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 403);
    let log = console.vault.audit().latest(50).await.unwrap();
    let denied: Vec<&str> = log
        .iter()
        .filter(|e| e.actor == "user:otto" && e.outcome == storage::audit::Outcome::Denied)
        .map(|e| e.action.as_str())
        .collect();
    for action in ["recording.search", "recording.view", "audit.read"] {
        assert!(
            denied.contains(&action),
            "{action} denied and audited: {denied:?}"
        );
    }
    assert!(
        !log.iter().any(|e| e.action == "archive.open"),
        "nothing was opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_opened_on_one_console_node_plays_on_another() {
    let console = Console::start().await;
    let plain = plaintext();
    let session = recorded_session(&console, "op-ana", &plain).await;
    let (password, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let (dora_pw, _) = console.add("dora", &[Role::Compliance], &[], false).await;
    let (browser, grant) = console
        .open_for("carla", &password, session, "dispute 2026-881 review")
        .await;

    // The player's next range lands on another node (same database, same blob store).
    let other = console.another_node().await;
    let range = |node: &str, grant: &str| {
        browser
            .get(format!("{node}/recordings/{session}/media?grant={grant}"))
            .header("range", "bytes=1000-1999")
            .send()
    };
    for node in [other.as_str(), console.url.as_str(), other.as_str()] {
        let answer = range(node, &grant).await.unwrap();
        assert_eq!(answer.status(), 206, "{node}");
        assert_eq!(&answer.bytes().await.unwrap()[..], &plain[1000..2000]);
    }
    assert_eq!(range(&other, "0000").await.unwrap().status(), 403);
    // Another officer cannot use carla's grant on either node.
    let dora = console.browser();
    assert_eq!(
        console.sign_in(&dora, "dora", &dora_pw, "").await.status(),
        303
    );
    let stolen = dora
        .get(format!("{other}/recordings/{session}/media?grant={grant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 403);

    let log = console.vault.audit().latest(100).await.unwrap();
    let count = |action: &str| {
        log.iter()
            .filter(|e| e.action == action && e.object.contains(&session.to_string()))
            .count()
    };
    assert_eq!(
        count("recording.play"),
        1,
        "playing is audited once per grant"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.action == "archive.open"
                && e.reason.as_deref() == Some("dispute 2026-881 review"))
            .count(),
        2,
        "each node opened the archive once, for the grant's reason"
    );
}
