//! The HTTPS server: binds, serves the API over TLS, and shuts down gracefully — it stops
//! accepting, lets requests in flight finish (bounded by the drain time), then returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use storage::Vault;

use crate::api;
use crate::code::CodeKey;
use crate::commit::{CommitPolicy, GroupCommit};
use crate::cti::CtiIntake;
use crate::error::{IngestError, Result};
use crate::media::LiveConnections;
use crate::metrics::Metrics;
use crate::operator::OperatorTokens;
use crate::session::Sessions;
use crate::tls::TlsFiles;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The data directory (TLS files, bootstrap token, metadata, blobs).
    pub data_dir: PathBuf,
    /// Extra DNS names or addresses the self-signed certificate should cover.
    pub tls_names: Vec<String>,
    /// How long a graceful shutdown waits for requests in flight.
    pub drain: Duration,
    /// How long a connection code stays valid.
    pub code_ttl: Duration,
    /// How long an ended session waits for its CTI recording before a video-only mux.
    pub cti_deadline: Duration,
    /// The largest frame payload accepted, bytes.
    pub max_payload: usize,
    /// Each session's bandwidth cap, bytes of frames per second (bursts of two seconds).
    pub max_bytes_per_sec: u64,
    /// The largest CTI recording accepted, bytes (enforced while it streams).
    pub max_cti_bytes: u64,
    /// A joined session with no agent connected this long ends (timeout).
    pub session_idle: Duration,
    /// A CTI upload in parts that receives nothing this long is closed with the parts that
    /// arrived (keep it well under `cti_deadline`).
    pub cti_upload_idle: Duration,
    /// The least time between two syncs of the journal (`commit`): more connections' frames
    /// per sync, less CPU, that much more latency at most.
    pub commit_interval: Duration,
    /// How often journaled frames are written into their track logs (`commit`): each log's
    /// frames of that long in one write.
    pub apply_interval: Duration,
    /// When the agents' track logs are synced and the journal that covered them removed
    /// (`commit`): how often, at most.
    pub checkpoint_every: Duration,
    /// … or once the journal holds this many bytes (also what a restart may replay).
    pub checkpoint_bytes: u64,
    /// When an agent's track log is closed and rolled into the blob store mid-session.
    pub segments: crate::segments::SegmentPolicy,
    /// How often the heap's free pages are handed back to the OS ([`crate::heap`]); zero:
    /// never.
    pub heap_trim_interval: Duration,
    /// Another role's routes served on the same listener (the web console, wired by the
    /// binary: ingest does not depend on it). Its paths must not overlap `/api/v1`.
    pub extra_routes: Option<Router>,
}

impl ServeConfig {
    /// Loopback on `port`, data in `data_dir`, 10 s drain.
    #[must_use]
    pub fn local(data_dir: PathBuf, port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir,
            tls_names: Vec::new(),
            drain: Duration::from_secs(10),
            code_ttl: Duration::from_secs(10 * 60),
            cti_deadline: Duration::from_secs(15 * 60),
            max_payload: proto::frame::DEFAULT_MAX_PAYLOAD,
            max_bytes_per_sec: 4 << 20,
            max_cti_bytes: crate::cti::DEFAULT_MAX_CTI_BYTES,
            session_idle: Duration::from_secs(30 * 60),
            cti_upload_idle: Duration::from_secs(5 * 60),
            commit_interval: Duration::from_millis(2),
            apply_interval: Duration::from_millis(500),
            checkpoint_every: Duration::from_secs(30),
            checkpoint_bytes: 1 << 30,
            segments: crate::segments::SegmentPolicy::default(),
            heap_trim_interval: Duration::from_secs(1),
            extra_routes: None,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// Operator credentials.
    pub operators: OperatorTokens,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Makes the agents' frames durable, many connections' at once.
    pub commit: Arc<GroupCommit>,
    /// Sessions, codes, consent.
    pub sessions: Sessions,
    /// How the server was configured.
    pub config: ServeConfig,
    /// Agents connected now, one connection per session.
    pub live: LiveConnections,
    /// Operators watching sessions live.
    pub feeds: crate::live::LiveFeeds,
    /// When each session's agent was last seen (for the idle timeout).
    pub last_seen: crate::ending::LastSeen,
    /// CTI audio intake: its signing key and replay memory.
    pub cti: CtiIntake,
    /// The agent connections' inboxes for what operators ask.
    pub inboxes: crate::remote::AgentInboxes,
    /// Rolls closed track logs into the blob store.
    pub roller: Arc<crate::segments::Roller>,
}

/// A started server.
pub struct RunningServer {
    state: Arc<AppState>,
    addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    reaper: tokio::task::JoinHandle<()>,
    roller: tokio::task::JoinHandle<()>,
    trimmer: Option<tokio::task::JoinHandle<()>>,
    drain: Duration,
}

impl RunningServer {
    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`https://ADDR`).
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Returns once every frame acknowledged so far is in its track log's file (for tools and
    /// tests that read the spool while the server runs; see [`GroupCommit::settle`]).
    ///
    /// # Errors
    /// The journal failed.
    pub async fn settle_logs(&self) -> Result<()> {
        self.state.commit.settle().await.map_err(|e| {
            IngestError::io(
                &self.state.config.data_dir.join("spool"),
                std::io::Error::other(e.to_string()),
            )
        })
    }

    /// Stops accepting, tells connected agents to go (after acknowledging what they sent),
    /// waits for requests in flight (at most the drain time), and returns.
    ///
    /// # Errors
    /// The server failed while running.
    pub async fn shutdown(self) -> Result<()> {
        self.shutdown_handle().shutdown();
        self.wait().await
    }

