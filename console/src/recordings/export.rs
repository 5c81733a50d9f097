//! A recording exported as a decrypted MP4 whose every video frame carries a visible
//! watermark ([`super::watermark`]: who exported it, when, which session, why), made while it
//! is downloaded: nothing is written to disk.
//!
//! ```text
//! sealed archive ─ decrypted chunk by chunk ─▶ appsrc (seekable, ≤ 1 MiB queued) ─▶ parsebin
//!   video (each track): queue ─▶ decodebin ─▶ videoconvert ─▶ textoverlay ─▶ videoconvert
//!                       ─▶ I420 ─▶ x264enc (veryfast, no B-frames, quality 23, ≤ 4 Mbit/s) ─▶ h264parse ─┐
//!   audio: queue, passed through (AAC, Opus, MP3 as stored; anything else ─▶ AAC) ───────────────────┤
//!                                        mp4mux (fragmented, 1 s, streamable) ─▶ appsink ◀───────────┘
//!   ─▶ bounded channel (8 fragments) ─▶ HTTP body
//! ```
//!
//! The pipeline runs on a blocking thread and pulls from the appsink only as fast as the HTTP
//! body is sent, so a slow client slows the export down rather than filling memory; when the
//! client goes away the channel closes and the pipeline is stopped. The output is fragmented
//! MP4 (`moov` first, then `moof`/`mdat` pairs), which is written front to back without
//! seeking, so its length is not known in advance (the response is chunked). Reading
//! accepts any MP4 or Matroska archive (`parsebin` finds the container): every video track
//! is decoded, watermarked and encoded again as H.264; audio is kept as it was.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use storage::SealedBlob;
use tokio::sync::mpsc;

use super::watermark::Watermark;

/// Bytes of plaintext decrypted per read (the archive's chunk size).
const READ_CHUNK: usize = 64 << 10;
/// Plaintext queued in the appsrc at most.
const SOURCE_QUEUE: u64 = 1 << 20;
/// Output pieces (about a fragment each) waiting for the client at most.
const BODY_QUEUE: usize = 8;
/// x264's constant quality (lower is better; 23 is x264's own default).
const QUALITY: u32 = 23;
/// The ceiling on the video bitrate, kbit/s.
const MAX_KBITS: u32 = 4000;
/// A keyframe at least this often (frames), so a player seeks in the export.
const KEYFRAME_EVERY: u32 = 60;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// GStreamer or one of its plugins is missing.
    #[error("the export cannot start: {0}")]
    Start(String),
    /// The archive could not be opened.
    #[error("the recording cannot be read: {0}")]
    Open(String),
    /// The pipeline failed (the element and GStreamer's message).
    #[error("the export failed at {element}: {message}")]
    Pipeline {
        /// The element that failed.
        element: String,
        /// What it said.
        message: String,
    },
}

/// How an export went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// MP4 bytes made and handed to the HTTP body (the last few may not have reached the
    /// client when it left).
    pub bytes: u64,
    /// Video frames watermarked (all tracks).
    pub frames: u64,
    /// Wall time from start to stop.
    pub elapsed: Duration,
    /// Whether the client went away before the end (the pipeline was stopped then).
    pub client_left: bool,
}

/// An export under way.
pub struct Export {
    /// The MP4's bytes in order. An `Err` ends it early: the HTTP body is then aborted, so a
    /// client never takes a cut-off file for a whole one.
    pub body: mpsc::Receiver<io::Result<Bytes>>,
    /// Resolves when the pipeline has stopped.
    pub finished: tokio::task::JoinHandle<Result<Report, ExportError>>,
}

/// Starts exporting `sealed` (its plaintext `payload_len` bytes long) with `watermark` drawn
/// on every frame, on a blocking thread. Must be called within the Tokio runtime.
#[must_use]
pub fn start(sealed: SealedBlob, payload_len: u64, watermark: &Watermark) -> Export {
    let (tx, body) = mpsc::channel(BODY_QUEUE);
    let markup = watermark.markup();
    let finished = tokio::task::spawn_blocking(move || {
        let result = run(&sealed, payload_len, &markup, &tx);
        if let Err(e) = &result {
            // The client's download ends with an error, not with a shorter file.
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        result
    });
    Export { body, finished }
}

fn element(factory: &str) -> Result<gst::Element, ExportError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| ExportError::Start(format!("the GStreamer element {factory} is missing")))
}

