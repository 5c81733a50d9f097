//! Screenshot mode: when the network refuses the WebSocket (a proxy that will not upgrade),
//! the agent posts a JPEG of the screen every few seconds over plain HTTPS instead — the same
//! sealed frame as on the WebSocket, track `screenshot`, blinds painted, stamped on the agent
//! clock — and goes back to streaming as soon as the WebSocket connects again. Needs the
//! customer's `screen_capture` consent.
//!
//! Screenshot seqs are never skipped: one the server did not acknowledge is taken again by
//! the next screenshot (a post whose answer was lost is stored once, by its seq).

use std::sync::Arc;

use proto::{FrameFlags, FrameHeader, SessionCipher, SessionKey, Track};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::blinder::Blinds;
use crate::capture::{Capture, Captured, Encoding};
use crate::config::TrackSettings;
use crate::error::AgentError;
use crate::join::Api;
use crate::link::Shared;

/// Seconds between screenshots.
pub const EVERY_S: u32 = 5;

/// Screenshots being taken and posted.
pub struct Screenshots {
    _capture: Capture,
    task: tokio::task::JoinHandle<()>,
}

/// Who the screenshots are for.
pub struct Poster {
    /// The HTTPS client.
    pub api: Arc<Api>,
    /// The session token.
    pub token: String,
    /// The session.
    pub session: Uuid,
    /// Its media key.
    pub key: SessionKey,
    /// Where the seq counters are.
    pub shared: Arc<Shared>,
}

impl Screenshots {
    /// Starts taking screenshots of the screen source every [`EVERY_S`] seconds.
    ///
    /// # Errors
    /// The screen cannot be captured.
    pub fn start(
        settings: &TrackSettings,
        blinds: Blinds,
        poster: Poster,
    ) -> Result<Self, AgentError> {
        let (tx, mut rx) = mpsc::channel::<Captured>(4);
        let capture = Capture::start(
            Track::Screenshot,
            settings,
            Encoding::Jpeg { every_s: EVERY_S },
            Some(blinds),
            tx,
        )?;
        let task = tokio::spawn(async move {
            let cipher = SessionCipher::new(&poster.key, poster.session);
            let mut unacked: Option<u64> = None;
            while let Some(shot) = rx.recv().await {
                let seq = unacked.unwrap_or_else(|| {
                    poster
                        .shared
                        .outbox
                        .lock()
                        .expect("outbox lock")
                        .next_seq(Track::Screenshot)
                });
                let header = FrameHeader::new(Track::Screenshot, seq, shot.captured_at_ns)
                    .with_flags(FrameFlags::KEYFRAME);
                let Ok(frame) = cipher.seal(&header, &shot.data) else {
                    continue;
                };
                match poster.api.post_screenshot(&poster.token, frame).await {
                    Ok(acked) if acked >= seq => unacked = None,
                    Ok(acked) => {
                        tracing::warn!(seq, acked, "screenshot not acknowledged");
                        unacked = Some(seq);
                    }
                    Err((status, reason)) => {
                        tracing::warn!(seq, status, reason, "screenshot not stored");
                        unacked = Some(seq);
                    }
                }
            }
        });
        Ok(Self {
            _capture: capture,
            task,
        })
    }
}

impl Drop for Screenshots {
    fn drop(&mut self) {
        self.task.abort();
    }
}
