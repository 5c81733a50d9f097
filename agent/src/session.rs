//! One session from the agent's side: join, consent, capture, seal, stream — until the
//! customer ends it (after the server has acknowledged everything), the server ends it, or
//! something fatal happens. The customer's actions (pause, resume, blinds, end) arrive as
//! [`CustomerAction`]s; the command line feeds them from the terminal and from signals.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::{
    AgentControl, AgentInfo, ConsentScope, FrameFlags, FrameHeader, SessionCipher, Track, TrackSeqs,
};
use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use crate::blinder::Blinds;
use crate::capture::{Capture, Captured, Encoding};
use crate::config::{AgentConfig, Region, ScreenCodec, TrackSettings, VideoSource};
use crate::control::{Controller, POLL, X11Injector};
use crate::error::AgentError;
use crate::join::{Api, tls_config};
use crate::keyframes::ForcedKeyframes;
use crate::link::{Command, Ended, Inbound, Link, Shared};
use crate::outbox::{Outbox, Sealed};
use crate::screenshots::{Poster, Screenshots};
use crate::{clock, notice};

/// Something the customer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerAction {
    /// Stop sharing (every track) until resumed.
    Pause,
    /// Share again.
    Resume,
    /// Hide exactly these screen regions from now on (empty: hide nothing).
    Blind(Vec<Region>),
    /// Write to the operator.
    Chat(String),
    /// End the session.
    End,
}

/// How a session went.
#[derive(Debug)]
pub struct Outcome {
    /// The session.
    pub session_id: Uuid,
    /// How it ended.
    pub ended: Ended,
    /// The last seq sealed per track (every one of them was acknowledged when `ended` is
    /// [`Ended::Finished`]).
    pub sealed: TrackSeqs,
    /// Frames dropped on the device (each run declared to the server as a gap).
    pub dropped: u64,
}

