//! A session's stored media as mux inputs: its track logs (sealed frames, opened in memory
//! under the session media key, agent time mapped to UTC through the session's clock-sync
//! exchanges), its CTI recording (a sealed archive in the blob store, decrypted as read) and,
//! when both are there, its microphone reference (Opus packets kept in memory, read by the
//! muxer as a WAV made as it reads: [`MicReference`]).
//! The logs are read from the segments ingest rolled them into in the blob store, so any node
//! can mux; a session whose logs were not rolled (the roll failed) is read from the local
//! spool.

use std::io;
use std::path::Path;
use std::sync::Arc;

use proto::{SessionKey, Track};
use storage::blob::BlobStore;
use storage::db::{ClockSample, CtiRecording, MediaTrack, MuxJob};
use storage::{Access, ArchiveLocation, SealedBlob, Vault};

use super::JobError;
use crate::align::ReferenceInput;
use crate::audio::AudioInput;
use crate::input::bytes::{ByteSource, InputBytes, InputReader};
use crate::input::frames::{FrameCodec, FrameFormat, FrameSource};
use crate::input::mic::MicReference;
use crate::input::sealed::SealedTrack;
use crate::input::tiles::{self, ScreenTiles};
use crate::mux::{Layout, MuxRequest, OutputFormat};
use crate::timeline::{ClockMapping, SyncSample, UtcNanos};
use crate::video::{VideoInput, VideoRole};

/// The largest stored frame the worker opens (ingest refused larger ones long before).
const MAX_STORED_FRAME: usize = 64 << 20;

/// What one session gives the muxer.
pub struct SessionInputs {
    /// The session's group (for the manifest).
    pub group: String,
    /// The CTI call muxed, if any.
    pub cti_call_id: Option<String>,
    /// What became of the microphone reference (for the manifest); `None` without one, or
    /// without a CTI recording for it to place.
    pub reference_status: Option<ReferenceStatus>,
    videos: Vec<VideoInput>,
    audio: Option<AudioInput>,
    reference: Option<ReferenceInput>,
    clock: ClockMapping,
    clock_samples: usize,
}

/// What the session's microphone reference track gave.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReferenceStatus {
    /// Read, and handed to the mux to refine the CTI's offset.
    Read {
        /// Opus packets.
        packets: usize,
        /// Length, seconds (gaps included).
        seconds: f64,
    },
    /// There, but unreadable (a frame that does not open, a packet that is not Opus): left
    /// out, so the call record alone places the CTI — the recording is not lost for it.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl SessionInputs {
    /// Gathers the inputs of `job`'s session.
    ///
    /// # Errors
    /// [`JobError::Unmuxable`] when the session has no video, no usable clock sync, a
    /// forgotten media key or (unless the job is video-only) no CTI recording;
    /// [`JobError::Transient`] for storage failures.
    pub async fn gather(
        vault: &Vault,
        spool_dir: &Path,
        job: &MuxJob,
        access: &Access,
    ) -> Result<Self, JobError> {
        let session_id = job.session_id;
        let db = vault.db();
        let session = db
            .session(session_id)
            .await?
            .ok_or_else(|| JobError::Unmuxable(format!("session {session_id} is not recorded")))?;
        let wrapped = session.wrapped_media_key.ok_or_else(|| {
            JobError::Unmuxable(
                "the session media key was forgotten: its frames are unreadable".into(),
            )
        })?;
        let key = vault.unwrap_session_media_key(session_id, &wrapped).await?;
        let key = SessionKey::from_bytes(*key.expose());

        let samples = db.clock_samples(session_id).await?;
        let clock = ClockMapping::fit(&samples.iter().map(sync_sample).collect::<Vec<_>>())
            .map_err(|e| JobError::Unmuxable(format!("the agent's clock cannot be placed: {e}")))?;

        let mut logs = Vec::new();
        // Screenshots stand in for a screen track without frames (see `open_tracks`).
        for (track, role) in [
            (Track::Camera, VideoRole::Camera),
            (Track::Screen, VideoRole::Screen),
            (Track::Screenshot, VideoRole::Screen),
        ] {
            let segments = track_segments(vault, spool_dir, session_id, track).await?;
            if !segments.is_empty() {
                logs.push((track, role, segments));
            }
        }
        let reference_key = key.clone();
        let videos = tokio::task::spawn_blocking(move || open_tracks(logs, session_id, key, clock))
            .await
            .map_err(|e| JobError::Transient(e.to_string()))??;

        let (audio, cti_call_id) = if job.video_only {
            (None, None)
        } else {
            let cti =
                latest_cti(db.cti_recordings_for_session(session_id).await?).ok_or_else(|| {
                    JobError::Unmuxable(
                        "the job expects a CTI recording and none is attached".into(),
                    )
                })?;
            let Some(ArchiveLocation::Blob(blob_key)) = ArchiveLocation::parse(&cti.location)
            else {
                return Err(JobError::Unmuxable(format!(
                    "CTI recording {} is stored at {:?}, not in the blob store",
                    cti.recording_id, cti.location
                )));
            };
            let sealed = vault.sealed_blob(&blob_key, access).await?;
            let start = UtcNanos::from_datetime(cti.started_at)
                .map_err(|e| JobError::Unmuxable(e.to_string()))?;
            let end = cti
                .ended_at
                .map(UtcNanos::from_datetime)
                .transpose()
                .map_err(|e| JobError::Unmuxable(e.to_string()))?;
            let audio = AudioInput {
                bytes: InputBytes::Source(Arc::new(SealedCti {
                    label: format!("cti/{}", cti.call_id),
                    sealed,
                })),
                start,
                end,
            };
            (Some(audio), Some(cti.call_id))
        };
        // The reference only places a CTI recording: without one it is not read.
        let (reference, reference_status) = if audio.is_some() {
            read_reference(vault, spool_dir, session_id, reference_key, clock).await?
        } else {
            (None, None)
        };
        Ok(Self {
            group: session.group,
            cti_call_id,
            reference_status,
            videos,
            audio,
            reference,
            clock,
            clock_samples: samples.len(),
        })
    }

    /// The mux request: the camera (or, without one, the screen) first, then the screen.
    #[must_use]
    pub fn request(&self, format: OutputFormat) -> MuxRequest {
        let mut videos = self.videos.iter().cloned();
        MuxRequest {
            camera: videos
                .next()
                .expect("gather refuses a session without video"),
            screen: videos.next(),
            audio: self.audio.clone(),
            reference: self.audio.as_ref().and(self.reference.clone()),
            in_point: None,
            out_point: None,
            format,
            layout: Layout::Tracks,
            agent_clock: Some(self.clock.record(self.clock_samples)),
        }
    }
}

