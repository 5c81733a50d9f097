//! Control and live fan-out messages: every message round-trips, the JSON shape is pinned
//! (the console's browser code and captures depend on it), and bad messages get clear errors.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{key, session};
use proto::control::{MAX_CONTROL_LEN, SessionToken};
use proto::{
    AgentControl, AgentInfo, ClockSample, Close, CloseCode, ConsentScope, FrameFlags, FrameHeader,
    LiveFrame, LiveMessage, LiveNotice, ProtoError, ServerControl, SessionCipher, Track, TrackSeqs,
    WireMessage, seal_frame,
};
use uuid::Uuid;

fn agent_info() -> AgentInfo {
    AgentInfo {
        version: "idv-agent 0.1.0".into(),
        platform: "linux-x86_64".into(),
        tracks: [Track::Camera, Track::Screen, Track::MicReference].into(),
    }
}

fn every_agent_message() -> Vec<AgentControl> {
    vec![
        AgentControl::hello(SessionToken::new("tok"), agent_info(), TrackSeqs::new()),
        AgentControl::hello(
            SessionToken::new("tok"),
            agent_info(),
            [(Track::Camera, 99), (Track::Screen, 3)]
                .into_iter()
                .collect(),
        ),
        AgentControl::Ping { t1: 123 },
        AgentControl::ClockSample(ClockSample::from_pong(1, 2, 3, 4)),
        AgentControl::Consent {
            scopes: [ConsentScope::Camera, ConsentScope::Recording].into(),
            at_ns: -7,
        },
        AgentControl::Consent {
            scopes: BTreeSet::new(),
            at_ns: 0,
        },
        AgentControl::Pause {
            tracks: [Track::Screen].into(),
            at_ns: 5,
        },
        AgentControl::Resume {
            tracks: BTreeSet::new(),
            at_ns: 6,
        },
        AgentControl::Close(Close::new(
            CloseCode::SessionEnded,
            "customer ended the call",
        )),
    ]
}

fn every_server_message() -> Vec<ServerControl> {
    let mut messages = vec![
        ServerControl::Welcome {
            protocol: 1,
            session_id: session(),
            acked: [(Track::MicReference, 12)].into_iter().collect(),
            max_payload: 1 << 20,
            max_bytes_per_sec: 250_000,
        },
        ServerControl::Ack {
            track: Track::Camera,
            seq: u64::MAX,
        },
        ServerControl::Pong {
            t1: i64::MIN,
            t2: 0,
            t3: i64::MAX,
        },
    ];
    for code in CloseCode::ALL {
        messages.push(ServerControl::Close(Close::new(code, code.to_string())));
    }
    messages
}

#[test]
fn every_agent_message_round_trips() {
    for message in every_agent_message() {
        let json = message.to_json();
        assert_eq!(AgentControl::from_json(&json).unwrap(), message, "{json}");
    }
}

#[test]
fn every_server_message_round_trips() {
    for message in every_server_message() {
        let json = message.to_json();
        assert_eq!(ServerControl::from_json(&json).unwrap(), message, "{json}");
    }
}

#[test]
fn json_shapes_are_as_documented() {
    assert_eq!(
        ServerControl::Ack {
            track: Track::Camera,
            seq: 42
        }
        .to_json(),
        r#"{"type":"ack","track":"camera","seq":42}"#
    );
    assert_eq!(
        ServerControl::Pong {
            t1: 1,
            t2: 2,
            t3: 3
        }
        .to_json(),
        r#"{"type":"pong","t1":1,"t2":2,"t3":3}"#
    );
    assert_eq!(
        AgentControl::ClockSample(ClockSample::from_pong(1, 2, 3, 4)).to_json(),
        r#"{"type":"clock_sample","t1":1,"t2":2,"t3":3,"t4":4}"#
    );
    assert_eq!(
        ServerControl::Close(Close::new(CloseCode::BandwidthExceeded, "over 250000 B/s")).to_json(),
        r#"{"type":"close","code":4002,"reason":"over 250000 B/s"}"#
    );
    let hello = AgentControl::from_json(
        r#"{"type":"hello","protocol":1,"session_token":"abc",
            "agent":{"version":"v","platform":"p","tracks":["camera","mic_reference"]}}"#,
    )
    .unwrap();
    let AgentControl::Hello {
        protocol,
        session_token,
        last_acked,
        ..
    } = &hello
    else {
        panic!("{hello:?}")
    };
    assert_eq!((*protocol, session_token.expose()), (1, "abc"));
    assert_eq!(
        last_acked,
        &TrackSeqs::new(),
        "last_acked defaults to empty"
    );
    assert!(
        !format!("{hello:?}").contains("abc"),
        "the token never reaches a log"
    );
}

