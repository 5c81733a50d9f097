//! A recording's manifest (`muxer::manifest`, sealed with every mux) put in words for the
//! people who check it: sections of label/value rows, times in UTC to the millisecond,
//! durations in hours, minutes and seconds, sizes in KiB/MiB, hashes shortened.
//!
//! Read from the JSON as stored, never through the muxer's types: manifests evolve, and an
//! old, newer or damaged one must still be shown. A missing or odd field becomes "—" or its
//! raw text; nothing here panics. The values are plain text: the page's template escapes them.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Shown where the manifest has no usable value.
pub const MISSING: &str = "—";

/// Confidence from which the muxer applies the microphone reference's correction
/// (`muxer::align`).
const APPLIED_FROM: f64 = 0.5;

/// Confidence from which the estimate counts as high: the same voice through two microphones
/// and codecs scores above 0.9, unrelated recordings about 0.1 (`docs/MUX.md`).
const HIGH_FROM: f64 = 0.9;

/// A manifest put in words, section by section, in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestView {
    /// Recording, Clocks, one per input, Output tracks, Gaps and pauses, Tool.
    pub sections: Vec<Section>,
}

/// A titled group of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// What the section is about, e.g. `Clocks` or `Input 2: CTI audio`.
    pub title: String,
    /// Its facts, in reading order.
    pub rows: Vec<Row>,
}

/// One fact: a label and its value, as displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What the value is, e.g. `Drift`.
    pub label: String,
    /// The value as displayed, e.g. `+120.0 ppm (the recorder's clock ran fast)`.
    pub value: String,
    /// The whole value when `value` is shortened (a SHA-256), for a tooltip or copying.
    pub full: Option<String>,
}

impl Row {
    fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value: value.into(),
            full: None,
        }
    }
}

impl Section {
    fn new(title: impl Into<String>, rows: Vec<Row>) -> Self {
        Self {
            title: title.into(),
            rows,
        }
    }

    /// The value of the first row labelled `label`.
    #[must_use]
    pub fn value(&self, label: &str) -> Option<&str> {
        self.rows
            .iter()
            .find(|r| r.label == label)
            .map(|r| r.value.as_str())
    }
}

impl ManifestView {
    /// Puts `manifest` in words. Any JSON is accepted: what is missing shows as [`MISSING`].
    #[must_use]
    pub fn from_manifest(manifest: &Value) -> Self {
        let mut sections = vec![recording(manifest), clocks(manifest)];
        sections.extend(inputs(manifest));
        sections.push(output_tracks(manifest));
        sections.push(gaps(manifest));
        sections.push(tool(manifest));
        Self { sections }
    }

    /// The first section titled `title`.
    #[must_use]
    pub fn section(&self, title: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.title == title)
    }
}

fn recording(m: &Value) -> Section {
    let cuts = &m["cuts"];
    let mut rows = vec![
        Row::new("Container", text(&m["container"])),
        Row::new(
            "Duration",
            cuts["duration_s"]
                .as_f64()
                .map_or_else(|| MISSING.into(), format_duration),
        ),
        Row::new(
            "In point (UTC)",
            cut_point(&cuts["in"], &cuts["in_chosen_by"]),
        ),
        Row::new(
            "Out point (UTC)",
            cut_point(&cuts["out"], &cuts["out_chosen_by"]),
        ),
        Row::new("Muxed at (UTC)", time_text(&m["muxed_at"])),
    ];
    rows.push(Row::new("Video only", video_only_text(m)));
    Section::new("Recording", rows)
}

/// `2026-11-21 09:14:10.120 (latest track start)`.
fn cut_point(at: &Value, chosen_by: &Value) -> String {
    let how = match chosen_by.as_str() {
        Some("latest start") => "the latest track start".to_owned(),
        Some("earliest end") => "the earliest track end".to_owned(),
        Some(other) => other.to_owned(),
        None => return time_text(at),
    };
    format!("{} ({how})", time_text(at))
}

fn video_only_text(m: &Value) -> String {
    match m["video_only"].as_bool() {
        Some(true) => {
            "yes: no call recording was muxed (it had not arrived by its deadline)".into()
        }
        Some(false) => "no: the call recording is muxed".into(),
        None => MISSING.into(),
    }
}

