//! The console over real TLS on a real SQLite vault, and a browser-like client: shared by the
//! console's tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use console::accounts::{self, AccountRequest};
use storage::audit::Outcome;
use storage::db::Role;

pub struct Console {
    pub url: String,
    pub vault: storage::Vault,
    cert: Vec<u8>,
    _dir: tempfile::TempDir,
    handle: axum_server::Handle<SocketAddr>,
}

impl Console {
    pub async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let vault = storage::Vault::open(&storage::StorageConfig::embedded(dir.path()))
            .await
            .unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pem = cert.cert.pem();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            pem.clone().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = axum_server::Handle::new();
        let app = console::router(console::ConsoleState::new(vault.clone()));
        let server = axum_server::from_tcp_rustls(listener, tls)
            .unwrap()
            .handle(handle.clone());
        tokio::spawn(async move {
            server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        });
        Self {
            url: format!("https://localhost:{}", addr.port()),
            vault,
            cert: pem.into_bytes(),
            _dir: dir,
            handle,
        }
    }

    /// A browser-like client: its own cookies, trusting the console's certificate, no
    /// redirects followed (so they can be checked).
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.cert).unwrap())
            .resolve("localhost", ([127, 0, 0, 1], 0).into())
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub async fn add(
        &self,
        name: &str,
        roles: &[Role],
        allowed: &[&str],
        totp: bool,
    ) -> (String, Option<String>) {
        let made = accounts::add(
            &self.vault,
            AccountRequest {
                name: name.into(),
                group: "branch-7".into(),
                roles: roles.to_vec(),
                password: None,
                allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
                second_factor: totp,
            },
            "cli:test",
        )
        .await
        .unwrap();
        (made.generated_password.unwrap(), made.totp_url)
    }

    /// Fetches the login form (its CSRF field and cookie) and submits it.
    pub async fn sign_in(
        &self,
        browser: &reqwest::Client,
        name: &str,
        password: &str,
        otp: &str,
    ) -> reqwest::Response {
        let form = browser
            .get(format!("{}/login", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), 200);
        let html = form.text().await.unwrap();
        let csrf = hidden_csrf(&html);
        browser
            .post(format!("{}/login", self.url))
            .form(&[
                ("name", name),
                ("password", password),
                ("otp", otp),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn logins(&self) -> Vec<(String, Outcome, String)> {
        self.vault
            .audit()
            .latest(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "console.login")
            .map(|e| (e.actor, e.outcome, e.reason.unwrap_or_default()))
            .collect()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

pub fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}