/// Runs a session until it ends.
///
/// # Errors
/// A refused code, no consent, a capture source that cannot be opened or fails, or a server
/// that closes for good or stays unreachable.
pub async fn run(
    config: AgentConfig,
    mut actions: mpsc::Receiver<CustomerAction>,
) -> Result<Outcome, AgentError> {
    let scopes = config
        .consent
        .clone()
        .ok_or_else(|| AgentError::NoConsent("the customer has not consented".into()))?;
    let wanted: Vec<(Track, &TrackSettings, ConsentScope)> = [
        (Track::Camera, &config.camera, ConsentScope::Camera),
        (Track::Screen, &config.screen, ConsentScope::Screen),
    ]
    .into_iter()
    .filter(|(_, settings, _)| settings.source.is_some())
    .collect();
    let mut tracks: Vec<Track> = wanted
        .iter()
        .filter(|(_, _, scope)| scopes.contains(scope))
        .map(|(track, _, _)| *track)
        .collect();
    if tracks.is_empty() {
        return Err(AgentError::NoConsent(
            "no track is both configured and consented to (camera needs `camera`, screen `screen`)"
                .into(),
        ));
    }
    // The microphone reference goes with the video, never alone, and only with the consent to
    // record.
    let mic_scope = ConsentScope::for_track(Track::MicReference);
    let send_mic = config.mic_reference.is_some() && scopes.contains(&mic_scope);
    if config.mic_reference.is_some() && !send_mic {
        eprintln!(
            "● The microphone reference is not sent: it needs the `{}` consent.",
            mic_scope.name()
        );
    }

    let tls = tls_config(config.ca.as_deref())?;
    let api = Arc::new(Api::new(&config, tls.clone())?);
    let joined = api.join(&config.code, &config.group).await?;
    api.consent(&joined, &scopes, "the customer, on the agent")
        .await?;

    let (frames_tx, frames_rx) = mpsc::channel::<Captured>(64);
    let blinds = Blinds::new(config.blinds.clone());
    let mut captures: BTreeMap<Track, Arc<Capture>> = BTreeMap::new();
    for (track, settings, _) in wanted.iter().filter(|(t, _, _)| tracks.contains(t)) {
        let blinder = (*track == Track::Screen).then(|| blinds.clone());
        let encoding = match (*track, config.screen_codec) {
            (Track::Screen, ScreenCodec::Tiles) => Encoding::Tiles,
            _ => Encoding::H264,
        };
        let capture = Capture::start(*track, settings, encoding, blinder, frames_tx.clone())?;
        captures.insert(*track, Arc::new(capture));
    }
    if send_mic {
        let capture = Capture::start_mic(&config.mic_reference, frames_tx.clone())?;
        captures.insert(Track::MicReference, Arc::new(capture));
        tracks.push(Track::MicReference);
    }

    let shared = Arc::new(Shared {
        outbox: Mutex::new(Outbox::new(config.spill_bytes)),
        new_frames: Notify::new(),
    });
    let (stop_sealing, sealing_stopped) = watch::channel(false);
    let sealer = tokio::spawn(seal_frames(
        frames_rx,
        SessionCipher::new(&joined.key, joined.session_id),
        shared.clone(),
        captures.clone(),
        sealing_stopped,
    ));
    let (commands, commands_rx) = mpsc::channel(32);
    let (inbound_tx, mut inbound) = mpsc::channel(64);
    let (control_changes_tx, mut control_changes) = mpsc::channel(16);
    let remote_control = match &config.screen.source {
        VideoSource::X11(display) if tracks.contains(&Track::Screen) => {
            RemoteControl::start(display.clone(), control_changes_tx)
        }
        _ => None,
    };
    let mut ws_url = config
        .server
        .join("/api/v1/agent")
        .map_err(|e| AgentError::Config(format!("--server {}: {e}", config.server)))?;
    let scheme = if ws_url.scheme() == "http" {
        "ws"
    } else {
        "wss"
    };
    let _ = ws_url.set_scheme(scheme);
    let link = Link {
        url: ws_url,
        tls,
        token: joined.token.clone(),
        info: AgentInfo {
            version: concat!("idv-agent ", env!("CARGO_PKG_VERSION")).into(),
            platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            tracks: tracks.iter().copied().collect::<BTreeSet<_>>(),
        },
        give_up_after: config.give_up_after,
        flush_patience: Duration::from_secs(30),
    };
    let shared_for_screenshots = shared.clone();
    let mut link_task = tokio::spawn(async move {
        link.run(shared.clone(), commands_rx, inbound_tx)
            .await
            .map(|e| (e, shared))
    });

    let _banner = match &config.screen.source {
        VideoSource::X11(display) if tracks.contains(&Track::Screen) => {
            let text = format!(
                "REMOTE SUPPORT IN PROGRESS - your screen is shared with your bank (session {})",
                joined.session_id
            );
            notice::Banner::show(display.as_deref(), text)
                .map_err(|e| tracing::warn!(error = e, "no banner on the display"))
                .ok()
        }
        _ => None,
    };
    let mut paused = false;
    let mut screenshots: Option<Screenshots> = None;
    tracing::info!(
        clock_origin_unix_ns = clock::origin_unix_ns(),
        "agent clock zero (frames are stamped in ns since it)"
    );
    notice::show(joined.session_id, &tracks, paused, blinds.regions().len());
    let mut watch_captures = tokio::time::interval(Duration::from_millis(250));
    let mut forced_keys = ForcedKeyframes::default();
    let ended = loop {
        tokio::select! {
            action = actions.recv() => match action.unwrap_or(CustomerAction::End) {
                CustomerAction::End => break None,
                CustomerAction::Pause if !paused => {
                    paused = true;
                    let at_ns = clock::now_ns();
                    for capture in captures.values() {
                        capture.gate.pause();
                        // The pause is in the media too: an empty frame flagged `paused`.
                        let marker = Captured {
                            track: capture.track(),
                            captured_at_ns: at_ns,
                            keyframe: false,
                            gap: false,
                            data: Vec::new(),
                        };
                        let _ = frames_tx.send(marker).await;
                    }
                    let _ = commands.send(Command::Control(AgentControl::Pause { tracks: BTreeSet::new(), at_ns })).await;
                    notice::show(joined.session_id, &tracks, paused, blinds.regions().len());
                }
                CustomerAction::Resume if paused => {
                    paused = false;
                    let at_ns = clock::now_ns();
                    let _ = commands.send(Command::Control(AgentControl::Resume { tracks: BTreeSet::new(), at_ns })).await;
                    for capture in captures.values() {
                        capture.gate.resume();
                        capture.request_keyframe();
                    }
                    notice::show(joined.session_id, &tracks, paused, blinds.regions().len());
                }
                CustomerAction::Pause | CustomerAction::Resume => {}
                CustomerAction::Blind(regions) => {
                    blinds.set(regions);
                    let count = blinds.regions().len();
                    let told = AgentControl::Blinds {
                        regions: u32::try_from(count).unwrap_or(u32::MAX),
                        at_ns: clock::now_ns(),
                    };
                    let _ = commands.send(Command::Control(told)).await;
                    notice::show(joined.session_id, &tracks, paused, count);
                }
                CustomerAction::Chat(text) => match proto::control::chat_text(&text) {
                    Ok(text) => {
                        let _ = commands.send(Command::Control(AgentControl::Chat { text })).await;
                    }
                    Err(why) => eprintln!("● Not sent: {why}."),
                },
            },
            Some(request) = inbound.recv() => {
                let refusal = match request {
                    Inbound::StreamingRefused => {
                        screenshots = start_screenshots(&config, &scopes, &blinds, Poster {
                            api: api.clone(),
                            token: joined.token.clone(),
                            session: joined.session_id,
                            key: joined.key.clone(),
                            shared: shared_for_screenshots.clone(),
                        });
                        None
                    }
                    Inbound::StreamingRestored => {
                        if screenshots.take().is_some() {
                            eprintln!("● Streaming again: screenshots stopped.");
                        }
                        None
                    }
                    Inbound::Keyframe(track) => {
                        if let Some(capture) = captures.get(&track)
                            && forced_keys.allow(track, Instant::now())
                        {
                            capture.request_keyframe();
                        }
                        None
                    }
                    Inbound::Welcomed(_) => None,
                    Inbound::LiftBlinds => Some(("lift blinds", "only the customer can lift a blind")),
                    Inbound::Chat { from, text } => {
                        notice::chat(&from, &text);
                        None
                    }
                    Inbound::Input(events) => match &remote_control {
                        Some(control) => {
                            control.operator(events);
                            None
                        }
                        None => Some(("input", "this agent cannot inject input (its screen is not an X11 display)")),
                    },
                };
                if let Some((request, reason)) = refusal {
                    let refused = AgentControl::Refused { request: request.into(), reason: reason.into() };
                    let _ = commands.send(Command::Control(refused)).await;
                }
            }
            Some(change) = control_changes.recv() => {
                let _ = commands.send(Command::Control(change)).await;
            }
            result = &mut link_task => {
                break Some(result.map_err(|e| AgentError::Closed(format!("the link failed: {e}")))?);
            }
            _ = watch_captures.tick() => {
                if let Some((track, error)) = captures.iter().find_map(|(t, c)| c.error().map(|e| (*t, e))) {
                    return Err(AgentError::Capture { source_name: track.name().into(), reason: error });
                }
                if captures.values().all(|c| c.ended()) {
                    break None; // the file sources played to their end
                }
            }
        }
    };

    // Stop capturing, seal what is left, then let the link deliver it and close.
    for capture in captures.values() {
        capture.stop();
    }
    drop(frames_tx);
    let _ = stop_sealing.send(true);
    let dropped = sealer.await.unwrap_or_default();
    let (ended, shared) = match ended {
        Some(result) => result?,
        None => {
            let _ = commands.send(Command::Finish).await;
            link_task
                .await
                .map_err(|e| AgentError::Closed(format!("the link failed: {e}")))??
        }
    };
    let sealed = {
        let outbox = shared.outbox.lock().expect("outbox lock");
        let mut sealed = TrackSeqs::new();
        for track in &tracks {
            sealed.advance(*track, outbox.last_seq(*track));
        }
        sealed
    };
    if ended == Ended::StreamRefused {
        api.end_session(&joined).await?;
    }
    notice::ended(match &ended {
        Ended::Finished => "you ended the session",
        Ended::SessionEnded(_) => "the session was ended by the bank",
        Ended::StreamRefused => {
            "you ended the session (your network blocked streaming: the screenshots were sent, \
             the video captured meanwhile could not be)"
        }
    });
    Ok(Outcome {
        session_id: joined.session_id,
        ended,
        sealed,
        dropped,
    })
}

