//! The server over real TLS on loopback: certificate and token made on first start and kept,
//! credentials checked, health and metrics served, graceful shutdown.

use std::os::unix::fs::PermissionsExt;

mod common;

use common::Harness;
use ingest::{ServeConfig, start};

async fn vault(dir: &std::path::Path) -> storage::Vault {
    storage::Vault::open(&storage::StorageConfig::embedded(dir))
        .await
        .unwrap()
}

fn client(data_dir: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(data_dir.join("tls/cert.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

fn token(data_dir: &std::path::Path) -> String {
    std::fs::read_to_string(data_dir.join("operator.token"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn first_start_makes_a_certificate_and_a_token_that_later_starts_keep() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        ServeConfig::local(dir.path().to_path_buf(), 0),
        vault(dir.path()).await,
    )
    .await
    .unwrap();
    let key_mode = std::fs::metadata(dir.path().join("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    let token_mode = std::fs::metadata(dir.path().join("operator.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!((key_mode & 0o777, token_mode & 0o777), (0o600, 0o600));
    let http = client(dir.path());
    let health = http
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let first_token = token(dir.path());
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    server.shutdown().await.unwrap();

    let again = start(
        ServeConfig::local(dir.path().to_path_buf(), 0),
        vault(dir.path()).await,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("tls/cert.pem")).unwrap(),
        cert
    );
    assert_eq!(token(dir.path()), first_token);
    // The same pinned certificate still works.
    let whoami = http
        .get(format!("{}/api/v1/whoami", again.url()))
        .bearer_auth(&first_token)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_api_refuses_missing_and_wrong_tokens_and_counts_them() {
    let mut h = Harness::new(|_| {}).await;
    let server = h.server.take().unwrap();
    let http = h.http.clone();
    let url = format!("{}/api/v1/whoami", server.url());
    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"], "not authorised");
    let wrong = http
        .get(&url)
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http.get(&url).bearer_auth(&h.token).send().await.unwrap();
    let who: serde_json::Value = right.json().await.unwrap();
    assert_eq!(who["group"], "default");

    let metrics = http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("idv_http_unauthorised_total 2"),
        "{metrics}"
    );
    let openapi: serde_json::Value = http
        .get(format!("{}/api/v1/openapi.json", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    // Every route the API serves is described (kept in step with `api::routes`).
    let api = include_str!("../src/api.rs");
    for route in api.split(".route(\"").skip(1) {
        let path = format!("/api/v1{}", &route[..route.find('"').unwrap()]);
        assert!(
            openapi["paths"].get(&path).is_some(),
            "{path} is missing from openapi.json"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn plain_http_gets_no_answer_and_an_untrusted_client_fails_the_handshake() {
    let mut h = Harness::new(|_| {}).await;
    let server = h.server.take().unwrap();
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusted = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
        .get(format!("{}/healthz", server.url()))
        .send()
        .await;
    assert!(
        untrusted.is_err(),
        "a client without our certificate must not connect"
    );
    server.shutdown().await.unwrap();
}
