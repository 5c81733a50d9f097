//! The console inside `idv serve`: an account made with `idv user add` signs in on the same
//! listener as the ingest API (role `all`), and `--role console` serves the pages alone.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::Server;

fn idv(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("IDV_BLOB_URL")
        .output()
        .unwrap()
}

fn browser(data: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The page at `url`, as text.
async fn page(browser: &reqwest::Client, url: &str) -> String {
    browser.get(url).send().await.unwrap().text().await.unwrap()
}

/// Signs in through the login form; the status of the form's answer.
async fn sign_in(browser: &reqwest::Client, url: &str, name: &str, password: &str) -> u16 {
    let html = page(browser, &format!("{url}/login")).await;
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    browser
        .post(format!("{url}/login"))
        .form(&[("name", name), ("password", password), ("csrf", csrf)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_made_on_the_command_line_signs_in_beside_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let made = idv(&data, &["user", "add", "ana", "--role", "compliance,admin"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = String::from_utf8(made.stdout).unwrap();
    assert!(
        out.contains("user ana (compliance, admin) in group default"),
        "{out}"
    );
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("the generated password, shown once")
        .to_owned();
    let bad = idv(&data, &["user", "add", "bo", "--role", "janitor"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role \"janitor\""));
    let taken = idv(&data, &["user", "add", "ana", "--role", "operator"]);
    assert!(String::from_utf8_lossy(&taken.stderr).contains("exists already"));

    let server = Server::start(&data, 60);
    let browser = browser(&data);
    assert_eq!(
        sign_in(&browser, &server.url, "ana", "wrong password!").await,
        401
    );
    assert_eq!(sign_in(&browser, &server.url, "ana", &password).await, 303);
    let me: serde_json::Value = browser
        .get(format!("{}/console/me", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], serde_json::json!(["compliance", "admin"]));
    // The ingest API is still there, on the same listener.
    let health = browser
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let listed = server.idv_out(&["user", "list"]);
    assert!(
        listed.starts_with("ana\tdefault\tcompliance,admin\tgroup's addresses\t-"),
        "{listed}"
    );
    server.stop();
}

/// `idv serve ARGS…` on `data`, once it says where it listens: the process and its URL.
fn serve(data: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("IDV_BLOB_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("it prints its URL").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_role_serves_the_pages_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = serve(&data, &["--role", "console"]);
    let browser = browser(&data);
    let login = browser.get(format!("{url}/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let api = browser
        .get(format!("{url}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404, "no ingest API in the console role");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A console on its own node (`--role console` with `[console]` naming the ingest nodes)
/// reaches a live session through ingest's fan-out, as a console in role `all` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_alone_watches_live_sessions_through_the_ingest_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let otto = support::browser::add_user(&data, "otto", &["--role", "operator"]);
    let password = otto.split_once(':').unwrap().1;
    let (mut ingest, ingest_url) = serve(&data, &["--role", "ingest"]);
    let config = dir.path().join("console.toml");
    std::fs::write(
        &config,
        format!(
            "[console]\ningest_url = \"{ingest_url}\"\ningest_ca = \"{}\"\ningest_token_file = \"{}\"\n",
            data.join("tls/cert.pem").display(),
            data.join("operator.token").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (mut console, url) = serve(&data, &["--role", "console", "--config", config]);

    let created = idv(
        &data,
        &["session", "create", "--server", &ingest_url, "--ca"]
            .into_iter()
            .chain([data.join("tls/cert.pem").to_str().unwrap()])
            .chain(["--token", data.join("operator.token").to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    let session = String::from_utf8(created.stdout).unwrap();
    let session = session.split_whitespace().next().unwrap().to_owned();
    let browser = browser(&data);
    assert_eq!(sign_in(&browser, &url, "otto", password).await, 303);
    let page = page(&browser, &format!("{url}/sessions/{session}")).await;
    let at = page.find("data-csrf=\"").expect("the page's CSRF token") + 11;
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    // An offer without media: the console must reach the session at ingest before it can
    // answer anything (alone and unconfigured, it answers 503).
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let answered = browser
        .post(format!("{url}/sessions/{session}/live"))
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({ "sdp": offer }))
        .send()
        .await
        .unwrap();
    let status = answered.status().as_u16();
    let body = answered.text().await.unwrap();
    assert_ne!(status, 503, "the console reached ingest: {body}");
    let log = String::from_utf8(idv(&data, &["audit", "list", "--limit", "50"]).stdout).unwrap();
    let object = format!("session:{session}");
    assert!(
        log.lines()
            .any(|l| l.contains("user:otto") && l.contains("session.watch") && l.contains(&object)),
        "the console audits its user's watch:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("operator:bootstrap")
            && l.contains("session.watch")
            && l.contains(&object)),
        "ingest audits the console's subscription:\n{log}"
    );
    for child in [&mut console, &mut ingest] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disabled_on_the_command_line_is_signed_out_at_once_and_enabled_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bo = support::browser::add_user(&data, "bo", &["--role", "operator"]);
    let password = bo.split_once(':').unwrap().1;
    let server = Server::start(&data, 60);
    let browser = browser(&data);
    assert_eq!(sign_in(&browser, &server.url, "bo", password).await, 303);
    let me = || async {
        browser
            .get(format!("{}/console/me", server.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(me().await, 200);

    let disabled = server.idv(&["user", "disable", "bo"]);
    assert!(disabled.status.success());
    assert_eq!(
        String::from_utf8_lossy(&disabled.stdout).trim(),
        "user bo disabled; 1 console logins ended"
    );
    assert_eq!(me().await, 401, "signed out at once");
    assert_eq!(sign_in(&browser, &server.url, "bo", password).await, 401);
    assert!(
        server
            .idv_out(&["user", "list"])
            .trim_end()
            .ends_with("\tdisabled")
    );
    let nobody = idv(&data, &["user", "disable", "nobody"]);
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("there is no user called \"nobody\""));

    let enabled = server.idv_out(&["user", "enable", "bo"]);
    assert_eq!(enabled.trim(), "user bo enabled");
    assert_eq!(sign_in(&browser, &server.url, "bo", password).await, 303);
    assert_eq!(me().await, 200);
    server.stop();

    let vault = storage::Vault::open(&storage::StorageConfig::embedded(&data))
        .await
        .unwrap();
    let log = vault.audit().latest(50).await.unwrap();
    for (action, reason) in [
        ("user.disable", "1 console logins ended"),
        ("user.enable", "may log in again"),
    ] {
        assert!(
            log.iter().any(|e| e.action == action
                && e.object == "user:bo"
                && e.actor.starts_with("cli:")
                && e.reason.as_deref() == Some(reason)),
            "{action} audited"
        );
    }
}
