//! A real S3-compatible server on loopback for tests: `s3s-fs` serving a temporary directory,
//! with freshly generated credentials, killed when the [`S3Server`] is dropped.
//!
//! The binary comes from `$IDV_S3S_FS`, else `~/.cache/idv/tools/bin/s3s-fs` (installed by
//! `scripts/bootstrap.sh`). When it is missing, [`S3Server::start`] prints
//! `SKIPPED s3: <reason>` and returns `None`, unless `IDV_REQUIRE_S3=1`, which turns the
//! absence into a failure.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use storage::blob::{BlobStore, S3Options};

/// How long the server may take to answer on its port.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Port races (another process takes the port between our probe and the server's bind) are
/// retried this many times.
const START_ATTEMPTS: usize = 3;

/// A running `s3s-fs`; dropping it kills the server and removes its data.
pub struct S3Server {
    child: Child,
    port: u16,
    access_key: String,
    secret_key: String,
    /// The directory served as S3: one subdirectory per bucket.
    root: PathBuf,
    /// Holds `root` and the server log.
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server, or returns `None` (after printing why) when the binary is absent and
    /// S3 is not required.
    pub fn start() -> anyhow::Result<Option<Self>> {
        let binary = match locate_binary() {
            Ok(binary) => binary,
            Err(reason) => {
                if std::env::var("IDV_REQUIRE_S3").is_ok_and(|v| v == "1") {
                    bail!("IDV_REQUIRE_S3=1 but {reason}");
                }
                eprintln!("SKIPPED s3: {reason}");
                return Ok(None);
            }
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary) {
                Ok(server) => return Ok(Some(server)),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("s3s-fs did not start")))
    }

    fn start_once(binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root)?;
        let log_path = dir.path().join("s3s-fs.log");
        let log = std::fs::File::create(&log_path)?;
        let port = free_loopback_port()?;
        let access_key = format!("idvtest{}", uuid::Uuid::new_v4().simple());
        let secret_key = uuid::Uuid::new_v4().simple().to_string();
        let child = Command::new(binary)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--access-key")
            .arg(&access_key)
            .arg("--secret-key")
            .arg(&secret_key)
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Self {
            child,
            port,
            access_key,
            secret_key,
            root,
            _dir: dir,
        };
        server.wait_until_listening(&log_path)?;
        Ok(server)
    }

    fn wait_until_listening(&mut self, log_path: &Path) -> anyhow::Result<()> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                bail!("s3s-fs exited with {status} before listening on {address}:\n{log}");
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("s3s-fs did not listen on {address} within {STARTUP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (s3s-fs keeps each bucket as a directory under its root).
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        std::fs::create_dir(self.root.join(bucket))
            .with_context(|| format!("creating bucket {bucket}"))
    }

    /// Connection options for `bucket`/`prefix` on this server.
    pub fn options(&self, bucket: &str, prefix: &str) -> S3Options {
        let mut options = S3Options::new(bucket);
        options.prefix = prefix.to_owned();
        options.endpoint = Some(self.endpoint());
        options.access_key_id = Some(self.access_key.clone());
        options.secret_access_key = Some(self.secret_key.clone());
        options.allow_http = true;
        options
    }

    /// A fresh bucket and a store on it under `prefix`.
    pub fn store(&self, bucket: &str, prefix: &str) -> anyhow::Result<BlobStore> {
        self.create_bucket(bucket)?;
        Ok(BlobStore::s3(self.options(bucket, prefix))?)
    }

    /// Files of unfinished multipart uploads the server still keeps (parts, upload records,
    /// temporary files); empty once every upload was completed or aborted.
    pub fn upload_leftovers(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                name.starts_with(".upload") || name.starts_with(".tmp.")
            })
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Killing an already-exited child fails harmlessly; waiting reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn locate_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("IDV_S3S_FS") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "IDV_S3S_FS points to {}, which is not a file",
                path.display()
            ))
        };
    }
    let home =
        std::env::var_os("HOME").ok_or("HOME is not set, so ~/.cache/idv cannot be found")?;
    let path = PathBuf::from(home).join(".cache/idv/tools/bin/s3s-fs");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found; run scripts/bootstrap.sh or set IDV_S3S_FS",
            path.display()
        ))
    }
}

/// A port that was free a moment ago (bound to port 0, then released).
fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
