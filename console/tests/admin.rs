//! The admins' page over real TLS: an admin adds an account (its password shown once) that
//! then signs in, sets a group's allowed addresses (which then refuse a login) and retention
//! period; a non-admin is refused; everything is audited.

mod common;

use common::{Console, hidden_csrf};
use storage::db::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_users_and_sets_group_addresses_and_retention() {
    let console = Console::start().await;
    let (password, _) = console.add("ada", &[Role::Admin], &[], false).await;
    let admin = console.browser();
    assert_eq!(
        console.sign_in(&admin, "ada", &password, "").await.status(),
        303
    );
    let page = admin
        .get(format!("{}/users", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<td>ada</td>"), "{html}");
    let csrf = hidden_csrf(&html);

    let added = admin
        .post(format!("{}/users", console.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "nina"),
            ("group", "branch-7"),
            ("roles", "operator,supervisor"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let html = added.text().await.unwrap();
    let shown = html
        .split("Password (shown once): ")
        .nth(1)
        .expect("the password is shown");
    let new_password = shown
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(new_password.len(), 20);
    let nina = console.browser();
    assert_eq!(
        console
            .sign_in(&nina, "nina", &new_password, "")
            .await
            .status(),
        303
    );

    let bad = admin
        .post(format!("{}/users", console.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "x y"),
            ("group", "branch-7"),
            ("roles", "janitor"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("unknown role"));

    // The group's list now refuses loopback for nina (she has no list of her own).
    let saved = admin
        .post(format!("{}/groups", console.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("group", "branch-7"),
            ("allowed", "10.0.0.0/8"),
            ("retention_days", "90"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    assert!(
        saved
            .text()
            .await
            .unwrap()
            .contains("group branch-7: allowed from 10.0.0.0/8; recordings kept 90 days")
    );
    assert_eq!(
        console
            .sign_in(&console.browser(), "nina", &new_password, "")
            .await
            .status(),
        403
    );
    assert_eq!(
        console.vault.db().group_retentions().await.unwrap(),
        [("branch-7".to_owned(), 90)]
    );
    let forged = admin
        .post(format!("{}/groups", console.url))
        .form(&[("csrf", "nope"), ("group", "branch-7"), ("allowed", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // A supervisor is not an admin.
    let refused = nina
        .get(format!("{}/users", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let log = console.vault.audit().latest(100).await.unwrap();
    let seen = |actor: &str, action: &str, outcome| {
        log.iter()
            .any(|e| e.actor == actor && e.action == action && e.outcome == outcome)
    };
    assert!(seen(
        "user:ada",
        "user.add",
        storage::audit::Outcome::Success
    ));
    assert!(seen(
        "user:ada",
        "group.set",
        storage::audit::Outcome::Success
    ));
    assert!(seen(
        "user:nina",
        "user.list",
        storage::audit::Outcome::Denied
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_disables_an_account_whose_logins_end_at_once_and_enables_it_again() {
    use storage::audit::Outcome;
    let console = Console::start().await;
    let (ada_pw, _) = console.add("ada", &[Role::Admin], &[], false).await;
    let (nina_pw, _) = console.add("nina", &[Role::Operator], &[], false).await;
    let (carla_pw, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let admin = console.browser();
    assert_eq!(
        console.sign_in(&admin, "ada", &ada_pw, "").await.status(),
        303
    );
    let csrf = hidden_csrf(
        &admin
            .get(format!("{}/users", console.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    // nina is signed in twice (two browsers).
    let (nina, nina_too) = (console.browser(), console.browser());
    for browser in [&nina, &nina_too] {
        assert_eq!(
            console
                .sign_in(browser, "nina", &nina_pw, "")
                .await
                .status(),
            303
        );
    }
    let me = |browser: &reqwest::Client| {
        let request = browser.get(format!("{}/console/me", console.url));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(me(&nina).await, 200);
    let post = |browser: &reqwest::Client, path: &str, csrf: &str| {
        let request = browser
            .post(format!("{}{path}", console.url))
            .form(&[("csrf", csrf.to_owned())]);
        async move { request.send().await.unwrap() }
    };

    // Refused: a forged CSRF token, a non-admin, an admin disabling herself, nobody.
    assert_eq!(
        post(&admin, "/users/nina/disable", "nope").await.status(),
        403
    );
    let carla = console.browser();
    assert_eq!(
        console
            .sign_in(&carla, "carla", &carla_pw, "")
            .await
            .status(),
        303
    );
    let carla_csrf: serde_json::Value = carla
        .get(format!("{}/console/me", console.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let carla_csrf = carla_csrf["csrf"].as_str().unwrap();
    assert_eq!(
        post(&carla, "/users/nina/disable", carla_csrf)
            .await
            .status(),
        403
    );
    assert_eq!(
        post(&carla, "/users/ada/enable", carla_csrf).await.status(),
        403
    );
    let herself = post(&admin, "/users/ada/disable", &csrf).await;
    assert_eq!(herself.status(), 400);
    assert!(
        herself
            .text()
            .await
            .unwrap()
            .contains("cannot disable their own account")
    );
    assert_eq!(
        post(&admin, "/users/nobody/disable", &csrf).await.status(),
        404
    );
    assert_eq!(me(&nina).await, 200, "nothing happened to nina yet");

    // Disabled: both of nina's logins end, and she cannot sign in again.
    let done = post(&admin, "/users/nina/disable", &csrf).await;
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    assert!(
        html.contains("nina is disabled: 2 console logins ended"),
        "{html}"
    );
    assert!(
        html.contains("id=\"enable-nina\""),
        "an Enable button for nina"
    );
    assert!(
        !html.contains("id=\"disable-ada\""),
        "no button to disable oneself"
    );
    assert_eq!(me(&nina).await, 401);
    assert_eq!(me(&nina_too).await, 401);
    let again = console
        .sign_in(&console.browser(), "nina", &nina_pw, "")
        .await;
    assert_eq!(again.status(), 401, "a disabled account cannot sign in");
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("this account is disabled")
    );
    assert!(
        console
            .vault
            .db()
            .user_by_name("nina")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );

    // Enabled: she signs in again.
    let done = post(&admin, "/users/nina/enable", &csrf).await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("nina is enabled"));
    let nina = console.browser();
    assert_eq!(
        console.sign_in(&nina, "nina", &nina_pw, "").await.status(),
        303
    );
    assert_eq!(me(&nina).await, 200);

    let log = console.vault.audit().latest(100).await.unwrap();
    let entries = |action: &str, outcome: Outcome| -> Vec<(String, String, String)> {
        log.iter()
            .filter(|e| e.action == action && e.outcome == outcome)
            .map(|e| {
                (
                    e.actor.clone(),
                    e.object.clone(),
                    e.reason.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    assert_eq!(
        entries("user.disable", Outcome::Success),
        [(
            "user:ada".to_owned(),
            "user:nina".to_owned(),
            "2 console logins ended".to_owned()
        )]
    );
    assert_eq!(
        entries("user.enable", Outcome::Success),
        [(
            "user:ada".to_owned(),
            "user:nina".to_owned(),
            "may log in again".to_owned()
        )]
    );
    let denied = entries("user.disable", Outcome::Denied);
    assert!(
        denied
            .iter()
            .any(|(actor, _, why)| actor == "user:carla" && why.contains("admins only")),
        "{denied:?}"
    );
    assert!(
        denied.iter().any(|(actor, object, why)| actor == "user:ada"
            && object == "user:ada"
            && why.contains("own account")),
        "{denied:?}"
    );
    assert!(
        entries("user.enable", Outcome::Denied)
            .iter()
            .any(|(actor, _, _)| actor == "user:carla")
    );
    assert!(
        console
            .logins()
            .await
            .iter()
            .any(|(actor, outcome, why)| actor == "user:nina"
                && *outcome == Outcome::Denied
                && why.contains("disabled")),
        "the refused sign-in is audited"
    );
}
