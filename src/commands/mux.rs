//! `idv mux`: CTI audio + camera (+ screen) files → one sealed recording.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use muxer::timeline::UtcNanos;
use muxer::{AudioInput, Layout, MuxRequest, OutputFormat, ReferenceInput, VideoInput, VideoRole};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Context, human_bytes};
use crate::progress;

#[derive(Debug, Args)]
pub struct MuxArgs {
    /// Camera file (MP4, MKV, WebM, IVF; H.264, VP8 or VP9).
    #[arg(long)]
    video: PathBuf,
    /// When the camera's first frame was captured (RFC 3339, UTC).
    #[arg(long, value_parser = parse_instant)]
    video_start: UtcNanos,
    /// CTI recording (WAV PCM/µ-law/A-law, MP3, FLAC, Ogg Vorbis, AAC).
    #[arg(long)]
    audio: PathBuf,
    /// Call start from the call record (RFC 3339, UTC).
    #[arg(long, value_parser = parse_instant)]
    audio_start: UtcNanos,
    /// Call end from the call record, when known: gives the recorder's drift.
    #[arg(long, value_parser = parse_instant)]
    audio_end: Option<UtcNanos>,
    /// The agent's microphone reference track (any format --audio takes, mono or stereo),
    /// recorded on the camera's clock: refines the call record's start by GCC-PHAT; never
    /// muxed.
    #[arg(long, requires = "reference_start")]
    reference: Option<PathBuf>,
    /// When the reference's first sample was captured (RFC 3339, UTC).
    #[arg(long, value_parser = parse_instant, requires = "reference")]
    reference_start: Option<UtcNanos>,
    /// Screen file, a second video track.
    #[arg(long, requires = "screen_start")]
    screen: Option<PathBuf>,
    /// When the screen's first frame was captured.
    #[arg(long, value_parser = parse_instant, requires = "screen")]
    screen_start: Option<UtcNanos>,
    /// Verification start (default: the latest track start).
    #[arg(long = "in", value_parser = parse_instant)]
    in_point: Option<UtcNanos>,
    /// Verification end (default: the earliest track end).
    #[arg(long, value_parser = parse_instant)]
    out_point: Option<UtcNanos>,
    /// Output container: mp4 (H.264 + AAC) or mkv (VP8/VP9 + Opus).
    #[arg(long, value_enum, default_value_t = Format::Mp4)]
    format: Format,
    /// `pip` adds a first video track with the camera over the screen (needs --screen).
    #[arg(long, value_enum, default_value_t = LayoutArg::Tracks, requires = "screen")]
    layout: LayoutArg,
    /// Sealed recording to write (`*.idvr`); complete or absent.
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Mp4,
    Mkv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LayoutArg {
    /// One track per input.
    Tracks,
    /// Also camera composited over screen, as the first track.
    Pip,
}

fn parse_instant(s: &str) -> Result<UtcNanos, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))?;
    UtcNanos::from_datetime(t).map_err(|e| e.to_string())
}

pub async fn run(ctx: &Context, args: MuxArgs) -> anyhow::Result<()> {
    let request = MuxRequest {
        camera: VideoInput::file(VideoRole::Camera, args.video, args.video_start),
        screen: args
            .screen
            .zip(args.screen_start)
            .map(|(path, start)| VideoInput::file(VideoRole::Screen, path, start)),
        audio: Some(AudioInput {
            bytes: args.audio.into(),
            start: args.audio_start,
            end: args.audio_end,
        }),
        reference: args
            .reference
            .zip(args.reference_start)
            .map(|(path, start)| ReferenceInput {
                bytes: path.into(),
                start,
            }),
        in_point: args.in_point,
        out_point: args.out_point,
        format: match args.format {
            Format::Mp4 => OutputFormat::Mp4,
            Format::Mkv => OutputFormat::Mkv,
        },
        layout: match args.layout {
            LayoutArg::Tracks => Layout::Tracks,
            LayoutArg::Pip => Layout::Pip,
        },
        agent_clock: None,
    };
    let vault = ctx.vault().await?;
    let bar = progress::fraction("muxing");
    let bar_in_mux = bar.clone();
    let record = vault
        .seal_with(&args.output, "archive.mux", &ctx.access(None), move |out| {
            let manifest = muxer::mux(&request, out, &mut |done| {
                bar_in_mux.set_position((done * 1000.0) as u64);
            })
            .map_err(|e| storage::Error::Source(e.to_string()))?;
            serde_json::to_value(&manifest).map_err(|e| storage::Error::Source(e.to_string()))
        })
        .await
        .with_context(|| format!("cannot mux into {}", args.output.display()))?;
    bar.finish_and_clear();
    println!(
        "muxed {} ({}, archive {})",
        args.output.display(),
        human_bytes(record.sealed_len),
        record.archive_id
    );
    Ok(())
}
