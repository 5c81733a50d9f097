//! What the agent is told to do: the server, the code, the sources, the blinder, consent.
//! Parsed from the `idv agent` command line (the CLI contract), checked before anything
//! starts.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use proto::ConsentScope;

use crate::error::AgentError;

/// Where a video track comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// A moving test pattern with a running clock (`test`).
    Test,
    /// A media file played in real time (`file:PATH`).
    File(PathBuf),
    /// A V4L2 camera (`v4l2:/dev/videoN`).
    V4l2(PathBuf),
    /// An X11 display (`x11` or `x11:DISPLAY`; under Xvfb in tests).
    X11(Option<String>),
    /// Not sent (`none`).
    None,
}

impl VideoSource {
    /// Whether the track is sent at all.
    #[must_use]
    pub fn is_some(&self) -> bool {
        !matches!(self, VideoSource::None)
    }
}

impl FromStr for VideoSource {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            AgentError::Config(format!(
                "{s:?} is not a source (test, file:PATH, v4l2:/dev/videoN, x11[:DISPLAY], none)"
            ))
        };
        Ok(match s.split_once(':') {
            None if s == "test" => VideoSource::Test,
            None if s == "none" => VideoSource::None,
            None if s == "x11" => VideoSource::X11(None),
            Some(("file", path)) if !path.is_empty() => VideoSource::File(path.into()),
            Some(("v4l2", dev)) if !dev.is_empty() => VideoSource::V4l2(dev.into()),
            Some(("x11", display)) if !display.is_empty() => {
                // `x11::99` and `x11:99` both mean display :99.
                let display = display.trim_start_matches(':');
                VideoSource::X11(Some(format!(":{display}")))
            }
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for VideoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoSource::Test => f.write_str("test"),
            VideoSource::File(p) => write!(f, "file:{}", p.display()),
            VideoSource::V4l2(p) => write!(f, "v4l2:{}", p.display()),
            VideoSource::X11(None) => f.write_str("x11"),
            VideoSource::X11(Some(d)) => write!(f, "x11{d}"),
            VideoSource::None => f.write_str("none"),
        }
    }
}

/// Where the microphone reference comes from (`--mic-reference`): a low-rate recording of the
/// customer's side, sent only so the muxer can place the call centre's recording of the same
/// voice on the timeline (it is never played back).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MicSource {
    /// Pink noise, quiet (`test`): never periodic, so it cross-correlates at one delay only.
    Test,
    /// An audio file played in real time (`file:PATH`, anything `decodebin` reads).
    File(PathBuf),
    /// An ALSA capture device (`alsa`, or `alsa:DEVICE` such as `alsa:hw:1,0`).
    Alsa(Option<String>),
    /// A PulseAudio (or PipeWire-Pulse) source (`pulse`, or `pulse:SOURCE`).
    Pulse(Option<String>),
    /// Not sent (`none`, the default).
    #[default]
    None,
}

impl MicSource {
    /// Whether the reference is sent at all.
    #[must_use]
    pub fn is_some(&self) -> bool {
        !matches!(self, MicSource::None)
    }
}

impl FromStr for MicSource {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let device = |d: &str| (!d.is_empty()).then(|| d.to_owned());
        Ok(match s.split_once(':') {
            None if s == "test" => MicSource::Test,
            None if s == "none" => MicSource::None,
            None if s == "alsa" => MicSource::Alsa(None),
            None if s == "pulse" => MicSource::Pulse(None),
            Some(("file", path)) if !path.is_empty() => MicSource::File(path.into()),
            // ALSA device names hold colons themselves (`hw:1,0`): everything after the first.
            Some(("alsa", dev)) => MicSource::Alsa(device(dev)),
            Some(("pulse", dev)) => MicSource::Pulse(device(dev)),
            _ => {
                return Err(AgentError::Config(format!(
                    "--mic-reference {s:?}: not a microphone (test, file:PATH, alsa[:DEVICE], \
                     pulse[:DEVICE], none)"
                )));
            }
        })
    }
}

impl fmt::Display for MicSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MicSource::Test => f.write_str("test"),
            MicSource::File(p) => write!(f, "file:{}", p.display()),
            MicSource::Alsa(None) => f.write_str("alsa"),
            MicSource::Alsa(Some(d)) => write!(f, "alsa:{d}"),
            MicSource::Pulse(None) => f.write_str("pulse"),
            MicSource::Pulse(Some(d)) => write!(f, "pulse:{d}"),
            MicSource::None => f.write_str("none"),
        }
    }
}

/// A rectangle of the screen the customer hides (`x,y,w,h` in screen pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl FromStr for Region {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let numbers: Vec<u32> = s
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| AgentError::Config(format!("--blind {s:?}: expected x,y,w,h")))?;
        match numbers[..] {
            [x, y, w, h] if w > 0 && h > 0 => Ok(Region { x, y, w, h }),
            [_, _, _, _] => Err(AgentError::Config(format!(
                "--blind {s:?}: width and height must be at least 1"
            ))),
            _ => Err(AgentError::Config(format!(
                "--blind {s:?}: expected x,y,w,h"
            ))),
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.w, self.h)
    }
}

