//! The forwarding loop of one live view: frames from the feed, opened with the session key,
//! become video on the two WebRTC tracks until the session ends, the browser leaves, or the
//! view is stopped.
//!
//! * **Camera**: the agent's H.264 access units pass through untouched.
//! * **Screen**: screen-codec payloads are decoded ([`ScreenPictures`]) and the pictures
//!   encoded to H.264 ([`ScreenEncoder`]); an H.264 screen passes through like the camera;
//!   screenshot-mode JPEG stills are decoded and encoded like screen pictures.
//! * Each track starts at a keyframe and, after a `gap` (frames this view will never see) or
//!   a pause, waits for the next one; the ingest server asks the agent for it.
//! * Until the browser is connected, the camera's frames since its last keyframe are kept
//!   (at most [`BACKLOG`]) and the screen is only decoded; on connection the kept frames go
//!   out and the screen's current picture is encoded, so the view starts at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::{FrameFlags, LiveFrame, LiveMessage, LiveNotice, Track};
use tokio::sync::{mpsc, watch};
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

use super::error::LiveError;
use super::feed::{Feed, MAX_PAYLOAD};
use super::screen_encoder::ScreenEncoder;
use super::screen_pictures::{ScreenChange, ScreenPictures, decode_still};
use super::video_track::VideoTrack;

/// Access units of a passed-through track kept while the browser connects: two seconds of a
/// 30 fps camera. Past it the oldest are dropped and the track waits for a keyframe.
pub const BACKLOG: usize = 60;

/// An unchanged screen is encoded again this often, so a browser that lost a picture, or
/// joined a still screen, soon has one to show.
const REFRESH: Duration = Duration::from_secs(1);

/// Why a live view ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Ending {
    /// The session ended (the reason the ingest server gave, for the operator).
    SessionEnded {
        /// Why.
        reason: String,
    },
    /// The browser closed the connection, or it failed (no ICE traffic).
    BrowserLeft,
    /// The console stopped it ([`super::LiveView::close`] or dropping the view).
    Stopped,
    /// The ingest server closed the feed without ending the session (it restarted, or the
    /// watcher was let go).
    FeedLost,
    /// A fault ended it.
    Failed(LiveError),
}

/// Where a track's frames may flow from.
#[derive(Debug, Clone, Copy)]
struct Gate {
    /// The next frame let through must be a keyframe.
    want_key: bool,
}

/// Which picture the screen track shows.
enum Latest {
    /// Nothing yet.
    Nothing,
    /// The screen codec's decoded screen.
    Screen,
    /// A screenshot.
    Still(super::screen_pictures::Still),
}

/// One live view's forwarding state.
pub(crate) struct Forwarder {
    pub(crate) feed: Feed,
    pub(crate) camera: VideoTrack,
    pub(crate) screen: VideoTrack,
    /// The browser asks for keyframes (PLI, FIR) of a track.
    keyframe_asks: mpsc::Receiver<Track>,
    /// The peer connection's state.
    connection: watch::Receiver<RTCPeerConnectionState>,
    /// Set (or dropped) to stop.
    stop: watch::Receiver<bool>,
    gates: BTreeMap<Track, Gate>,
    connected: bool,
    backlog: BTreeMap<Track, Vec<(Bytes, i64)>>,
    pictures: ScreenPictures,
    latest: Latest,
    /// Capture time of the picture the screen shows, and when it was last encoded.
    shown: Option<(i64, Option<Instant>)>,
    encoder: Option<ScreenEncoder>,
}

/// What woke the loop.
enum Event {
    Stop,
    Connection(Option<RTCPeerConnectionState>),
    Feed(Result<Option<LiveMessage>, LiveError>),
    Encoded(Option<super::screen_encoder::EncodedPicture>),
    KeyframeAsked(Track),
}

impl Forwarder {
    pub(crate) fn new(
        feed: Feed,
        camera: VideoTrack,
        screen: VideoTrack,
        keyframe_asks: mpsc::Receiver<Track>,
        connection: watch::Receiver<RTCPeerConnectionState>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let gates = [Track::Camera, Track::Screen, Track::Screenshot]
            .into_iter()
            .map(|track| (track, Gate { want_key: true }))
            .collect();
        Self {
            feed,
            camera,
            screen,
            keyframe_asks,
            connection,
            stop,
            gates,
            connected: false,
            backlog: BTreeMap::new(),
            pictures: ScreenPictures::default(),
            latest: Latest::Nothing,
            shown: None,
            encoder: None,
        }
    }