/// A queue deep enough for a demuxer's interleaving (a fragment of one track, then the
/// other's) and an encoder's look-ahead, bounded in time and bytes.
fn queue() -> Result<gst::Element, ExportError> {
    let q = element("queue")?;
    q.set_property("max-size-buffers", 0u32);
    q.set_property("max-size-bytes", 64u32 << 20);
    q.set_property("max-size-time", 30 * gst::ClockTime::SECOND.nseconds());
    Ok(q)
}

/// Everything the blocking thread owns.
struct Built {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    frames: Arc<AtomicU64>,
}

fn run(
    sealed: &SealedBlob,
    payload_len: u64,
    markup: &str,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<Report, ExportError> {
    let started = Instant::now();
    gst::init().map_err(|e| ExportError::Start(e.to_string()))?;
    let reader = sealed
        .open()
        .map_err(|e| ExportError::Open(e.to_string()))?;
    let built = build(reader, payload_len, markup)?;
    let outcome = pump(&built, tx);
    let _ = built.pipeline.set_state(gst::State::Null);
    let (bytes, client_left) = outcome?;
    Ok(Report {
        bytes,
        frames: built.frames.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        client_left,
    })
}

/// Moves the appsink's output into the channel until the end, an error or the client's
/// leaving; the bytes sent and whether the client left.
fn pump(built: &Built, tx: &mpsc::Sender<io::Result<Bytes>>) -> Result<(u64, bool), ExportError> {
    let bus = built.pipeline.bus().expect("a pipeline has a bus");
    built
        .pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| first_error(&bus).unwrap_or_else(|| failed("pipeline", "cannot start")))?;
    let mut sent = 0u64;
    loop {
        if tx.is_closed() {
            return Ok((sent, true));
        }
        if let Some(sample) = built
            .sink
            .try_pull_sample(gst::ClockTime::from_mseconds(100))
        {
            let Some(buffer) = sample.buffer() else {
                continue;
            };
            let map = buffer.map_readable().map_err(|e| failed("appsink", e))?;
            let piece = Bytes::copy_from_slice(map.as_slice());
            sent += piece.len() as u64;
            if tx.blocking_send(Ok(piece)).is_err() {
                return Ok((sent, true));
            }
            continue;
        }
        if let Some(error) = first_error(&bus) {
            return Err(error);
        }
        if built.sink.is_eos() {
            return Ok((sent, false));
        }
    }
}

fn failed(element: &str, message: impl ToString) -> ExportError {
    ExportError::Pipeline {
        element: element.to_owned(),
        message: message.to_string(),
    }
}

/// The first error waiting on the bus, if any.
fn first_error(bus: &gst::Bus) -> Option<ExportError> {
    while let Some(message) = bus.pop() {
        if let gst::MessageView::Error(e) = message.view() {
            let element = e
                .src()
                .map_or_else(|| "pipeline".to_owned(), |s| s.name().to_string());
            return Some(failed(&element, e.error()));
        }
    }
    None
}

fn build<R: Read + Seek + Send + 'static>(
    reader: R,
    payload_len: u64,
    markup: &str,
) -> Result<Built, ExportError> {
    let pipeline = gst::Pipeline::with_name("export");
    let src = source(reader, payload_len);
    let parse = element("parsebin")?;
    let mux = element("mp4mux")?;
    mux.set_property("fragment-duration", 1000u32);
    mux.set_property("streamable", true);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(4)
        .build();
    pipeline
        .add_many([src.upcast_ref(), &parse, &mux, sink.upcast_ref()])
        .map_err(|e| failed("pipeline", e))?;
    src.link(&parse).map_err(|e| failed("appsrc", e))?;
    mux.link(&sink).map_err(|e| failed("mp4mux", e))?;

    let frames = Arc::new(AtomicU64::new(0));
    let videos = Arc::new(AtomicUsize::new(0));
    let branch = Branch {
        pipeline: pipeline.downgrade(),
        mux: mux.downgrade(),
        markup: markup.to_owned(),
        frames: frames.clone(),
        videos: videos.clone(),
    };
    parse.connect_pad_added(move |parse, pad| {
        if let Err(e) = branch.link(pad) {
            post_error(parse, &e);
        }
    });
    parse.connect_no_more_pads(move |parse| {
        if videos.load(Ordering::SeqCst) == 0 {
            post_error(
                parse,
                &failed("parsebin", "the recording has no video track to watermark"),
            );
        }
    });
    Ok(Built {
        pipeline,
        sink,
        frames,
    })
}

