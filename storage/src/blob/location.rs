//! Where blobs live: parsing `file://` and `s3://` URLs and the S3 connection settings
//! ([`S3Options`]), validated before any connection is made. Credentials never appear in a
//! description, an error or `Debug` output.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use super::error::{BlobError, Result};
use super::key;

/// The region used when neither the options nor `AWS_REGION`/`AWS_DEFAULT_REGION` name one.
/// S3-compatible servers on premises usually ignore it but still need one to sign requests.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How to reach an S3 (or S3-compatible) bucket.
///
/// Build it with [`S3Options::new`] and set fields, or read the standard AWS variables with
/// [`S3Options::from_env`]. `Debug` never shows the secret key or session token.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Options {
    /// Bucket name (3–63 lowercase letters, digits, `.` and `-`).
    pub bucket: String,
    /// Key prefix inside the bucket under which all blobs of this store live; may be empty.
    pub prefix: String,
    /// Region; [`DEFAULT_REGION`] when `None`.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. `https://s3.bank.internal:9000`; AWS when
    /// `None`. Requests use path-style addressing when set.
    pub endpoint: Option<String>,
    /// Access key id; when `None` (with no secret) the instance or container role is used.
    pub access_key_id: Option<String>,
    /// Secret access key belonging to `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
    /// Allow plain `http://` endpoints (loopback test servers only).
    pub allow_http: bool,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |present: bool| if present { "<redacted>" } else { "<none>" };
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &redacted(self.secret_access_key.is_some()),
            )
            .field("session_token", &redacted(self.session_token.is_some()))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Options {
    /// Options for `bucket`, everything else unset.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            ..Self::default()
        }
    }

    /// Options for `bucket`/`prefix` completed from the standard AWS environment variables:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (else
    /// `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL_S3` (else `AWS_ENDPOINT_URL`, else
    /// `AWS_ENDPOINT`) and `AWS_ALLOW_HTTP` (`true`/`false`).
    pub fn from_env(bucket: impl Into<String>, prefix: impl Into<String>) -> Result<Self> {
        Self::from_vars(bucket.into(), prefix.into(), |name| {
            std::env::var(name).ok().filter(|value| !value.is_empty())
        })
    }

    fn from_vars(
        bucket: String,
        prefix: String,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let allow_http = match var("AWS_ALLOW_HTTP") {
            None => false,
            Some(value) => parse_flag(&value).ok_or_else(|| BlobError::InvalidSettings {
                reason: format!("AWS_ALLOW_HTTP is `{value}`; set it to `true` or `false`"),
            })?,
        };
        Ok(Self {
            bucket,
            prefix,
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("AWS_ENDPOINT")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            allow_http,
        })
    }

    /// Checks the options; returns the prefix with surrounding `/` removed.
    pub(crate) fn validate(&self) -> Result<String> {
        check_bucket_name(&self.bucket).map_err(|reason| BlobError::InvalidSettings {
            reason: format!("bucket name `{}` is not valid: {reason}", self.bucket),
        })?;
        let prefix = self.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            key::parse_key(&prefix).map_err(|error| BlobError::InvalidSettings {
                reason: format!("the key prefix is not usable: {error}"),
            })?;
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(BlobError::InvalidSettings {
                reason: "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (to use \
                         the instance or container role)"
                    .to_owned(),
            });
        }
        if let Some(endpoint) = &self.endpoint {
            let url = Url::parse(endpoint).map_err(|error| BlobError::InvalidSettings {
                reason: format!(
                    "the S3 endpoint `{}` is not a URL ({error}); use e.g. \
                     `https://s3.example.internal:9000`",
                    redact_url_text(endpoint)
                ),
            })?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(BlobError::InvalidSettings {
                    reason: "the S3 endpoint carries credentials; put them in \
                             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead"
                        .to_owned(),
                });
            }
            match url.scheme() {
                "https" => {}
                "http" if self.allow_http => {}
                "http" => {
                    return Err(BlobError::InvalidSettings {
                        reason: format!(
                            "the S3 endpoint `{endpoint}` is plain http; use https, or set \
                             AWS_ALLOW_HTTP=true for a loopback test server"
                        ),
                    });
                }
                other => {
                    return Err(BlobError::InvalidSettings {
                        reason: format!(
                            "the S3 endpoint `{endpoint}` has scheme `{other}`; use https://"
                        ),
                    });
                }
            }
        }
        Ok(prefix)
    }

    /// `s3://bucket/prefix`, plus the endpoint when it is not AWS; safe to log.
    pub(crate) fn describe(&self, prefix: &str) -> String {
        let mut description = format!("s3://{}", self.bucket);
        if !prefix.is_empty() {
            description.push('/');
            description.push_str(prefix);
        }
        if let Some(endpoint) = &self.endpoint {
            description.push_str(" at ");
            description.push_str(&redact_url_text(endpoint));
        }
        description
    }
}

