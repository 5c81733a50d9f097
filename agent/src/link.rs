//! The media connection: one WebSocket over TLS to the ingest server, kept up for the whole
//! session. It sends every sealed frame the [`Outbox`] holds past what the server has,
//! drops frames as their acks arrive, syncs the clock, and forwards the customer's pause and
//! resume. When the connection breaks (network cut, new local address, server restart) it
//! connects again with backoff and resumes from the server's `welcome.acked`; capture goes
//! on meanwhile into the outbox. See docs/PROTOCOL.md §1, §5, §6, §7.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use proto::{
    AgentControl, AgentInfo, ClockSample, Close, CloseCode, ServerControl, Track, TrackSeqs,
    control::SessionToken,
};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use crate::clock;
use crate::error::AgentError;
use crate::join::reason_of;
use crate::outbox::Outbox;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the link shares with the sealer: the outbox and a wake-up for new frames.
#[derive(Debug)]
pub struct Shared {
    /// Sealed frames not yet acknowledged.
    pub outbox: Mutex<Outbox>,
    /// Rung when a frame was added.
    pub new_frames: Notify,
}

/// What the session asks of the link.
#[derive(Debug)]
pub enum Command {
    /// Send this control message (pause, resume) now, or on the next connection.
    Control(AgentControl),
    /// The customer ended the session: send what is left, then close.
    Finish,
}

/// What the operator asked of the agent, through the server.
#[derive(Debug)]
pub enum Inbound {
    /// Input to inject while the customer is idle.
    Input(Vec<proto::InputEvent>),
    /// Lift the blinds (always refused).
    LiftBlinds,
    /// The network refuses the WebSocket (a proxy answering the upgrade with an HTTP error):
    /// fall back to screenshots.
    StreamingRefused,
    /// The WebSocket is up again: stop the screenshots.
    StreamingRestored,
    /// Someone started watching a track live, or lost frames of it: a keyframe is wanted.
    Keyframe(Track),
    /// An operator wrote to the customer.
    Chat {
        /// Who (as the customer sees them).
        from: String,
        /// What.
        text: String,
    },
    /// The server accepted the session token (`welcome`, on every connection) for this
    /// session.
    Welcomed(uuid::Uuid),
}

/// Why a connection attempt failed.
enum ConnectFailure {
    /// Something between answered the upgrade with this HTTP status.
    Refused(u16),
    /// No connection (refused, reset, timed out, TLS).
    Failed(String),
}

/// After this many refused upgrades in a row the agent posts screenshots instead.
const REFUSALS_BEFORE_SCREENSHOTS: u32 = 2;
/// How often the WebSocket is tried again while screenshots are posted.
const RETRY_WHILE_REFUSED: Duration = Duration::from_secs(10);

/// How the link ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Everything was acknowledged and the agent closed the session.
    Finished,
    /// The server ended the session (the operator, or a timeout).
    SessionEnded(String),
    /// The customer ended the session while the network refused the WebSocket: the agent
    /// ends it over HTTPS. The screenshots were delivered; the stream spilled meanwhile was
    /// not (the outcome's `sealed` against what the server acknowledged says how much).
    StreamRefused,
}

/// Where and as whom the link connects.
pub struct Link {
    /// `wss://host:port/api/v1/agent`.
    pub url: url::Url,
    /// TLS settings.
    pub tls: Arc<rustls::ClientConfig>,
    /// The session token.
    pub token: String,
    /// What the agent says about itself.
    pub info: AgentInfo,
    /// How long the server may stay unreachable before the agent gives up.
    pub give_up_after: Duration,
    /// How long a finishing agent waits for the last acks.
    pub flush_patience: Duration,
}

/// What one connection came to.
enum Connection {
    /// Lost: connect again.
    Lost(String),
    /// Over for good.
    Over(Result<Ended, AgentError>),
}

/// The link's own state across connections.
struct State {
    acked: TrackSeqs,
    pending_controls: Vec<AgentControl>,
    finishing: Option<Instant>,
    samples: u32,
}

