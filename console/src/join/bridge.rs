//! The agent side of a customer's browser: one bridge per joined browser. It connects to the
//! ingest server's media WebSocket with the browser's session token (the agent crate's
//! [`Link`]: hello, resume, acks, clock sync), so the token is checked by ingest before any
//! WebRTC is set up; takes the session media key from the vault; starts one decoding and
//! encoding pipeline per track ([`Capture::start_rtp`]) whose frames the agent's sealer seals
//! into the outbox; and only then answers the browser's offer ([`Receiver`]).
//!
//! It runs until the customer leaves (the page's "leave": the rest is sealed, sent and
//! acknowledged, then the session ends with 4004, as `idv agent` ends it), the browser stops
//! answering (no ICE for 8 s, or never connected within [`CONNECT_WITHIN`]: the same end),
//! the session is ended by the bank (the link's `close 4004`), or a fault. Whatever ends it,
//! the peer connection, the pipelines, the sealer and the link are all stopped before
//! [`JoinedBridge::ended`] answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::capture::Capture;
use agent::capture::rtp::RtpCodec;
use agent::keyframes::ForcedKeyframes;
use agent::link::{Command, Ended, Inbound, Link, Shared};
use agent::outbox::Outbox;
use agent::{AgentError, TrackSettings, VideoSource};
use proto::{AgentControl, AgentInfo, SessionCipher, SessionKey, Track};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

use super::offer::{self, Offered};
use super::receiver::{Arrived, CustomerChat, Receiver};
use super::{IngestEndpoint, JoinError, Result, session_named_by};

/// How long the ingest server may take to welcome the bridge's media connection.
const WELCOME_WITHIN: Duration = Duration::from_secs(10);
/// A browser that has not connected (ICE and DTLS) this long after the answer has abandoned
/// the join.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// Sealed bytes kept for the server while it has not acknowledged them (as the agent's
/// `--spill-bytes`, smaller: a console serves many customers).
const SPILL_BYTES: usize = 16 << 20;

/// Why a bridge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEnding {
    /// The customer left from the page: what was captured was delivered and the session
    /// ended as the customer's doing.
    CustomerLeft,
    /// The browser stopped answering (the page was closed, the network lost) or never
    /// connected: the session ended as for a customer who left.
    BrowserGone(String),
    /// The bank ended the session (or it timed out): the server's reason.
    SessionEnded(String),
    /// A fault: the link closed for good, a pipeline failed.
    Failed(String),
}

impl std::fmt::Display for BridgeEnding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeEnding::CustomerLeft => f.write_str("the customer left"),
            BridgeEnding::BrowserGone(why) => write!(f, "the browser is gone ({why})"),
            BridgeEnding::SessionEnded(why) => write!(f, "the session was ended: {why}"),
            BridgeEnding::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// What a bridge did, once it ended.
#[derive(Debug, Clone)]
pub struct BridgeSummary {
    /// Why it ended.
    pub ending: BridgeEnding,
    /// The codec the browser sent.
    pub codec: RtpCodec,
    /// RTP received per track.
    pub arrived: BTreeMap<Track, Arrived>,
    /// Frames sealed per track (the last seq).
    pub sealed: BTreeMap<Track, u64>,
    /// Frames dropped before sealing (each run declared to the server as a gap).
    pub dropped: u64,
    /// Whether the server acknowledged every sealed frame.
    pub acknowledged: bool,
}

/// A running bridge (a cheap handle: clones see the same bridge).
#[derive(Clone)]
pub struct JoinedBridge {
    session: Uuid,
    codec: RtpCodec,
    token_digest: [u8; 32],
    leave: mpsc::Sender<()>,
    done: watch::Receiver<Option<BridgeSummary>>,
}

