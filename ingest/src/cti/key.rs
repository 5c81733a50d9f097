//! The CTI system's shared secret and the request signature made with it: one
//! implementation, shared by the server, `idv cti push` and the tests.

use std::path::Path;

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{IngestError, Result};
use crate::secret_file;

/// The CTI system's shared secret.
#[derive(Clone)]
pub struct CtiKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CtiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CtiKey(…)")
    }
}

impl CtiKey {
    /// Loads `DIR/cti.key`, writing a fresh random one (0600) first if there is none.
    ///
    /// # Errors
    /// The file cannot be written or read, or holds no key.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("cti.key");
        if !path.exists() {
            let mut secret = Zeroizing::new([0u8; 32]);
            getrandom::fill(secret.as_mut())
                .map_err(|e| IngestError::Secret(format!("no OS randomness: {e}")))?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(secret.as_ref())));
            secret_file::write_private(&path, text.as_bytes())?;
            tracing::info!(path = %path.display(), "wrote the CTI signing key");
        }
        Self::from_file(&path)
    }

    /// Reads a key file: 64 hex digits.
    ///
    /// # Errors
    /// The file cannot be read or holds no key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| IngestError::io(path, e))?);
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| {
            IngestError::Secret(format!("{}: not a CTI key (64 hex digits)", path.display()))
        })?;
        Ok(Self(key))
    }

    pub(super) fn mac(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp: i64,
        body_sha256: &[u8; 32],
    ) -> [u8; 32] {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes any key length");
        mac.update(method.as_bytes());
        mac.update(b"\n");
        mac.update(path_and_query.as_bytes());
        mac.update(b"\n");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(hex::encode(body_sha256).as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The `X-Idv-Signature` of a request: hex HMAC-SHA256 under `key` of
/// `METHOD \n PATH?QUERY \n TIMESTAMP \n hex(SHA-256(body))`. `path_and_query` is the request
/// target exactly as sent (percent-encoding included). The one implementation, shared by the
/// server and `idv cti push`.
#[must_use]
pub fn sign(
    key: &CtiKey,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    body_sha256: &[u8; 32],
) -> String {
    hex::encode(key.mac(method, path_and_query, timestamp, body_sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_every_part() {
        let key = CtiKey(Zeroizing::new([7u8; 32]));
        let digest = [1u8; 32];
        let base = sign(&key, "POST", "/p?a=1", 100, &digest);
        assert_eq!(base.len(), 64);
        assert_ne!(base, sign(&key, "PUT", "/p?a=1", 100, &digest));
        assert_ne!(base, sign(&key, "POST", "/p?a=2", 100, &digest));
        assert_ne!(base, sign(&key, "POST", "/p?a=1", 101, &digest));
        assert_ne!(base, sign(&key, "POST", "/p?a=1", 100, &[2u8; 32]));
        let other = CtiKey(Zeroizing::new([8u8; 32]));
        assert_ne!(base, sign(&other, "POST", "/p?a=1", 100, &digest));
    }
}
