//! The agent's media connection (`GET /api/v1/agent`, WebSocket; `docs/PROTOCOL.md`).
//!
//! `hello` first (token and protocol version checked), then `welcome` with what is durable per
//! track. Every binary message must be one frame that opens under the session key with the
//! session's id as associated data — so a replayed, reordered, spliced or foreign frame is
//! refused — for a track the customer consented to; its tag is checked, and it is never
//! decrypted ([`FrameVerifier`]). Frames are taken into the session's track logs as they
//! arrived (still sealed: no plaintext media is written) and acknowledged
//! **after** they are durable: a batch of frames that arrived together is handed to the node's
//! group commit ([`crate::commit`]), which journals it with every other connection's waiting
//! batch under one sync, and then gets one cumulative ack per track. The connection writes no
//! file: the group commit's applier writes the journaled frames into the logs later. A resent
//! frame (seq ≤ the last durable one) is acknowledged again and not stored twice.
//!
//! Per-connection memory is kept small, since one node holds many agents: WebSocket buffers
//! are bounded (see [`agent_socket`]), frames are authenticated where they arrived, and a
//! batch's frames are journaled straight from the buffers they arrived in.
//!
//! A misbehaving agent is closed with a close code and one-line reason, and nothing else is
//! disturbed: its frames before the bad one stay durable, other sessions do not notice. A newer
//! connection for the same session supersedes the older one, which is closed first, so one
//! writer owns a session's logs at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use bytes::Bytes;
use futures::{FutureExt, SinkExt};
use proto::frame::{HEADER_LEN, TAG_LEN};
use proto::{AgentControl, Close, CloseCode, FrameVerifier, ServerControl, Track, TrackSeqs};
use storage::db::{ConsentScope, SessionState};
use tokio::sync::watch;
use uuid::Uuid;

use crate::server::AppState;
use storage::journal::Entry;
use storage::track_log::{Appended, LogError, TrackLog};

/// How long an agent has to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The live connections, one per session: a newer one closes the older first.
#[derive(Default)]
pub struct LiveConnections {
    sessions: Mutex<HashMap<Uuid, LiveEntry>>,
}

struct LiveEntry {
    /// Tells the connection to close with this code.
    stop: watch::Sender<Option<CloseCode>>,
    /// Held by the connection while it owns the session's logs.
    owner: Arc<tokio::sync::Mutex<()>>,
}

impl LiveConnections {
    /// Asks the session's connection (if any) to close with `code`.
    pub fn close(&self, session: Uuid, code: CloseCode) {
        if let Some(entry) = self.sessions.lock().expect("not poisoned").get(&session) {
            let _ = entry.stop.send(Some(code));
        }
    }

    /// Asks the session's connection (if any) to close with `code` and waits, up to
    /// `patience`, until it has: its last batch durable and acknowledged, its clock-sync
    /// samples stored. What a mux job reads is then complete.
    pub async fn close_and_wait(&self, session: Uuid, code: CloseCode, patience: Duration) {
        let owner = {
            let sessions = self.sessions.lock().expect("not poisoned");
            let Some(entry) = sessions.get(&session) else {
                return;
            };
            let _ = entry.stop.send(Some(code));
            entry.owner.clone()
        };
        if tokio::time::timeout(patience, owner.lock()).await.is_err() {
            tracing::warn!(%session, ?patience, "the agent connection did not close in time");
        }
    }

    /// Asks every connection to close with `code` (a shutdown: each first makes its last
    /// batch durable and acknowledges it).
    pub fn close_all(&self, code: CloseCode) {
        for entry in self.sessions.lock().expect("not poisoned").values() {
            let _ = entry.stop.send(Some(code));
        }
    }

    /// Whether an agent connection serves `session` now.
    pub fn is_connected(&self, session: Uuid) -> bool {
        self.sessions
            .lock()
            .expect("not poisoned")
            .get(&session)
            .is_some_and(|e| e.owner.try_lock().is_err())
    }

