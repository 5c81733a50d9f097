//! What a customer's browser offers to send: its video m-lines in order (each with its `mid`,
//! named by the page as the camera or the screen) and the codecs it can send, from which one
//! is chosen for the whole connection — H.264 (packetization mode 1) when every m-line
//! offers it, else VP8. The answer then carries that codec only, so the browser sends it and
//! the decoding pipelines can be built before the first packet arrives.

use std::io::Cursor;

use agent::capture::rtp::RtpCodec;
use proto::Track;
use webrtc::sdp::description::media::MediaDescription;
use webrtc::sdp::description::session::SessionDescription;

use super::{JoinError, Result};

/// The codecs the bridge takes, most preferred first. H.264 first: it is the session's own
/// codec (the agent's), and phones encode it in hardware; VP8 is what every browser sends.
pub const PREFERENCE: [RtpCodec; 2] = [RtpCodec::H264, RtpCodec::Vp8];

/// What an offer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// Each sending video m-line's `mid` and the track it carries, in m-line order.
    pub tracks: Vec<(String, Track)>,
    /// The codec chosen.
    pub codec: RtpCodec,
    /// Every video codec the browser offered (encoding names, deduplicated, in order): for
    /// the log, and to learn what browsers send.
    pub offered_codecs: Vec<String>,
}

/// Reads `sdp`, whose sending video m-lines carry `tracks` in order (the camera, the screen).
///
/// # Errors
/// [`JoinError::BadOffer`] for text that is not SDP, a count of sending video m-lines other
/// than `tracks.len()`, a track named twice or other than camera and screen, an m-line
/// without a `mid`, or no codec of [`PREFERENCE`] on every m-line.
pub fn read(sdp: &str, tracks: &[Track]) -> Result<Offered> {
    let description = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| JoinError::BadOffer(format!("not an SDP offer ({e})")))?;
    if tracks.is_empty() {
        return Err(JoinError::BadOffer("it names no track to send".into()));
    }
    for (i, track) in tracks.iter().enumerate() {
        if !matches!(track, Track::Camera | Track::Screen) || tracks[..i].contains(track) {
            return Err(JoinError::BadOffer(format!(
                "tracks must be the camera and/or the screen, each once (got {:?})",
                tracks.iter().map(|t| t.name()).collect::<Vec<_>>()
            )));
        }
    }
    let sending: Vec<&MediaDescription> = description
        .media_descriptions
        .iter()
        .filter(|m| m.media_name.media == "video" && m.media_name.port.value != 0)
        .filter(|m| !(m.has_attribute("recvonly") || m.has_attribute("inactive")))
        .collect();
    if sending.len() != tracks.len() {
        return Err(JoinError::BadOffer(format!(
            "it sends {} video track(s), the page named {}: add one sendonly video transceiver \
             per track",
            sending.len(),
            tracks.len()
        )));
    }
    let mut offered_codecs: Vec<String> = Vec::new();
    let mut usable: Vec<Vec<RtpCodec>> = Vec::new();
    let mut mids = Vec::new();
    for media in &sending {
        let mid = media
            .attribute("mid")
            .flatten()
            .ok_or_else(|| JoinError::BadOffer("a video m-line has no a=mid".into()))?;
        mids.push(mid.to_owned());
        let codecs = codecs_of(media);
        for (name, _) in &codecs {
            if !offered_codecs.contains(name) {
                offered_codecs.push(name.clone());
            }
        }
        usable.push(
            PREFERENCE
                .into_iter()
                .filter(|c| codecs.iter().any(|(name, fmtp)| takes(*c, name, fmtp)))
                .collect(),
        );
    }
    let codec = PREFERENCE
        .into_iter()
        .find(|c| usable.iter().all(|u| u.contains(c)))
        .ok_or_else(|| {
            JoinError::BadOffer(format!(
                "it offers {offered_codecs:?}: send H.264 (packetization mode 1) or VP8"
            ))
        })?;
    Ok(Offered {
        tracks: mids.into_iter().zip(tracks.iter().copied()).collect(),
        codec,
        offered_codecs,
    })
}