/// Whether the manifest says the recording has no CTI audio.
pub(crate) fn is_video_only(m: &Value) -> bool {
    m["video_only"].as_bool() == Some(true)
}

fn clocks(m: &Value) -> Section {
    let clock = &m["clock"];
    let mut rows = vec![Row::new("Method", clock_method_words(m))];
    if !is_video_only(m) {
        rows.extend([
            Row::new("CTI offset", offset_text(clock)),
            Row::new("Drift", drift_text(&clock["drift_ppm"])),
            Row::new("Sample rate", rate_text(clock)),
            Row::new("Confidence", confidence_text(&clock["confidence"])),
        ]);
        if let Some(row) = reference_row(clock) {
            rows.push(row);
        }
    }
    rows.extend(agent_clock_rows(&clock["agent_clock"]));
    if let Some(raw) = clock["method"].as_str() {
        rows.push(Row::new("Method (as recorded)", raw));
    }
    Section::new("Clocks", rows)
}

/// How the call recording was put on the timeline, from the clock's fields rather than its
/// `method` text (whose wording may change).
fn clock_method_words(m: &Value) -> String {
    let clock = &m["clock"];
    if is_video_only(m) {
        return "No call recording: the video tracks only, on the agent's clock".into();
    }
    let placed = if clock["drift_ppm"].is_number() {
        "Placed by the call record's start; drift measured from its length against the \
         record's end"
    } else {
        "Placed by the call record's start only; no end time, so the nominal rate is assumed"
    };
    let refined = clock["refined_by_ms"].as_f64();
    let found = clock["reference_correction_ms"].as_f64();
    let reference = match (refined, found) {
        (None, _) => "",
        (Some(applied), _) if applied != 0.0 => {
            "; start corrected against the agent's microphone reference"
        }
        (Some(_), Some(_)) => {
            "; the agent's microphone reference was not confident enough: call record kept"
        }
        (Some(_), None) => {
            "; the agent's microphone reference overlaps the call too little or is silent: \
             call record kept"
        }
    };
    format!("{placed}{reference}")
}

/// `-1500.0 ms (the call recording starts 1.500 s before the camera)`.
fn offset_text(clock: &Value) -> String {
    let Some(seconds) = clock["audio_offset_s"].as_f64() else {
        return MISSING.into();
    };
    let relation = if seconds < 0.0 {
        format!(
            " (the call recording starts {:.3} s before the camera)",
            -seconds
        )
    } else if seconds > 0.0 {
        format!(" (the call recording starts {seconds:.3} s after the camera)")
    } else {
        " (the call recording starts with the camera)".into()
    };
    format!("{}{relation}", format_ms(seconds * 1000.0))
}

/// Milliseconds with a sign and one decimal: `+12.5 ms`, `-730.0 ms`.
pub(crate) fn format_ms(ms: f64) -> String {
    format!("{ms:+.1} ms")
}

/// Drift in ppm with what it means: `+120.0 ppm (the recorder's clock ran fast: 0.432 s per
/// hour)`.
pub(crate) fn drift_text(ppm: &Value) -> String {
    let Some(ppm) = ppm.as_f64() else {
        return "not measured: no call end time, nominal rate assumed".into();
    };
    let way = if ppm >= 0.0 { "fast" } else { "slow" };
    format!(
        "{ppm:+.1} ppm (the recorder's clock ran {way}: {:.3} s per hour)",
        ppm.abs() * 3600e-6
    )
}

fn rate_text(clock: &Value) -> String {
    match (
        clock["nominal_rate_hz"].as_f64(),
        clock["effective_rate_hz"].as_f64(),
    ) {
        (Some(nominal), Some(measured)) => {
            format!("{nominal} Hz nominal, {measured:.3} Hz on the timeline")
        }
        (Some(nominal), None) => format!("{nominal} Hz nominal"),
        (None, Some(measured)) => format!("{measured:.3} Hz on the timeline"),
        (None, None) => MISSING.into(),
    }
}

/// `high`, `medium` (applied, but check) or `low` (not applied).
pub(crate) fn confidence_word(confidence: f64) -> &'static str {
    if confidence >= HIGH_FROM {
        "high"
    } else if confidence >= APPLIED_FROM {
        "medium"
    } else {
        "low"
    }
}

