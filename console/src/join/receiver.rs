//! The console's WebRTC peer for a customer's browser: it answers the browser's offer with
//! the one codec chosen ([`super::offer`]), receives each video track and pushes its RTP
//! packets, as they arrive, into the track's decoding pipeline ([`RtpFeed`]); it sends the
//! browser a picture loss indication (RTCP PLI) when a decoder needs a keyframe. The answer
//! goes back after ICE gathering completed (no trickle), with host candidates, loopback
//! included; no STUN or TURN.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::capture::rtp::{RtpCodec, RtpFeed};
use proto::Track;
use tokio::sync::{mpsc, watch};
use webrtc::api::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP8, MediaEngine};
use webrtc::data_channel::RTCDataChannel;
use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCPFeedback, RTCRtpTransceiverInit};
use webrtc::util::Marshal;

use super::offer::Offered;
use super::{JoinError, Result};

/// How long ICE gathering may take (host candidates only: milliseconds in practice).
const GATHERING: Duration = Duration::from_secs(10);

/// What arrived on one track.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    /// RTP packets.
    pub packets: u64,
    /// RTP bytes (headers included).
    pub bytes: u64,
}

/// A peer connection receiving a browser's tracks.
pub(super) struct Receiver {
    pub peer: Arc<RTCPeerConnection>,
    /// Its state as it changes.
    pub connection: watch::Receiver<RTCPeerConnectionState>,
    ssrcs: Arc<Mutex<HashMap<Track, u32>>>,
    arrived: Arc<Mutex<BTreeMap<Track, Arrived>>>,
    /// The page's `chat` data channel, once it opened.
    chat: Arc<Mutex<Option<Arc<RTCDataChannel>>>>,
}

/// What the customer typed on the page, as the data channel delivered it (text only, at most
/// [`MAX_CHAT_MESSAGE`] bytes; anything else is dropped).
pub type CustomerChat = mpsc::Receiver<String>;

/// The largest chat message taken from the page, in bytes.
const MAX_CHAT_MESSAGE: usize = 16 * 1024;

impl Receiver {
    /// A peer connection that takes `codec` only, and what the customer writes on the page's
    /// `chat` data channel.
    pub async fn new(codec: RtpCodec) -> Result<(Self, CustomerChat)> {
        let mut media = MediaEngine::default();
        for (payload_type, mime_type, fmtp) in codec_parameters(codec) {
            media.register_codec(
                RTCRtpCodecParameters {
                    capability: RTCRtpCodecCapability {
                        mime_type: mime_type.to_owned(),
                        clock_rate: 90_000,
                        channels: 0,
                        sdp_fmtp_line: fmtp.to_owned(),
                        rtcp_feedback: feedback(),
                    },
                    payload_type,
                    ..Default::default()
                },
                RTPCodecType::Video,
            )?;
        }
        let peer = Arc::new(crate::live::loopback_peer(media).await?);
        let (state, connection) = watch::channel(RTCPeerConnectionState::New);
        peer.on_peer_connection_state_change(Box::new(move |s| {
            let _ = state.send(s);
            Box::pin(async {})
        }));
        let chat: Arc<Mutex<Option<Arc<RTCDataChannel>>>> = Arc::default();
        let (typed, customer_chat) = mpsc::channel(16);
        let opened = chat.clone();
        peer.on_data_channel(Box::new(move |channel: Arc<RTCDataChannel>| {
            if channel.label() == "chat" {
                let typed = typed.clone();
                channel.on_message(Box::new(move |message: DataChannelMessage| {
                    let typed = typed.clone();
                    Box::pin(async move {
                        if message.is_string && message.data.len() <= MAX_CHAT_MESSAGE {
                            let text = String::from_utf8_lossy(&message.data).into_owned();
                            // Beyond a handful queued, the customer is typing faster than
                            // anyone reads: dropped.
                            let _ = typed.try_send(text);
                        }
                    })
                }));
                *opened.lock().expect("chat lock") = Some(channel);
            }
            Box::pin(async {})
        }));
        Ok((
            Self {
                peer,
                connection,
                ssrcs: Arc::default(),
                arrived: Arc::default(),
                chat,
            },
            customer_chat,
        ))
    }

    /// Shows the customer an operator's chat message (`{"type":"chat","from","text"}` on the
    /// page's data channel); best effort — before the channel opens there is nowhere to show it.
    pub async fn tell_customer(&self, from: &str, text: &str) {
        let channel = self.chat.lock().expect("chat lock").clone();
        if let Some(channel) = channel {
            let message = serde_json::json!({ "type": "chat", "from": from, "text": text });
            if let Err(e) = channel.send_text(message.to_string()).await {
                tracing::debug!(error = %e, "cannot show the customer a chat message");
            }
        }
    }

