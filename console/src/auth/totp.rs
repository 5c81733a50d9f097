//! The optional second factor: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps — what every
//! authenticator app reads from an `otpauth://` link), one step of clock skew either way.
//! The 256-bit secret is kept wrapped by the keyring (context `totp\0USER-ID`), never in clear
//! in the database.

use storage::archive::FileKey;
use totp_rs::{Algorithm, TOTP};
use uuid::Uuid;

/// Digits of a code.
const DIGITS: usize = 6;
/// Seconds a code lasts.
const STEP: u64 = 30;
/// Steps of clock skew accepted either way.
const SKEW: u8 = 1;
/// The issuer authenticator apps show.
const ISSUER: &str = "idv";

/// The keyring context a user's secret is wrapped under.
#[must_use]
pub fn context(user_id: Uuid) -> Vec<u8> {
    let mut context = b"totp\0".to_vec();
    context.extend_from_slice(user_id.hyphenated().to_string().as_bytes());
    context
}

fn totp(secret: &FileKey, account: &str) -> TOTP {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW,
        STEP,
        secret.expose().to_vec(),
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
    .expect("a 256-bit secret and a plain account name are valid")
}

/// The `otpauth://` link an authenticator app enrols from.
#[must_use]
pub fn enrolment_url(secret: &FileKey, account: &str) -> String {
    totp(secret, account).get_url()
}

/// Whether `code` is the current one (or one step either side) at unix time `now`.
#[must_use]
pub fn check(secret: &FileKey, account: &str, code: &str, now: u64) -> bool {
    let code = code.trim();
    code.len() == DIGITS
        && code.bytes().all(|b| b.is_ascii_digit())
        && totp(secret, account).check(code, now)
}

/// The code at unix time `now` (for tests and for showing a new user that enrolment worked).
#[must_use]
pub fn code_at(secret: &FileKey, account: &str, now: u64) -> String {
    totp(secret, account).generate(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_code_and_its_neighbours_pass_others_fail() {
        let secret = FileKey::generate();
        let now = 1_790_000_000;
        let code = code_at(&secret, "ana", now);
        assert!(check(&secret, "ana", &code, now));
        assert!(check(&secret, "ana", &code, now + STEP), "one step of skew");
        assert!(!check(&secret, "ana", &code, now + 3 * STEP));
        assert!(
            !check(&FileKey::generate(), "ana", &code, now),
            "another secret"
        );
        assert!(!check(&secret, "ana", "12345", now));
        assert!(!check(&secret, "ana", "abcdef", now));
        let url = enrolment_url(&secret, "ana");
        assert!(url.starts_with("otpauth://totp/idv:ana?"), "{url}");
    }
}