    /// Runs until the server stops.
    ///
    /// # Errors
    /// The server failed while running.
    pub async fn wait(self) -> Result<()> {
        let served = self.task.await;
        self.reaper.abort();
        self.roller.abort();
        if let Some(trimmer) = &self.trimmer {
            trimmer.abort();
        }
        // The last checkpoint: the track logs synced, the journal removed (a connection still
        // closing after this cannot acknowledge any more).
        self.state.commit.stop().await;
        match served {
            Ok(result) => {
                result.map_err(|e| IngestError::io(std::path::Path::new("<listener>"), e))
            }
            Err(e) => Err(IngestError::BadRequest(format!("server task: {e}"))),
        }
    }

    /// A handle that can start a graceful shutdown from elsewhere (a signal handler).
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            state: Arc::clone(&self.state),
            handle: self.handle.clone(),
            drain: self.drain,
        }
    }
}

/// Starts a graceful shutdown of a [`RunningServer`].
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Arc<AppState>,
    handle: axum_server::Handle<SocketAddr>,
    drain: Duration,
}

impl ShutdownHandle {
    /// Stop accepting; close agents (each after its last ack); finish what is in flight.
    pub fn shutdown(&self) {
        self.handle.graceful_shutdown(Some(self.drain));
        self.state
            .live
            .close_all(proto::CloseCode::ServerShuttingDown);
    }
}

/// Prepares the data directory (certificate, token, code key, CTI key) and starts serving, storing in
/// `vault`.
///
/// # Errors
/// The data directory cannot be prepared or the address cannot be bound.
pub async fn start(config: ServeConfig, vault: Vault) -> Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| IngestError::io(&config.data_dir, e))?;
    let tls = TlsFiles::under(&config.data_dir).load_or_create(&config.tls_names)?;
    let codes = CodeKey::load_or_create(&config.data_dir)?;
    let metrics = Arc::new(Metrics::default());
    let commit = Arc::new(start_commit(&config, Arc::clone(&metrics)).await?);
    let (roller, woken) =
        crate::segments::Roller::new(vault.clone(), &config.data_dir, Arc::clone(&commit));
    let state = Arc::new(AppState {
        operators: OperatorTokens::load_or_create(&config.data_dir)?,
        metrics,
        commit,
        sessions: Sessions::new(vault, codes, config.code_ttl, config.cti_deadline),
        config: config.clone(),
        live: LiveConnections::default(),
        feeds: crate::live::LiveFeeds::default(),
        last_seen: crate::ending::LastSeen::default(),
        cti: CtiIntake::load_or_create(&config.data_dir, config.max_cti_bytes)?,
        inboxes: crate::remote::AgentInboxes::default(),
        roller: Arc::clone(&roller),
    });
    // Logs a crash left unrolled: into the blob store; the jobs of sessions that ended just
    // before it queued (both idempotent).
    for session in roller.recover().await? {
        tracing::info!(%session, "rolled the logs of a session that ended before a restart");
        state.sessions.queue_mux(session).await?;
    }
    let roller = tokio::spawn(roller.run(woken));
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| IngestError::io(std::path::Path::new(&config.listen.to_string()), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| IngestError::io(std::path::Path::new("<listener>"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| IngestError::io(std::path::Path::new("<listener>"), e))?;
    let handle = axum_server::Handle::new();
    // TCP_NODELAY: an ack is one small TLS record; with Nagle's algorithm it would wait for
    // the agent's next frame to acknowledge the previous segment (33 ms at 30 fps: measured
    // by the load bench as the ack latency's p50, 0.8 ms without).
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(tls)))
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::from_tcp(listener)
        .map_err(|e| IngestError::io(std::path::Path::new("<listener>"), e))?
        .acceptor(acceptor)
        .handle(handle.clone());
    let app = match config.extra_routes.clone() {
        Some(extra) => router(Arc::clone(&state)).merge(extra),
        None => router(Arc::clone(&state)),
    };
    let task = tokio::spawn(async move {
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
    });
    tracing::info!(%addr, "serving");
    let every = (config.session_idle / 4)
        .min(config.code_ttl / 4)
        .min(config.cti_upload_idle / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    let reaper = crate::ending::spawn_reaper(Arc::clone(&state), every);
    Ok(RunningServer {
        state,
        addr,
        handle,
        task,
        reaper,
        roller,
        trimmer: crate::heap::spawn_trimmer(config.heap_trim_interval),
        drain: config.drain,
    })
}

/// Replays the journal a crash left into the track logs (before anything reads them), then
/// starts the group commit on a new generation.
async fn start_commit(config: &ServeConfig, metrics: Arc<Metrics>) -> Result<GroupCommit> {
    let dir = config.data_dir.join("journal");
    let root = config.data_dir.join("spool");
    let recovered = {
        let (dir, root) = (dir.clone(), root.clone());
        tokio::task::spawn_blocking(move || storage::journal::Journal::recover(&dir, &root))
    }
    .await
    .map_err(|e| IngestError::io(&dir, std::io::Error::other(e.to_string())))?;
    let (journal, replayed) =
        recovered.map_err(|e| IngestError::io(&dir, std::io::Error::other(e.to_string())))?;
    if replayed.records > 0 || replayed.cut_bytes > 0 {
        tracing::info!(
            generations = ?replayed.generations,
            records = replayed.records,
            rewritten = replayed.rewritten,
            logs = replayed.logs,
            skipped = replayed.skipped.len(),
            cut_bytes = replayed.cut_bytes,
            "replayed the journal into the track logs"
        );
    }
    let policy = CommitPolicy {
        interval: config.commit_interval,
        apply_every: config.apply_interval,
        checkpoint_every: config.checkpoint_every,
        checkpoint_bytes: config.checkpoint_bytes,
    };
    GroupCommit::start(journal, root, policy, metrics).map_err(|e| IngestError::io(&dir, e))
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await
}
