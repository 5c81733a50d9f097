//! One-time connection codes: six digits the operator reads to the customer. Drawn uniformly
//! from the OS's randomness (rejection sampling, no modulo bias). The server never stores a code,
//! only `HMAC-SHA256(code key, group ‖ 0 ‖ code)`: the code is bound to the operator's group
//! (the same digits from another group's page hash differently and find nothing), and the
//! lookup by keyed hash leaks nothing an attacker could use to guess. The code key is 32 random
//! bytes in `DIR/code.key` (0600), made on first start and shared by every ingest node.

use std::fmt;
use std::path::Path;

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{IngestError, Result};
use crate::secret_file;

/// Digits in a code.
pub const DIGITS: usize = 6;
const SPACE: u32 = 1_000_000;

/// A six-digit code, as shown to the operator.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionCode(String);

impl ConnectionCode {
    /// A fresh code from the OS's randomness.
    ///
    /// # Errors
    /// The OS has no randomness to give.
    pub fn generate() -> Result<Self> {
        // The largest multiple of 10⁶ below 2³²: values above it would favour low codes.
        const LIMIT: u32 = u32::MAX - u32::MAX % SPACE;
        loop {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes)
                .map_err(|e| IngestError::Secret(format!("no OS randomness: {e}")))?;
            let n = u32::from_le_bytes(bytes);
            if n < LIMIT {
                return Ok(Self(format!("{:06}", n % SPACE)));
            }
        }
    }

    /// A code as typed by a customer: exactly six ASCII digits (spaces allowed around and
    /// between groups, as people type them).
    ///
    /// # Errors
    /// [`IngestError::BadRequest`] for anything else.
    pub fn parse(typed: &str) -> Result<Self> {
        let digits: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(IngestError::BadRequest("a code is six digits".into()))
        }
    }

    /// The digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConnectionCode {
    /// Codes are secrets: never in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionCode(******)")
    }
}

/// The server's secret for hashing codes.
#[derive(Clone)]
pub struct CodeKey(Zeroizing<[u8; 32]>);

impl CodeKey {
    /// Loads `DIR/code.key`, making it on first start.
    ///
    /// # Errors
    /// The file cannot be written or read, or is not 32 bytes.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("code.key");
        if !path.exists() {
            let mut key = Zeroizing::new([0u8; 32]);
            getrandom::fill(key.as_mut())
                .map_err(|e| IngestError::Secret(format!("no OS randomness: {e}")))?;
            secret_file::write_private(&path, key.as_ref())?;
        }
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| IngestError::io(&path, e))?);
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IngestError::Secret(format!("{}: not a 32-byte key", path.display())))?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// The key bytes, for other MACs keyed by the same server secret (agent tokens).
    #[must_use]
    pub(crate) fn secret(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// `HMAC-SHA256(key, group ‖ 0 ‖ code)`.
    #[must_use]
    pub fn hash(&self, group: &str, code: &ConnectionCode) -> [u8; 32] {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes any key length");
        mac.update(group.as_bytes());
        mac.update(&[0]);
        mac.update(code.as_str().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_spread_over_the_whole_space() {
        let codes: Vec<ConnectionCode> = (0..2000)
            .map(|_| ConnectionCode::generate().unwrap())
            .collect();
        assert!(
            codes
                .iter()
                .all(|c| c.as_str().len() == 6 && c.as_str().bytes().all(|b| b.is_ascii_digit()))
        );
        // Each leading digit appears (a biased or truncated draw would miss some).
        for d in b'0'..=b'9' {
            assert!(
                codes.iter().any(|c| c.as_str().as_bytes()[0] == d),
                "no code starts with {}",
                d as char
            );
        }
        let distinct: std::collections::HashSet<_> =
            codes.iter().map(|c| c.as_str().to_owned()).collect();
        assert!(distinct.len() > 1990, "{} distinct of 2000", distinct.len());
    }

    #[test]
    fn typed_codes_are_checked() {
        assert_eq!(
            ConnectionCode::parse(" 123 456 ").unwrap().as_str(),
            "123456"
        );
        for bad in ["12345", "1234567", "12345a", "１２３４５６", ""] {
            assert!(ConnectionCode::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", ConnectionCode::parse("123456").unwrap()),
            "ConnectionCode(******)"
        );
    }

    #[test]
    fn the_hash_binds_the_group_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = CodeKey::load_or_create(dir.path()).unwrap();
        let again = CodeKey::load_or_create(dir.path()).unwrap();
        let other = CodeKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        let code = ConnectionCode::parse("042917").unwrap();
        assert_eq!(key.hash("bank-a", &code), again.hash("bank-a", &code));
        assert_ne!(key.hash("bank-a", &code), key.hash("bank-b", &code));
        assert_ne!(key.hash("bank-a", &code), other.hash("bank-a", &code));
    }
}