    /// Drops what is kept for an ended session (unless a connection still holds it).
    pub fn forget(&self, session: Uuid) {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        if sessions
            .get(&session)
            .is_some_and(|e| e.owner.try_lock().is_ok())
        {
            sessions.remove(&session);
        }
    }

    /// Whether an agent connection holds `session` now.
    pub fn connected(&self, session: Uuid) -> bool {
        self.sessions
            .lock()
            .expect("not poisoned")
            .get(&session)
            .is_some_and(|e| e.owner.try_lock().is_err())
    }

    /// The session's logs, if no connection owns them now (screenshot mode: an agent that
    /// holds a WebSocket sends its screenshots there).
    pub fn try_own(&self, session: Uuid) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let owner = {
            let mut sessions = self.sessions.lock().expect("not poisoned");
            sessions
                .entry(session)
                .or_insert_with(|| LiveEntry {
                    stop: watch::channel(None).0,
                    owner: Arc::new(tokio::sync::Mutex::new(())),
                })
                .owner
                .clone()
        };
        owner.try_lock_owned().ok()
    }

    /// Takes the session over: the older connection is told to close and awaited.
    async fn take(
        &self,
        session: Uuid,
    ) -> (
        watch::Receiver<Option<CloseCode>>,
        tokio::sync::OwnedMutexGuard<()>,
    ) {
        let (stop, receiver) = watch::channel(None);
        let owner = {
            let mut sessions = self.sessions.lock().expect("not poisoned");
            let owner = sessions.get(&session).map_or_else(
                || Arc::new(tokio::sync::Mutex::new(())),
                |e| e.owner.clone(),
            );
            if let Some(old) = sessions.insert(
                session,
                LiveEntry {
                    stop,
                    owner: owner.clone(),
                },
            ) {
                let _ = old.stop.send(Some(CloseCode::Superseded));
            }
            owner
        };
        (receiver, owner.lock_owned().await)
    }
}

/// The WebSocket upgrade, with per-connection buffers kept small (many agents per server).
pub async fn agent_socket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    // Twice the largest frame: a frame a little too large still reaches the protocol check
    // and is refused with its close code; a flood far beyond is cut by the WebSocket layer.
    let max_message = 2 * (HEADER_LEN + state.config.max_payload + TAG_LEN);
    // tungstenite's read buffer starts at this size (also the most it reads at once) and grows
    // to hold each frame whole; see `Connection::last_frame` for how it is kept from staying
    // at twice the largest frame. The load bench at 400 agents (15 KB keyframes), RSS per
    // agent under load: 16 KiB read buffer 96 KiB, 4 KiB ~70, 2 KiB with `last_frame` ~53.
    ws.max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(2 * 1024)
        // Up to this much is queued before it is written: the acks of one batch (about 50
        // bytes each) go out together; every other message is sent and flushed at once.
        .write_buffer_size(256)
        .max_write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| async move {
            state.metrics.agents_connected.fetch_add(1, Ordering::Relaxed);
            // Boxed: the task holds this connection's state once, not twice.
            let outcome = Box::pin(Connection::run(&state, socket)).await;
            state.metrics.agents_connected.fetch_sub(1, Ordering::Relaxed);
            if let Some((close, session)) = outcome {
                tracing::info!(%peer, code = close.code.to_u16(), reason = %close.reason, "agent connection closed");
                if let Some(session) = session {
                    Box::pin(customer_ended(&state, session)).await;
                }
            }
        })
}

/// Why the connection ends.
fn close(code: CloseCode, reason: impl Into<String>) -> Close {
    Close::new(code, reason)
}