fn post_error(element: &gst::Element, error: &ExportError) {
    gst::element_error!(element, gst::CoreError::Negotiation, ("{}", error));
}

/// The appsrc, fed from the decrypting reader: seekable (a non-fragmented MP4 has its index
/// at the end, and the demuxer seeks to it), `payload_len` bytes, at most [`SOURCE_QUEUE`]
/// queued.
fn source<R: Read + Seek + Send + 'static>(reader: R, payload_len: u64) -> gst_app::AppSrc {
    let src = gst_app::AppSrc::builder()
        .name("archive")
        .format(gst::Format::Bytes)
        .stream_type(gst_app::AppStreamType::Seekable)
        .size(i64::try_from(payload_len).unwrap_or(-1))
        .max_bytes(SOURCE_QUEUE)
        .build();
    let reader = Arc::new(Mutex::new(reader));
    let seeker = reader.clone();
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                let mut piece = vec![0u8; READ_CHUNK];
                let read = reader.lock().expect("reader lock").read(&mut piece);
                match read {
                    Ok(0) => {
                        let _ = src.end_of_stream();
                    }
                    Ok(n) => {
                        piece.truncate(n);
                        let _ = src.push_buffer(gst::Buffer::from_mut_slice(piece));
                    }
                    Err(e) => gst::element_error!(
                        src,
                        gst::ResourceError::Read,
                        ("the recording cannot be decrypted: {}", e)
                    ),
                }
            })
            .seek_data(move |_, offset| {
                seeker
                    .lock()
                    .expect("reader lock")
                    .seek(SeekFrom::Start(offset))
                    .is_ok()
            })
            .build(),
    );
    src
}

/// Links each stream `parsebin` finds to the muxer.
struct Branch {
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    mux: gst::glib::WeakRef<gst::Element>,
    markup: String,
    frames: Arc<AtomicU64>,
    videos: Arc<AtomicUsize>,
}

impl Branch {
    fn link(&self, pad: &gst::Pad) -> Result<(), ExportError> {
        let (Some(pipeline), Some(mux)) = (self.pipeline.upgrade(), self.mux.upgrade()) else {
            return Ok(());
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let kind = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        if kind.starts_with("video/") {
            self.videos.fetch_add(1, Ordering::SeqCst);
            self.video(&pipeline, &mux, pad)
        } else if kind.starts_with("audio/") {
            audio(&pipeline, &mux, pad, &caps)
        } else {
            // Anything else (timed metadata, subtitles) is not exported.
            tracing::debug!(%kind, "export: a stream that is neither video nor audio is left out");
            let sink = element("fakesink")?;
            add_and_sync(&pipeline, &[&sink])?;
            link_pad(pad, &sink)
        }
    }

    /// Decode → watermark → H.264, to a new video pad of the muxer.
    fn video(
        &self,
        pipeline: &gst::Pipeline,
        mux: &gst::Element,
        pad: &gst::Pad,
    ) -> Result<(), ExportError> {
        let inq = queue()?;
        let decode = element("decodebin")?;
        let convert = element("videoconvert")?;
        let overlay = element("textoverlay")?;
        overlay.set_property("text", &self.markup);
        overlay.set_property_from_str("valignment", "bottom");
        overlay.set_property_from_str("halignment", "left");
        overlay.set_property_from_str("line-alignment", "left");
        // Sized relative to a 640-pixel-wide picture and scaled with the picture.
        overlay.set_property("font-desc", "Sans Bold 10");
        overlay.set_property("auto-resize", true);
        // A dark, semi-transparent box under the text: readable on any picture, and what is
        // beneath it still shows.
        overlay.set_property("shaded-background", true);
        overlay.set_property("shading-value", 120u32);
        let convert2 = element("videoconvert")?;
        let i420 = element("capsfilter")?;
        i420.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        );
        let encode = element("x264enc")?;
        encode.set_property_from_str("speed-preset", "veryfast");
        encode.set_property_from_str("pass", "qual");
        encode.set_property("quantizer", QUALITY);
        encode.set_property("bitrate", MAX_KBITS);
        encode.set_property("key-int-max", KEYFRAME_EVERY);
        // No B-frames: a fragmented MP4 has no edit list to hide their decoding delay, and
        // every frame would show later than in the original.
        encode.set_property("bframes", 0u32);
        let parse = element("h264parse")?;
        let outq = queue()?;
        let tail = [&convert, &overlay, &convert2, &i420, &encode, &parse, &outq];
        add_and_sync(pipeline, &[&inq, &decode])?;
        pipeline.add_many(tail).map_err(|e| failed("pipeline", e))?;
        gst::Element::link_many(tail).map_err(|e| failed("x264enc", e))?;
        link_to_mux(&outq, mux, "video_%u")?;
        for e in tail.iter().rev() {
            e.sync_state_with_parent()
                .map_err(|e| failed("pipeline", e))?;
        }
        let frames = self.frames.clone();
        overlay
            .static_pad("src")
            .expect("textoverlay has a src pad")
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                frames.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        let convert_weak = convert.downgrade();
        decode.connect_pad_added(move |decode, decoded| {
            let Some(convert) = convert_weak.upgrade() else {
                return;
            };
            let is_video = decoded
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(true);
            if is_video && let Err(e) = link_pad(decoded, &convert) {
                post_error(decode, &e);
            }
        });
        inq.link(&decode).map_err(|e| failed("decodebin", e))?;
        link_pad(pad, &inq)
    }
}