    /// Forwards until the view ends; says why.
    pub(crate) async fn run(&mut self) -> Ending {
        loop {
            let event = tokio::select! {
                biased;
                _ = self.stop.changed() => Event::Stop,
                changed = self.connection.changed() => Event::Connection(
                    changed.ok().map(|()| *self.connection.borrow_and_update())
                ),
                Some(track) = self.keyframe_asks.recv() => Event::KeyframeAsked(track),
                encoded = next_encoded(&mut self.encoder) => Event::Encoded(encoded),
                message = self.feed.next() => Event::Feed(message),
            };
            let step = match event {
                Event::Stop => return Ending::Stopped,
                Event::Connection(state) => self.on_connection(state).await,
                Event::KeyframeAsked(track) => {
                    self.on_keyframe_asked(track);
                    Ok(None)
                }
                Event::Encoded(Some(picture)) => self
                    .screen
                    .send(&picture.access_unit, picture.captured_at_ns)
                    .await
                    .map(|()| None),
                Event::Encoded(None) => {
                    Err(LiveError::Encoder("the screen encoder stopped".into()))
                }
                Event::Feed(Ok(Some(LiveMessage::Frame(frame)))) => {
                    self.on_frame(&frame).await.map(|()| None)
                }
                Event::Feed(Ok(Some(LiveMessage::Notice(notice)))) => Ok(self.on_notice(notice)),
                Event::Feed(Ok(None)) => return Ending::FeedLost,
                Event::Feed(Err(e)) => Err(e),
            };
            match step {
                Ok(None) => {}
                Ok(Some(ending)) => return ending,
                Err(e) => return Ending::Failed(e),
            }
        }
    }

    async fn on_connection(
        &mut self,
        state: Option<RTCPeerConnectionState>,
    ) -> Result<Option<Ending>, LiveError> {
        match state {
            Some(RTCPeerConnectionState::Connected) if !self.connected => {
                tracing::debug!("the browser is connected");
                self.connected = true;
                for track in [Track::Camera, Track::Screen] {
                    for (access_unit, captured_at_ns) in
                        self.backlog.remove(&track).unwrap_or_default()
                    {
                        self.track_mut(track)
                            .send(&access_unit, captured_at_ns)
                            .await?;
                    }
                }
                if let Some((captured_at_ns, _)) = self.shown {
                    self.encode_screen(captured_at_ns)?;
                }
                Ok(None)
            }
            None | Some(RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) => {
                Ok(Some(Ending::BrowserLeft))
            }
            Some(state) => {
                tracing::debug!(%state, "peer connection state");
                Ok(None)
            }
        }
    }

    fn on_keyframe_asked(&mut self, track: Track) {
        match (&self.encoder, track) {
            (Some(encoder), Track::Screen) => encoder.request_keyframe(),
            // A passed-through track recovers at the agent's next keyframe (the camera sends
            // one every two seconds; the live protocol has no way to ask for one sooner).
            _ => tracing::debug!(track = track.name(), "the browser asked for a keyframe"),
        }
    }

    fn on_notice(&mut self, notice: LiveNotice) -> Option<Ending> {
        match notice {
            LiveNotice::Ended { reason } => return Some(Ending::SessionEnded { reason }),
            LiveNotice::Gap { track, .. } => {
                tracing::debug!(track = track.name(), "frames lost; waiting for a keyframe");
                self.want_key(track);
            }
            LiveNotice::Paused { tracks, .. } | LiveNotice::Resumed { tracks, .. } => {
                // Sharing starts again at a keyframe.
                let tracks = if tracks.is_empty() {
                    Track::ALL.to_vec()
                } else {
                    tracks.into_iter().collect()
                };
                for track in tracks {
                    self.want_key(track);
                }
            }
            other => tracing::trace!(?other, "a notice the video does not need"),
        }
        None
    }

    fn want_key(&mut self, track: Track) {
        if let Some(gate) = self.gates.get_mut(&track) {
            gate.want_key = true;
        }
        self.backlog.remove(&track);
    }

