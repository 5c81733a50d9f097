//! The console's WebRTC peer for one operator's browser: it answers the browser's offer
//! (non-trickle: every ICE candidate gathered before the answer goes back), sends the camera
//! and screen tracks, and forwards until the session ends, the browser leaves, or the console
//! stops the [`LiveView`]. Everything it started — the peer connection, its RTCP readers, the
//! screen encoder, the feed subscription — ends with the view.

use std::sync::Arc;
use std::time::Duration;

use proto::Track;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;

use super::error::{LiveError, Result};
use super::feed::{Feed, FeedConfig};
use super::forward::{Ending, Forwarder};
use super::video_track::VideoTrack;

/// How long ICE gathering may take before the answer is given up on (host candidates only:
/// milliseconds in practice).
const GATHERING: Duration = Duration::from_secs(10);

/// No ICE traffic for this long: the browser is gone (it may come back until
/// [`ICE_FAILED`]).
const ICE_DISCONNECTED: Duration = Duration::from_secs(3);

/// No ICE traffic for this long: the view ends.
const ICE_FAILED: Duration = Duration::from_secs(8);

/// How long closing may wait for the RTCP readers before they are aborted.
const CLOSING: Duration = Duration::from_secs(2);

/// A running live view: dropping it, or [`LiveView::close`], stops it.
#[derive(Debug)]
pub struct LiveView {
    session: uuid::Uuid,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Ending>>,
    ending: Option<Ending>,
}

impl LiveView {
    /// The session watched.
    #[must_use]
    pub fn session(&self) -> uuid::Uuid {
        self.session
    }

    /// Waits until the view ends on its own (the session ended, the browser left, a fault)
    /// and says why. Everything it ran has stopped by then.
    pub async fn ended(&mut self) -> &Ending {
        if let Some(task) = self.task.take() {
            self.ending = Some(finish(task).await);
        }
        self.ending.as_ref().expect("set once the task is done")
    }

    /// Stops the view (closes the peer connection and the feed) and waits until everything it
    /// ran has stopped; says why it ended (`Stopped`, unless it had ended already).
    pub async fn close(mut self) -> Ending {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => finish(task).await,
            None => self.ending.take().expect("set once the task is done"),
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        // The forwarding task sees this and closes everything itself.
        let _ = self.stop.send(true);
    }
}

async fn finish(task: tokio::task::JoinHandle<Ending>) -> Ending {
    task.await.unwrap_or_else(|e| {
        Ending::Failed(LiveError::WebRtc(format!("the live view task failed: {e}")))
    })
}

/// Answers a browser's WebRTC offer with the live view of `feed`'s session: subscribes to the
/// ingest server's live feed (so a wrong token or session fails here, before any WebRTC),
/// sets up a peer connection sending two H.264 video tracks — `camera` and `screen`, in one
/// media stream — and returns the answer SDP (every ICE candidate included) with the running
/// view.
///
/// The offer must receive video on at least two m-lines, the first for the camera, the
/// second for the screen (`addTransceiver('video', {direction: 'recvonly'})` twice), with
/// H.264 among its codecs. The caller has checked the operator's role and audited the access.
///
/// # Errors
/// [`LiveError::BadOffer`] for an offer that is not SDP or receives no video,
/// [`LiveError::Unauthorised`], [`LiveError::SessionNotFound`],
/// [`LiveError::FeedUnavailable`], [`LiveError::Config`] from the feed,
/// [`LiveError::WebRtc`] when the peer connection cannot be set up.
#[tracing::instrument(skip_all, fields(session_id = %feed.session))]
pub async fn answer(feed: FeedConfig, offer_sdp: String) -> Result<(String, LiveView)> {
    let offer = RTCSessionDescription::offer(offer_sdp)
        .map_err(|e| LiveError::BadOffer(format!("not an SDP offer ({e})")))?;
    let session = feed.session;
    let feed = Feed::connect(&feed).await?;
    let peer = Arc::new(new_peer_connection().await?);
    let (stop, stopped) = watch::channel(false);
    match negotiate(&peer, offer, feed, stopped).await {
        Ok((answer, forwarder, readers)) => {
            let task = tokio::spawn(forward(peer, forwarder, readers));
            Ok((
                answer,
                LiveView {
                    session,
                    stop,
                    task: Some(task),
                    ending: None,
                },
            ))
        }
        Err(e) => {
            let _ = peer.close().await;
            Err(e)
        }
    }
}

/// A peer connection for one browser: H.264 (and the browser's other codecs), the default
/// interceptors (NACK, RTCP reports), host candidates including loopback, no STUN or TURN.
async fn new_peer_connection() -> Result<RTCPeerConnection> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    Ok(loopback_peer(media).await?)
}