/// `98 % (high)`; without a reference, why there is none. Percentages are rounded down, so
/// 49.9 % never shows as the 50 % from which a correction is applied.
pub(crate) fn confidence_text(confidence: &Value) -> String {
    match confidence.as_f64() {
        Some(c) => format!(
            "{:.0} % ({})",
            (c * 100.0).floor().clamp(0.0, 100.0),
            confidence_word(c)
        ),
        None => "not measured: no microphone reference, the call record is taken as is".into(),
    }
}

/// What the microphone reference found and whether it was applied; `None` without one.
fn reference_row(clock: &Value) -> Option<Row> {
    let refined = clock["refined_by_ms"].as_f64();
    let found = clock["reference_correction_ms"].as_f64();
    let value = match (refined, found) {
        (None, None) => return None,
        (Some(applied), Some(found)) if applied != 0.0 => format!(
            "{} found, {} applied to the call record's start",
            format_ms(found),
            format_ms(applied)
        ),
        (_, Some(found)) => format!(
            "{} found, not applied (confidence too low)",
            format_ms(found)
        ),
        (Some(applied), None) if applied != 0.0 => {
            format!("{} applied to the call record's start", format_ms(applied))
        }
        (Some(_), None) => {
            "none found: the reference overlaps the call too little or is silent".into()
        }
    };
    Some(Row::new("Microphone reference", value))
}

/// The agent clock's sync, when the video came from a live session.
fn agent_clock_rows(agent: &Value) -> Vec<Row> {
    if agent.is_null() {
        return vec![Row::new(
            "Agent clock sync",
            "not used: the video came from files",
        )];
    }
    if !agent.is_object() {
        return vec![Row::new("Agent clock sync", MISSING)];
    }
    let samples = match (agent["samples"].as_u64(), agent["samples_used"].as_u64()) {
        (Some(all), Some(used)) => format!("{all} exchanges, the {used} fastest used"),
        (Some(all), None) => format!("{all} exchanges"),
        _ => MISSING.into(),
    };
    let round_trip = agent["min_round_trip_ms"].as_f64().map_or_else(
        || MISSING.into(),
        |rtt| format!("{rtt:.1} ms (the offset is known to ±{:.1} ms)", rtt / 2.0),
    );
    let residual = agent["residual_ms"]
        .as_f64()
        .map_or_else(|| MISSING.into(), |r| format!("{r:.1} ms"));
    let skew = agent["skew_ppm"]
        .as_f64()
        .map_or_else(|| MISSING.into(), |s| format!("{s:+.1} ppm"));
    vec![
        Row::new("Agent clock sync", samples),
        Row::new("Shortest round trip", round_trip),
        Row::new("Fit residual", residual),
        Row::new("Agent clock rate", skew),
    ]
}

fn inputs(m: &Value) -> Vec<Section> {
    let refined_ms = m["clock"]["refined_by_ms"].as_f64().unwrap_or(0.0);
    as_slice(&m["inputs"])
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let role = input["role"].as_str().unwrap_or(MISSING);
            let mut rows = vec![
                Row::new("File", text(&input["file"])),
                Row::new("Codec", text(&input["codec"])),
                Row::new("Span (UTC)", span_text(&input["start"], &input["end"])),
            ];
            if role == "cti_audio" && refined_ms != 0.0 {
                rows.push(Row::new(
                    "Placed at (UTC)",
                    placed_text(m, input, refined_ms),
                ));
            }
            rows.extend([
                Row::new("Units", units_text(&input["units"], role)),
                Row::new("Size", size_text(&input["bytes"])),
                sha256_row(&input["sha256"]),
            ]);
            Section::new(format!("Input {}: {}", i + 1, role_name(role)), rows)
        })
        .collect()
}

/// `2026-11-21 09:14:02.120 – 09:15:32.120 (1 min 30.0 s)`.
fn span_text(start: &Value, end: &Value) -> String {
    match (utc_nanos(start), utc_nanos(end)) {
        (Some(from), Some(to)) => span_between(from, to),
        _ => format!("{} – {}", time_text(start), time_text(end)),
    }
}