    /// Answers `offer_sdp` (read as `offered`), routing each track's packets to its feed;
    /// the answer SDP with every candidate.
    pub async fn answer(
        &self,
        offer_sdp: String,
        offered: &Offered,
        feeds: HashMap<Track, RtpFeed>,
    ) -> Result<String> {
        let by_mid: HashMap<String, (Track, RtpFeed)> = offered
            .tracks
            .iter()
            .filter_map(|(mid, track)| Some((mid.clone(), (*track, feeds.get(track)?.clone()))))
            .collect();
        let ssrcs = self.ssrcs.clone();
        let arrived = self.arrived.clone();
        self.peer.on_track(Box::new(move |remote, _, transceiver| {
            let route = transceiver
                .mid()
                .and_then(|mid| by_mid.get(mid.as_str()).cloned());
            let ssrcs = ssrcs.clone();
            let arrived = arrived.clone();
            Box::pin(async move {
                let Some((track, feed)) = route else {
                    tracing::warn!("a track the offer did not name; ignored");
                    return;
                };
                ssrcs
                    .lock()
                    .expect("ssrcs lock")
                    .insert(track, remote.ssrc());
                tracing::info!(
                    track = track.name(),
                    codec = remote.codec().capability.mime_type,
                    "the browser's track arrived"
                );
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 1500];
                    while let Ok((packet, _)) = remote.read(&mut buffer).await {
                        let Ok(bytes) = packet.marshal() else {
                            continue;
                        };
                        {
                            let mut arrived = arrived.lock().expect("arrived lock");
                            let counts = arrived.entry(track).or_default();
                            counts.packets += 1;
                            counts.bytes += bytes.len() as u64;
                        }
                        if !feed.push(bytes.to_vec()) {
                            break;
                        }
                    }
                });
            })
        }));
        for _ in &offered.tracks {
            self.peer
                .add_transceiver_from_kind(
                    RTPCodecType::Video,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        send_encodings: Vec::new(),
                    }),
                )
                .await?;
        }
        let offer = RTCSessionDescription::offer(offer_sdp)
            .map_err(|e| JoinError::BadOffer(format!("not an SDP offer ({e})")))?;
        self.peer
            .set_remote_description(offer)
            .await
            .map_err(|e| JoinError::BadOffer(e.to_string()))?;
        let answer = self
            .peer
            .create_answer(None)
            .await
            .map_err(|e| JoinError::BadOffer(e.to_string()))?;
        let mut gathered = self.peer.gathering_complete_promise().await;
        self.peer.set_local_description(answer).await?;
        tokio::time::timeout(GATHERING, gathered.recv())
            .await
            .map_err(|_| JoinError::WebRtc("ICE gathering did not complete".into()))?;
        let answer = self
            .peer
            .local_description()
            .await
            .ok_or_else(|| JoinError::WebRtc("no local description after answering".into()))?;
        Ok(answer.sdp)
    }

    /// Asks the browser for a keyframe of `track` (RTCP PLI), once its packets arrive.
    pub async fn request_keyframe(&self, track: Track) {
        let ssrc = self.ssrcs.lock().expect("ssrcs lock").get(&track).copied();
        if let Some(media_ssrc) = ssrc {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            if let Err(e) = self.peer.write_rtcp(&[Box::new(pli)]).await {
                tracing::debug!(error = %e, "cannot send a PLI");
            }
        }
    }

    /// What arrived so far, per track.
    pub fn arrived(&self) -> BTreeMap<Track, Arrived> {
        self.arrived.lock().expect("arrived lock").clone()
    }

    /// Closes the peer connection (its track readers end with it).
    pub async fn close(&self) {
        if let Err(e) = self.peer.close().await {
            tracing::debug!(error = %e, "closing the peer connection");
        }
    }
}

/// The payload types registered for `codec`: VP8, or H.264 in packetization mode 1 in the
/// profiles browsers offer (constrained baseline, baseline, main, high) — all decoded alike.
fn codec_parameters(codec: RtpCodec) -> Vec<(u8, &'static str, &'static str)> {
    match codec {
        RtpCodec::Vp8 => vec![(96, MIME_TYPE_VP8, "")],
        RtpCodec::H264 => vec![
            (
                102,
                MIME_TYPE_H264,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            ),
            (
                104,
                MIME_TYPE_H264,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            ),
            (
                106,
                MIME_TYPE_H264,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
            ),
            (
                108,
                MIME_TYPE_H264,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
            ),
        ],
    }
}

/// RTCP feedback the receiver takes part in: NACK, PLI and FIR, and REMB for bandwidth.
fn feedback() -> Vec<RTCPFeedback> {
    [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    })
    .collect()
}
