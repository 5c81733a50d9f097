//! A test harness: a server on loopback with its own data directory, an operator client, and
//! a simulated agent that speaks the media protocol through `proto` (as the real agent does).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ingest::{RunningServer, ServeConfig, start};
use proto::{
    AgentControl, AgentInfo, FrameFlags, FrameHeader, ServerControl, SessionCipher, SessionKey,
    Track, TrackSeqs,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// A short mono 8 kHz PCM WAV.
pub fn wav(samples: usize) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..samples {
        writer
            .write_sample(((i as f64 * 0.05).sin() * 12_000.0) as i16)
            .unwrap();
    }
    writer.finalize().unwrap();
    out.into_inner()
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: Option<RunningServer>,
    pub http: reqwest::Client,
    pub token: String,
    pub vault: storage::Vault,
}

impl Harness {
    /// Waits until every acknowledged frame is in its track log's file (the server writes
    /// them there from its journal in the background).
    pub async fn settle(&self) {
        if let Some(server) = &self.server {
            server.settle_logs().await.unwrap();
        }
    }

    pub async fn new(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vault = storage::Vault::open(&storage::StorageConfig::embedded(dir.path()))
            .await
            .unwrap();
        let mut config = ServeConfig::local(dir.path().to_path_buf(), 0);
        configure(&mut config);
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
            server: Some(server),
            http,
            token,
            vault,
        }
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.server().url())
    }

    pub async fn create(&self) -> Value {
        let r = self
            .http
            .post(self.url("/sessions"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    pub async fn join(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/join"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// A session joined and consented to `scopes`: (session id, token, key).
    pub async fn consented_session(&self, scopes: &[&str]) -> Joined {
        let created = self.create().await;
        let (status, joined) = self
            .join(json!({ "code": created["code"], "group": "default" }))
            .await;
        assert_eq!(status, 200, "{joined}");
        let token = joined["session_token"].as_str().unwrap().to_owned();
        let r = self
            .http
            .post(self.url("/consent"))
            .bearer_auth(&token)
            .json(&json!({ "scopes": scopes, "granted_by": "test agent" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let session = uuid::Uuid::parse_str(joined["session_id"].as_str().unwrap()).unwrap();
        let key = hex::decode(joined["media_key"].as_str().unwrap()).unwrap();
        Joined {
            session,
            token,
            key: SessionKey::from_slice(&key).unwrap(),
        }
    }

    /// Ends `session` as its operator.
    pub async fn end(&self, session: uuid::Uuid) {
        let r = self
            .http
            .post(self.url(&format!("/sessions/{session}/end")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// An agent connected to `joined`'s session, and what the server had acknowledged.
    pub async fn agent(&self, joined: &Joined) -> (Agent, TrackSeqs) {
        Agent::connect(
            &self.agent_url(),
            &self.cert(),
            &joined.token,
            &joined.key,
            joined.session,
        )
        .await
    }

    pub fn agent_url(&self) -> String {
        format!("wss://{}/api/v1/agent", self.server().addr())
    }

    pub fn cert(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("tls/cert.pem")).unwrap()
    }
}

pub struct Joined {
    pub session: uuid::Uuid,
    pub token: String,
    pub key: SessionKey,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A simulated agent: one WebSocket, frames sealed with `proto`.
pub struct Agent {
    pub ws: Socket,
    pub cipher: SessionCipher,
}

/// How a connection ended, as the agent saw it.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Agent {
    /// Connects over TLS trusting only `cert_pem`, says hello, returns the agent and `acked`.
    pub async fn connect(
        url: &str,
        cert_pem: &[u8],
        token: &str,
        key: &SessionKey,
        session: uuid::Uuid,
    ) -> (Self, TrackSeqs) {
        let mut agent = Self::connect_raw(url, cert_pem, key, session).await;
        agent.hello(token).await;
        match agent.control().await {
            Ok(ServerControl::Welcome {
                acked, session_id, ..
            }) => {
                assert_eq!(session_id, session);
                (agent, acked)
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn connect_raw(
        url: &str,
        cert_pem: &[u8],
        key: &SessionKey,
        session: uuid::Uuid,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types_from_pem(cert_pem) {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            true,
            Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))),
        )
        .await
        .unwrap();
        Self {
            ws,
            cipher: SessionCipher::new(key, session),
        }
    }

    pub async fn hello(&mut self, token: &str) {
        let hello = AgentControl::hello(
            proto::control::SessionToken::new(token),
            AgentInfo {
                version: "test-agent".into(),
                platform: "test".into(),
                tracks: Track::ALL.into_iter().collect(),
            },
            TrackSeqs::new(),
        );
        self.ws
            .send(Message::Text(hello.to_json().into()))
            .await
            .unwrap();
    }

    pub fn frame(&self, track: Track, seq: u64, payload: &[u8]) -> Vec<u8> {
        let header =
            FrameHeader::new(track, seq, seq as i64 * 33_333_333).with_flags(if seq % 30 == 1 {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::NONE
            });
        self.cipher.seal(&header, payload).unwrap()
    }

    pub async fn send_frame(&mut self, track: Track, seq: u64, payload: &[u8]) {
        let bytes = self.frame(track, seq, payload);
        self.send_bytes(bytes).await;
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        let _ = self.ws.send(Message::Binary(bytes.into())).await;
    }

    pub async fn send_text(&mut self, text: String) {
        let _ = self.ws.send(Message::Text(text.into())).await;
    }

    /// The next control message, or how the connection closed.
    pub async fn control(&mut self) -> Result<ServerControl, Closed> {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("the server answers in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Ok(ServerControl::from_json(&text).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map_or((1005, String::new()), |CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        });
                    return Err(Closed { code, reason });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(Closed {
                        code: 1006,
                        reason: e.to_string(),
                    });
                }
                None => {
                    return Err(Closed {
                        code: 1006,
                        reason: "gone".into(),
                    });
                }
            }
        }
    }

    /// Waits until `track` is acknowledged up to `seq`; returns the acks seen.
    pub async fn acked_through(&mut self, track: Track, seq: u64) -> u64 {
        loop {
            match self.control().await {
                Ok(ServerControl::Ack { track: t, seq: s }) if t == track && s >= seq => return s,
                Ok(_) => {}
                Err(closed) => panic!("closed while waiting for ack {seq}: {closed:?}"),
            }
        }
    }

    /// Waits for the server to close the connection (skipping acks and its close message).
    pub async fn closed(&mut self) -> Closed {
        loop {
            match self.control().await {
                Ok(_) => {}
                Err(closed) => return closed,
            }
        }
    }
}

fn rustls_pki_types_from_pem(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

/// Opens a WebSocket to `path` (under `/api/v1`) with `headers`; the HTTP status if refused.
pub async fn websocket(h: &Harness, path: &str, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("wss://{}/api/v1{path}", h.server().addr());
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&h.cert()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    match tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))),
    )
    .await
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("cannot connect: {e}"),
    }
}

/// The next live message on `socket` (`None` once closed).
pub async fn next_live(socket: &mut Socket) -> Option<proto::LiveMessage> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("the feed answers in time")?
            .ok()?;
        let wire = match message {
            Message::Text(text) => proto::WireMessage::Text(text.to_string()),
            Message::Binary(bytes) => proto::WireMessage::Binary(bytes),
            Message::Close(_) => return None,
            _ => continue,
        };
        return Some(proto::LiveMessage::from_wire(wire, 1 << 20).unwrap());
    }
}