struct Connection<'a> {
    state: &'a AppState,
    socket: WebSocket,
    session: Uuid,
    verifier: FrameVerifier,
    logs: BTreeMap<Track, SpooledLog>,
    consented: Vec<ConsentScope>,
    budget: Budget,
    clock_samples: Vec<storage::db::ClockSample>,
    /// The agent said the customer ended the session.
    ended_by_customer: bool,
    /// The last frame received, kept until the next one has been read. The WebSocket layer
    /// hands out frames as slices of its read buffer; while one is still referenced, the
    /// buffer's next growth allocates just what the next frame needs (`BytesMut::reserve` on
    /// a shared buffer) and the old allocation goes with the old frame. Unshared, the same
    /// buffer is reused and doubles whenever a frame does not fit, and never shrinks: with
    /// this, the load bench measured ~10 KiB less per agent under load.
    last_frame: Option<Bytes>,
}

impl<'a> Connection<'a> {
    /// Runs a connection to its end; returns how it was closed.
    /// Serves one agent connection; how it closed, and the session if the customer ended it
    /// (its logs are released by then).
    async fn run(state: &'a AppState, mut socket: WebSocket) -> Option<(Close, Option<Uuid>)> {
        // The rare, large steps (database, audit, blob store) are boxed: the connection's task
        // is then about as large as its receive loop, for as long as it lives.
        let (session, verifier) = match Box::pin(hello(state, &mut socket)).await {
            Ok(ok) => ok,
            Err(reason) => {
                send_close(&mut socket, &reason).await;
                return Some((reason, None));
            }
        };
        let (mut stop, _owner) = state.live.take(session).await;
        let mut connection =
            match Box::pin(Connection::open(state, socket, session, verifier)).await {
                Ok(c) => c,
                Err((mut socket, reason)) => {
                    send_close(&mut socket, &reason).await;
                    return Some((reason, None));
                }
            };
        let reason = connection.serve(&mut stop).await;
        Box::pin(connection.flush_clock_samples()).await;
        send_close(&mut connection.socket, &reason).await;
        state.last_seen.touch(session);
        Some((reason, connection.ended_by_customer.then_some(session)))
    }

    async fn open(
        state: &'a AppState,
        mut socket: WebSocket,
        session: Uuid,
        verifier: FrameVerifier,
    ) -> Result<Self, (WebSocket, Close)> {
        let db = state.sessions.vault().db();
        let consented = match db.consents(session).await {
            Ok(c) => c
                .into_iter()
                .filter(|c| c.revoked_at.is_none())
                .map(|c| c.scope)
                .collect(),
            Err(e) => {
                return Err((
                    socket,
                    close(CloseCode::ServerShuttingDown, format!("storage: {e}")),
                ));
            }
        };
        if !state.commit.healthy() {
            return Err((
                socket,
                close(CloseCode::ServerShuttingDown, "storage unavailable"),
            ));
        }
        let logs = match Box::pin(open_logs(state, session)).await {
            Ok(logs) => logs,
            Err(e) => {
                tracing::error!(%session, error = %e, "cannot open the track logs");
                return Err((
                    socket,
                    close(CloseCode::ServerShuttingDown, "storage unavailable"),
                ));
            }
        };
        let mut acked = TrackSeqs::new();
        for (&track, spooled) in &logs {
            if let Some(seq) = spooled.log.last_seq() {
                acked.advance(track, seq);
            }
        }
        let _ = db
            .transition_session(
                session,
                &[SessionState::Consented],
                SessionState::Live,
                time::OffsetDateTime::now_utc(),
                None,
            )
            .await;
        let welcome = ServerControl::Welcome {
            protocol: proto::PROTOCOL_VERSION,
            session_id: session,
            acked,
            max_payload: u32::try_from(state.config.max_payload).unwrap_or(u32::MAX),
            max_bytes_per_sec: state.config.max_bytes_per_sec,
        };
        if socket
            .send(Message::Text(welcome.to_json().into()))
            .await
            .is_err()
        {
            return Err((
                socket,
                close(CloseCode::ProtocolError, "the agent went away"),
            ));
        }
        crate::status::announce(state, session).await;
        Ok(Self {
            state,
            socket,
            session,
            verifier,
            logs,
            consented,
            budget: Budget::new(state.config.max_bytes_per_sec),
            clock_samples: Vec::new(),
            ended_by_customer: false,
            last_frame: None,
        })
    }

