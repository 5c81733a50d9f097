//! What can stop the agent, each as one line a customer (or the support desk) can act on.

/// Why the agent stopped, or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A bad option or an unusable file named on the command line.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached at all.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// What failed (DNS, connection refused, TLS).
        reason: String,
    },
    /// The code was wrong, expired, used, or locked.
    #[error("the code was not accepted: {0}")]
    CodeRefused(String),
    /// The server refused a request for another reason.
    #[error("the server refused: {0}")]
    Refused(String),
    /// A capture source could not be opened or failed.
    #[error("{source_name}: {reason}")]
    Capture {
        /// The source (`camera v4l2:/dev/video9`).
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The customer did not consent to anything that could be sent.
    #[error("nothing to send: {0}")]
    NoConsent(String),
    /// The server closed the media connection for good.
    #[error("the server closed the connection: {0}")]
    Closed(String),
    /// The server stayed unreachable for longer than the agent waits.
    #[error("the server was unreachable for {0} s; giving up (what it had acknowledged is safe)")]
    GaveUp(u64),
}