/// What a blob store URL names.
#[derive(Debug)]
pub(crate) enum Location {
    /// A directory on the local filesystem.
    Local(PathBuf),
    /// A bucket and key prefix.
    S3 { bucket: String, prefix: String },
}

/// Parses `file:///abs/path` or `s3://bucket[/prefix]`.
pub(crate) fn parse_url(text: &str) -> Result<Location> {
    let shown = redact_url_text(text);
    let fail = |reason: String| BlobError::InvalidUrl {
        url: shown.clone(),
        reason,
    };
    if text.trim().is_empty() {
        return Err(fail(
            "it is empty; give `s3://bucket/prefix` or `file:///absolute/path`, or leave it unset \
             to keep blobs in the data directory"
                .to_owned(),
        ));
    }
    let url = Url::parse(text).map_err(|error| {
        fail(format!(
            "it is not a URL ({error}); use `s3://bucket/prefix` or `file:///absolute/path`"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "it carries credentials; put them in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead"
                .to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail(
            "it has a `?query` or `#fragment`; settings come from the AWS_* environment variables"
                .to_owned(),
        ));
    }
    match url.scheme() {
        "file" => {
            let path = url
                .to_file_path()
                .ok()
                .filter(|path| path.is_absolute())
                .ok_or_else(|| {
                    fail(
                        "a file URL needs an absolute path and no host: `file:///srv/idv/blobs`"
                            .to_owned(),
                    )
                })?;
            Ok(Location::Local(path))
        }
        "s3" => {
            let bucket = url.host_str().unwrap_or_default().to_owned();
            if bucket.is_empty() {
                return Err(fail(
                    "it names no bucket; use `s3://bucket` or `s3://bucket/prefix`".to_owned(),
                ));
            }
            if url.port().is_some() {
                return Err(fail(
                    "an s3 URL names a bucket, not a server; set the server in AWS_ENDPOINT_URL"
                        .to_owned(),
                ));
            }
            check_bucket_name(&bucket)
                .map_err(|reason| fail(format!("bucket name `{bucket}` is not valid: {reason}")))?;
            let prefix = url.path().trim_matches('/').to_owned();
            Ok(Location::S3 { bucket, prefix })
        }
        other => Err(fail(format!(
            "scheme `{other}://` is not supported; use `file:///absolute/path` for a local \
             directory or `s3://bucket/prefix` for S3"
        ))),
    }
}

/// S3's bucket naming rules (the subset that matters for path-style requests).
fn check_bucket_name(bucket: &str) -> std::result::Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("it must be 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("use only lowercase letters, digits, `.` and `-`");
    }
    let first_last_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_last_ok(bucket.bytes().next()) || !first_last_ok(bucket.bytes().last()) {
        return Err("it must start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Err("it must not contain `..`");
    }
    Ok(())
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The URL with any user name and password removed, for messages and logs.
fn redact_url_text(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            // Both calls only fail for URLs that cannot carry credentials at all.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => text.to_owned(),
        Err(_) => match text.split_once('@') {
            // Unparsable, but it may still hold `user:secret@`; keep only what follows.
            Some((_, rest)) => format!("<redacted>@{rest}"),
            None => text.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_and_file_urls() {
        match parse_url("s3://idv-recordings/prod/eu/").unwrap() {
            Location::S3 { bucket, prefix } => {
                assert_eq!(bucket, "idv-recordings");
                assert_eq!(prefix, "prod/eu");
            }
            other => panic!("{other:?}"),
        }
        match parse_url("s3://idv-recordings").unwrap() {
            Location::S3 { prefix, .. } => assert_eq!(prefix, ""),
            other => panic!("{other:?}"),
        }
        match parse_url("file:///srv/idv/blobs").unwrap() {
            Location::Local(path) => assert_eq!(path, PathBuf::from("/srv/idv/blobs")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_scheme_lists_the_supported_ones() {
        let message = parse_url("gs://bucket/x").unwrap_err().to_string();
        assert!(message.contains("`gs://`"), "{message}");
        assert!(message.contains("file://"), "{message}");
        assert!(message.contains("s3://"), "{message}");
        let message = parse_url("/srv/blobs").unwrap_err().to_string();
        assert!(message.contains("s3://bucket/prefix"), "{message}");
    }

    #[test]
    fn rejects_unusable_urls_with_advice() {
        for (url, hint) in [
            ("", "leave it unset"),
            ("file://relative/dir", "absolute path"),
            ("s3:///prefix", "names no bucket"),
            ("s3://Bucket_Name", "lowercase"),
            ("s3://bucket:9000/x", "AWS_ENDPOINT_URL"),
            ("s3://bucket/x?region=eu", "environment"),
        ] {
            let message = parse_url(url).unwrap_err().to_string();
            assert!(message.contains(hint), "{url}: {message}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let message = parse_url("s3://AKIA:topsecret@bucket/x")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("topsecret"), "{message}");
        let mut options = S3Options::new("bucket");
        options.access_key_id = Some("AKIA".into());
        options.secret_access_key = Some("topsecret".into());
        options.session_token = Some("tokensecret".into());
        let debug = format!("{options:?}");
        assert!(
            !debug.contains("topsecret") && !debug.contains("tokensecret"),
            "{debug}"
        );
        options.endpoint = Some("https://user:topsecret@s3.local".into());
        let message = options.validate().unwrap_err().to_string();
        assert!(!message.contains("topsecret"), "{message}");
    }

    #[test]
    fn reads_the_standard_aws_variables() {
        let vars = |name: &str| {
            match name {
                "AWS_ACCESS_KEY_ID" => Some("AKIA"),
                "AWS_SECRET_ACCESS_KEY" => Some("secret"),
                "AWS_DEFAULT_REGION" => Some("eu-central-1"),
                "AWS_ENDPOINT" => Some("http://127.0.0.1:9000"),
                "AWS_ALLOW_HTTP" => Some("true"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let options = S3Options::from_vars("bucket".into(), "p".into(), vars).unwrap();
        assert_eq!(options.region.as_deref(), Some("eu-central-1"));
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(options.allow_http);
        assert_eq!(options.validate().unwrap(), "p");

        let bad = |name: &str| (name == "AWS_ALLOW_HTTP").then(|| "maybe".to_owned());
        let message = S3Options::from_vars("bucket".into(), String::new(), bad)
            .unwrap_err()
            .to_string();
        assert!(message.contains("`true` or `false`"), "{message}");
    }

    #[test]
    fn plain_http_needs_consent() {
        let mut options = S3Options::new("bucket");
        options.endpoint = Some("http://127.0.0.1:9000".into());
        let message = options.validate().unwrap_err().to_string();
        assert!(message.contains("AWS_ALLOW_HTTP=true"), "{message}");
        options.allow_http = true;
        assert!(options.validate().is_ok());
        options.access_key_id = Some("AKIA".into());
        let message = options.validate().unwrap_err().to_string();
        assert!(message.contains("both"), "{message}");
    }
}