impl Link {
    /// Runs until the session ends or the server stays unreachable too long.
    ///
    /// # Errors
    /// [`AgentError::GaveUp`], or [`AgentError::Closed`] when the server closed for a reason
    /// retrying cannot help.
    pub async fn run(
        &self,
        shared: Arc<Shared>,
        mut commands: mpsc::Receiver<Command>,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<Ended, AgentError> {
        let mut state = State {
            acked: TrackSeqs::new(),
            pending_controls: Vec::new(),
            finishing: None,
            samples: 0,
        };
        let mut backoff = Duration::from_millis(200);
        let mut unreachable_since: Option<Instant> = None;
        let mut refusals = 0u32;
        loop {
            match self.connect().await {
                Ok(socket) => {
                    backoff = Duration::from_millis(200);
                    unreachable_since = None;
                    if refusals >= REFUSALS_BEFORE_SCREENSHOTS {
                        let _ = inbound.try_send(Inbound::StreamingRestored);
                    }
                    refusals = 0;
                    match self
                        .serve(socket, &shared, &mut commands, &inbound, &mut state)
                        .await
                    {
                        Connection::Over(result) => return result,
                        Connection::Lost(why) => {
                            tracing::warn!(reason = why, "connection lost; reconnecting");
                        }
                    }
                }
                Err(ConnectFailure::Refused(status)) => {
                    // The server is reachable, the WebSocket is not: not a reason to give up.
                    unreachable_since = None;
                    refusals += 1;
                    tracing::warn!(status, refusals, "the WebSocket upgrade was refused");
                    if refusals == REFUSALS_BEFORE_SCREENSHOTS {
                        let _ = inbound.try_send(Inbound::StreamingRefused);
                    }
                }
                Err(ConnectFailure::Failed(why)) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.give_up_after {
                        return Err(AgentError::GaveUp(self.give_up_after.as_secs()));
                    }
                    if let Some(started) = state.finishing
                        && started.elapsed() > self.flush_patience
                    {
                        return Err(AgentError::GaveUp(started.elapsed().as_secs()));
                    }
                    tracing::debug!(reason = why, ?backoff, "cannot connect");
                }
            }
            // Meanwhile the session may finish: keep listening for commands while waiting.
            let wait = if refusals >= REFUSALS_BEFORE_SCREENSHOTS {
                RETRY_WHILE_REFUSED
            } else {
                backoff
            };
            if state.finishing.is_some() && refusals >= REFUSALS_BEFORE_SCREENSHOTS {
                // Nothing more can be delivered over a refused WebSocket.
                return Ok(Ended::StreamRefused);
            }
            let sleep = tokio::time::sleep(jitter(wait));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    command = commands.recv() => match command {
                        Some(Command::Control(c)) => state.pending_controls.push(c),
                        Some(Command::Finish) | None => {
                            state.finishing.get_or_insert_with(Instant::now);
                        }
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn connect(&self) -> Result<Socket, ConnectFailure> {
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let attempt = tokio_tungstenite::connect_async_tls_with_config(
            self.url.as_str(),
            None,
            true,
            Some(connector),
        );
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                Err(ConnectFailure::Refused(response.status().as_u16()))
            }
            Ok(Err(e)) => Err(ConnectFailure::Failed(reason_of(&e))),
            Err(_) => Err(ConnectFailure::Failed("timed out".into())),
        }
    }

    async fn serve(
        &self,
        mut socket: Socket,
        shared: &Shared,
        commands: &mut mpsc::Receiver<Command>,
        inbound: &mpsc::Sender<Inbound>,
        state: &mut State,
    ) -> Connection {
        let hello = AgentControl::hello(
            SessionToken::new(self.token.clone()),
            self.info.clone(),
            state.acked.clone(),
        );
        if let Err(e) = socket.send(Message::text(hello.to_json())).await {
            return Connection::Lost(e.to_string());
        }
        let welcome =
            match tokio::time::timeout(Duration::from_secs(10), next_control(&mut socket)).await {
                Ok(Ok(message)) => message,
                Ok(Err(lost)) => return lost,
                Err(_) => return Connection::Lost("no welcome within 10 s".into()),
            };
        let mut sent = match welcome {
            ServerControl::Welcome {
                acked, session_id, ..
            } => {
                let _ = inbound.try_send(Inbound::Welcomed(session_id));
                let mut outbox = shared.outbox.lock().expect("outbox lock");
                for (track, seq) in acked.iter() {
                    if seq < state.acked.get(track) {
                        tracing::error!(
                            track = track.name(),
                            server = seq,
                            agent = state.acked.get(track),
                            "the server lost acknowledged frames; resending what the agent holds"
                        );
                    }
                    outbox.ack(track, seq);
                    state.acked.advance(track, seq);
                }
                acked
            }
            ServerControl::Close(close) => return closed_by_server(&close),
            other => return Connection::Lost(format!("expected welcome, got {other:?}")),
        };
        for control in std::mem::take(&mut state.pending_controls) {
            if let Err(e) = socket.send(Message::text(control.to_json())).await {
                state.pending_controls.push(control);
                return Connection::Lost(e.to_string());
            }
        }

        let mut ping = tokio::time::interval(Duration::from_secs(2));
        let mut check = tokio::time::interval(Duration::from_millis(100));
        loop {
            if let Err(e) = send_pending(&mut socket, shared, &mut sent).await {
                return Connection::Lost(e);
            }
            if let Some(started) = state.finishing {
                let empty = shared.outbox.lock().expect("outbox lock").is_empty();
                if empty || started.elapsed() > self.flush_patience {
                    if !empty {
                        tracing::warn!("ending with frames the server has not acknowledged");
                    }
                    return Connection::Over(close_session(socket).await);
                }
            }
            tokio::select! {
                () = shared.new_frames.notified() => {}
                _ = check.tick() => {}
                _ = ping.tick() => {
                    let t1 = clock::now_ns();
                    if let Err(e) = socket.send(Message::text(AgentControl::Ping { t1 }.to_json())).await {
                        return Connection::Lost(e.to_string());
                    }
                    if state.samples == 10 {
                        ping = tokio::time::interval_at(
                            tokio::time::Instant::now() + Duration::from_secs(10),
                            Duration::from_secs(10),
                        );
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Control(control)) => {
                        if let Err(e) = socket.send(Message::text(control.to_json())).await {
                            state.pending_controls.push(control);
                            return Connection::Lost(e.to_string());
                        }
                    }
                    Some(Command::Finish) | None => {
                        state.finishing.get_or_insert_with(Instant::now);
                    }
                },
                message = next_control(&mut socket) => match message {
                    Ok(ServerControl::Ack { track, seq }) => {
                        shared.outbox.lock().expect("outbox lock").ack(track, seq);
                        state.acked.advance(track, seq);
                    }
                    Ok(ServerControl::Pong { t1, t2, t3 }) => {
                        let sample = ClockSample { t1, t2, t3, t4: clock::now_ns() };
                        state.samples += 1;
                        let text = AgentControl::ClockSample(sample).to_json();
                        if let Err(e) = socket.send(Message::text(text)).await {
                            return Connection::Lost(e.to_string());
                        }
                    }
                    Ok(ServerControl::Close(close)) => return closed_by_server(&close),
                    Ok(ServerControl::Input { events }) => {
                        // Best effort: input that cannot be handled now is dropped.
                        let _ = inbound.try_send(Inbound::Input(events));
                    }
                    Ok(ServerControl::LiftBlinds) => {
                        let _ = inbound.try_send(Inbound::LiftBlinds);
                    }
                    Ok(ServerControl::Keyframe { track }) => {
                        let _ = inbound.try_send(Inbound::Keyframe(track));
                    }
                    Ok(ServerControl::Chat { from, text }) => {
                        let _ = inbound.try_send(Inbound::Chat { from, text });
                    }
                    Ok(other) => tracing::debug!(?other, "ignored"),
                    Err(lost) => return lost,
                },
            }
        }
    }
}

/// Sends every frame past `sent` on each track.
async fn send_pending(
    socket: &mut Socket,
    shared: &Shared,
    sent: &mut TrackSeqs,
) -> Result<(), String> {
    loop {
        let batch: Vec<(Track, u64, Vec<u8>)> = {
            let outbox = shared.outbox.lock().expect("outbox lock");
            outbox
                .tracks()
                .flat_map(|track| {
                    outbox
                        .after(track, sent.get(track))
                        .take(16)
                        .map(move |f| (track, f.seq, f.bytes.clone()))
                })
                .collect()
        };
        if batch.is_empty() {
            return socket.flush().await.map_err(|e| e.to_string());
        }
        for (track, seq, bytes) in batch {
            socket
                .feed(Message::binary(bytes))
                .await
                .map_err(|e| e.to_string())?;
            sent.advance(track, seq);
        }
    }
}

/// The next control message from the server (binary messages are not for agents).
async fn next_control(socket: &mut Socket) -> Result<ServerControl, Connection> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return ServerControl::from_json(&text)
                    .map_err(|e| Connection::Lost(format!("bad message from the server: {e}")));
            }
            Some(Ok(Message::Close(frame))) => {
                let close = frame.and_then(|f| {
                    CloseCode::from_u16(u16::from(f.code))
                        .map(|code| Close::new(code, f.reason.as_str()))
                });
                return Err(match close {
                    Some(close) => closed_by_server(&close),
                    None => Connection::Lost("the server closed the connection".into()),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Connection::Lost(e.to_string())),
            None => return Err(Connection::Lost("the connection ended".into())),
        }
    }
}

