//! Passwords: argon2id with the crate's default cost (19 MiB, 2 passes — OWASP's minimum),
//! stored as PHC strings so the cost can be raised later without breaking old hashes.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password accepted.
pub const MIN_LEN: usize = 12;

/// A password could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short to be a password for a bank's console.
    #[error("a password needs at least {MIN_LEN} characters")]
    TooShort,
    /// The hasher failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The PHC string of `password`'s argon2id hash, with a fresh salt.
///
/// # Errors
/// [`PasswordError::TooShort`]; [`PasswordError::Hash`].
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `stored` (a malformed one matches nothing).
#[must_use]
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new random password (20 characters from a 54-letter alphabet without look-alikes:
/// ~115 bits), for accounts made from the command line and printed once.
#[must_use]
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(stored, hash("correct horse battery").unwrap(), "salted");
        assert!(matches!(hash("short"), Err(PasswordError::TooShort)));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(hash(&a).is_ok());
    }
}