/// The (encoding name, fmtp) of each payload type of an m-line.
fn codecs_of(media: &MediaDescription) -> Vec<(String, String)> {
    let attribute = |key: &str, pt: &str| {
        media.attributes.iter().find_map(|a| {
            let value = a.value.as_deref().filter(|_| a.key == key)?;
            let (id, rest) = value.split_once(' ')?;
            (id == pt).then(|| rest.trim().to_owned())
        })
    };
    media
        .media_name
        .formats
        .iter()
        .filter_map(|pt| {
            let rtpmap = attribute("rtpmap", pt)?;
            let name = rtpmap.split('/').next()?.to_ascii_uppercase();
            Some((name, attribute("fmtp", pt).unwrap_or_default()))
        })
        .collect()
}

/// Whether a payload type of `name` with `fmtp` is `codec` as the bridge takes it.
fn takes(codec: RtpCodec, name: &str, fmtp: &str) -> bool {
    match codec {
        RtpCodec::Vp8 => name == "VP8",
        RtpCodec::H264 => {
            name == "H264"
                && fmtp
                    .split(';')
                    .any(|p| p.trim().eq_ignore_ascii_case("packetization-mode=1"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload type: (number, encoding name, fmtp).
    type Codec<'a> = (&'a str, &'a str, &'a str);

    /// An SDP offer of video m-lines: (mid, direction, codecs).
    fn offer(mlines: &[(&str, &str, &[Codec<'_>])]) -> String {
        let mut sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".to_owned();
        for (mid, direction, codecs) in mlines {
            let pts: Vec<&str> = codecs.iter().map(|(pt, _, _)| *pt).collect();
            sdp += &format!(
                "m=video 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na={direction}\r\n",
                pts.join(" ")
            );
            for (pt, name, fmtp) in *codecs {
                sdp += &format!("a=rtpmap:{pt} {name}/90000\r\n");
                if !fmtp.is_empty() {
                    sdp += &format!("a=fmtp:{pt} {fmtp}\r\n");
                }
            }
        }
        sdp
    }

    const VP8: Codec<'static> = ("96", "VP8", "");
    const H264: Codec<'static> = (
        "102",
        "H264",
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    );
    const H264_MODE_0: Codec<'static> = ("103", "H264", "profile-level-id=42e01f");

    #[test]
    fn h264_is_chosen_when_every_line_offers_it_else_vp8() {
        let both = offer(&[
            ("0", "sendonly", &[VP8, H264]),
            ("1", "sendonly", &[VP8, H264]),
        ]);
        let offered = read(&both, &[Track::Camera, Track::Screen]).unwrap();
        assert_eq!(offered.codec, RtpCodec::H264);
        assert_eq!(
            offered.tracks,
            [("0".into(), Track::Camera), ("1".into(), Track::Screen)]
        );
        assert_eq!(offered.offered_codecs, ["VP8", "H264"]);

        let mixed = offer(&[("a", "sendonly", &[VP8, H264]), ("b", "sendrecv", &[VP8])]);
        assert_eq!(
            read(&mixed, &[Track::Screen, Track::Camera]).unwrap().codec,
            RtpCodec::Vp8
        );
        let mode_0 = offer(&[("0", "sendonly", &[VP8, H264_MODE_0])]);
        assert_eq!(
            read(&mode_0, &[Track::Camera]).unwrap().codec,
            RtpCodec::Vp8
        );
    }

    #[test]
    fn offers_that_cannot_be_taken_are_refused_with_a_reason() {
        let vp9 = offer(&[("0", "sendonly", &[("98", "VP9", "profile-id=0")])]);
        let receiving = offer(&[("0", "recvonly", &[VP8])]);
        let one = offer(&[("0", "sendonly", &[VP8])]);
        for (sdp, tracks, needle) in [
            ("hello", &[Track::Camera][..], "not an SDP offer"),
            (&vp9, &[Track::Camera], "send H.264"),
            (&receiving, &[Track::Camera], "sends 0 video"),
            (&one, &[Track::Camera, Track::Screen], "sends 1 video"),
            (&one, &[], "names no track"),
            (&one, &[Track::Screenshot], "camera and/or the screen"),
        ] {
            let error = read(sdp, tracks).unwrap_err().to_string();
            assert!(error.contains(needle), "{needle}: {error}");
        }
        let twice = offer(&[("0", "sendonly", &[VP8]), ("1", "sendonly", &[VP8])]);
        assert!(read(&twice, &[Track::Camera, Track::Camera]).is_err());
    }
}