fn closed_by_server(close: &Close) -> Connection {
    if close.code == CloseCode::SessionEnded {
        return Connection::Over(Ok(Ended::SessionEnded(close.reason.clone())));
    }
    if close.code.agent_should_reconnect() {
        return Connection::Lost(format!("{}: {}", close.code, close.reason));
    }
    Connection::Over(Err(AgentError::Closed(format!(
        "{}: {}",
        close.code, close.reason
    ))))
}

/// Everything is acknowledged: the customer's end of the session.
async fn close_session(mut socket: Socket) -> Result<Ended, AgentError> {
    let close = Close::new(CloseCode::SessionEnded, "the customer ended the session");
    let _ = socket
        .send(Message::text(AgentControl::Close(close.clone()).to_json()))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: WsCloseCode::from(close.code.to_u16()),
            reason: close.reason.clone().into(),
        })))
        .await;
    // Let the server answer the close (it stores the end first).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    Ok(Ended::Finished)
}

/// `base` ± 25 %, so many agents cut at once do not come back in step (the monotonic
/// clock's low digits are random enough for that).
fn jitter(base: Duration) -> Duration {
    let spread = (clock::now_ns().rem_euclid(1000)) as f64 / 1000.0 * 0.5 - 0.25;
    base.mul_f64(1.0 + spread)
}
