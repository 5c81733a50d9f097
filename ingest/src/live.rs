//! Live fan-out: operators of a session's group watch its frames as they arrive
//! (`GET /api/v1/sessions/{id}/live`, a WebSocket). Each frame goes out as the agent sent it
//! (header ‖ sealed payload, see `proto::fanout`); the first message gives the session media
//! key to open them with; notices say when sharing pauses, resumes, and when the session ends.
//!
//! The live path never slows the recording path. Each subscriber has a small bounded queue;
//! the media connection only ever `try_send`s into it. A subscriber that cannot keep up
//! loses frames, and is told exactly which ([`LiveNotice::Gap`], per track) before its next
//! frame — it then waits for a keyframe. Every subscription is audited.
//!
//! A watcher may also send requests for the agent on the same socket (input for the
//! customer's screen, lifting a blind: `proto::OperatorRequest`, see [`crate::remote`]);
//! what cannot reach an agent is answered with [`LiveNotice::Refused`]. A watcher who starts,
//! or loses frames of a track, has the agent asked for a keyframe of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use proto::{LiveFrame, LiveMessage, LiveNotice, OperatorRequest, Track, WireMessage};
use storage::audit::{AuditEvent, Outcome};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::{IngestError, Result};
use crate::operator::Operator;
use crate::server::AppState;

/// Messages a subscriber may have queued before it starts losing frames (about two seconds
/// of camera and screen).
const QUEUE: usize = 128;

/// The live subscribers of every session.
#[derive(Default)]
pub struct LiveFeeds {
    sessions: Mutex<HashMap<Uuid, Vec<Subscriber>>>,
}

struct Subscriber {
    queue: mpsc::Sender<LiveMessage>,
    /// Whether it takes frames (a notices-only subscriber follows the session: chat, state,
    /// pauses, control).
    frames: bool,
    /// Frames lost per track since the last one delivered: first and last seq.
    lost: BTreeMap<Track, (u64, u64)>,
}