/// Seals each captured frame into the outbox, in capture order; lowers quality while the
/// outbox fills and drops (declared as a gap) only when it is full. When told to stop it seals
/// what is already captured and returns how many frames were dropped. (Public for agents
/// built on other captures, such as the console's bridge for a customer's browser.)
pub async fn seal_frames(
    mut frames: mpsc::Receiver<Captured>,
    cipher: SessionCipher,
    shared: Arc<Shared>,
    captures: BTreeMap<Track, Arc<Capture>>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut sealer = Sealer {
        cipher,
        shared,
        captures,
        dropped: 0,
        degraded: false,
    };
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => sealer.take(frame),
                None => break,
            },
            _ = stop.changed() => {
                while let Ok(frame) = frames.try_recv() {
                    sealer.take(frame);
                }
                break;
            }
        }
    }
    sealer.dropped
}

struct Sealer {
    cipher: SessionCipher,
    shared: Arc<Shared>,
    captures: BTreeMap<Track, Arc<Capture>>,
    dropped: u64,
    degraded: bool,
}

impl Sealer {
    fn take(&mut self, frame: Captured) {
        let paused_marker = frame.data.is_empty();
        let mut flags = FrameFlags::NONE;
        for (set, flag) in [
            (frame.keyframe, FrameFlags::KEYFRAME),
            (frame.gap, FrameFlags::GAP),
            (paused_marker, FrameFlags::PAUSED),
        ] {
            if set {
                flags |= flag;
            }
        }
        let fill = {
            let mut outbox = self.shared.outbox.lock().expect("outbox lock");
            let len = frame.data.len() + proto::HEADER_LEN + 16;
            if !paused_marker && !outbox.has_room(len) {
                None
            } else {
                let seq = outbox.next_seq(frame.track);
                let header =
                    FrameHeader::new(frame.track, seq, frame.captured_at_ns).with_flags(flags);
                match self.cipher.seal(&header, &frame.data) {
                    Ok(bytes) => outbox.push(frame.track, Sealed { seq, bytes }),
                    Err(e) => tracing::error!(error = %e, "cannot seal a frame"),
                }
                Some(outbox.fill())
            }
        };
        let Some(fill) = fill else {
            // Full: this frame is lost; the next one let out is a keyframe marked as a gap.
            self.dropped += 1;
            if let Some(capture) = self.captures.get(&frame.track) {
                capture.gate.dropped();
                capture.request_keyframe();
            }
            return;
        };
        self.shared.new_frames.notify_one();
        if (fill > 0.5 && !self.degraded) || (fill < 0.1 && self.degraded) {
            self.degraded = !self.degraded;
            tracing::info!(
                degraded = self.degraded,
                fill,
                "adjusting quality to the link"
            );
            for capture in self.captures.values() {
                capture.degrade(self.degraded);
            }
        }
    }
}