    async fn on_frame(&mut self, frame: &LiveFrame) -> Result<(), LiveError> {
        let header = *frame.header();
        let Some(gate) = self.gates.get_mut(&header.track) else {
            return Ok(()); // a track without video (audio reference)
        };
        let keyframe = header.flags.contains(FrameFlags::KEYFRAME);
        if gate.want_key && !keyframe {
            return Ok(());
        }
        gate.want_key = false;
        let plain = frame.open(self.feed.cipher(), MAX_PAYLOAD).map_err(|e| {
            LiveError::Protocol(format!(
                "{} frame {} does not open under the session key: {e}",
                header.track.name(),
                header.seq
            ))
        })?;
        let captured_at_ns = header.captured_at_ns;
        match header.track {
            Track::Screen if screencodec::is_screen_payload(&plain) => {
                match self.pictures.apply(&plain) {
                    Ok(change) => {
                        self.latest = Latest::Screen;
                        self.on_screen(change, captured_at_ns)?;
                    }
                    Err(e) => {
                        tracing::warn!(seq = header.seq, error = %e, "a screen frame does not decode; waiting for a keyframe");
                        self.want_key(Track::Screen);
                    }
                }
            }
            Track::Screenshot => match decode_still(&plain) {
                Ok(still) => {
                    self.latest = Latest::Still(still);
                    self.on_screen(ScreenChange::Changed, captured_at_ns)?;
                }
                Err(e) => {
                    tracing::warn!(seq = header.seq, error = %e, "a screenshot does not decode")
                }
            },
            track => {
                // H.264: the camera, or a screen the agent encodes as H.264.
                self.pass_through(track, Bytes::from(plain), keyframe, captured_at_ns)
                    .await?;
            }
        }
        Ok(())
    }

    async fn pass_through(
        &mut self,
        track: Track,
        access_unit: Bytes,
        keyframe: bool,
        captured_at_ns: i64,
    ) -> Result<(), LiveError> {
        if self.connected {
            return self
                .track_mut(track)
                .send(&access_unit, captured_at_ns)
                .await;
        }
        let backlog = self.backlog.entry(track).or_default();
        if keyframe {
            backlog.clear();
        }
        backlog.push((access_unit, captured_at_ns));
        if backlog.len() > BACKLOG {
            self.want_key(track);
        }
        Ok(())
    }

    /// The screen's picture changed (or a heartbeat came): encode it if the browser is there.
    fn on_screen(&mut self, change: ScreenChange, captured_at_ns: i64) -> Result<(), LiveError> {
        let last_encoded = self.shown.and_then(|(_, at)| at);
        self.shown = Some((captured_at_ns, last_encoded));
        let due = match change {
            ScreenChange::Changed => true,
            ScreenChange::Unchanged => last_encoded.is_none_or(|at| at.elapsed() >= REFRESH),
        };
        if self.connected && due {
            self.encode_screen(captured_at_ns)?;
        }
        Ok(())
    }

    fn encode_screen(&mut self, captured_at_ns: i64) -> Result<(), LiveError> {
        if self.encoder.is_none() {
            self.encoder = Some(ScreenEncoder::start()?);
        }
        let encoder = self.encoder.as_mut().expect("started above");
        match &self.latest {
            Latest::Nothing => return Ok(()),
            Latest::Screen => {
                let Some(screen) = self.pictures.screen() else {
                    return Ok(());
                };
                encoder.push(
                    screen.pixels(),
                    screen.stride(),
                    screen.width(),
                    screen.height(),
                    captured_at_ns,
                )?;
            }
            Latest::Still(still) => encoder.push(
                &still.pixels,
                still.width as usize * 4,
                still.width,
                still.height,
                captured_at_ns,
            )?,
        }
        self.shown = Some((captured_at_ns, Some(Instant::now())));
        Ok(())
    }

    fn track_mut(&mut self, track: Track) -> &mut VideoTrack {
        match track {
            Track::Camera => &mut self.camera,
            _ => &mut self.screen,
        }
    }
}

/// The screen encoder's next picture; never, while there is no encoder.
async fn next_encoded(
    encoder: &mut Option<ScreenEncoder>,
) -> Option<super::screen_encoder::EncodedPicture> {
    match encoder {
        Some(encoder) => encoder.next().await,
        None => std::future::pending().await,
    }
}
