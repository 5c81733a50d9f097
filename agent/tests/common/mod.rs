//! The agent's test harness: a real ingest server on loopback (its own data directory), an
//! operator who creates sessions, a fault-injecting TCP proxy between the agent and the
//! server, and a reader of what the server stored once the session ended.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::{AgentConfig, TrackSettings, VideoSource};
use ingest::{RunningServer, ServeConfig, start};
use proto::{FrameFlags, FrameHeader, SessionCipher, SessionKey, Track};
use storage::track_log::Records;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

/// An operator's live WebSocket.
pub type LiveSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next live notice of `kind` (`control`, `refused`, …) on `socket`, frames skipped.
pub async fn next_notice(socket: &mut LiveSocket, kind: &str) -> serde_json::Value {
    use futures::StreamExt;
    loop {
        let message = socket.next().await.unwrap().unwrap();
        if let Ok(text) = message.to_text()
            && let Ok(notice) = serde_json::from_str::<serde_json::Value>(text)
            && notice["type"] == kind
        {
            return notice;
        }
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub server: RunningServer,
    pub vault: storage::Vault,
    http: reqwest::Client,
    token: String,
}

impl Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vault = storage::Vault::open(&storage::StorageConfig::embedded(dir.path()))
            .await
            .unwrap();
        let config = ServeConfig::local(dir.path().to_path_buf(), 0);
        let server = start(config, vault.clone()).await.unwrap();
        let pem = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let token = std::fs::read_to_string(dir.path().join("operator.token"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            dir,
            server,
            vault,
            http,
            token,
        }
    }

    /// A new session: (id, code).
    pub async fn create(&self) -> (Uuid, String) {
        let r = self
            .http
            .post(format!("{}/api/v1/sessions", self.server.url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        (
            body["session_id"].as_str().unwrap().parse().unwrap(),
            body["code"].as_str().unwrap().to_owned(),
        )
    }

    /// The operator's live WebSocket on `session` (after its `subscribed` notice).
    pub async fn watch(&self, session: Uuid) -> LiveSocket {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "wss://{}/api/v1/sessions/{session}/live",
            self.server.addr()
        );
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        let tls = agent::join::tls_config(Some(&self.dir.path().join("tls/cert.pem"))).unwrap();
        let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(tls)),
        )
        .await
        .unwrap();
        let first = socket.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("subscribed"), "{first:?}");
        socket
    }

    /// Ends a session as its operator.
    pub async fn end(&self, session: Uuid) {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/sessions/{session}/end",
                self.server.url()
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// An agent configuration for `code` through `url` (the server, or a proxy in front of
    /// it): the test camera at 15 fps, small, and the given screen.
    pub fn agent_config(&self, url: &str, code: &str, screen: VideoSource) -> AgentConfig {
        let mut config = AgentConfig::new(url.parse().unwrap(), code);
        config.ca = Some(self.dir.path().join("tls/cert.pem"));
        config.camera = TrackSettings {
            source: VideoSource::Test,
            fps: 15,
            bitrate_kbps: 300,
            size: Some((320, 240)),
        };
        config.screen = TrackSettings {
            source: screen,
            fps: 5,
            bitrate_kbps: 300,
            size: None,
        };
        config.consent = Some(
            [
                proto::ConsentScope::Camera,
                proto::ConsentScope::Screen,
                proto::ConsentScope::Recording,
            ]
            .into(),
        );
        config
    }

    /// The frames the server stored for an ended session, per track, as (header, plaintext),
    /// in stored order — read from the segments the session rolled into the blob store.
    pub async fn stored(&self, session: Uuid) -> BTreeMap<Track, Vec<(FrameHeader, Vec<u8>)>> {
        let db = self.vault.db();
        let record = db.session(session).await.unwrap().unwrap();
        let key = self
            .vault
            .unwrap_session_media_key(session, record.wrapped_media_key.as_deref().unwrap())
            .await
            .unwrap();
        let cipher = SessionCipher::new(&SessionKey::from_bytes(*key.expose()), session);
        let mut stored: BTreeMap<Track, Vec<(FrameHeader, Vec<u8>)>> = BTreeMap::new();
        for segment in db.segments(session, None).await.unwrap() {
            let blob = segment.location.strip_prefix("blob:").unwrap();
            let size = self.vault.blobs().size(blob).await.unwrap();
            let bytes = self.vault.blobs().get_range(blob, 0..size).await.unwrap();
            for record in Records::from_reader(blob, std::io::Cursor::new(bytes.to_vec())) {
                let record = record.unwrap();
                let (header, plain) = cipher.open(&record.frame, 8 << 20).unwrap();
                stored
                    .entry(header.track)
                    .or_default()
                    .push((header, plain));
            }
        }
        stored
    }

    /// Waits until the session's segments are in the blob store (it ended and rolled).
    pub async fn wait_rolled(&self, session: Uuid) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let record = self.vault.db().session(session).await.unwrap().unwrap();
            let rolled = !self
                .vault
                .db()
                .segments(session, None)
                .await
                .unwrap()
                .is_empty();
            if record.state == storage::db::SessionState::Ended && rolled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the session did not end and roll"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Checks that a track holds every seq from 1 to `last` exactly once, in order, each opening
/// under the session key; returns how many frames were flagged as after a gap.
pub fn assert_complete(frames: &[(FrameHeader, Vec<u8>)], last: u64, track: Track) -> usize {
    let seqs: Vec<u64> = frames.iter().map(|(h, _)| h.seq).collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "{} holds every sealed frame once",
        track.name()
    );
    assert!(
        frames[0].0.flags.contains(FrameFlags::KEYFRAME),
        "{} starts with a keyframe",
        track.name()
    );
    frames
        .iter()
        .filter(|(h, _)| h.flags.contains(FrameFlags::GAP))
        .count()
}