/// Audio as stored when MP4 takes it, else decoded and encoded as AAC; to a new audio pad.
fn audio(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    pad: &gst::Pad,
    caps: &gst::Caps,
) -> Result<(), ExportError> {
    let fits = mux
        .pad_template("audio_%u")
        .is_some_and(|t| t.caps().can_intersect(caps));
    let q = queue()?;
    if fits {
        add_and_sync(pipeline, &[&q])?;
        link_to_mux(&q, mux, "audio_%u")?;
        return link_pad(pad, &q);
    }
    let decode = element("decodebin")?;
    let convert = element("audioconvert")?;
    let resample = element("audioresample")?;
    let encode = element("voaacenc")?;
    let tail = [&convert, &resample, &encode, &q];
    pipeline.add_many(tail).map_err(|e| failed("pipeline", e))?;
    gst::Element::link_many(tail).map_err(|e| failed("voaacenc", e))?;
    link_to_mux(&q, mux, "audio_%u")?;
    for e in tail.iter().rev() {
        e.sync_state_with_parent()
            .map_err(|e| failed("pipeline", e))?;
    }
    add_and_sync(pipeline, &[&decode])?;
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |decode, decoded| {
        if let Some(convert) = convert_weak.upgrade()
            && let Err(e) = link_pad(decoded, &convert)
        {
            post_error(decode, &e);
        }
    });
    link_pad(pad, &decode)
}

fn add_and_sync(pipeline: &gst::Pipeline, elements: &[&gst::Element]) -> Result<(), ExportError> {
    for e in elements {
        pipeline.add(*e).map_err(|err| failed("pipeline", err))?;
        e.sync_state_with_parent()
            .map_err(|err| failed(&e.name(), err))?;
    }
    Ok(())
}

fn link_pad(pad: &gst::Pad, to: &gst::Element) -> Result<(), ExportError> {
    let sink = to.static_pad("sink").expect("a sink pad");
    pad.link(&sink)
        .map(|_| ())
        .map_err(|e| failed(&to.name(), format!("cannot take the stream: {e:?}")))
}

fn link_to_mux(from: &gst::Element, mux: &gst::Element, template: &str) -> Result<(), ExportError> {
    let pad = mux.request_pad_simple(template).ok_or_else(|| {
        failed(
            "mp4mux",
            "no more tracks can be added (the recording's streams came late)",
        )
    })?;
    from.static_pad("src")
        .expect("a src pad")
        .link(&pad)
        .map(|_| ())
        .map_err(|e| failed("mp4mux", format!("{e:?}")))
}
