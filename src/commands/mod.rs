//! One module per command group; each turns parsed arguments into calls on the library
//! crates and prints the outcome.

pub mod agent;
pub mod archive;
pub mod audit;
pub mod cti;
pub mod demo;
pub mod keys;
pub mod mux;
pub mod recordings;
pub mod retention;
pub mod serve;
mod serve_settings;
pub mod session;
pub mod user;

use storage::{Access, StorageConfig, Vault};

/// What every command needs: where the data lives and who is acting.
pub struct Context {
    pub storage: StorageConfig,
    pub actor: String,
}

impl Context {
    pub async fn vault(&self) -> anyhow::Result<Vault> {
        Ok(Vault::open(&self.storage).await?)
    }

    pub fn access(&self, reason: Option<String>) -> Access {
        Access::new(self.actor.clone(), reason)
    }
}

/// `cli:<login name>`, so CLI actions in the audit log say who ran them.
pub fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// `1234567` → `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
