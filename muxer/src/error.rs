//! What can go wrong while muxing, each kind named so the CLI can print one line a person
//! can act on (which input, what is wrong with it).

use std::path::{Path, PathBuf};

use crate::timeline::TimelineError;

/// A mux that could not be completed. Nothing is kept when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// An input file (or frame source) cannot be read or is not what it claims to be.
    #[error("{}: {reason}", path.display())]
    Input {
        /// The input: a file's path, or a frame source's label.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The inputs cannot be put on one timeline or cut as asked.
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    /// The request asks for something that cannot be made (a layout without its inputs).
    #[error("cannot mux as asked: {0}")]
    Request(String),
    /// A GStreamer element failed; `element` is its path in the pipeline.
    #[error("{stage}: {element}: {message}")]
    Pipeline {
        /// What the pipeline was doing (demuxing the camera, muxing, …).
        stage: String,
        /// The element that posted the error.
        element: String,
        /// Its message (and debug detail when it helps).
        message: String,
    },
    /// A GStreamer plugin this build needs is missing on the machine.
    #[error("GStreamer element `{0}` is missing (run scripts/bootstrap.sh)")]
    MissingElement(String),
    /// Writing the muxed bytes failed (the sealed archive's writer).
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

impl MuxError {
    /// An [`MuxError::Input`] for `path`.
    pub fn input(path: &Path, reason: impl Into<String>) -> Self {
        Self::Input {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The muxer's result type.
pub type Result<T, E = MuxError> = std::result::Result<T, E>;
