//! An Xvfb display for a test, stopped when dropped; `None` (and the test says it skipped)
//! where Xvfb is not installed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Xvfb {
    child: Child,
    /// `:N`.
    pub name: String,
}

impl Xvfb {
    /// A `width`×`height` display with a number no other test of this process uses.
    pub fn start(width: u32, height: u32) -> Option<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        if Command::new("Xvfb").arg("-help").output().is_err() {
            eprintln!("SKIPPED: Xvfb is not installed (scripts/bootstrap.sh installs it)");
            return None;
        }
        let number = 100 + (std::process::id() % 500) * 8 + NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!(":{number}");
        let child = Command::new("Xvfb")
            .args([
                name.as_str(),
                "-screen",
                "0",
                &format!("{width}x{height}x24"),
            ])
            // Without -noreset the server resets when its last client leaves (the readiness
            // probe below), and a test connecting during that reset is refused.
            .args(["-nolisten", "tcp", "-noreset"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let ready = Command::new("xdpyinfo")
                .args(["-display", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Some(Self { child, name });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
