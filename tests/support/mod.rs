//! A real `idv serve` process on loopback with its own data directory, and the client side of
//! the CLI contract against it: shared by the end-to-end tests.

#![allow(dead_code)]

pub mod browser;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `idv serve`.
pub struct Server {
    child: Child,
    pub url: String,
    pub data: PathBuf,
}

impl Server {
    /// Starts `idv serve` on `data` with a CTI deadline of `cti_deadline_s`.
    pub fn start(data: &Path, cti_deadline_s: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_idv"))
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--drain-seconds", "2"])
            .args(["--cti-deadline-seconds", &cti_deadline_s.to_string()])
            .env_remove("DATABASE_URL")
            .env_remove("IDV_BLOB_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("idv serve prints its URL").unwrap();
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.to_owned();
            }
        };
        Self {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    /// `idv --data-dir DATA ARGS… --server URL` (the client side of the contract).
    pub fn idv(&self, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_idv"))
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("IDV_BLOB_URL")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "idv {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    pub fn idv_out(&self, args: &[&str]) -> String {
        String::from_utf8(self.idv(args).stdout).unwrap()
    }

    pub fn http(&self) -> reqwest::Client {
        let pem = std::fs::read(self.data.join("tls/cert.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }

    /// The status and archive of `session` in `idv recordings list`, once it is past muxing.
    pub fn wait_recording(&self, session: &str) -> (String, String) {
        let started = Instant::now();
        loop {
            let list = self.idv_out(&["recordings", "list", "--server", &self.url]);
            if let Some(line) = list.lines().find(|l| l.starts_with(session)) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if !matches!(fields[1], "queued" | "muxing") {
                    return (fields[1].to_owned(), fields[2].to_owned());
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{session} not muxed in time:\n{list}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Downloads `session`'s sealed recording to `to` (`idv recordings get`, the CLI
    /// contract) and reads its manifest (`idv manifest`).
    pub fn sealed_recording(&self, session: &str, to: &Path) -> serde_json::Value {
        self.idv(&[
            "recordings",
            "get",
            "--server",
            &self.url,
            session,
            "-o",
            to.to_str().unwrap(),
        ]);
        serde_json::from_str(&self.idv_out(&["manifest", to.to_str().unwrap()])).unwrap()
    }

    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "still running");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}");
    }
}

impl Drop for Server {
    /// A test that failed before [`Server::stop`] does not leave its server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
