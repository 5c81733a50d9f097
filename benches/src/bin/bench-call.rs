//! Writes the mux bench's call: `bench-call DIR MINUTES` → `DIR/camera-<M>min.mp4` (720p30
//! H.264, a keyframe every 2 s, 1.5 Mbit/s with grain so the file really is that big, like the
//! agent's camera) and `DIR/cti-<M>min.wav`
//! (8 kHz µ-law, as CTI systems record). Skips files that already exist.

use std::path::PathBuf;
use std::time::Duration;

use fixtures::media::{CameraClip, CtiRecording, VideoCodec, VideoContainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: bench-call DIR MINUTES")?);
    let minutes: u32 = args
        .next()
        .ok_or("usage: bench-call DIR MINUTES")?
        .parse()?;
    std::fs::create_dir_all(&dir)?;
    let camera = dir.join(format!("camera-{minutes}min.mp4"));
    if !camera.exists() {
        let fps = 30;
        CameraClip {
            codec: VideoCodec::H264,
            container: VideoContainer::Mp4,
            width: 1280,
            height: 720,
            fps,
            frames: minutes * 60 * fps,
            flash_frames: (0..minutes * 60).map(|s| s * fps + 15).collect(),
            gaps: Vec::new(),
            keyframe_interval: 2 * fps,
            bitrate_kbps: 1500,
            // Sensor-like grain: the encoder spends its bitrate, as on a real camera.
            grain: 12,
        }
        .write(&camera)?;
    }
    let cti = dir.join(format!("cti-{minutes}min.wav"));
    if !cti.exists() {
        CtiRecording {
            // 5 s longer than the camera: the bench trims it, as a real call record would.
            duration: Duration::from_secs(u64::from(minutes) * 60 + 5),
            beeps: (0..minutes * 60)
                .map(|s| Duration::from_millis(u64::from(s) * 1000 + 5500))
                .collect(),
            ..CtiRecording::default()
        }
        .write(&cti)?;
    }
    println!("{}\n{}", camera.display(), cti.display());
    Ok(())
}