/// Two instants and the time between them; the end's date is left out when it is the start's.
fn span_between(from: i128, to: i128) -> String {
    let (from_text, to_text) = (format_utc(from), format_utc(to));
    let to_short = match (from_text.split_once(' '), to_text.split_once(' ')) {
        (Some((day, _)), Some((to_day, clock))) if day == to_day => clock.to_owned(),
        _ => to_text.clone(),
    };
    format!(
        "{from_text} – {to_short} ({})",
        format_duration((to - from) as f64 / 1e9)
    )
}

/// `09:31:38.500 – 09:33:03.500 (1 min 25.0 s), the call record's times moved by -730.0 ms`.
fn placed_text(m: &Value, input: &Value, refined_ms: f64) -> String {
    match moved_by_reference(m, input) {
        Some((from, to)) => format!(
            "{}, the call record's times moved by {}",
            span_between(from, to),
            format_ms(refined_ms)
        ),
        None => MISSING.into(),
    }
}

/// Where the CTI recording was muxed when the microphone reference moved it: its input
/// carries the call record's times, the clock's `refined_by_ms` says by how much they moved.
/// `None` for any other input, or when nothing was moved.
pub(crate) fn moved_by_reference(m: &Value, input: &Value) -> Option<(i128, i128)> {
    let refined_ms = m["clock"]["refined_by_ms"].as_f64()?;
    if input["role"] != "cti_audio" || refined_ms == 0.0 {
        return None;
    }
    // `as` saturates, and an absurd shift finds no date.
    let shift = (refined_ms * 1e6) as i128;
    let start = utc_nanos(&input["start"])?.checked_add(shift)?;
    let end = utc_nanos(&input["end"])?.checked_add(shift)?;
    Some((start, end))
}

fn units_text(units: &Value, role: &str) -> String {
    let Some(n) = units.as_u64() else {
        return text(units);
    };
    let what = if is_audio_role(role) {
        "sample frames"
    } else {
        "video frames"
    };
    format!("{} {what}", group_thousands(n))
}

/// Whether the role carries sound (its units are samples, not frames).
pub(crate) fn is_audio_role(role: &str) -> bool {
    matches!(role, "cti_audio" | "mic_reference")
}

fn size_text(bytes: &Value) -> String {
    bytes.as_u64().map_or_else(|| text(bytes), format_bytes)
}

/// The hash shortened to its first and last 8 digits, the whole one in [`Row::full`].
fn sha256_row(sha: &Value) -> Row {
    let Some(full) = sha.as_str() else {
        return Row::new("SHA-256", text(sha));
    };
    let chars: Vec<char> = full.chars().collect();
    if chars.len() <= 20 {
        return Row::new("SHA-256", full);
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 8..].iter().collect();
    Row {
        label: "SHA-256".into(),
        value: format!("{head}…{tail}"),
        full: Some(full.to_owned()),
    }
}

fn output_tracks(m: &Value) -> Section {
    let rows = as_slice(&m["tracks"])
        .iter()
        .map(|track| {
            let role = track["role"].as_str().unwrap_or(MISSING);
            let index = track["index"]
                .as_u64()
                .map_or_else(|| MISSING.into(), |i| i.to_string());
            let units = match track["units"].as_u64() {
                Some(n) if is_audio_role(role) => format!("{} samples", group_thousands(n)),
                Some(n) => format!("{} frames", group_thousands(n)),
                None => MISSING.into(),
            };
            Row::new(
                format!("{index}: {}", role_name(role)),
                format!(
                    "{}, {}; {units}",
                    text(&track["codec"]),
                    text(&track["made_by"])
                ),
            )
        })
        .collect();
    Section::new("Output tracks", rows)
}

fn gaps(m: &Value) -> Section {
    let mut rows: Vec<Row> = as_slice(&m["gaps"])
        .iter()
        .map(|gap| {
            let role = gap["track"].as_str().unwrap_or(MISSING);
            let into = gap["output_from_s"]
                .as_f64()
                .map(|s| format!(" ({} into the recording)", format_duration(s)))
                .unwrap_or_default();
            let length = gap["seconds"]
                .as_f64()
                .map_or_else(|| MISSING.into(), format_duration);
            Row::new(
                role_name(role),
                format!(
                    "from {}{into} for {length}, filled with {}",
                    time_text(&gap["from"]),
                    text(&gap["filled_with"])
                ),
            )
        })
        .collect();
    if rows.is_empty() {
        rows.push(Row::new(
            "None",
            "every track has data from the in to the out point",
        ));
    }
    Section::new("Gaps and pauses", rows)
}