/// Parses `camera,screen,recording` into consent scopes.
///
/// # Errors
/// [`AgentError::Config`] naming an unknown scope.
pub fn parse_consent(s: &str) -> Result<BTreeSet<ConsentScope>, AgentError> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            ConsentScope::from_name(name).ok_or_else(|| {
                AgentError::Config(format!(
                    "--consent: unknown scope {name:?} (camera, screen, recording, screen_capture, file_transfer)"
                ))
            })
        })
        .collect()
}

/// How the screen is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScreenCodec {
    /// The screen codec (`screencodec`): only what changed, text lossless (the default).
    #[default]
    Tiles,
    /// Plain H.264, every frame.
    H264,
}

impl FromStr for ScreenCodec {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tiles" => Ok(ScreenCodec::Tiles),
            "h264" => Ok(ScreenCodec::H264),
            _ => Err(AgentError::Config(format!(
                "--screen-codec {s:?}: tiles or h264"
            ))),
        }
    }
}

/// How one video track is captured and encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSettings {
    /// Where it comes from.
    pub source: VideoSource,
    /// Frames per second.
    pub fps: u32,
    /// Target H.264 bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Scaled to this size (width, height), if set; else the source's size.
    pub size: Option<(u32, u32)>,
}

/// Everything the agent needs to run a session.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's base URL (`https://host:port`).
    pub server: url::Url,
    /// The server certificate to trust (PEM); the system's roots when absent.
    pub ca: Option<PathBuf>,
    /// The six digits the customer was given.
    pub code: String,
    /// The bank's group whose app or page this is.
    pub group: String,
    /// The camera.
    pub camera: TrackSettings,
    /// The screen.
    pub screen: TrackSettings,
    /// How the screen is encoded.
    pub screen_codec: ScreenCodec,
    /// The microphone reference (needs the `recording` consent).
    pub mic_reference: MicSource,
    /// Regions of the screen hidden before encoding.
    pub blinds: Vec<Region>,
    /// Scopes the customer consented to on the command line; asked interactively when
    /// absent.
    pub consent: Option<BTreeSet<ConsentScope>>,
    /// The most sealed bytes kept for the server while it has not acknowledged them; past
    /// half of it the agent lowers quality and frame rate, when full it drops (declared as a
    /// gap).
    pub spill_bytes: usize,
    /// How long the agent keeps trying to reach the server before it gives up.
    pub give_up_after: Duration,
}

impl AgentConfig {
    /// Defaults for everything but the server and the code: test camera at 30 fps and
    /// 500 kbit/s, no screen, no microphone reference, no blinds, consent asked.
    #[must_use]
    pub fn new(server: url::Url, code: impl Into<String>) -> Self {
        Self {
            server,
            ca: None,
            code: code.into(),
            group: "default".into(),
            camera: TrackSettings {
                source: VideoSource::Test,
                fps: 30,
                bitrate_kbps: 500,
                size: Some((640, 480)),
            },
            screen: TrackSettings {
                source: VideoSource::None,
                fps: 10,
                bitrate_kbps: 1000,
                size: None,
            },
            screen_codec: ScreenCodec::Tiles,
            mic_reference: MicSource::None,
            blinds: Vec::new(),
            consent: None,
            spill_bytes: 64 << 20,
            give_up_after: Duration::from_secs(120),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for text in ["test", "none", "x11", "file:/tmp/a.mp4", "v4l2:/dev/video0"] {
            assert_eq!(text.parse::<VideoSource>().unwrap().to_string(), text);
        }
        assert_eq!(
            "x11:99".parse::<VideoSource>().unwrap(),
            VideoSource::X11(Some(":99".into()))
        );
        assert_eq!(
            "x11::5".parse::<VideoSource>().unwrap().to_string(),
            "x11:5"
        );
        for bad in ["", "file:", "webcam", "v4l2"] {
            assert!(bad.parse::<VideoSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn microphones_parse_and_print_back() {
        for text in [
            "test",
            "none",
            "alsa",
            "alsa:hw:1,0",
            "pulse",
            "pulse:alsa_input.usb-mic",
            "file:/tmp/talk.ogg",
        ] {
            assert_eq!(text.parse::<MicSource>().unwrap().to_string(), text);
        }
        assert_eq!(
            "alsa:hw:1,0".parse::<MicSource>().unwrap(),
            MicSource::Alsa(Some("hw:1,0".into()))
        );
        assert_eq!("alsa:".parse::<MicSource>().unwrap(), MicSource::Alsa(None));
        assert_eq!(MicSource::default(), MicSource::None);
        for bad in ["", "file:", "mic", "x11", "v4l2:/dev/video0"] {
            let error = bad.parse::<MicSource>().unwrap_err().to_string();
            assert!(error.contains("--mic-reference"), "{bad}: {error}");
        }
    }

    #[test]
    fn regions_and_consent_parse() {
        assert_eq!(
            "10, 20,300,40".parse::<Region>().unwrap(),
            Region {
                x: 10,
                y: 20,
                w: 300,
                h: 40
            }
        );
        assert!("1,2,3".parse::<Region>().is_err());
        assert!("1,2,0,4".parse::<Region>().is_err());
        assert!("a,b,c,d".parse::<Region>().is_err());
        let scopes = parse_consent("camera, recording").unwrap();
        assert_eq!(
            scopes.into_iter().collect::<Vec<_>>(),
            [ConsentScope::Camera, ConsentScope::Recording]
        );
        assert!(parse_consent("camera,microphone").is_err());
    }
}
