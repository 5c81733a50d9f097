//! Signing in to the console over real TLS with a real SQLite vault: a user made like
//! `idv user add` signs in, sees the home page and signs out; wrong passwords, unknown users,
//! a disallowed address, a missing or wrong one-time code and forged forms are refused — and
//! every attempt is in the audit log.

mod common;

use common::Console;
use storage::audit::Outcome;
use storage::db::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_sees_the_home_page_and_signs_out() {
    let console = Console::start().await;
    let (password, _) = console.add("ana", &[Role::Operator], &[], false).await;
    let browser = console.browser();

    // Not signed in: pages go to the login form, the API says 401.
    let home = browser
        .get(format!("{}/", console.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()["location"], "/login");
    let me = browser
        .get(format!("{}/console/me", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);

    let signed_in = console.sign_in(&browser, "ana", &password, "").await;
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.text().await);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let home = browser
        .get(format!("{}/", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    assert!(
        home.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(home.headers()["x-frame-options"], "DENY");
    let html = home.text().await.unwrap();
    assert!(html.contains("ana · operator · branch-7"), "{html}");
    assert!(
        html.contains("Live sessions") && !html.contains("Recordings"),
        "{html}"
    );
    let me: serde_json::Value = browser
        .get(format!("{}/console/me", console.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], serde_json::json!(["operator"]));
    let csrf = me["csrf"].as_str().unwrap().to_owned();

    // Signing out needs the login's CSRF token.
    let forged = browser
        .post(format!("{}/logout", console.url))
        .form(&[("csrf", "0123")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let out = browser
        .post(format!("{}/logout", console.url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let me = browser
        .get(format!("{}/console/me", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "signed out");

    let log = console.vault.audit().latest(20).await.unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    for expected in [
        ("cli:test", "user.add"),
        ("user:ana", "console.login"),
        ("user:ana", "console.logout"),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_unknown_users_and_forged_forms_are_refused_and_audited() {
    let console = Console::start().await;
    let (password, _) = console.add("bo", &[Role::Compliance], &[], false).await;
    let browser = console.browser();

    let wrong = console
        .sign_in(&browser, "bo", "not the password", "")
        .await;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("wrong name or password")
    );
    let unknown = console.sign_in(&browser, "nobody", &password, "").await;
    assert_eq!(unknown.status(), 401);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("wrong name or password"),
        "same answer"
    );

    // A form posted without the login page's cookie (another site's form) is refused.
    let stranger = console.browser();
    let forged = stranger
        .post(format!("{}/login", console.url))
        .form(&[
            ("name", "bo"),
            ("password", password.as_str()),
            ("csrf", "abc"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(
        stranger
            .get(format!("{}/console/me", console.url))
            .send()
            .await
            .unwrap()
            .status()
            == 401
    );

    let logins = console.logins().await;
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|(_, outcome, reason)| *outcome == Outcome::Denied
                && reason.contains("from 127.0.0.1: wrong name or password"))
    );
    assert!(logins.iter().any(|(actor, ..)| actor == "user:nobody"));
    assert!(
        !format!("{logins:?}").contains(&password),
        "no password in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_from_a_disallowed_address_is_refused_and_audited() {
    let console = Console::start().await;
    // Her own list leaves out loopback.
    let (password, _) = console
        .add("cy", &[Role::Operator], &["10.0.0.0/8"], false)
        .await;
    let browser = console.browser();
    let refused = console.sign_in(&browser, "cy", &password, "").await;
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("may not log in from 127.0.0.1")
    );
    let logins = console.logins().await;
    assert_eq!(logins[0].1, Outcome::Denied);
    assert!(
        logins[0].2.contains("may not log in from 127.0.0.1"),
        "{logins:?}"
    );

    // Without a list of his own, the group's decides.
    let (password, _) = console.add("dan", &[Role::Operator], &[], false).await;
    console
        .vault
        .db()
        .set_group_cidrs("branch-7", &["192.0.2.0/24".into()])
        .await
        .unwrap();
    let refused = console.sign_in(&browser, "dan", &password, "").await;
    assert_eq!(refused.status(), 403);
    console
        .vault
        .db()
        .set_group_cidrs("branch-7", &["192.0.2.0/24".into(), "127.0.0.0/8".into()])
        .await
        .unwrap();
    let allowed = console.sign_in(&browser, "dan", &password, "").await;
    assert_eq!(allowed.status(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_a_second_factor_needs_the_current_code() {
    let console = Console::start().await;
    let (password, url) = console.add("eve", &[Role::Admin], &[], true).await;
    let url = url.expect("an enrolment link");
    let secret = url
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap();
    let secret = storage::archive::FileKey::from_bytes(bytes.try_into().unwrap());
    let browser = console.browser();

    let missing = console.sign_in(&browser, "eve", &password, "").await;
    assert_eq!(missing.status(), 401);
    let now = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .unsigned_abs();
    let stale = console::auth::totp::code_at(&secret, "eve", now - 600);
    let wrong = console.sign_in(&browser, "eve", &password, &stale).await;
    assert_eq!(wrong.status(), 401);
    let code = console::auth::totp::code_at(&secret, "eve", now);
    let right = console.sign_in(&browser, "eve", &password, &code).await;
    assert_eq!(right.status(), 303);
    let logins = console.logins().await;
    let outcomes: Vec<Outcome> = logins.iter().map(|l| l.1).collect();
    assert_eq!(
        outcomes,
        [Outcome::Denied, Outcome::Denied, Outcome::Success],
        "in order"
    );
    assert!(logins[1].2.contains("one-time code"), "{logins:?}");
    // The secret is not in the database in clear.
    let stored = console
        .vault
        .db()
        .user_by_name("eve")
        .await
        .unwrap()
        .unwrap();
    let wrapped = stored.totp_wrapped.unwrap();
    assert!(!wrapped.windows(32).any(|w| w == secret.expose()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_password_is_stopped_after_five_failures_and_audited() {
    let console = Console::start().await;
    let (password, _) = console.add("gus", &[Role::Operator], &[], false).await;
    let browser = console.browser();
    for guess in 0..5 {
        let wrong = console
            .sign_in(&browser, "gus", &format!("guess number {guess}"), "")
            .await;
        assert_eq!(wrong.status(), 401);
    }
    // Even the right password is refused now, without being checked.
    let locked = console.sign_in(&browser, "gus", &password, "").await;
    assert_eq!(locked.status(), 429);
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("too many failed sign-ins")
    );
    let logins = console.logins().await;
    assert_eq!(logins.len(), 6);
    assert!(
        logins
            .last()
            .unwrap()
            .2
            .contains("too many failed sign-ins"),
        "{logins:?}"
    );
    // Another account is not locked out by it.
    let (other, _) = console.add("hal", &[Role::Operator], &[], false).await;
    assert_eq!(
        console.sign_in(&browser, "hal", &other, "").await.status(),
        303
    );
}
