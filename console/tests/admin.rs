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