    /// Receives, stores and acknowledges until the agent leaves or must be closed; passes on
    /// what operators ask of the agent meanwhile ([`crate::remote`]).
    async fn serve(&mut self, stop: &mut watch::Receiver<Option<CloseCode>>) -> Close {
        let mut inbox = self.state.inboxes.open(self.session);
        let reason = self.serve_with(stop, &mut inbox).await;
        drop(inbox);
        self.state.inboxes.close(self.session);
        reason
    }

    async fn serve_with(
        &mut self,
        stop: &mut watch::Receiver<Option<CloseCode>>,
        inbox: &mut tokio::sync::mpsc::Receiver<ServerControl>,
    ) -> Close {
        loop {
            let first = tokio::select! {
                message = self.socket.recv() => message,
                Some(request) = inbox.recv() => {
                    if let Err(reason) = self.send(&request).await {
                        return reason;
                    }
                    continue;
                }
                _ = stop.changed() => {
                    let code = stop.borrow().unwrap_or(CloseCode::SessionEnded);
                    return close(code, match code {
                        CloseCode::Superseded => "a newer connection took the session over",
                        CloseCode::ServerShuttingDown => "the server is shutting down",
                        _ => "the session has ended",
                    });
                }
            };
            // Everything that has already arrived goes into one durable batch.
            let mut batch = vec![first];
            while batch.len() < 256 {
                match self.socket.recv().now_or_never() {
                    Some(next) => batch.push(next),
                    None => break,
                }
            }
            // Tracks with frames stored or resent in this batch: an ack is due for each.
            let mut progress: BTreeSet<Track> = BTreeSet::new();
            // What this batch appended, for the journal.
            let mut entries = Vec::new();
            let mut ending = None;
            for message in batch {
                match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                        ending = Some(close(
                            CloseCode::SessionEnded,
                            "the agent closed the connection",
                        ));
                        break;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        self.last_frame = Some(bytes.clone());
                        if let Err(reason) = self.frame(bytes, &mut entries, &mut progress) {
                            self.state
                                .metrics
                                .frames_refused
                                .fetch_add(1, Ordering::Relaxed);
                            ending = Some(reason);
                            break;
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Err(reason) = Box::pin(self.control(&text)).await {
                            ending = Some(reason);
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                }
            }
            // Whatever was stored before a bad frame is still made durable and acknowledged.
            if let Err(reason) = self.commit(entries, &progress).await {
                return reason;
            }
            if let Some(reason) = ending {
                return reason;
            }
        }
    }

    /// Checks and appends one frame (not yet durable: its journal entry goes to `entries`).
    fn frame(
        &mut self,
        bytes: Bytes,
        entries: &mut Vec<Entry>,
        progress: &mut BTreeSet<Track>,
    ) -> Result<(), Close> {
        if !self.budget.spend(bytes.len()) {
            return Err(close(
                CloseCode::BandwidthExceeded,
                "over the session's bandwidth cap",
            ));
        }
        let header = self
            .verifier
            .verify(&bytes, self.state.config.max_payload)
            .map_err(|e| Close::for_error(&e))?;
        let scope = storage_scope(proto::ConsentScope::for_track(header.track));
        if !scope.is_some_and(|s| self.consented.contains(&s)) {
            return Err(close(
                CloseCode::ConsentRequired,
                format!("no consent for the {} track", header.track.name()),
            ));
        }
        let spooled = self
            .logs
            .get_mut(&header.track)
            .ok_or_else(|| close(CloseCode::ProtocolError, "unknown track"))?;
        let offset = spooled.log.len();
        match spooled.log.append_journaled(header.seq, bytes.len()) {
            Ok(Appended::Stored) => {
                self.state
                    .metrics
                    .frames_acknowledged
                    .fetch_add(1, Ordering::Relaxed);
                // Watchers see it at once; the live path never waits for the fsync.
                self.state
                    .feeds
                    .publish_frame(self.session, &bytes, self.state.config.max_payload);
                entries.push(Entry {
                    log: Arc::clone(&spooled.name),
                    offset,
                    seq: header.seq,
                    timestamp: header.captured_at_ns,
                    frame: bytes,
                });
            }
            Ok(Appended::Duplicate) => {}
            Err(LogError::OutOfOrder { expected, got, .. }) => {
                return Err(close(
                    CloseCode::ProtocolError,
                    format!(
                        "{} frame {got} skips sequence numbers (expected {expected})",
                        header.track.name()
                    ),
                ));
            }
            Err(e) => {
                tracing::error!(session = %self.session, error = %e, "cannot append a frame");
                return Err(close(CloseCode::ServerShuttingDown, "storage unavailable"));
            }
        }
        progress.insert(header.track);
        Ok(())
    }

    /// One control message.
    async fn control(&mut self, text: &str) -> Result<(), Close> {
        let received = utc_now_ns();
        let message = AgentControl::from_json(text).map_err(|e| Close::for_error(&e))?;
        match message {
            AgentControl::Ping { t1 } => {
                let pong = ServerControl::Pong {
                    t1,
                    t2: received,
                    t3: utc_now_ns(),
                };
                self.send(&pong).await
            }
            AgentControl::ClockSample(s) => {
                if s.estimate().is_err() {
                    return Err(close(
                        CloseCode::ProtocolError,
                        "an impossible clock-sync sample",
                    ));
                }
                self.clock_samples.push(storage::db::ClockSample {
                    t1: s.t1,
                    t2: s.t2,
                    t3: s.t3,
                    t4: s.t4,
                });
                if self.clock_samples.len() >= 32 {
                    self.flush_clock_samples().await;
                }
                Ok(())
            }
            AgentControl::Consent { scopes, .. } => {
                let scopes: Vec<ConsentScope> =
                    scopes.into_iter().filter_map(storage_scope).collect();
                self.state
                    .sessions
                    .consent(self.session, &scopes, "agent")
                    .await
                    .map_err(|e| close(CloseCode::SessionEnded, e.to_string()))?;
                self.consented = scopes;
                crate::status::announce(self.state, self.session).await;
                Ok(())
            }
            // The pause itself is on the timeline (frames flagged `paused`); the audit log
            // keeps that the customer did it.
            AgentControl::Pause { tracks, at_ns } => {
                audit_sharing(self.state, self.session, "session.pause", &tracks, at_ns).await;
                let notice = proto::LiveNotice::Paused { tracks, at_ns };
                (self.state.feeds).publish(self.session, &proto::LiveMessage::Notice(notice));
                Ok(())
            }
            AgentControl::Resume { tracks, at_ns } => {
                audit_sharing(self.state, self.session, "session.resume", &tracks, at_ns).await;
                let notice = proto::LiveNotice::Resumed { tracks, at_ns };
                (self.state.feeds).publish(self.session, &proto::LiveMessage::Notice(notice));
                Ok(())
            }
            // The customer ended the session (the agent's "end" button): it ends once this
            // connection has stored what it has.
            AgentControl::Close(c) if c.code == CloseCode::SessionEnded => {
                self.ended_by_customer = true;
                Err(close(CloseCode::SessionEnded, "ended by the customer"))
            }
            AgentControl::Close(_) => Err(close(
                CloseCode::SessionEnded,
                "the agent closed the connection",
            )),
            AgentControl::Control { holder, at_ns } => {
                let (actor, why) = match holder {
                    proto::ControlHolder::Customer => {
                        ("customer:agent", "the customer took control back")
                    }
                    proto::ControlHolder::Operator => (
                        "system:agent",
                        "the customer is idle: the operator's input counts",
                    ),
                };
                audit_agent(
                    self.state,
                    self.session,
                    actor,
                    "session.control",
                    why,
                    storage::audit::Outcome::Success,
                )
                .await;
                let notice = proto::LiveNotice::Control { holder, at_ns };
                (self.state.feeds).publish(self.session, &proto::LiveMessage::Notice(notice));
                Ok(())
            }
            AgentControl::Refused { request, reason } => {
                let action = if request == "lift blinds" {
                    "session.blinds.lift"
                } else {
                    "session.control.refused"
                };
                let why = format!("{request}: {reason}");
                audit_agent(
                    self.state,
                    self.session,
                    "customer:agent",
                    action,
                    &why,
                    storage::audit::Outcome::Denied,
                )
                .await;
                let notice = proto::LiveNotice::Refused { request, reason };
                (self.state.feeds).publish(self.session, &proto::LiveMessage::Notice(notice));
                Ok(())
            }
            AgentControl::Blinds { regions, at_ns } => {
                let why = format!("the customer hides {regions} region(s) of the screen");
                audit_agent(
                    self.state,
                    self.session,
                    "customer:agent",
                    "session.blinds",
                    &why,
                    storage::audit::Outcome::Success,
                )
                .await;
                let notice = proto::LiveNotice::Blinds { regions, at_ns };
                (self.state.feeds).publish(self.session, &proto::LiveMessage::Notice(notice));
                Ok(())
            }
            AgentControl::Chat { text } => {
                // A bad message is the customer's typing, not a broken agent: not sent on.
                let Ok(text) = proto::control::chat_text(&text) else {
                    return Ok(());
                };
                audit_agent(
                    self.state,
                    self.session,
                    "customer:agent",
                    "session.chat",
                    "a message from the customer",
                    storage::audit::Outcome::Success,
                )
                .await;
                crate::live::publish_chat(self.state, self.session, "customer".into(), text);
                Ok(())
            }
            AgentControl::Hello { .. } => {
                Err(close(CloseCode::ProtocolError, "hello was already said"))
            }
            _ => Err(close(CloseCode::ProtocolError, "unexpected message")),
        }
    }

    /// Makes the batch durable (with other connections' batches), then acknowledges it.
    /// Resent frames need no commit of their own: whatever they repeat was durable before.
    async fn commit(
        &mut self,
        entries: Vec<Entry>,
        progress: &BTreeSet<Track>,
    ) -> Result<(), Close> {
        if let Err(e) = self.state.commit.commit(entries).await {
            tracing::error!(session = %self.session, error = %e, "cannot make the frames durable");
            return Err(close(CloseCode::ServerShuttingDown, "storage unavailable"));
        }
        // Every track's ack in one TLS record and one write: they are queued in the socket's
        // write buffer (`agent_socket`) and flushed together.
        let went_away = |_| close(CloseCode::SessionEnded, "the agent went away");
        for &track in progress {
            if let Some(seq) = self.logs.get(&track).and_then(|s| s.log.last_seq()) {
                let ack = ServerControl::Ack { track, seq }.to_json();
                self.socket
                    .feed(Message::Text(ack.into()))
                    .await
                    .map_err(went_away)?;
            }
        }
        self.socket.flush().await.map_err(went_away)?;
        for &track in progress {
            let policy = &self.state.config.segments;
            if self
                .logs
                .get(&track)
                .is_some_and(|s| crate::segments::due(policy, &s.log, s.opened))
            {
                Box::pin(self.next_segment(track)).await?;
            }
        }
        Ok(())
    }

    /// Closes `track`'s log (everything in it is durable: journaled, and synced by the roller
    /// before it is read) and goes on in the next segment's; the closed one is rolled into the
    /// blob store in the background.
    async fn next_segment(&mut self, track: Track) -> Result<(), Close> {
        let Some(current) = self.logs.get(&track) else {
            return Ok(());
        };
        let root = crate::segments::spool_root(&self.state.config.data_dir);
        let after = current.log.last_seq().unwrap_or(0);
        let index = current.index + 1;
        let name = storage::spool::log_name(self.session, track.name(), index);
        let path = root.join(&name);
        let opened = tokio::task::spawn_blocking(move || {
            TrackLog::open(&path).map(|mut log| {
                log.continue_after(after);
                log
            })
        })
        .await;
        let log = match opened {
            Ok(Ok(log)) => log,
            Ok(Err(e)) => {
                tracing::error!(session = %self.session, error = %e, "cannot start a segment");
                return Err(close(CloseCode::ServerShuttingDown, "storage unavailable"));
            }
            Err(e) => {
                tracing::error!(session = %self.session, error = %e, "cannot start a segment");
                return Err(close(CloseCode::ServerShuttingDown, "storage unavailable"));
            }
        };
        self.logs.insert(
            track,
            SpooledLog {
                log,
                name: name.into(),
                index,
                opened: Instant::now(),
            },
        );
        self.state.roller.closed(self.session);
        Ok(())
    }

    async fn send(&mut self, message: &ServerControl) -> Result<(), Close> {
        self.socket
            .send(Message::Text(message.to_json().into()))
            .await
            .map_err(|_| close(CloseCode::SessionEnded, "the agent went away"))
    }

    async fn flush_clock_samples(&mut self) {
        if self.clock_samples.is_empty() {
            return;
        }
        let samples = std::mem::take(&mut self.clock_samples);
        if let Err(e) = self
            .state
            .sessions
            .vault()
            .db()
            .insert_clock_samples(self.session, &samples)
            .await
        {
            tracing::error!(session = %self.session, error = %e, "cannot store clock-sync samples");
        }
    }
}

/// Audits the customer pausing or resuming sharing (the pause itself is on the timeline: the
/// frames are flagged `paused`).
/// Audits what the agent reported on the customer's behalf (control taken back, a request
/// refused).
async fn audit_agent(
    state: &AppState,
    session: Uuid,
    actor: &str,
    action: &str,
    reason: &str,
    outcome: storage::audit::Outcome,
) {
    let event = storage::audit::AuditEvent {
        actor: actor.into(),
        action: action.into(),
        object: format!("session:{session}"),
        reason: Some(reason.into()),
        outcome,
    };
    if let Err(e) = state.sessions.vault().audit().append(event).await {
        tracing::error!(%session, error = %e, "cannot write the audit log");
    }
}

async fn audit_sharing(
    state: &AppState,
    session: Uuid,
    action: &str,
    tracks: &BTreeSet<Track>,
    at_ns: i64,
) {
    let which = if tracks.is_empty() {
        "all tracks".to_owned()
    } else {
        tracks
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let event = storage::audit::AuditEvent {
        actor: "customer:agent".into(),
        action: action.into(),
        object: format!("session:{session}"),
        reason: Some(format!("{which} at agent clock {at_ns} ns")),
        outcome: storage::audit::Outcome::Success,
    };
    if let Err(e) = state.sessions.vault().audit().append(event).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

/// Waits for `hello`, checks it, and prepares the check of the session's frames.
async fn hello(state: &AppState, socket: &mut WebSocket) -> Result<(Uuid, FrameVerifier), Close> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv())
        .await
        .map_err(|_| close(CloseCode::ProtocolError, "no hello in time"))?;
    let Some(Ok(Message::Text(text))) = first else {
        return Err(close(
            CloseCode::ProtocolError,
            "the first message must be hello",
        ));
    };
    let Ok(AgentControl::Hello {
        protocol,
        session_token,
        ..
    }) = AgentControl::from_json(&text)
    else {
        return Err(close(
            CloseCode::ProtocolError,
            "the first message must be hello",
        ));
    };
    if protocol != proto::PROTOCOL_VERSION {
        return Err(close(
            CloseCode::ProtocolError,
            format!(
                "protocol version {protocol} is not supported (this server speaks {})",
                proto::PROTOCOL_VERSION
            ),
        ));
    }
    let session = state
        .sessions
        .session_of_token(session_token.expose())
        .map_err(|_| close(CloseCode::AuthFailed, "invalid session token"))?;
    let record = state
        .sessions
        .vault()
        .db()
        .session(session)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| close(CloseCode::AuthFailed, "invalid session token"))?;
    if record.state == SessionState::Ended || record.state == SessionState::Created {
        return Err(close(CloseCode::SessionEnded, "the session is not open"));
    }
    let key = state
        .sessions
        .media_key(session, record.wrapped_media_key.as_deref())
        .await
        .map_err(|_| close(CloseCode::SessionEnded, "the session is not open"))?;
    Ok((session, FrameVerifier::new(&key, session)))
}