/// The operator's input on an X11 screen: a thread that owns the display connection, injects
/// the operator's events while the customer is idle, looks for the customer's input every
/// [`POLL`], and reports each change of control as the `control` message for the operator.
struct RemoteControl {
    events: std::sync::mpsc::Sender<Vec<proto::InputEvent>>,
}

impl RemoteControl {
    fn start(display: Option<String>, changes: mpsc::Sender<AgentControl>) -> Option<Self> {
        let injector = match X11Injector::connect(display.as_deref()) {
            Ok(injector) => injector,
            Err(e) => {
                tracing::warn!(error = e, "remote control unavailable on this display");
                return None;
            }
        };
        let (events, operator) = std::sync::mpsc::channel::<Vec<proto::InputEvent>>();
        std::thread::spawn(move || {
            let mut control = Controller::new(injector);
            // Watching starts with the operator's first event: until then nobody but the
            // customer is using the device, and there is nothing to tell.
            let mut operating = false;
            loop {
                let step = match operator.recv_timeout(POLL) {
                    Ok(batch) => {
                        operating = true;
                        control.operator(&batch)
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if operating => control.poll(),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                match step {
                    Ok(Some(change)) => {
                        let ago = u64::try_from(change.at.elapsed().as_nanos()).unwrap_or(0);
                        let message = AgentControl::Control {
                            holder: change.holder,
                            at_ns: clock::ns_before(ago),
                        };
                        if changes.blocking_send(message).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = e, "remote control stopped");
                        break;
                    }
                }
            }
        });
        Some(Self { events })
    }

    fn operator(&self, events: Vec<proto::InputEvent>) {
        let _ = self.events.send(events);
    }
}

/// Screenshot mode, if the customer allowed screen captures and a screen is configured.
fn start_screenshots(
    config: &AgentConfig,
    scopes: &BTreeSet<ConsentScope>,
    blinds: &Blinds,
    poster: Poster,
) -> Option<Screenshots> {
    if !config.screen.source.is_some() || !scopes.contains(&ConsentScope::ScreenCapture) {
        eprintln!(
            "● The network blocks live streaming; waiting for it (screenshots need the \
             `screen_capture` consent and a screen)."
        );
        return None;
    }
    match Screenshots::start(&config.screen, blinds.clone(), poster) {
        Ok(shots) => {
            eprintln!(
                "● The network blocks live streaming: a screenshot every 5 s until it does not."
            );
            Some(shots)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot take screenshots");
            None
        }
    }
}