impl Subscriber {
    /// Queues `message`, first telling of any frames lost before it; `false` once the
    /// subscriber is gone.
    fn offer(&mut self, message: LiveMessage) -> bool {
        if !self.frames && matches!(message, LiveMessage::Frame(_)) {
            return !self.queue.is_closed();
        }
        while let Some((&track, &(from_seq, to_seq))) = self.lost.iter().next() {
            let gap = LiveMessage::Notice(LiveNotice::Gap {
                track,
                from_seq,
                to_seq,
            });
            match self.queue.try_send(gap) {
                Ok(()) => {
                    self.lost.remove(&track);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.lose(&message);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.queue.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(message)) => {
                self.lose(&message);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn lose(&mut self, message: &LiveMessage) {
        if let LiveMessage::Frame(frame) = message {
            let (track, seq) = (frame.header().track, frame.header().seq);
            self.lost
                .entry(track)
                .and_modify(|range| range.1 = seq)
                .or_insert((seq, seq));
        }
        // A notice that does not fit is dropped: the frames' flags carry pauses too.
    }
}

impl LiveFeeds {
    /// A new subscriber to `session` (to its frames too, or only to its notices).
    fn subscribe(&self, session: Uuid, frames: bool) -> mpsc::Receiver<LiveMessage> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        self.sessions
            .lock()
            .expect("not poisoned")
            .entry(session)
            .or_default()
            .push(Subscriber {
                queue,
                frames,
                lost: BTreeMap::new(),
            });
        receiver
    }

    /// Whether anyone watches `session`'s frames (so the media connection can skip the copy).
    #[must_use]
    pub fn watched(&self, session: Uuid) -> bool {
        self.sessions
            .lock()
            .expect("not poisoned")
            .get(&session)
            .is_some_and(|s| s.iter().any(|s| s.frames))
    }

    /// Whether anyone follows `session` at all (frames or notices).
    #[must_use]
    pub fn subscribed(&self, session: Uuid) -> bool {
        self.sessions
            .lock()
            .expect("not poisoned")
            .get(&session)
            .is_some_and(|s| !s.is_empty())
    }

    /// Offers `message` to every subscriber of `session`, never waiting.
    pub fn publish(&self, session: Uuid, message: &LiveMessage) {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        if let Some(subscribers) = sessions.get_mut(&session) {
            subscribers.retain_mut(|s| s.offer(message.clone()));
            if subscribers.is_empty() {
                sessions.remove(&session);
            }
        }
    }

    /// Publishes a frame the media connection accepted (its bytes as the agent sent them).
    pub fn publish_frame(&self, session: Uuid, wire: &[u8], max_payload: usize) {
        if !self.watched(session) {
            return;
        }
        match LiveFrame::from_wire(Bytes::copy_from_slice(wire), max_payload) {
            Ok(frame) => self.publish(session, &LiveMessage::Frame(frame)),
            Err(e) => tracing::warn!(%session, error = %e, "an accepted frame did not decode"),
        }
    }

    /// Tells `session`'s subscribers it ended and lets them go.
    pub fn end(&self, session: Uuid, reason: &str) {
        self.publish(
            session,
            &LiveMessage::Notice(LiveNotice::Ended {
                reason: reason.to_owned(),
            }),
        );
        self.sessions.lock().expect("not poisoned").remove(&session);
    }
}

/// What a subscription asks for.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SubscribeQuery {
    /// `none`: notices only (chat, state, pauses, control) — no frames and no media key, for
    /// a page that shows the video some other way (the console's WebRTC view).
    #[serde(default)]
    frames: Option<String>,
}

/// `GET /api/v1/sessions/{id}/live[?frames=none]`: an operator of the session's group
/// subscribes (audited: `session.watch`, or `session.follow` for notices only).
///
/// # Errors
/// [`IngestError::Unauthorised`] without valid credentials; [`IngestError::NotFound`] for a
/// session of another group or one that has ended.
pub async fn subscribe(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(session): Path<Uuid>,
    Query(query): Query<SubscribeQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    let frames = match query.frames.as_deref() {
        None | Some("all") => true,
        Some("none") => false,
        Some(other) => {
            return Err(IngestError::BadRequest(format!(
                "frames={other:?}: expected all or none"
            )));
        }
    };
    // A browser never holds a session's media key: people see the video through the
    // console's WebRTC view, and follow the session here with notices only.
    if frames && operator.credential == crate::operator::Credential::ConsoleLogin {
        let why = "a console login follows a session with frames=none; the video is shown \
                   over WebRTC";
        let refused = AuditEvent {
            actor: operator.actor(),
            action: "session.watch".into(),
            object: format!("session:{session}"),
            reason: Some(why.into()),
            outcome: Outcome::Denied,
        };
        state.sessions.vault().audit().append(refused).await?;
        return Err(IngestError::Forbidden(why.into()));
    }
    let db = state.sessions.vault().db();
    let record = db
        .session(session)
        .await?
        .filter(|r| r.group == operator.group);
    let allowed = record
        .as_ref()
        .is_some_and(|r| r.state != storage::db::SessionState::Ended);
    let audit = AuditEvent {
        actor: operator.actor(),
        action: if frames {
            "session.watch"
        } else {
            "session.follow"
        }
        .into(),
        object: format!("session:{session}"),
        reason: None,
        outcome: if allowed {
            Outcome::Success
        } else {
            Outcome::Denied
        },
    };
    // No unaudited watching: a failing audit log refuses the subscription.
    state.sessions.vault().audit().append(audit).await?;
    let Some(record) = record.filter(|_| allowed) else {
        return Err(IngestError::NotFound("no such live session".into()));
    };
    let welcome = if frames {
        let key = state
            .sessions
            .media_key(session, record.wrapped_media_key.as_deref())
            .await?;
        LiveMessage::Notice(LiveNotice::Subscribed {
            session_id: session,
            media_key: hex::encode(key.expose()),
        })
    } else {
        LiveMessage::Notice(crate::status::notice(&state, session).await?)
    };
    let receiver = state.feeds.subscribe(session, frames);
    Ok(ws
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
        .on_upgrade(move |socket| {
            let watcher = Watcher {
                session,
                operator,
                frames,
            };
            relay(state, watcher, socket, welcome, receiver)
        }))
}

/// An operator following a session, who may ask things of its agent and chat with the
/// customer.
struct Watcher {
    session: Uuid,
    operator: Operator,
    frames: bool,
}

impl Watcher {
    /// Passes a request to the agent; what to tell this watcher back if it cannot go. The
    /// first input of a subscription, every request to lift a blind and every chat message
    /// are audited (a chat message's text is not: it is personal data the audit log would
    /// keep past the recording's retention).
    async fn request(
        &self,
        state: &AppState,
        text: &str,
        controlling: &mut bool,
    ) -> Option<LiveMessage> {
        let refused = |request: &str, reason: String| {
            Some(LiveMessage::Notice(LiveNotice::Refused {
                request: request.into(),
                reason,
            }))
        };
        let mut request = match OperatorRequest::from_json(text) {
            Ok(request) => request,
            Err(e) => return refused("unknown", format!("not a request: {e}")),
        };
        if let OperatorRequest::Chat { text } = &mut request {
            match proto::control::chat_text(text) {
                Ok(clean) => *text = clean,
                Err(why) => return refused("chat", why.to_owned()),
            }
        }
        let (name, action, audit_it) = match &request {
            OperatorRequest::Input { .. } => ("input", "session.control.input", !*controlling),
            OperatorRequest::LiftBlinds => ("lift blinds", "session.blinds.lift_request", true),
            OperatorRequest::Chat { .. } => ("chat", "session.chat", true),
            _ => ("unknown", "session.request", true),
        };
        let sent = state
            .inboxes
            .send(self.session, request.to_agent(&self.operator.name));
        if audit_it {
            let event = AuditEvent {
                actor: self.operator.actor(),
                action: action.into(),
                object: format!("session:{}", self.session),
                reason: sent.err().map(str::to_owned),
                outcome: if sent.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failed
                },
            };
            if let Err(e) = state.sessions.vault().audit().append(event).await {
                tracing::error!(error = %e, "cannot write the audit log");
            }
        }
        match (sent, request) {
            (Ok(()), OperatorRequest::Chat { text }) => {
                // Every follower sees it, the sender too (their confirmation).
                publish_chat(state, self.session, self.operator.actor(), text);
                None
            }
            (Ok(()), _) => {
                *controlling |= name == "input";
                None
            }
            (Err(reason), _) => refused(name, reason.to_owned()),
        }
    }
}

/// Shows a chat message to everyone following `session`.
pub fn publish_chat(state: &AppState, session: Uuid, from: String, text: String) {
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    state.feeds.publish(
        session,
        &LiveMessage::Notice(LiveNotice::Chat { from, text, at }),
    );
}

/// Asks the session's agent for a keyframe of `track` (best effort: with no agent connected
/// there is nothing to watch yet, and its first frames start with one anyway).
fn ask_keyframe(state: &AppState, session: Uuid, track: Track) {
    let _ = state
        .inboxes
        .send(session, proto::ServerControl::Keyframe { track });
}

/// Sends the welcome, then whatever the feed queues, until either side goes.
async fn relay(
    state: Arc<AppState>,
    watcher: Watcher,
    mut socket: WebSocket,
    welcome: LiveMessage,
    mut receiver: mpsc::Receiver<LiveMessage>,
) {
    let mut next = Some(welcome);
    let mut controlling = false;
    // A new watcher needs a keyframe of each track to start from.
    if watcher.frames {
        for track in [Track::Camera, Track::Screen] {
            ask_keyframe(&state, watcher.session, track);
        }
    }
    loop {
        let Some(message) = next.take() else {
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(m) => next = Some(m),
                    None => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Text(text))) => {
                        next = watcher.request(&state, text.as_str(), &mut controlling).await;
                    }
                    // Anything else (binary, close, an error) ends the subscription.
                    _ => break,
                },
            }
            continue;
        };
        let ended = matches!(message, LiveMessage::Notice(LiveNotice::Ended { .. }));
        if let LiveMessage::Notice(LiveNotice::Gap { track, .. }) = &message {
            // It lost frames: what follows is undecodable until the next keyframe.
            ask_keyframe(&state, watcher.session, *track);
        }
        let sent = match message.to_wire() {
            WireMessage::Text(text) => socket.send(Message::Text(text.into())).await,
            WireMessage::Binary(bytes) => socket.send(Message::Binary(bytes)).await,
        };
        if sent.is_err() || ended {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