fn sync_sample(s: &ClockSample) -> SyncSample {
    SyncSample {
        agent_sent: s.t1,
        server_received: UtcNanos(s.t2),
        server_sent: UtcNanos(s.t3),
        agent_received: s.t4,
    }
}

/// The recording received last (a CTI system that sent the call twice meant the second).
fn latest_cti(recordings: Vec<CtiRecording>) -> Option<CtiRecording> {
    recordings.into_iter().max_by_key(|r| r.received_at)
}

/// A track's segments in order: those in the blob store, then the logs still in this node's
/// spool after them (their roll failed, or the node is rolling them now).
async fn track_segments(
    vault: &Vault,
    spool_dir: &Path,
    session: uuid::Uuid,
    track: Track,
) -> Result<Vec<InputBytes>, JobError> {
    // The stored track names are the protocol's.
    let media = MediaTrack::parse(track.name()).expect("every protocol track is a stored track");
    let stored = vault.db().segments(session, Some(media)).await?;
    let after = stored.last().map(|s| s.index);
    let mut segments = stored
        .into_iter()
        .map(|s| match ArchiveLocation::parse(&s.location) {
            Some(ArchiveLocation::Blob(key)) => Ok(InputBytes::Source(Arc::new(Segment {
                blobs: vault.blobs().clone(),
                key,
                handle: tokio::runtime::Handle::current(),
            }))),
            _ => Err(JobError::Unmuxable(format!(
                "segment {} of the {} track is stored at {:?}, not in the blob store",
                s.index,
                track.name(),
                s.location
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let local = storage::spool::local_logs(spool_dir, session, track.name())
        .map_err(|e| JobError::Transient(format!("the spool cannot be listed: {e}")))?;
    segments.extend(
        local
            .into_iter()
            .filter(|l| after.is_none_or(|a| l.index > a))
            .map(|l| InputBytes::File(l.path)),
    );
    Ok(segments)
}

/// The session's microphone reference, read into memory, and what became of it; `(None,
/// None)` without the track. Storage failures are the job's (it is retried); a reference that
/// cannot be read is skipped with a warning, never failing the recording.
async fn read_reference(
    vault: &Vault,
    spool_dir: &Path,
    session: uuid::Uuid,
    key: SessionKey,
    clock: ClockMapping,
) -> Result<(Option<ReferenceInput>, Option<ReferenceStatus>), JobError> {
    let track = Track::MicReference;
    // As for the video tracks: the segments in the blob store, then what is still spooled here.
    let segments = match track_segments(vault, spool_dir, session, track).await {
        Ok(segments) if segments.is_empty() => return Ok((None, None)),
        Ok(segments) => segments,
        Err(JobError::Unmuxable(reason)) => return Ok(skipped(session, reason)),
        Err(e) => return Err(e),
    };
    let read = tokio::task::spawn_blocking(move || {
        let source = SealedTrack {
            segments,
            session,
            track,
            key,
            // Not used: the packets are taken as they are.
            format: FrameFormat::new(FrameCodec::H264AnnexB),
            max_payload: MAX_STORED_FRAME,
            clock: Some(clock),
        };
        MicReference::read(source.label(), source.frames()?)
    })
    .await
    .map_err(|e| JobError::Transient(e.to_string()))?;
    Ok(match read {
        Ok(Some(reference)) => {
            let status = ReferenceStatus::Read {
                packets: reference.packets(),
                seconds: reference.frames() as f64 / f64::from(crate::input::mic::RATE_HZ),
            };
            (Some(reference.into_input()), Some(status))
        }
        Ok(None) => (None, None),
        Err(e) => skipped(session, e.to_string()),
    })
}

fn skipped(
    session: uuid::Uuid,
    reason: String,
) -> (Option<ReferenceInput>, Option<ReferenceStatus>) {
    tracing::warn!(%session, reason, "the microphone reference is skipped: the call record alone places the CTI");
    (None, Some(ReferenceStatus::Skipped { reason }))
}

/// The camera and screen logs that hold at least one frame with media, in that order, each
/// starting on the timeline at its first frame's mapped capture time. Without screen frames,
/// the screenshots (JPEG stills sent when the agent could not hold a stream; `logs` lists them
/// after the screen) are the screen: the manifest names them by their log
/// (`session …/screenshot`) and says how they were made. A session with both keeps its screen
/// track and ignores its screenshots for now (they could fill the screen's holes one day).
fn open_tracks(
    logs: Vec<(Track, VideoRole, Vec<InputBytes>)>,
    session: uuid::Uuid,
    key: SessionKey,
    clock: ClockMapping,
) -> Result<Vec<VideoInput>, JobError> {
    let mut videos: Vec<VideoInput> = Vec::new();
    for (track, role, segments) in logs {
        if track == Track::Screenshot && videos.iter().any(|v| v.role == VideoRole::Screen) {
            tracing::info!(%session, "screenshots ignored: the session has a screen track");
            continue;
        }
        let mut source = SealedTrack {
            segments,
            session,
            track,
            key: key.clone(),
            // Learnt from the first frame below.
            format: FrameFormat::new(FrameCodec::H264AnnexB),
            max_payload: MAX_STORED_FRAME,
            clock: Some(clock),
        };
        let first = source
            .frames()
            .map_err(|e| JobError::Unmuxable(e.to_string()))?
            .next()
            .transpose()
            .map_err(|e| JobError::Unmuxable(e.to_string()))?;
        let Some(first) = first else {
            continue; // nothing but pauses, or nothing at all
        };
        let start = UtcNanos(first.pts_ns);
        if tiles::is_screen_codec(&first.data) {
            videos.push(VideoInput::frames(
                role,
                Arc::new(ScreenTiles { inner: source }),
                start,
            ));
            continue;
        }
        let codec = FrameCodec::sniff(&first.data).ok_or_else(|| {
            JobError::Unmuxable(format!(
                "{}: the first frame is not an H.264, VP8 or VP9 keyframe, a JPEG, nor a \
                 screen-codec key frame",
                source.label()
            ))
        })?;
        source.format = FrameFormat::new(codec);
        videos.push(VideoInput::frames(role, Arc::new(source), start));
    }
    if videos.is_empty() {
        return Err(JobError::Unmuxable(
            "the session holds no camera, screen or screenshot frames".into(),
        ));
    }
    Ok(videos)
}

/// A track segment in the blob store (its frames are sealed; it is read as stored).
struct Segment {
    blobs: BlobStore,
    key: String,
    handle: tokio::runtime::Handle,
}

impl ByteSource for Segment {
    fn label(&self) -> String {
        self.key.clone()
    }

    fn open(&self) -> io::Result<Box<dyn InputReader>> {
        let reader = self
            .blobs
            .blocking_reader(&self.key, self.handle.clone())
            .map_err(io::Error::other)?;
        Ok(Box::new(reader))
    }
}

/// A sealed CTI recording, read through the vault's [`SealedBlob`].
struct SealedCti {
    label: String,
    sealed: SealedBlob,
}

impl ByteSource for SealedCti {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn open(&self) -> io::Result<Box<dyn InputReader>> {
        let reader = self.sealed.open().map_err(io::Error::other)?;
        Ok(Box::new(reader))
    }
}