fn tool(m: &Value) -> Section {
    Section::new(
        "Tool",
        vec![
            Row::new("idv", text(&m["tool"])),
            Row::new("GStreamer", text(&m["gstreamer"])),
            Row::new(
                "Manifest",
                format!(
                    "{}, version {}",
                    text(&m["kind"]),
                    text(&m["manifest_version"])
                ),
            ),
        ],
    )
}

/// A track role as people say it; an unknown one as written.
pub(crate) fn role_name(role: &str) -> String {
    match role {
        "camera" => "Camera".into(),
        "screen" => "Screen".into(),
        "cti_audio" => "CTI audio".into(),
        "composite" => "Camera over screen".into(),
        "mic_reference" => "Microphone reference".into(),
        other => other.into(),
    }
}

/// The elements of a JSON array; nothing for anything else.
pub(crate) fn as_slice(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A scalar as text: strings as they are, numbers and booleans as JSON writes them, anything
/// else [`MISSING`].
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => MISSING.into(),
    }
}

/// An RFC 3339 instant as nanoseconds since the Unix epoch; `None` for anything else.
pub(crate) fn utc_nanos(v: &Value) -> Option<i128> {
    let t = OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos())
}

/// A manifest time as `YYYY-MM-DD HH:MM:SS.mmm` (UTC); unparseable text as it is.
pub(crate) fn time_text(v: &Value) -> String {
    utc_nanos(v).map_or_else(|| text(v), format_utc)
}

/// Nanoseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` in UTC, rounded to the
/// nearest millisecond (the muxer writes `…:22.119999999` for a frame at `.120`).
pub(crate) fn format_utc(nanos: i128) -> String {
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) >= 500_000);
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000) else {
        return MISSING.into();
    };
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Seconds as people read them, to a tenth: `12.3 s`, `1 min 05.5 s`, `1 h 02 min 03.4 s`.
pub(crate) fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return MISSING.into();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    // `as` saturates: an absurd length shows as a huge one rather than wrapping.
    let tenths = (seconds.abs() * 10.0).round() as u64;
    let (s, tenth) = (tenths / 10 % 60, tenths % 10);
    let (minutes, hours) = (tenths / 600 % 60, tenths / 36_000);
    if hours > 0 {
        format!("{sign}{hours} h {minutes:02} min {s:02}.{tenth} s")
    } else if minutes > 0 {
        format!("{sign}{minutes} min {s:02}.{tenth} s")
    } else {
        format!("{sign}{s}.{tenth} s")
    }
}

/// Bytes in binary units with one decimal, and exactly: `462.2 KiB (473,252 bytes)`.
pub(crate) fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!(
        "{size:.1} {} ({} bytes)",
        UNITS[unit],
        group_thousands(bytes)
    )
}