/// A peer connection for `media`'s codecs: the default interceptors (NACK, RTCP reports),
/// host candidates including loopback, no STUN or TURN, the browser given up on after
/// [`ICE_FAILED`] without traffic. The live view's and the join page's.
pub(crate) async fn loopback_peer(
    mut media: MediaEngine,
) -> std::result::Result<RTCPeerConnection, webrtc::Error> {
    // webrtc's DTLS verifies certificates with rustls's process-wide crypto provider. With
    // both ring and aws-lc-rs compiled in (object_store brings the latter into the `idv`
    // binary) rustls cannot pick one and panics; so pick ring, the house provider, unless
    // the process has already chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_ice_timeouts(
        Some(ICE_DISCONNECTED),
        Some(ICE_FAILED),
        Some(Duration::from_secs(1)),
    );
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    api.new_peer_connection(RTCConfiguration::default()).await
}

/// Adds the tracks, answers `offer` and gathers the candidates; the forwarder to run and the
/// RTCP readers started.
async fn negotiate(
    peer: &Arc<RTCPeerConnection>,
    offer: RTCSessionDescription,
    feed: Feed,
    stop: watch::Receiver<bool>,
) -> Result<(String, Forwarder, JoinSet<()>)> {
    let stream = format!("idv-live-{}", feed.session());
    let camera = VideoTrack::new("camera", &stream);
    let screen = VideoTrack::new("screen", &stream);
    let (asks, keyframe_asks) = mpsc::channel(8);
    let mut readers = JoinSet::new();
    for (track, local) in [
        (Track::Camera, camera.local()),
        (Track::Screen, screen.local()),
    ] {
        let sender = peer.add_track(local).await?;
        readers.spawn(read_rtcp(sender, track, asks.clone()));
    }
    let (state, connection) = watch::channel(RTCPeerConnectionState::New);
    peer.on_peer_connection_state_change(Box::new(move |s| {
        let _ = state.send(s);
        Box::pin(async {})
    }));

    peer.set_remote_description(offer)
        .await
        .map_err(|e| LiveError::BadOffer(e.to_string()))?;
    let answer = peer
        .create_answer(None)
        .await
        .map_err(|e| LiveError::BadOffer(e.to_string()))?;
    let mut gathered = peer.gathering_complete_promise().await;
    peer.set_local_description(answer).await?;
    tokio::time::timeout(GATHERING, gathered.recv())
        .await
        .map_err(|_| LiveError::WebRtc("ICE gathering did not complete".into()))?;

    let mut sending = 0;
    for transceiver in peer.get_transceivers().await {
        if transceiver.mid().is_some() && transceiver.sender().await.track().await.is_some() {
            sending += 1;
        }
    }
    if sending < 2 {
        return Err(LiveError::BadOffer(format!(
            "it receives {sending} of the 2 video tracks (camera, screen): offer two recvonly \
             video transceivers with H.264"
        )));
    }
    let answer = peer
        .local_description()
        .await
        .ok_or_else(|| LiveError::WebRtc("no local description after answering".into()))?;
    let forwarder = Forwarder::new(feed, camera, screen, keyframe_asks, connection, stop);
    Ok((answer.sdp, forwarder, readers))
}

/// Runs the view and closes everything it started; why it ended.
async fn forward(
    peer: Arc<RTCPeerConnection>,
    mut forwarder: Forwarder,
    mut readers: JoinSet<()>,
) -> Ending {
    let ending = forwarder.run().await;
    tracing::info!(
        ?ending,
        camera_frames = forwarder.camera.frames(),
        screen_frames = forwarder.screen.frames(),
        "live view ended"
    );
    if let Err(e) = peer.close().await {
        tracing::debug!(error = %e, "closing the peer connection");
    }
    if tokio::time::timeout(CLOSING, async {
        while readers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        readers.shutdown().await;
    }
    let Forwarder { feed, .. } = forwarder;
    feed.close().await;
    ending
}

/// Reads the browser's RTCP for one sender (the interceptors need it read: NACKs, reports)
/// and passes on its keyframe requests, until the sender stops.
async fn read_rtcp(sender: Arc<RTCRtpSender>, track: Track, asks: mpsc::Sender<Track>) {
    let mut buffer = vec![0u8; 1500];
    while let Ok((packets, _)) = sender.read(&mut buffer).await {
        let asked = packets.iter().any(|packet| {
            let any = packet.as_any();
            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
        });
        if asked {
            let _ = asks.try_send(track);
        }
    }
}