/// A TCP proxy that can cut every connection (and refuse new ones) for a while, and connect
/// upstream from another local address (the agent's address changing, as on Wi-Fi → LTE).
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyState {
    upstream: SocketAddr,
    /// When set, TLS is terminated here (with the server's own certificate) and WebSocket
    /// upgrades are answered 403, as a corporate proxy does; other requests pass.
    refuse_upgrades: Mutex<Option<Tls>>,
    down_until: Mutex<Option<Instant>>,
    source: Mutex<IpAddr>,
    cuts: watch::Sender<u64>,
    /// Upstream connections made, by the local address they came from.
    pub connections: Mutex<BTreeMap<IpAddr, usize>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream,
            down_until: Mutex::new(None),
            source: Mutex::new(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            cuts: watch::channel(0).0,
            connections: Mutex::default(),
            refuse_upgrades: Mutex::new(None),
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let state = accept_state.clone();
                tokio::spawn(async move { state.relay(inbound).await });
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Drops every connection now and refuses new ones for `how_long`.
    pub fn cut(&self, how_long: Duration) {
        *self.state.down_until.lock().unwrap() = Some(Instant::now() + how_long);
        self.state.cuts.send_modify(|n| *n += 1);
    }

    /// Drops every connection and connects upstream from `source` from now on.
    pub fn switch_source(&self, source: IpAddr) {
        *self.state.source.lock().unwrap() = source;
        self.state.cuts.send_modify(|n| *n += 1);
    }

    /// From now on (until [`Proxy::allow_upgrades`]), WebSocket upgrades are refused with 403;
    /// `data_dir` holds the server's certificate and key.
    pub fn refuse_upgrades(&self, data_dir: &std::path::Path) {
        *self.state.refuse_upgrades.lock().unwrap() = Some(Tls::of_server(data_dir));
        self.state.cuts.send_modify(|n| *n += 1);
    }

    /// Lets upgrades through again.
    pub fn allow_upgrades(&self) {
        *self.state.refuse_upgrades.lock().unwrap() = None;
    }

    pub fn connections_from(&self, source: IpAddr) -> usize {
        self.state
            .connections
            .lock()
            .unwrap()
            .get(&source)
            .copied()
            .unwrap_or(0)
    }
}

impl ProxyState {
    async fn relay(self: Arc<Self>, mut inbound: TcpStream) {
        let down = self
            .down_until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until);
        if down {
            return; // dropped: the agent sees the connection fail
        }
        let refusing = self.refuse_upgrades.lock().unwrap().clone();
        if let Some(tls) = refusing {
            let _ = tls.filter(inbound, self.upstream).await;
            return;
        }
        let source = *self.source.lock().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        if socket.bind(SocketAddr::new(source, 0)).is_err() {
            return;
        }
        let Ok(mut upstream) = socket.connect(self.upstream).await else {
            return;
        };
        *self.connections.lock().unwrap().entry(source).or_default() += 1;
        let mut cuts = self.cuts.subscribe();
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream) => {}
            _ = cuts.changed() => {}
        }
    }
}

/// TLS terminated in the proxy with the server's own certificate.
#[derive(Clone)]
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
}

impl Tls {
    fn of_server(data_dir: &std::path::Path) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert_pem = std::fs::read(data_dir.join("tls/cert.pem")).unwrap();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(data_dir.join("tls/key.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        }
    }

    /// Reads the request head: a WebSocket upgrade gets 403, anything else goes upstream.
    async fn filter(&self, inbound: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut client = self.acceptor.accept(inbound).await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = client.read(&mut byte).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&byte[..n]);
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if text.contains("upgrade: websocket") {
            client
                .write_all(
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await?;
            return client.shutdown().await;
        }
        let tcp = TcpStream::connect(upstream).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut server = self.connector.connect(name, tcp).await?;
        server.write_all(&head).await?;
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        Ok(())
    }
}
