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

/// Signs in through the login form; the status of the form's answer.
async fn sign_in(browser: &reqwest::Client, url: &str, name: &str, password: &str) -> u16 {
    let html = browser
        .get(format!("{url}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_role_serves_the_pages_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_idv"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--role", "console", "--listen", "127.0.0.1:0"])
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
