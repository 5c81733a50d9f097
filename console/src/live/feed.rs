//! The feed client: the console's subscription to a session on the ingest server's live
//! WebSocket (`GET /api/v1/sessions/{id}/live`, `docs/PROTOCOL.md` §8), over TLS pinned to
//! the server's CA certificate. The first message gives the session media key; after it come
//! the agent's sealed frames and notices, as `proto::LiveMessage`s. The console reaches live
//! sessions only this way (never by linking `ingest`), so it works on another node too.

use std::sync::Arc;

use futures::StreamExt;
use proto::{LiveMessage, LiveNotice, SessionCipher, SessionKey, WireMessage};
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::error::{LiveError, Result};

/// The largest frame payload the feed accepts. The ingest server enforces its own (smaller)
/// limit before relaying; this one only bounds what a misbehaving peer could make us hold.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Where and as whom to subscribe to one session's live feed.
#[derive(Clone)]
pub struct FeedConfig {
    /// The ingest server's base URL, `https://host:port`.
    pub server: url::Url,
    /// The certificate(s) to trust for it, PEM (`DATA_DIR/tls/cert.pem` of `idv serve`).
    pub ca_pem: Vec<u8>,
    /// The operator's bearer token. Never logged.
    pub token: String,
    /// The session to watch.
    pub session: Uuid,
}

impl std::fmt::Debug for FeedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedConfig")
            .field("server", &self.server.as_str())
            .field("token", &"<redacted>")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A subscription to one session's live feed, past its `subscribed` notice.
pub struct Feed {
    socket: Socket,
    session: Uuid,
    key: SessionKey,
    cipher: SessionCipher,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// Subscribes and waits for the `subscribed` notice with the session media key.
    ///
    /// # Errors
    /// [`LiveError::Config`] for a URL that is not `https://` or a CA without a certificate,
    /// [`LiveError::Unauthorised`] for a token the server refuses,
    /// [`LiveError::SessionNotFound`] when there is no open session to watch,
    /// [`LiveError::FeedUnavailable`] when the server cannot be reached,
    /// [`LiveError::Protocol`] when the first message is not the subscription notice.
    #[tracing::instrument(skip_all, fields(session_id = %config.session))]
    pub async fn connect(config: &FeedConfig) -> Result<Self> {
        let url = live_url(config)?;
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
            .map_err(|e| LiveError::Config(format!("{url}: {e}")))?;
        let bearer = format!("Bearer {}", config.token)
            .parse()
            .map_err(|_| LiveError::Config("the operator token is not a header value".into()))?;
        request.headers_mut().insert("authorization", bearer);
        let websocket = tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(64 * 1024)
            .max_message_size(Some(proto::HEADER_LEN + MAX_PAYLOAD + 64))
            .max_frame_size(Some(proto::HEADER_LEN + MAX_PAYLOAD + 64));
        let connector = tokio_tungstenite::Connector::Rustls(tls_config(&config.ca_pem)?);
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(websocket),
            true,
            Some(connector),
        )
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(response) => match response.status().as_u16() {
                401 => LiveError::Unauthorised,
                403 | 404 => LiveError::SessionNotFound(config.session),
                status => {
                    LiveError::FeedUnavailable(format!("{} answered HTTP {status}", config.server))
                }
            },
            other => LiveError::FeedUnavailable(format!("{}: {other}", config.server)),
        })?;
        let mut socket = socket;
        match read(&mut socket).await? {
            Some(LiveMessage::Notice(LiveNotice::Subscribed {
                session_id,
                media_key,
            })) if session_id == config.session => {
                let media_key = Zeroizing::new(media_key);
                let bytes =
                    Zeroizing::new(hex::decode(media_key.as_bytes()).map_err(|_| {
                        LiveError::Protocol("the session media key is not hex".into())
                    })?);
                let key = SessionKey::from_slice(&bytes).ok_or_else(|| {
                    LiveError::Protocol("the session media key is not 32 bytes".into())
                })?;
                tracing::debug!("subscribed to the live feed");
                Ok(Feed {
                    socket,
                    session: config.session,
                    cipher: SessionCipher::new(&key, config.session),
                    key,
                })
            }
            Some(LiveMessage::Notice(LiveNotice::Ended { reason })) => {
                tracing::debug!(%reason, "the session ended before the subscription");
                Err(LiveError::SessionNotFound(config.session))
            }
            other => Err(LiveError::Protocol(format!(
                "expected the `subscribed` notice first, got {}",
                describe(other.as_ref())
            ))),
        }
    }

    /// The session watched.
    #[must_use]
    pub fn session(&self) -> Uuid {
        self.session
    }

    /// The session media key the frames open with. Never log it.
    #[must_use]
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// The cipher that opens this session's frames ([`proto::LiveFrame::open`]).
    #[must_use]
    pub fn cipher(&self) -> &SessionCipher {
        &self.cipher
    }

    /// The next frame or notice; `None` once the server closed the feed.
    ///
    /// # Errors
    /// [`LiveError::FeedUnavailable`] when the connection breaks, [`LiveError::Protocol`] for a
    /// message that is neither a frame nor a notice.
    pub async fn next(&mut self) -> Result<Option<LiveMessage>> {
        read(&mut self.socket).await
    }

    /// Unsubscribes (a WebSocket close); the server forgets the watcher.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The next message on the live WebSocket; `None` once closed.