async fn send_close(socket: &mut WebSocket, reason: &Close) {
    let _ = socket
        .send(Message::Text(
            ServerControl::Close(reason.clone()).to_json().into(),
        ))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: reason.code.to_u16(),
            reason: Utf8Bytes::from(reason.reason.clone()),
        })))
        .await;
}

/// A session's track log: its name in the journal (its path under the spool), its segment
/// index, and when it was opened.
struct SpooledLog {
    log: TrackLog,
    name: Arc<str>,
    index: u64,
    opened: Instant,
}

/// Every track's active log (see [`crate::segments::open_active`]).
async fn open_logs(
    state: &AppState,
    session: Uuid,
) -> crate::error::Result<BTreeMap<Track, SpooledLog>> {
    // An earlier connection's last records may still be only in the journal.
    state.commit.settle().await.map_err(|e| {
        crate::error::IngestError::io(
            &crate::segments::spool_dir(&state.config.data_dir, session),
            std::io::Error::other(e.to_string()),
        )
    })?;
    let mut logs = BTreeMap::new();
    for track in Track::ALL {
        let active = crate::segments::open_active(
            state.sessions.vault(),
            &state.config.data_dir,
            session,
            track,
        )
        .await?;
        logs.insert(
            track,
            SpooledLog {
                log: active.log,
                name: active.name.into(),
                index: active.index,
                opened: Instant::now(),
            },
        );
    }
    Ok(logs)
}

