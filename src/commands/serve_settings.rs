//! `idv serve`'s settings: command-line flags over `--config idv.toml` over the defaults.
//! Unknown keys in the file are refused (a typo must not silently leave a default in force).
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! role = "all"                  # all | ingest | muxer | console
//! tls_names = ["idv.bank.example"]
//! code_ttl_seconds = 600
//! cti_deadline_seconds = 900
//! drain_seconds = 10
//! session_idle_seconds = 1800   # a joined session with no agent this long ends
//! cti_upload_idle_seconds = 300 # a CTI upload in parts fed nothing this long is closed
//! heap_trim_ms = 1000           # free heap pages handed back to the OS this often (0: never)
//!
//! [limits]
//! max_frame_bytes = 1048576      # largest frame plaintext from an agent
//! max_session_bytes_per_sec = 4194304
//! max_cti_bytes = 2147483648
//!
//! [muxer]
//! lease_seconds = 60
//! max_attempts = 3
//!
//! [spool]                        # how agents' frames are kept (docs/JOURNAL.md)
//! segment_bytes = 67108864       # a track log this large is rolled into the blob store…
//! segment_seconds = 300          # … or one this old, while the session runs
//! commit_interval_ms = 2         # least time between two journal syncs (group commit)
//! apply_interval_ms = 500        # journaled frames written into their track logs this often
//! checkpoint_seconds = 30        # track logs synced and the journal dropped this often…
//! checkpoint_bytes = 1073741824  # … or once the journal is this large
//!
//! [console]                      # role console on its own node: where live sessions are
//! ingest_url = "https://ingest.bank.example:8443"   # (the ingest nodes, behind their balancer)
//! ingest_ca = "/etc/idv/ingest-ca.pem"              # their certificate (PEM)
//! ingest_token_file = "/etc/idv/operator.token"     # a token they take for the live fan-out
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::serve::Role;

/// The file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<SocketAddr>,
    pub role: Option<Role>,
    pub tls_names: Option<Vec<String>>,
    pub code_ttl_seconds: Option<u64>,
    pub cti_deadline_seconds: Option<u64>,
    pub drain_seconds: Option<u64>,
    pub session_idle_seconds: Option<u64>,
    pub cti_upload_idle_seconds: Option<u64>,
    pub heap_trim_ms: Option<u64>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub muxer: Muxer,
    #[serde(default)]
    pub spool: Spool,
    #[serde(default)]
    pub console: Console,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_frame_bytes: Option<usize>,
    pub max_session_bytes_per_sec: Option<u64>,
    pub max_cti_bytes: Option<u64>,
}

/// `[spool]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spool {
    pub segment_bytes: Option<u64>,
    pub segment_seconds: Option<u64>,
    pub commit_interval_ms: Option<u64>,
    pub apply_interval_ms: Option<u64>,
    pub checkpoint_seconds: Option<u64>,
    pub checkpoint_bytes: Option<u64>,
}

/// `[console]`: where a console running alone (`--role console`) reaches live sessions. In
/// role `all` the console uses its own process's ingest server and these are not needed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    pub ingest_url: Option<String>,
    pub ingest_ca: Option<std::path::PathBuf>,
    pub ingest_token_file: Option<std::path::PathBuf>,
}

impl Console {
    /// The live source these settings name, if any: all three keys, or none.
    ///
    /// # Errors
    /// Some keys but not all, a URL that does not parse, files that cannot be read.
    pub fn live_source(&self) -> anyhow::Result<Option<console::LiveSource>> {
        let (url, ca, token) = match (&self.ingest_url, &self.ingest_ca, &self.ingest_token_file) {
            (None, None, None) => return Ok(None),
            (Some(url), Some(ca), Some(token)) => (url, ca, token),
            _ => anyhow::bail!(
                "[console] needs ingest_url, ingest_ca and ingest_token_file together"
            ),
        };
        Ok(Some(console::LiveSource {
            server: url
                .parse()
                .with_context(|| format!("[console] ingest_url {url:?} is not a URL"))?,
            ca_pem: std::fs::read(ca)
                .with_context(|| format!("[console] ingest_ca: cannot read {}", ca.display()))?,
            token: std::fs::read_to_string(token)
                .with_context(|| {
                    format!(
                        "[console] ingest_token_file: cannot read {}",
                        token.display()
                    )
                })?
                .trim()
                .to_owned(),
        }))
    }
}

/// `[muxer]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Muxer {
    pub lease_seconds: Option<u64>,
    pub max_attempts: Option<u32>,
}

impl ServeFile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown key or a value of the wrong type.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: Self =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        let at_least_one = [
            ("muxer.lease_seconds", file.muxer.lease_seconds),
            ("spool.segment_bytes", file.spool.segment_bytes),
            ("spool.segment_seconds", file.spool.segment_seconds),
            ("spool.apply_interval_ms", file.spool.apply_interval_ms),
            ("spool.checkpoint_seconds", file.spool.checkpoint_seconds),
            ("spool.checkpoint_bytes", file.spool.checkpoint_bytes),
        ];
        for (key, value) in at_least_one {
            if value == Some(0) {
                anyhow::bail!("{}: {key} must be at least 1", path.display());
            }
        }
        Ok(file)
    }
}

/// Seconds as a duration.
pub fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}