/// `680000` → `680,000`.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GAPS: &str = include_str!("../../tests/fixtures/manifest_gaps.json");
    const MIC: &str = include_str!("../../tests/fixtures/manifest_mic_reference.json");
    const VIDEO_ONLY: &str = include_str!("../../tests/fixtures/manifest_video_only.json");

    fn view(manifest: &str) -> ManifestView {
        ManifestView::from_manifest(&serde_json::from_str(manifest).unwrap())
    }

    fn value<'a>(view: &'a ManifestView, section: &str, label: &str) -> &'a str {
        view.section(section)
            .unwrap_or_else(|| panic!("no section {section}: {view:#?}"))
            .value(label)
            .unwrap_or_else(|| panic!("no {label} in {section}: {view:#?}"))
    }

    #[test]
    fn a_mux_with_gaps_reads_as_cut_drift_and_gaps() {
        let v = view(GAPS);
        let titles: Vec<&str> = v.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Recording",
                "Clocks",
                "Input 1: Camera",
                "Input 2: Screen",
                "Input 3: CTI audio",
                "Output tracks",
                "Gaps and pauses",
                "Tool"
            ]
        );
        assert_eq!(value(&v, "Recording", "Duration"), "1 min 15.5 s");
        assert_eq!(
            value(&v, "Recording", "In point (UTC)"),
            "2026-11-21 09:14:10.120 (requested)"
        );
        assert_eq!(
            value(&v, "Recording", "Video only"),
            "no: the call recording is muxed"
        );
        assert_eq!(
            value(&v, "Clocks", "CTI offset"),
            "-3000.0 ms (the call recording starts 3.000 s before the camera)"
        );
        assert_eq!(
            value(&v, "Clocks", "Drift"),
            "+120.0 ppm (the recorder's clock ran fast: 0.432 s per hour)"
        );
        assert!(
            value(&v, "Clocks", "Confidence").starts_with("not measured: no microphone"),
            "{v:#?}"
        );
        assert!(
            v.section("Clocks")
                .unwrap()
                .value("Microphone reference")
                .is_none()
        );
        assert_eq!(
            value(&v, "Clocks", "Agent clock sync"),
            "not used: the video came from files"
        );
        assert_eq!(
            value(&v, "Input 3: CTI audio", "Span (UTC)"),
            "2026-11-21 09:13:59.120 – 09:15:24.110 (1 min 25.0 s)"
        );
        assert_eq!(
            value(&v, "Input 3: CTI audio", "Units"),
            "680,000 sample frames"
        );
        assert_eq!(
            value(&v, "Input 1: Camera", "Size"),
            "462.2 KiB (473,252 bytes)"
        );
        let gaps = &v.section("Gaps and pauses").unwrap().rows;
        assert_eq!(gaps.len(), 3);
        assert_eq!(gaps[0].label, "Camera");
        assert_eq!(
            gaps[0].value,
            "from 2026-11-21 09:14:22.120 (12.0 s into the recording) for 3.5 s, filled with \
             held frame"
        );
        assert_eq!(gaps[2].label, "CTI audio");
        assert!(
            gaps[2].value.ends_with("for 1.5 s, filled with silence"),
            "{gaps:?}"
        );
        assert_eq!(
            value(&v, "Output tracks", "2: CTI audio"),
            "aac, resampled 8000 Hz → 32000 Hz on the timeline (drift +120.0 ppm corrected); \
             1 channel(s) kept; 2,416,000 samples"
        );
        assert_eq!(value(&v, "Tool", "GStreamer"), "GStreamer 1.22.0");
    }

    #[test]
    fn the_microphone_correction_and_its_confidence_are_spelt_out() {
        let v = view(MIC);
        assert_eq!(value(&v, "Clocks", "Confidence"), "98 % (high)");
        assert_eq!(
            value(&v, "Clocks", "Microphone reference"),
            "-730.0 ms found, -730.0 ms applied to the call record's start"
        );
        assert_eq!(
            value(&v, "Clocks", "Method"),
            "Placed by the call record's start only; no end time, so the nominal rate is \
             assumed; start corrected against the agent's microphone reference"
        );
        assert_eq!(
            value(&v, "Clocks", "Drift"),
            "not measured: no call end time, nominal rate assumed"
        );
        assert_eq!(
            value(&v, "Input 2: CTI audio", "Placed at (UTC)"),
            "2026-11-21 09:31:38.500 – 09:33:03.500 (1 min 25.0 s), the call record's times \
             moved by -730.0 ms"
        );
        assert_eq!(
            value(&v, "Recording", "Out point (UTC)"),
            "2026-11-21 09:33:03.500 (the earliest track end)"
        );
        assert!(v.section("Input 3: Microphone reference").is_some());
    }

    #[test]
    fn a_video_only_mux_says_so_and_shows_the_agent_clock() {
        let v = view(VIDEO_ONLY);
        assert!(value(&v, "Recording", "Video only").starts_with("yes: no call recording"));
        let clocks = v.section("Clocks").unwrap();
        assert!(clocks.value("CTI offset").is_none() && clocks.value("Drift").is_none());
        assert_eq!(
            clocks.value("Agent clock sync"),
            Some("31 exchanges, the 8 fastest used")
        );
        assert_eq!(
            clocks.value("Shortest round trip"),
            Some("38.4 ms (the offset is known to ±19.2 ms)")
        );
        assert_eq!(clocks.value("Agent clock rate"), Some("-14.6 ppm"));
        assert_eq!(
            value(&v, "Input 1: Camera", "File"),
            "session 5b0e7c1a-93d4-4f2e-8a61-0c2f9d7e4b18/camera"
        );
    }

    #[test]
    fn hashes_are_shortened_with_the_whole_one_kept() {
        let v = view(GAPS);
        let row = v
            .section("Input 1: Camera")
            .unwrap()
            .rows
            .last()
            .unwrap()
            .clone();
        assert_eq!(row.label, "SHA-256");
        assert_eq!(row.value, "1a7f3705…50b0726d");
        assert_eq!(
            row.full.as_deref(),
            Some("1a7f3705c7cc850fa7a3bdc70a6d3ed3651bed27eb74cda66640675d50b0726d")
        );
    }

    #[test]
    fn confidence_words_follow_the_muxer_threshold() {
        let word = |c: f64| confidence_text(&json!(c));
        assert_eq!(word(0.95), "95 % (high)");
        assert_eq!(word(0.7), "70 % (medium)");
        assert_eq!(word(0.4999), "49 % (low)");
        assert_eq!(word(0.5), "50 % (medium)");
    }

    #[test]
    fn a_reference_below_the_threshold_is_reported_but_not_applied() {
        let mut m: Value = serde_json::from_str(MIC).unwrap();
        m["clock"]["refined_by_ms"] = json!(0.0);
        m["clock"]["reference_correction_ms"] = json!(-12.25);
        m["clock"]["confidence"] = json!(0.31);
        let v = ManifestView::from_manifest(&m);
        assert_eq!(value(&v, "Clocks", "Confidence"), "31 % (low)");
        assert_eq!(
            value(&v, "Clocks", "Microphone reference"),
            "-12.2 ms found, not applied (confidence too low)"
        );
        assert!(value(&v, "Clocks", "Method").ends_with("not confident enough: call record kept"));
        assert!(
            v.section("Input 2: CTI audio")
                .unwrap()
                .value("Placed at (UTC)")
                .is_none()
        );
    }

    #[test]
    fn durations_times_and_sizes_read_naturally() {
        assert_eq!(format_duration(12.34), "12.3 s");
        assert_eq!(format_duration(3723.4), "1 h 02 min 03.4 s");
        assert_eq!(format_duration(59.96), "1 min 00.0 s");
        assert_eq!(format_duration(-2.5), "-2.5 s");
        assert_eq!(format_duration(f64::NAN), MISSING);
        assert_eq!(
            time_text(&json!("2026-11-21T09:14:22.119999999Z")),
            "2026-11-21 09:14:22.120"
        );
        assert_eq!(
            time_text(&json!("2026-12-31T23:59:59.9996Z")),
            "2027-01-01 00:00:00.000"
        );
        assert_eq!(
            time_text(&json!("2026-11-21T10:14:22+01:00")),
            "2026-11-21 09:14:22.000"
        );
        assert_eq!(time_text(&json!("yesterday")), "yesterday");
        assert_eq!(format_bytes(1000), "1000 bytes");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB (3,221,225,472 bytes)");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn odd_manifests_show_dashes_instead_of_failing() {
        for odd in [
            json!(null),
            json!([1, 2]),
            json!("manifest"),
            json!({"cuts": 5, "clock": [], "inputs": {"a": 1}, "gaps": [null, 3]}),
            json!({"inputs": [{"role": 7, "bytes": -1, "sha256": 5, "start": "x"}]}),
        ] {
            let v = ManifestView::from_manifest(&odd);
            assert_eq!(v.sections[0].title, "Recording");
            assert_eq!(
                v.section("Recording").unwrap().value("Duration"),
                Some(MISSING)
            );
        }
        let v = ManifestView::from_manifest(&json!({"gaps": [null]}));
        assert_eq!(
            v.section("Gaps and pauses").unwrap().rows[0].value,
            "from — for —, filled with —"
        );
    }

    #[test]
    fn data_comes_through_unchanged_for_the_template_to_escape() {
        let mut m: Value = serde_json::from_str(GAPS).unwrap();
        m["inputs"][0]["file"] = json!("<script>alert('x')</script> & \"q\"");
        let v = ManifestView::from_manifest(&m);
        assert_eq!(
            value(&v, "Input 1: Camera", "File"),
            "<script>alert('x')</script> & \"q\""
        );
    }
}