impl std::fmt::Debug for JoinedBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedBridge")
            .field("session", &self.session)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl JoinedBridge {
    /// The session it sends into.
    #[must_use]
    pub fn session(&self) -> Uuid {
        self.session
    }

    /// The codec the browser sends.
    #[must_use]
    pub fn codec(&self) -> RtpCodec {
        self.codec
    }

    /// Whether it has ended.
    #[must_use]
    pub fn is_over(&self) -> bool {
        self.done.borrow().is_some()
    }

    /// Whether `token` is the session token it was started with (constant time).
    #[must_use]
    pub fn token_matches(&self, token: &str) -> bool {
        bool::from(digest(token).ct_eq(&self.token_digest))
    }

    /// The customer leaves: delivers what is left, ends the session, and says how it went.
    pub async fn leave(&self) -> BridgeSummary {
        let _ = self.leave.try_send(());
        self.ended().await
    }

    /// Waits until it has ended (everything it ran stopped) and says how it went.
    pub async fn ended(&self) -> BridgeSummary {
        let mut done = self.done.clone();
        let summary = done
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|s| s.clone());
        summary.unwrap_or_else(|| BridgeSummary {
            ending: BridgeEnding::Failed("the bridge task stopped".into()),
            codec: self.codec,
            arrived: BTreeMap::new(),
            sealed: BTreeMap::new(),
            dropped: 0,
            acknowledged: false,
        })
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// How each track the browser sends is encoded for the session: the camera like the agent's
/// (640 × 480 at 30 fps, 600 kbit/s), the screen as H.264 (1280 × 720 at 10 fps, 1 Mbit/s);
/// other aspect ratios are letterboxed (`videoscale` adds borders), never stretched.
fn settings_for(track: Track) -> TrackSettings {
    match track {
        Track::Screen => TrackSettings {
            source: VideoSource::None,
            fps: 10,
            bitrate_kbps: 1000,
            size: Some((1280, 720)),
        },
        _ => TrackSettings {
            source: VideoSource::None,
            fps: 30,
            bitrate_kbps: 600,
            size: Some((640, 480)),
        },
    }
}

/// The agent link of a bridge, started.
struct RunningLink {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    inbound: mpsc::Receiver<Inbound>,
    task: JoinHandle<std::result::Result<Ended, AgentError>>,
}

impl RunningLink {
    fn start(endpoint: &IngestEndpoint, token: &str, offered: &Offered) -> Result<Self> {
        let tls = crate::live::feed::tls_config(&endpoint.ca_pem)
            .map_err(|e| JoinError::Unavailable(e.to_string()))?;
        let mut url = endpoint
            .server
            .join("/api/v1/agent")
            .map_err(|e| JoinError::Unavailable(format!("{}: {e}", endpoint.server)))?;
        let scheme = if url.scheme() == "http" { "ws" } else { "wss" };
        let _ = url.set_scheme(scheme);
        let link = Link {
            url,
            tls,
            token: token.trim().to_owned(),
            info: AgentInfo {
                version: concat!("idv-console-join ", env!("CARGO_PKG_VERSION")).into(),
                platform: format!("browser over WebRTC ({})", offered.codec),
                tracks: offered
                    .tracks
                    .iter()
                    .map(|(_, t)| *t)
                    .collect::<BTreeSet<_>>(),
            },
            give_up_after: Duration::from_secs(60),
            flush_patience: Duration::from_secs(30),
        };
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::new(SPILL_BYTES)),
            new_frames: Notify::new(),
        });
        let (commands, commands_rx) = mpsc::channel(32);
        let (inbound_tx, inbound) = mpsc::channel(64);
        let task = tokio::spawn({
            let shared = shared.clone();
            async move { link.run(shared, commands_rx, inbound_tx).await }
        });
        Ok(Self {
            shared,
            commands,
            inbound,
            task,
        })
    }

    /// Waits for the server's `welcome`: the session the token stands for. On any failure the
    /// link is stopped (without ending the session).
    async fn welcomed(&mut self) -> Result<Uuid> {
        let outcome = tokio::time::timeout(WELCOME_WITHIN, async {
            loop {
                match self.inbound.recv().await {
                    Some(Inbound::Welcomed(session)) => return Ok(session),
                    Some(_) => {}
                    // The link stopped before any welcome: why is in its result.
                    None => {
                        return Err(match (&mut self.task).await {
                            Ok(Err(AgentError::Closed(why))) if why.starts_with("4003") => {
                                JoinError::BadToken
                            }
                            Ok(Err(AgentError::Closed(why))) => JoinError::Refused(why),
                            Ok(Ok(Ended::SessionEnded(why))) => {
                                JoinError::Refused(format!("the session has ended ({why})"))
                            }
                            Ok(other) => JoinError::Unavailable(format!("{other:?}")),
                            Err(e) => JoinError::Unavailable(e.to_string()),
                        });
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(JoinError::Unavailable(
                "the ingest server did not answer".into(),
            ))
        });
        if outcome.is_err() && !self.task.is_finished() {
            self.task.abort();
        }
        outcome
    }
}

/// The session media key, unwrapped by the vault's keyring (the console's own: it needs no
/// key from the browser).
async fn session_key(vault: &storage::Vault, session: Uuid) -> Result<SessionKey> {
    let record = vault
        .db()
        .session(session)
        .await
        .map_err(|e| JoinError::Unavailable(e.to_string()))?
        .ok_or(JoinError::BadToken)?;
    let wrapped = record
        .wrapped_media_key
        .ok_or_else(|| JoinError::Refused("the session is over".into()))?;
    let key = vault
        .unwrap_session_media_key(session, &wrapped)
        .await
        .map_err(|e| JoinError::Unavailable(e.to_string()))?;
    Ok(SessionKey::from_bytes(*key.expose()))
}

/// Answers a customer's browser: `offer_sdp` sends `tracks` in m-line order, `token` is the
/// session token the page got for its code. Returns the answer SDP (every ICE candidate in it)
/// and the running bridge.
///
/// # Errors
/// [`JoinError::BadOffer`] (checked first, before anything is connected),
/// [`JoinError::BadToken`] (a malformed token, or one ingest refuses),
/// [`JoinError::Refused`] (the session is over), [`JoinError::Unavailable`] (ingest or the
/// vault cannot be reached), [`JoinError::Media`] (a GStreamer element is missing),
/// [`JoinError::WebRtc`]. On an error nothing keeps running and the session is left as it
/// was.
#[tracing::instrument(skip_all)]
pub async fn answer(
    endpoint: &IngestEndpoint,
    vault: &storage::Vault,
    token: &str,
    offer_sdp: String,
    tracks: &[Track],
) -> Result<(String, JoinedBridge)> {
    let offered = offer::read(&offer_sdp, tracks)?;
    session_named_by(token).ok_or(JoinError::BadToken)?;
    let mut link = RunningLink::start(endpoint, token, &offered)?;
    let session = link.welcomed().await?;
    tracing::info!(%session, codec = %offered.codec, offered = ?offered.offered_codecs, "a browser joins");
    let started = start_media(vault, session, &offered, link.shared.clone()).await;
    let media = match started {
        Ok(media) => media,
        Err(e) => {
            link.task.abort();
            return Err(e);
        }
    };
    let answered = async {
        let (receiver, customer_chat) = Receiver::new(offered.codec).await?;
        match receiver
            .answer(offer_sdp, &offered, media.feeds.clone())
            .await
        {
            Ok(sdp) => Ok((sdp, receiver, customer_chat)),
            Err(e) => {
                receiver.close().await;
                Err(e)
            }
        }
    }
    .await;
    let (sdp, receiver, customer_chat) = match answered {
        Ok(answered) => answered,
        Err(e) => {
            link.task.abort();
            media.stop().await;
            return Err(e);
        }
    };
    let (leave, leave_rx) = mpsc::channel(1);
    let (done_tx, done) = watch::channel(None);
    let bridge = JoinedBridge {
        session,
        codec: offered.codec,
        token_digest: digest(token),
        leave,
        done,
    };
    tokio::spawn(async move {
        let ends = Ends {
            leave: leave_rx,
            customer_chat,
        };
        let summary = run(link, media, receiver, ends, offered.codec).await;
        tracing::info!(
            %session,
            ending = %summary.ending,
            arrived = ?summary.arrived,
            sealed = ?summary.sealed,
            acknowledged = summary.acknowledged,
            "a browser's bridge ended"
        );
        let _ = done_tx.send(Some(summary));
    });
    Ok((sdp, bridge))
}

/// The per-track pipelines and the sealer of a bridge.
struct Media {
    captures: BTreeMap<Track, Arc<Capture>>,
    feeds: HashMap<Track, agent::capture::rtp::RtpFeed>,
    keyframes_wanted: mpsc::Receiver<Track>,
    stop_sealing: watch::Sender<bool>,
    sealer: JoinHandle<u64>,
}

impl Media {
    /// Stops the pipelines, then the sealer once it has sealed what they produced; the frames
    /// dropped before sealing.
    async fn stop(self) -> u64 {
        for capture in self.captures.values() {
            capture.stop();
        }
        let _ = self.stop_sealing.send(true);
        self.sealer.await.unwrap_or_default()
    }
}

/// Starts a pipeline per track and the sealer, which seals into the link's outbox.
async fn start_media(
    vault: &storage::Vault,
    session: Uuid,
    offered: &Offered,
    shared: Arc<Shared>,
) -> Result<Media> {
    let key = session_key(vault, session).await?;
    let (frames, frames_rx) = mpsc::channel(64);
    let (wanted, keyframes_wanted) = mpsc::channel(8);
    let mut captures = BTreeMap::new();
    let mut feeds = HashMap::new();
    for (_, track) in &offered.tracks {
        let track = *track;
        let wanted = wanted.clone();
        let started = Capture::start_rtp(
            track,
            &settings_for(track),
            offered.codec,
            frames.clone(),
            move || {
                let _ = wanted.try_send(track);
            },
        );
        let (capture, feed) = match started {
            Ok(started) => started,
            Err(e) => {
                captures.values().for_each(|c: &Arc<Capture>| c.stop());
                return Err(JoinError::Media(e.to_string()));
            }
        };
        captures.insert(track, Arc::new(capture));
        feeds.insert(track, feed);
    }
    let (stop_sealing, sealing_stopped) = watch::channel(false);
    let sealer = tokio::spawn(agent::session::seal_frames(
        frames_rx,
        SessionCipher::new(&key, session),
        shared.clone(),
        captures.clone(),
        sealing_stopped,
    ));
    Ok(Media {
        captures,
        feeds,
        keyframes_wanted,
        stop_sealing,
        sealer,
    })
}

/// What the customer's page sends besides media: "leave", and chat.
struct Ends {
    leave: mpsc::Receiver<()>,
    customer_chat: CustomerChat,
}

/// The bridge's loop, then its teardown; how it went.
async fn run(
    mut link: RunningLink,
    mut media: Media,
    receiver: Receiver,
    mut page: Ends,
    codec: RtpCodec,
) -> BridgeSummary {
    let mut connection = receiver.connection.clone();
    let mut connected = false;
    let deadline = tokio::time::sleep(CONNECT_WITHIN);
    tokio::pin!(deadline);
    let mut forced = ForcedKeyframes::default();
    let mut asked = ForcedKeyframes::default();
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let mut link_result = None;
    let ending = loop {
        tokio::select! {
            _ = page.leave.recv() => break BridgeEnding::CustomerLeft,
            Some(text) = page.customer_chat.recv() => {
                // Checked by the server too; a message it would drop is not sent.
                if let Ok(text) = proto::control::chat_text(&text) {
                    let _ = link.commands.try_send(Command::Control(AgentControl::Chat { text }));
                }
            }
            changed = connection.changed() => {
                let state = *connection.borrow_and_update();
                match (changed, state) {
                    (Err(_), _) | (_, RTCPeerConnectionState::Closed) => {
                        break BridgeEnding::BrowserGone("the connection closed".into());
                    }
                    (_, RTCPeerConnectionState::Failed) => {
                        break BridgeEnding::BrowserGone("no answer from the browser".into());
                    }
                    (_, RTCPeerConnectionState::Connected) => connected = true,
                    _ => {}
                }
            }
            () = &mut deadline, if !connected => {
                break BridgeEnding::BrowserGone(format!(
                    "not connected within {} s", CONNECT_WITHIN.as_secs()
                ));
            }
            Some(message) = link.inbound.recv() => {
                let refusal = match message {
                    Inbound::Keyframe(track) => {
                        // The server wants a keyframe (a live watcher): this bridge's own x264.
                        if let Some(capture) = media.captures.get(&track)
                            && forced.allow(track, Instant::now())
                        {
                            capture.request_keyframe();
                        }
                        None
                    }
                    Inbound::Chat { from, text } => {
                        receiver.tell_customer(&from, &text).await;
                        None
                    }
                    Inbound::Input(_) => Some(("input", "the customer's browser takes no remote input")),
                    Inbound::LiftBlinds => Some(("lift blinds", "only the customer can lift a blind")),
                    _ => None,
                };
                if let Some((request, reason)) = refusal {
                    let refused = AgentControl::Refused { request: request.into(), reason: reason.into() };
                    let _ = link.commands.try_send(Command::Control(refused));
                }
            }
            Some(track) = media.keyframes_wanted.recv() => {
                // A decoder lost its picture: ask the browser (at most once a second a track).
                if asked.allow(track, Instant::now()) {
                    receiver.request_keyframe(track).await;
                }
            }
            result = &mut link.task => {
                let ending = match &result {
                    Ok(Ok(Ended::SessionEnded(why))) => BridgeEnding::SessionEnded(why.clone()),
                    Ok(Ok(other)) => BridgeEnding::Failed(format!("the link ended: {other:?}")),
                    Ok(Err(e)) => BridgeEnding::Failed(e.to_string()),
                    Err(e) => BridgeEnding::Failed(format!("the link failed: {e}")),
                };
                link_result = Some(result);
                break ending;
            }
            _ = check.tick() => {
                if let Some((track, error)) = media.captures.iter().find_map(|(t, c)| c.error().map(|e| (*t, e))) {
                    break BridgeEnding::Failed(format!("{}: {error}", track.name()));
                }
            }
        }
    };

    // Teardown: the browser first (no more packets), then the pipelines and the sealer (what
    // was captured is sealed), then the link delivers it and ends the session.
    let arrived = receiver.arrived();
    receiver.close().await;
    let shared = link.shared.clone();
    let dropped = media.stop().await;
    if link_result.is_none() {
        let _ = link.commands.send(Command::Finish).await;
        link_result = Some((&mut link.task).await);
    }
    if let Some(Ok(Err(e))) = &link_result {
        tracing::warn!(error = %e, "the bridge's link ended with an error");
    }
    let outbox = shared.outbox.lock().expect("outbox lock");
    BridgeSummary {
        ending,
        codec,
        arrived,
        sealed: [Track::Camera, Track::Screen]
            .into_iter()
            .map(|t| (t, outbox.last_seq(t)))
            .filter(|(_, seq)| *seq > 0)
            .collect(),
        dropped,
        acknowledged: outbox.is_empty(),
    }
}