/// The customer ended `session` from the agent: it ends, and what follows every end follows.
async fn customer_ended(state: &AppState, session: Uuid) {
    if let Err(e) = crate::ending::end_by_customer(state, session).await {
        tracing::error!(%session, error = %e, "cannot end the session the customer ended");
    }
}

/// The stored consent scope for a protocol one (the names are the same).
fn storage_scope(scope: proto::ConsentScope) -> Option<ConsentScope> {
    let name = serde_json::to_value(scope).ok()?;
    ConsentScope::parse(name.as_str()?)
}

fn utc_now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// A token bucket over frame bytes: `rate` per second, bursts up to two seconds' worth.
struct Budget {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(rate: u64) -> Self {
        Self {
            rate: rate as f64,
            tokens: 2.0 * rate as f64,
            at: Instant::now(),
        }
    }

    fn spend(&mut self, bytes: usize) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(2.0 * self.rate);
        self.at = now;
        self.tokens -= bytes as f64;
        self.tokens >= 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let mut b = Budget::new(1000);
        assert!(b.spend(1500));
        assert!(b.spend(400));
        assert!(!b.spend(200), "over two seconds' worth at once");
    }

    #[test]
    fn every_protocol_scope_has_a_stored_one() {
        for track in Track::ALL {
            assert!(
                storage_scope(proto::ConsentScope::for_track(track)).is_some(),
                "{track:?}"
            );
        }
    }
}