async fn read(socket: &mut Socket) -> Result<Option<LiveMessage>> {
    loop {
        let wire = match socket.next().await {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                return Ok(None);
            }
            Some(Err(e)) => return Err(LiveError::FeedUnavailable(e.to_string())),
            Some(Ok(Message::Binary(bytes))) => WireMessage::Binary(bytes),
            Some(Ok(Message::Text(text))) => WireMessage::Text(text.to_string()),
            Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
        };
        return LiveMessage::from_wire(wire, MAX_PAYLOAD)
            .map(Some)
            .map_err(|e| LiveError::Protocol(e.to_string()));
    }
}

/// `wss://host:port/api/v1/sessions/{id}/live` from the server's `https://` base URL.
fn live_url(config: &FeedConfig) -> Result<url::Url> {
    let mut url = config.server.clone();
    if url.scheme() != "https" {
        return Err(LiveError::Config(format!(
            "the ingest server URL must be https://, not {}",
            config.server
        )));
    }
    url.set_scheme("wss")
        .map_err(|()| LiveError::Config(format!("{}: not a server URL", config.server)))?;
    url.path_segments_mut()
        .map_err(|()| LiveError::Config(format!("{}: not a server URL", config.server)))?
        .pop_if_empty()
        .extend(["api", "v1", "sessions", &config.session.to_string(), "live"]);
    Ok(url)
}

/// TLS that trusts exactly the certificates in `ca_pem` (rustls on ring, as the agent does).
pub(crate) fn tls_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert =
            cert.map_err(|e| LiveError::Config(format!("the CA is not a PEM certificate ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| LiveError::Config(format!("the CA certificate is unusable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(LiveError::Config("the CA holds no certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LiveError::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A message named for an error text (never its key or payload).
fn describe(message: Option<&LiveMessage>) -> String {
    match message {
        None => "the end of the feed".into(),
        Some(LiveMessage::Frame(frame)) => format!("a {} frame", frame.header().track.name()),
        Some(LiveMessage::Notice(notice)) => {
            let json = LiveMessage::Notice(notice.clone()).to_wire();
            match json {
                WireMessage::Text(text) => text.chars().take(80).collect(),
                WireMessage::Binary(_) => "a notice".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(server: &str) -> FeedConfig {
        FeedConfig {
            server: server.parse().unwrap(),
            ca_pem: Vec::new(),
            token: "secret-token".into(),
            session: Uuid::nil(),
        }
    }

    #[test]
    fn the_live_url_is_the_sessions_websocket_under_the_base() {
        assert_eq!(
            live_url(&config("https://127.0.0.1:8443"))
                .unwrap()
                .as_str(),
            "wss://127.0.0.1:8443/api/v1/sessions/00000000-0000-0000-0000-000000000000/live"
        );
        assert_eq!(
            live_url(&config("https://ingest.example/idv/"))
                .unwrap()
                .as_str(),
            "wss://ingest.example/idv/api/v1/sessions/00000000-0000-0000-0000-000000000000/live"
        );
        let plain = live_url(&config("http://127.0.0.1:8443")).unwrap_err();
        assert!(plain.to_string().contains("https://"), "{plain}");
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let shown = format!("{:?}", config("https://127.0.0.1:1"));
        assert!(!shown.contains("secret-token"), "{shown}");
    }

    #[test]
    fn a_ca_without_a_certificate_is_refused() {
        let e = tls_config(b"not a certificate").unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
