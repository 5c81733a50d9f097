//! Blob keys: which strings name a blob. Checked here, before any backend sees them, so a
//! key means the same object on the local filesystem and in S3 and can never climb out of
//! the store's root.

use object_store::path::Path;

use super::error::{BlobError, Result};

/// S3 limits keys to 1024 bytes (UTF-8); the local store follows the same rule so a key that
/// works in one works in the other.
const MAX_KEY_BYTES: usize = 1024;

/// Checks `key` and turns it into the backend's path type.
pub(crate) fn parse_key(key: &str) -> Result<Path> {
    if key.is_empty() {
        return Err(invalid(key, "it is empty"));
    }
    if key.ends_with('/') {
        return Err(invalid(
            key,
            "it ends with `/`, which names a folder, not a blob",
        ));
    }
    check_segments(key)
}

/// Checks a listing prefix: like a key, but empty (everything) and a trailing `/` are fine.
pub(crate) fn parse_prefix(prefix: &str) -> Result<Option<Path>> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        if prefix.is_empty() {
            return Ok(None);
        }
        return Err(invalid(prefix, "it starts with `/` (an absolute path)"));
    }
    check_segments(trimmed).map(Some)
}

fn check_segments(key: &str) -> Result<Path> {
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(key, "it is longer than 1024 bytes"));
    }
    if key.starts_with('/') {
        return Err(invalid(key, "it starts with `/` (an absolute path)"));
    }
    if let Some(problem) = key.chars().find_map(character_problem) {
        return Err(invalid(key, problem));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(invalid(key, "it has an empty segment (`//`)")),
            "." => return Err(invalid(key, "it has a `.` segment")),
            ".." => return Err(invalid(key, "it has a `..` segment")),
            _ => {}
        }
    }
    Path::parse(key).map_err(|_| invalid(key, "the blob backend cannot represent it"))
}

fn character_problem(c: char) -> Option<&'static str> {
    match c {
        '\\' => Some("it contains a backslash; separate segments with `/`"),
        // The local store stages uploads as `<name>#<n>`; a `#` in a key could collide.
        '#' => Some("it contains `#`, which the local store reserves for uploads in progress"),
        // `%` escapes are decoded differently by filesystem paths and URLs, so two keys
        // could end up naming one file.
        '%' => Some("it contains `%`, which backends decode differently"),
        c if c.is_control() => Some("it contains a control character"),
        _ => None,
    }
}

fn invalid(key: &str, reason: &'static str) -> BlobError {
    BlobError::InvalidKey {
        key: key.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_recording_keys() {
        let path = parse_key("recordings/2026/11/5f1c.idvr").unwrap();
        assert_eq!(path.as_ref(), "recordings/2026/11/5f1c.idvr");
        assert!(parse_key("a").is_ok());
        assert!(parse_key("with space/ünïcode.bin").is_ok());
    }

    #[test]
    fn rejects_keys_that_are_not_plain_relative_paths() {
        let bad = [
            "",
            "/etc/passwd",
            "..",
            "a/../b",
            "a/./b",
            "./a",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "a\u{7f}",
            "a\u{85}b",
            "a#1",
            "a%2e",
        ];
        for key in bad {
            match parse_key(key) {
                Err(BlobError::InvalidKey { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key:?} gave {other:?}"),
            }
        }
        let long = "a".repeat(1025);
        assert!(parse_key(&long).is_err());
        assert!(parse_key(&"a".repeat(1024)).is_ok());
    }

    #[test]
    fn prefixes_allow_empty_and_trailing_slash() {
        assert_eq!(parse_prefix("").unwrap(), None);
        assert_eq!(parse_prefix("a/b/").unwrap().unwrap().as_ref(), "a/b");
        assert!(parse_prefix("/").is_err());
        assert!(parse_prefix("../x").is_err());
        assert!(parse_prefix("a//").is_err());
    }

    #[test]
    fn message_says_what_to_use() {
        let message = parse_key("../x").unwrap_err().to_string();
        assert!(message.contains("`..` segment"), "{message}");
        assert!(
            message.contains("recordings/2026/11/<id>.idvr"),
            "{message}"
        );
    }
}