#[test]
fn unknown_fields_are_ignored_but_unknown_types_are_errors() {
    assert_eq!(
        ServerControl::from_json(r#"{"type":"ack","track":"screen","seq":1,"later":true}"#)
            .unwrap(),
        ServerControl::Ack {
            track: Track::Screen,
            seq: 1
        }
    );
    let err = ServerControl::from_json(r#"{"type":"nack","track":"screen","seq":1}"#).unwrap_err();
    assert!(
        matches!(&err, ProtoError::BadControl(m) if m.contains("unknown variant `nack`")),
        "{err}"
    );
}

#[test]
fn malformed_control_messages_get_clear_errors() {
    let cases = [
        "",
        "not json",
        "[]",
        r#"{"seq":1}"#,
        r#"{"type":"ack","track":"radio","seq":1}"#,
        r#"{"type":"ack","track":"camera","seq":-1}"#,
        r#"{"type":"ack","track":"camera"}"#,
        r#"{"type":"close","code":1000,"reason":"bye"}"#,
        r#"{"type":"pong","t1":1,"t2":2,"t3":99999999999999999999}"#,
    ];
    for text in cases {
        let err = ServerControl::from_json(text).unwrap_err();
        assert!(matches!(err, ProtoError::BadControl(_)), "{text}: {err}");
        assert!(err.to_string().starts_with("malformed control message: "));
    }
    // A direction's messages do not parse as the other direction's.
    assert!(
        AgentControl::from_json(
            &ServerControl::Pong {
                t1: 1,
                t2: 2,
                t3: 3
            }
            .to_json()
        )
        .is_err()
    );
    assert!(ServerControl::from_json(&AgentControl::Ping { t1: 1 }.to_json()).is_err());
}

#[test]
fn oversize_control_messages_are_refused_before_parsing() {
    let text = format!(
        r#"{{"type":"ping","t1":1,"pad":"{}"}}"#,
        "x".repeat(MAX_CONTROL_LEN)
    );
    assert_eq!(
        AgentControl::from_json(&text),
        Err(ProtoError::ControlTooLarge {
            len: text.len(),
            max: MAX_CONTROL_LEN
        })
    );
}

#[test]
fn welcome_tells_the_agent_where_to_resume() {
    let welcome = ServerControl::from_json(
        r#"{"type":"welcome","protocol":1,"session_id":"5e551010-0000-4000-8000-000000000001",
            "acked":{"camera":120},"max_payload":1048576,"max_bytes_per_sec":250000}"#,
    )
    .unwrap();
    let ServerControl::Welcome {
        session_id, acked, ..
    } = welcome
    else {
        panic!()
    };
    assert_eq!(session_id, session());
    assert_eq!(acked.resume_from(Track::Camera), 121);
    assert_eq!(acked.resume_from(Track::Screen), 1);
}

#[test]
fn live_frames_relay_the_agents_bytes_verbatim_and_open_for_the_subscriber() {
    let header = FrameHeader::new(Track::Screen, 9, 77).with_flags(FrameFlags::KEYFRAME);
    let wire = Bytes::from(seal_frame(&key(), session(), &header, b"pixels").unwrap());
    let frame = LiveFrame::from_wire(wire.clone(), 64).unwrap();
    assert_eq!(frame.header(), &header);
    let message = LiveMessage::Frame(frame.clone());
    let WireMessage::Binary(sent) = message.to_wire() else {
        panic!()
    };
    assert_eq!(sent, wire);
    assert_eq!(
        LiveMessage::from_wire(WireMessage::Binary(sent), 64).unwrap(),
        message
    );
    assert_eq!(
        frame
            .open(&SessionCipher::new(&key(), session()), 64)
            .unwrap(),
        b"pixels"
    );
    assert_eq!(
        frame.open(&SessionCipher::new(&key(), Uuid::from_u128(9)), 64),
        Err(ProtoError::OpenFailed)
    );
    assert!(LiveFrame::from_wire(Bytes::from_static(b"junk"), 64).is_err());
}

#[test]
fn every_live_notice_round_trips_as_text() {
    let notices = [
        LiveNotice::Paused {
            tracks: [Track::Screen].into(),
            at_ns: 1,
        },
        LiveNotice::Resumed {
            tracks: BTreeSet::new(),
            at_ns: 2,
        },
        LiveNotice::Gap {
            track: Track::Camera,
            from_seq: 10,
            to_seq: 19,
        },
        LiveNotice::Ended {
            reason: "operator ended the session".into(),
        },
    ];
    for notice in notices {
        let message = LiveMessage::Notice(notice);
        let wire = message.to_wire();
        assert!(matches!(wire, WireMessage::Text(_)));
        assert_eq!(LiveMessage::from_wire(wire, 0).unwrap(), message);
    }
    assert_eq!(
        LiveMessage::Notice(LiveNotice::Gap {
            track: Track::Camera,
            from_seq: 1,
            to_seq: 2
        })
        .to_wire(),
        WireMessage::Text(r#"{"type":"gap","track":"camera","from_seq":1,"to_seq":2}"#.into())
    );
    assert!(matches!(
        LiveMessage::from_wire(WireMessage::Text(r#"{"type":"boom"}"#.into()), 0),
        Err(ProtoError::BadControl(_))
    ));
}
