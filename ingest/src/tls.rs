//! TLS on every socket. On first start the server makes itself a self-signed certificate for
//! the loopback names (and any extra names configured) and keeps it in `DIR/tls/` — the
//! certificate world-readable (clients pin it with `--ca DIR/tls/cert.pem`), the private key
//! readable by the owner only. Later starts load the same pair, so clients keep trusting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{IngestError, Result};
use crate::secret_file;

/// Where the server's certificate and key live under the data directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate (what clients pin).
    pub cert: PathBuf,
    /// PEM private key (0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files under `data_dir/tls`.
    #[must_use]
    pub fn under(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// Loads the pair, generating it first if the data directory has none. `names` are the
    /// DNS names and IP addresses the certificate is valid for (loopback is always included).
    ///
    /// # Errors
    /// The files cannot be written or read, or do not hold a certificate and key.
    pub fn load_or_create(&self, names: &[String]) -> Result<rustls::ServerConfig> {
        if !self.cert.exists() || !self.key.exists() {
            self.generate(names)?;
        }
        self.load()
    }

    fn generate(&self, names: &[String]) -> Result<()> {
        let mut subject_alt_names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        subject_alt_names.extend(names.iter().cloned());
        let certified = rcgen::generate_simple_self_signed(subject_alt_names)
            .map_err(|e| IngestError::Tls(format!("cannot make a certificate: {e}")))?;
        if let Some(dir) = self.cert.parent() {
            std::fs::create_dir_all(dir).map_err(|e| IngestError::io(dir, e))?;
        }
        secret_file::write_private(&self.key, certified.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&self.cert, certified.cert.pem())
            .map_err(|e| IngestError::io(&self.cert, e))?;
        tracing::info!(cert = %self.cert.display(), "generated a self-signed TLS certificate");
        Ok(())
    }

    fn load(&self) -> Result<rustls::ServerConfig> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
            .map_err(|e| IngestError::Tls(format!("{}: {e}", self.cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| IngestError::Tls(format!("{}: {e}", self.key.display())))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| IngestError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| IngestError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}
