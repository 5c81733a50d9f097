//! The console over real TLS on a real SQLite vault, and a browser-like client: shared by the
//! console's tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use console::accounts::{self, AccountRequest};
use storage::Access;
use storage::audit::Outcome;
use storage::db::{NewSession, Role};
use time::OffsetDateTime;
use uuid::Uuid;

pub struct Console {
    pub url: String,
    pub vault: storage::Vault,
    cert: Vec<u8>,
    _dir: tempfile::TempDir,
    handle: axum_server::Handle<SocketAddr>,
    tls: axum_server::tls_rustls::RustlsConfig,
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
        let server = axum_server::from_tcp_rustls(listener, tls.clone())
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
            tls,
        }
    }

    /// Signs `name` in and opens `session` for `reason`: the browser and the grant.
    pub async fn open_for(
        &self,
        name: &str,
        password: &str,
        session: Uuid,
        reason: &str,
    ) -> (reqwest::Client, String) {
        let browser = self.browser();
        assert_eq!(
            self.sign_in(&browser, name, password, "").await.status(),
            303
        );
        let page = browser
            .get(format!("{}/recordings/{session}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = hidden_csrf(&page);
        let opened = browser
            .post(format!("{}/recordings/{session}/open", self.url))
            .form(&[("reason", reason), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 303);
        let location = opened.headers()["location"].to_str().unwrap().to_owned();
        (browser, location.split("grant=").nth(1).unwrap().to_owned())
    }

    /// Another console node on the same vault (as behind a load balancer): its URL. It runs
    /// until the test ends.
    pub async fn another_node(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = console::router(console::ConsoleState::new(self.vault.clone()));
        let server = axum_server::from_tcp_rustls(listener, self.tls.clone()).unwrap();
        tokio::spawn(async move {
            server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        });
        format!("https://localhost:{}", addr.port())
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

    /// The data directory (database, keyring, blob store).
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// A session of group `branch-7` run by `operator`, muxed into a sealed archive of `plain`
    /// with `manifest`.
    pub async fn recorded_session(
        &self,
        operator: &str,
        plain: &[u8],
        manifest: serde_json::Value,
    ) -> Uuid {
        let db = self.vault.db();
        let session = Uuid::new_v4();
        db.create_session(&NewSession {
            // The operator's customer, as they would type it: searchable by any part.
            case_reference: Some(format!("Case KYC-{operator}")),
            session_id: session,
            group: "branch-7".into(),
            created_by: operator.into(),
            created_at: OffsetDateTime::now_utc(),
            wrapped_media_key: vec![1; 40],
        })
        .await
        .unwrap();
        db.enqueue_mux_job(session, false, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let job = db
            .claim_mux_job(
                "test-worker",
                OffsetDateTime::now_utc(),
                std::time::Duration::from_secs(60),
            )
            .await
            .unwrap()
            .unwrap();
        let archive = self
            .vault
            .seal_to_blob(
                std::io::Cursor::new(plain.to_vec()),
                &format!("recordings/{session}.idvr"),
                manifest,
                &Access::new("muxer@test", None),
            )
            .await
            .unwrap();
        assert!(
            db.complete_mux_job(
                job.job_id,
                "test-worker",
                archive.archive_id,
                OffsetDateTime::now_utc()
            )
            .await
            .unwrap()
        );
        session
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

/// A test's own WebRTC peer (a browser stand-in) for `media`'s codecs: default interceptors,
/// loopback host candidates.
pub async fn test_peer(
    mut media: webrtc::api::media_engine::MediaEngine,
) -> std::sync::Arc<webrtc::peer_connection::RTCPeerConnection> {
    use webrtc::api::APIBuilder;
    use webrtc::api::interceptor_registry::register_default_interceptors;
    use webrtc::api::setting_engine::SettingEngine;
    use webrtc::interceptor::registry::Registry;
    use webrtc::peer_connection::configuration::RTCConfiguration;
    // DTLS needs the process's rustls provider (ring and aws-lc-rs are both compiled in).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    std::sync::Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    )
}
