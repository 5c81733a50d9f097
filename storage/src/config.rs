//! Where a node keeps its state: the data directory, and optionally a PostgreSQL URL and an
//! S3 URL that replace the embedded defaults (SQLite file and local blob directory).

use std::path::PathBuf;

/// Storage settings of one node. Loading them has no side effects; [`crate::Vault::open`]
/// creates what is missing.
#[derive(Clone)]
pub struct StorageConfig {
    /// Keyring, SQLite database and local blobs live here (default `./data`).
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of `DATA_DIR/idv.db`.
    pub database_url: Option<String>,
    /// `s3://bucket/prefix` (with the usual AWS env vars) instead of `DATA_DIR/blobs`.
    pub blob_url: Option<String>,
}

impl StorageConfig {
    /// Embedded defaults under `data_dir`.
    #[must_use]
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database_url: None,
            blob_url: None,
        }
    }
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|u| redact_url(u)),
            )
            .field("blob_url", &self.blob_url)
            .finish()
    }
}

/// A URL with any password replaced, safe for logs.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_database_passwords() {
        let mut c = StorageConfig::embedded("/d");
        c.database_url = Some("postgres://idv:hunter2@db/idv".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"));
    }
}
