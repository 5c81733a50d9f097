//! One outgoing video track of the live view: H.264 access units (Annex-B) cut into RTP
//! packets (RFC 6184, packetization mode 1: single NAL units, STAP-A for SPS + PPS, FU-A for
//! the large ones) and written to the WebRTC track.
//!
//! The RTP timestamp of every access unit is its **capture time on the agent's clock** at
//! 90 kHz ([`rtp_timestamp`]), not a counter: the browser's jitter buffer sees the true
//! spacing of the frames (a pause or gap is a jump, not a rush), and a receiver that knows the
//! agent clock can measure capture-to-screen latency from the packets alone.

use std::sync::Arc;

use bytes::Bytes;
use webrtc::rtp;
use webrtc::rtp::packetizer::Payloader;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

use super::error::{LiveError, Result};

/// RTP video clock rate (RFC 6184).
pub const CLOCK_RATE: u32 = 90_000;

/// Bytes of H.264 payload per RTP packet: leaves room for the RTP, SRTP, UDP and IP headers
/// within a 1280-byte path MTU.
const PAYLOAD_MTU: usize = 1200;

/// The H.264 flavour offered to the browser: constrained baseline, packetization mode 1 —
/// what every WebRTC browser decodes. (The agent's camera is x264's default profile; browsers'
/// H.264 decoders take it in practice, see `docs/CONSOLE.md`.)
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// The RTP timestamp (90 kHz, wrapping) of a frame captured at `captured_at_ns` on the agent's
/// monotonic clock.
#[must_use]
pub fn rtp_timestamp(captured_at_ns: i64) -> u32 {
    let ticks = i128::from(captured_at_ns) * i128::from(CLOCK_RATE) / 1_000_000_000;
    // Wrapping is the RTP timestamp's nature: keep the low 32 bits.
    (ticks.rem_euclid(1 << 32)) as u32
}

/// A video track the live view sends H.264 on.
pub struct VideoTrack {
    name: &'static str,
    track: Arc<TrackLocalStaticRTP>,
    payloader: rtp::codecs::h264::H264Payloader,
    sequence: u16,
    frames: u64,
}

impl std::fmt::Debug for VideoTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoTrack")
            .field("name", &self.name)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl VideoTrack {
    /// A track named `name` (`camera`, `screen`: the browser sees it as the track id) in the
    /// media stream `stream` (one per live view).
    #[must_use]
    pub fn new(name: &'static str, stream: &str) -> Self {
        let codec = RTCRtpCodecCapability {
            mime_type: webrtc::api::media_engine::MIME_TYPE_H264.to_owned(),
            clock_rate: CLOCK_RATE,
            channels: 0,
            sdp_fmtp_line: H264_FMTP.to_owned(),
            rtcp_feedback: vec![],
        };
        // A random first sequence number (RFC 3550 §5.1), from the OS generator behind uuid.
        let random = uuid::Uuid::new_v4().as_bytes()[0..2].to_owned();
        Self {
            name,
            track: Arc::new(TrackLocalStaticRTP::new(
                codec,
                name.to_owned(),
                stream.to_owned(),
            )),
            payloader: rtp::codecs::h264::H264Payloader::default(),
            sequence: u16::from_be_bytes([random[0], random[1]]),
            frames: 0,
        }
    }

    /// The track to add to the peer connection.
    #[must_use]
    pub fn local(&self) -> Arc<dyn TrackLocal + Send + Sync> {
        self.track.clone()
    }

    /// The track's name (`camera`, `screen`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Access units sent so far.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Sends one access unit (Annex-B, start codes included) captured at `captured_at_ns`.
    ///
    /// # Errors
    /// [`LiveError::WebRtc`] when the connection can no longer send (it closed).
    pub async fn send(&mut self, access_unit: &Bytes, captured_at_ns: i64) -> Result<()> {
        let payloads = self
            .payloader
            .payload(PAYLOAD_MTU, access_unit)
            .map_err(|e| LiveError::WebRtc(format!("H.264 packetizer: {e}")))?;
        let timestamp = rtp_timestamp(captured_at_ns);
        let last = payloads.len().saturating_sub(1);
        for (index, payload) in payloads.into_iter().enumerate() {
            let packet = rtp::packet::Packet {
                header: rtp::header::Header {
                    version: 2,
                    // The marker ends the access unit (RFC 6184 §5.1).
                    marker: index == last,
                    sequence_number: self.sequence,
                    timestamp,
                    // Payload type and SSRC are set per connection by the track binding.
                    ..Default::default()
                },
                payload,
            };
            self.sequence = self.sequence.wrapping_add(1);
            self.track.write_rtp(&packet).await?;
        }
        self.frames += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_timestamps_follow_the_capture_clock_at_90_khz_and_wrap() {
        assert_eq!(rtp_timestamp(0), 0);
        assert_eq!(rtp_timestamp(1_000_000_000), 90_000);
        assert_eq!(rtp_timestamp(100_000_000), 9_000);
        // 2^32 ticks of 90 kHz later the timestamp is back where it was.
        let wrap_ns = (1i64 << 32) * 100_000 / 9;
        let at = 123_456_789_000;
        let later = rtp_timestamp(at + wrap_ns);
        assert!(
            later.wrapping_sub(rtp_timestamp(at)).wrapping_add(1) <= 2,
            "{later}"
        );
        assert_eq!(rtp_timestamp(-1_000_000_000), 0u32.wrapping_sub(90_000));
    }
}
