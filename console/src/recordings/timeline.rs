//! A recording's timeline drawn from its manifest as an inline SVG: one lane per input on a
//! common UTC axis, each input's span as a bar, its gaps hatched, the in and out points as
//! vertical lines with everything outside them shaded, and a caption with the clock mapping.
//!
//! The picture is text the page puts in as it is, so every string from the manifest is
//! escaped here. It uses presentation attributes only (no `style`, no script, no external
//! font: the console's CSP allows none), and the same manifest always gives the same bytes.

use std::fmt::Write as _;

use serde_json::Value;

use super::manifest_view::{
    MISSING, as_slice, confidence_text, format_duration, format_ms, format_utc, is_video_only,
    moved_by_reference, role_name, text, utc_nanos,
};

/// Width of the picture in SVG units; its height grows with the lanes.
pub const WIDTH: f64 = 960.0;
/// Where the time axis starts (left of it: the lane labels).
pub const PLOT_LEFT: f64 = 184.0;
/// Where the time axis ends.
pub const PLOT_RIGHT: f64 = 940.0;

/// Above the first lane: room for the `in` and `out` labels.
const TOP: f64 = 34.0;
/// One lane, bar and spacing.
const LANE_HEIGHT: f64 = 40.0;
/// A bar's height inside its lane.
const BAR_HEIGHT: f64 = 22.0;
/// Between two lines of caption.
const LINE: f64 = 20.0;
/// Longest file name shown beside a lane (the whole one is in its tooltip).
const FILE_CHARS: usize = 22;
/// Ticks on the axis, at most about this many.
const TICKS: i128 = 8;
/// The id of the gaps' hatching (inline SVG ids are the page's: keep it specific).
const GAP_PATTERN: &str = "idv-timeline-gap";

/// How a piece of text is set.
struct Font {
    size: f64,
    fill: &'static str,
    weight: &'static str,
}

/// A lane's name.
const NAME: Font = Font {
    size: 13.0,
    fill: INK,
    weight: "600",
};
/// The cut labels and the caption.
const BODY: Font = Font {
    size: 12.0,
    fill: INK,
    weight: "400",
};
/// File names, ticks, the legend.
const SMALL: Font = Font {
    size: 11.0,
    fill: MUTED,
    weight: "400",
};

const INK: &str = "#111827";
const MUTED: &str = "#4b5563";
const LANE_FILL: &str = "#eef1f5";
const GAP_INK: &str = "#b91c1c";
const NS_PER_S: i128 = 1_000_000_000;

/// The manifest's timeline as an SVG element (`role="img"`, with a `<title>`), ready to be put
/// in a page as it is. Any JSON is accepted: what cannot be placed is left out, and a manifest
/// without usable times gives labelled lanes and a line saying so.
#[must_use]
pub fn timeline_svg(manifest: &Value) -> String {
    let picture = Picture::from_manifest(manifest);
    let mut svg = Svg::default();
    picture.draw(&mut svg, manifest);
    svg.finish(picture.height(), &picture.title())
}

/// One input's lane.
struct Lane {
    role: String,
    file: String,
    /// Where the input is on the timeline.
    span: Option<(i128, i128)>,
    /// The call record's own span, when the microphone reference moved the CTI audio.
    record_span: Option<(i128, i128)>,
    /// Holes: from, to, what fills them.
    gaps: Vec<(i128, i128, String)>,
}

/// What is drawn, in nanoseconds since the Unix epoch.
struct Picture {
    lanes: Vec<Lane>,
    cut_in: Option<i128>,
    cut_out: Option<i128>,
    /// The axis' first and last instants; `None` when nothing has a usable time.
    axis: Option<Axis>,
}

impl Picture {
    fn from_manifest(m: &Value) -> Self {
        let mut lanes = lanes(m);
        for gap in as_slice(&m["gaps"]) {
            let (Some(from), Some(to)) = (utc_nanos(&gap["from"]), utc_nanos(&gap["to"])) else {
                continue;
            };
            let track = gap["track"].as_str().unwrap_or_default();
            if let Some(lane) = lanes.iter_mut().find(|l| l.role == track) {
                lane.gaps.push((from, to, text(&gap["filled_with"])));
            }
        }
        let (cut_in, cut_out) = (utc_nanos(&m["cuts"]["in"]), utc_nanos(&m["cuts"]["out"]));
        let instants = lanes
            .iter()
            .flat_map(|l| l.span.iter().chain(&l.record_span))
            .flat_map(|&(from, to)| [from, to])
            .chain(cut_in)
            .chain(cut_out);
        Self {
            axis: Axis::covering(instants),
            lanes,
            cut_in,
            cut_out,
        }
    }

    fn height(&self) -> f64 {
        self.axis_y() + 30.0 + 3.0 * LINE
    }

    fn lane_top(index: usize) -> f64 {
        TOP + index as f64 * LANE_HEIGHT
    }

    fn lanes_bottom(&self) -> f64 {
        Self::lane_top(self.lanes.len().max(1))
    }

    fn axis_y(&self) -> f64 {
        self.lanes_bottom() + 4.0
    }

    /// `Timeline: Camera, Screen, CTI audio; in 2026-… out 2026-… (UTC)`.
    fn title(&self) -> String {
        let names: Vec<String> = self.lanes.iter().map(|l| role_name(&l.role)).collect();
        let mut title = format!("Recording timeline: {}", names.join(", "));
        if let (Some(cut_in), Some(cut_out)) = (self.cut_in, self.cut_out) {
            let _ = write!(
                title,
                "; in {}, out {} (UTC)",
                format_utc(cut_in),
                format_utc(cut_out)
            );
        }
        title
    }

    fn draw(&self, svg: &mut Svg, m: &Value) {
        svg.defs();
        for (i, lane) in self.lanes.iter().enumerate() {
            self.draw_lane(svg, i, lane);
        }
        match &self.axis {
            Some(axis) => {
                self.draw_excluded(svg, axis);
                self.draw_cuts(svg, axis);
                self.draw_axis(svg, axis);
            }
            None => svg.text(
                PLOT_LEFT,
                TOP + 16.0,
                "start",
                &Font {
                    fill: MUTED,
                    ..BODY
                },
                "No timeline: the manifest gives no usable times.",
            ),
        }
        self.draw_caption(svg, m);
    }

    fn draw_lane(&self, svg: &mut Svg, index: usize, lane: &Lane) {
        let top = Self::lane_top(index);
        let bar_y = top + (LANE_HEIGHT - BAR_HEIGHT) / 2.0;
        let name = role_name(&lane.role);
        svg.open_group("lane", &lane.role);
        svg.tooltip(&format!("{name}: {}", lane.file));
        svg.text(12.0, bar_y + 9.0, "start", &NAME, &name);
        svg.text(12.0, bar_y + 23.0, "start", &SMALL, &shorten(&lane.file));
        svg.rect(
            "lane-track",
            (PLOT_LEFT, bar_y, PLOT_RIGHT - PLOT_LEFT, BAR_HEIGHT),
            &format!(r#"fill="{LANE_FILL}""#),
            None,
        );
        if let Some(axis) = &self.axis {
            let colour = role_colour(&lane.role);
            if let Some((from, to)) = lane.record_span {
                let (x, w) = axis.extent(from, to);
                svg.rect(
                    "call-record",
                    (x, bar_y - 3.0, w, BAR_HEIGHT + 6.0),
                    &format!(r#"fill="none" stroke="{colour}" stroke-dasharray="4 3""#),
                    Some(&format!(
                        "{name} as the call record places it: {}",
                        span_words(from, to)
                    )),
                );
            }
            if let Some((from, to)) = lane.span {
                let (x, w) = axis.extent(from, to);
                svg.rect(
                    "span",
                    (x, bar_y, w, BAR_HEIGHT),
                    &format!(r#"fill="{colour}" rx="2""#),
                    Some(&format!("{name}: {}", span_words(from, to))),
                );
            }
            for (from, to, filled_with) in &lane.gaps {
                let (x, w) = axis.extent(*from, *to);
                svg.rect(
                    "gap",
                    (x, bar_y, w.max(2.0), BAR_HEIGHT),
                    &format!(r#"fill="url(#{GAP_PATTERN})" stroke="{GAP_INK}""#),
                    Some(&format!(
                        "{name}: nothing from {} for {}, filled with {filled_with}",
                        format_utc(*from),
                        format_duration((to - from) as f64 / 1e9)
                    )),
                );
            }
        }
        svg.close_group();
    }

    /// Shades what lies outside the cut.
    fn draw_excluded(&self, svg: &mut Svg, axis: &Axis) {
        let (top, bottom) = (TOP, self.lanes_bottom());
        let attributes = format!(r#"fill="{INK}" fill-opacity="0.16""#);
        let tip = "outside the cut: not in the recording";
        if let Some(cut_in) = self.cut_in {
            let x = axis.x(cut_in);
            if x > PLOT_LEFT {
                let rect = (PLOT_LEFT, top, x - PLOT_LEFT, bottom - top);
                svg.rect("excluded", rect, &attributes, Some(tip));
            }
        }
        if let Some(cut_out) = self.cut_out {
            let x = axis.x(cut_out);
            if x < PLOT_RIGHT {
                let rect = (x, top, PLOT_RIGHT - x, bottom - top);
                svg.rect("excluded", rect, &attributes, Some(tip));
            }
        }
    }

    /// The in and out points: a line each, labelled inside the kept part (outside it when the
    /// two are too close for both labels).
    fn draw_cuts(&self, svg: &mut Svg, axis: &Axis) {
        let xs = (
            self.cut_in.map(|t| axis.x(t)),
            self.cut_out.map(|t| axis.x(t)),
        );
        let roomy = match xs {
            (Some(a), Some(b)) => b - a >= 48.0,
            _ => true,
        };
        let bottom = self.axis_y();
        for (class, x, inside_anchor, outside_anchor, dx) in [
            ("cut-in", xs.0, "start", "end", 4.0),
            ("cut-out", xs.1, "end", "start", -4.0),
        ] {
            let Some(x) = x else { continue };
            let (anchor, dx) = if roomy {
                (inside_anchor, dx)
            } else {
                (outside_anchor, -dx)
            };
            svg.line(class, x, TOP - 18.0, bottom);
            let label = if class == "cut-in" { "in" } else { "out" };
            svg.text(x + dx, TOP - 8.0, anchor, &BODY, label);
        }
    }

    fn draw_axis(&self, svg: &mut Svg, axis: &Axis) {
        let y = self.axis_y();
        let _ = writeln!(
            svg.body,
            r#"<g class="axis"><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{MUTED}"/>"#,
            num(PLOT_LEFT),
            num(y),
            num(PLOT_RIGHT),
            num(y)
        );
        let origin = self.cut_in.unwrap_or(axis.from);
        let label = if self.cut_in.is_some() {
            "time from the in point"
        } else {
            "time from the first input"
        };
        svg.text(12.0, y + 17.0, "start", &SMALL, label);
        for t in axis.ticks(origin) {
            let x = axis.x(t);
            let _ = writeln!(
                svg.body,
                r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="{MUTED}"/>"#,
                num(x),
                num(y),
                num(y + 5.0)
            );
            svg.text(x, y + 17.0, "middle", &SMALL, &clock_text(t - origin));
        }
        svg.body.push_str("</g>\n");
    }

    fn draw_caption(&self, svg: &mut Svg, m: &Value) {
        let y = self.axis_y() + 30.0 + 8.0;
        let cut = match (self.cut_in, self.cut_out) {
            (Some(cut_in), Some(cut_out)) => format!(
                "In {} – out {} UTC ({})",
                format_utc(cut_in),
                format_utc(cut_out),
                format_duration((cut_out - cut_in) as f64 / 1e9)
            ),
            _ => "No in and out points".to_owned(),
        };
        svg.text(12.0, y, "start", &BODY, &cut);
        svg.text(12.0, y + LINE, "start", &BODY, &clock_caption(m));
        self.draw_legend(svg, y + 2.0 * LINE);
    }

    fn draw_legend(&self, svg: &mut Svg, y: f64) {
        let mut x = 12.0;
        let mut key = |svg: &mut Svg, attributes: String, words: &str, width: f64| {
            svg.rect("legend", (x, y - 10.0, 18.0, 12.0), &attributes, None);
            svg.text(x + 24.0, y, "start", &SMALL, words);
            x += width;
        };
        key(
            svg,
            format!(r#"fill="url(#{GAP_PATTERN})" stroke="{GAP_INK}""#),
            "gap or pause (held frame or silence)",
            250.0,
        );
        key(
            svg,
            format!(r#"fill="{INK}" fill-opacity="0.16""#),
            "outside the cut",
            130.0,
        );
        if self.lanes.iter().any(|l| l.record_span.is_some()) {
            key(
                svg,
                format!(r#"fill="none" stroke="{MUTED}" stroke-dasharray="4 3""#),
                "where the call record put the audio",
                250.0,
            );
        }
    }
}

/// One lane per input, in the manifest's order.
fn lanes(m: &Value) -> Vec<Lane> {
    as_slice(&m["inputs"])
        .iter()
        .map(|input| {
            let given = utc_nanos(&input["start"]).zip(utc_nanos(&input["end"]));
            let moved = moved_by_reference(m, input);
            Lane {
                role: input["role"]
                    .as_str()
                    .map_or_else(|| text(&input["role"]), str::to_owned),
                file: text(&input["file"]),
                span: moved.or(given),
                record_span: moved.and(given),
                gaps: Vec::new(),
            }
        })
        .collect()
}

/// `CTI offset -3000.0 ms · drift +120.0 ppm · confidence 98 % (high)`.
fn clock_caption(m: &Value) -> String {
    let clock = &m["clock"];
    let mut parts = Vec::new();
    if is_video_only(m) {
        parts.push("Video only: no call recording".to_owned());
    } else {
        parts.push(match clock["audio_offset_s"].as_f64() {
            Some(s) => format!("CTI offset {}", format_ms(s * 1000.0)),
            None => format!("CTI offset {MISSING}"),
        });
        parts.push(match clock["drift_ppm"].as_f64() {
            Some(ppm) => format!("drift {ppm:+.1} ppm"),
            None => "drift not measured".to_owned(),
        });
        parts.push(match clock["confidence"].as_f64() {
            Some(_) => format!("confidence {}", confidence_text(&clock["confidence"])),
            None => "no microphone reference".to_owned(),
        });
    }
    if let Some(rtt) = clock["agent_clock"]["min_round_trip_ms"].as_f64() {
        parts.push(format!("agent clock ±{:.1} ms", rtt / 2.0));
    }
    parts.join(" · ")
}

/// The time axis: instants mapped onto `PLOT_LEFT..PLOT_RIGHT`.
struct Axis {
    from: i128,
    to: i128,
}

impl Axis {
    /// The axis over `instants`; at least a second long; `None` without any.
    fn covering(instants: impl Iterator<Item = i128>) -> Option<Self> {
        let (mut from, mut to) = (i128::MAX, i128::MIN);
        for t in instants {
            (from, to) = (from.min(t), to.max(t));
        }
        (from <= to).then(|| Self {
            from,
            to: to.max(from + NS_PER_S),
        })
    }

    fn x(&self, t: i128) -> f64 {
        let share = (t - self.from) as f64 / (self.to - self.from) as f64;
        (PLOT_LEFT + share * (PLOT_RIGHT - PLOT_LEFT)).clamp(PLOT_LEFT, PLOT_RIGHT)
    }

    /// Left edge and width of `[from, to)`.
    fn extent(&self, from: i128, to: i128) -> (f64, f64) {
        let (a, b) = (self.x(from), self.x(to));
        (a.min(b), (b - a).abs())
    }

    /// Instants of round times from `origin` (`0:00`, `0:30`, …) inside the axis, about
    /// [`TICKS`] of them.
    fn ticks(&self, origin: i128) -> Vec<i128> {
        const NICE_S: [i128; 14] = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600];
        let wanted = (self.to - self.from) / TICKS;
        let step = NICE_S
            .iter()
            .map(|s| s * NS_PER_S)
            .find(|&s| s >= wanted)
            .unwrap_or_else(|| (wanted / (3600 * NS_PER_S) + 1) * 3600 * NS_PER_S);
        let first = (self.from - origin).div_euclid(step) + 1;
        let first = if (self.from - origin).rem_euclid(step) == 0 {
            first - 1
        } else {
            first
        };
        (first..)
            .map(|k| origin + k * step)
            .take_while(|&t| t <= self.to)
            .collect()
    }
}

/// A relative time as on a player: `0:30`, `-0:05`, `1:02:03`.
fn clock_text(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let seconds = (nanos.unsigned_abs() + 500_000_000) / 1_000_000_000;
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{sign}{h}:{m:02}:{s:02}")
    } else {
        format!("{sign}{m}:{s:02}")
    }
}

/// `2026-11-21 09:14:02.120 – 2026-11-21 09:15:32.120 UTC (1 min 30.0 s)`.
fn span_words(from: i128, to: i128) -> String {
    format!(
        "{} – {} UTC ({})",
        format_utc(from),
        format_utc(to),
        format_duration((to - from) as f64 / 1e9)
    )
}

fn role_colour(role: &str) -> &'static str {
    match role {
        "camera" => "#2563eb",
        "screen" => "#0f766e",
        "cti_audio" => "#7c3aed",
        "mic_reference" => "#c2410c",
        _ => "#6b7280",
    }
}

/// A file name cut to [`FILE_CHARS`] characters in the middle: both ends say something
/// (`session 5b…4b18/camera`).
fn shorten(file: &str) -> String {
    let chars: Vec<char> = file.chars().collect();
    if chars.len() <= FILE_CHARS {
        return file.to_owned();
    }
    let tail = FILE_CHARS / 2;
    let head = FILE_CHARS - tail - 1;
    let head: String = chars[..head].iter().collect();
    let tail: String = chars[chars.len() - tail..].iter().collect();
    format!("{head}…{tail}")
}

/// A coordinate with one decimal (fixed, so the output is the same bytes every time).
fn num(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    // `-0.0` would print as `-0.0`.
    format!("{:.1}", v + 0.0)
}

/// Text made safe for XML content and attribute values: markup escaped, and characters XML
/// cannot carry (controls, U+FFFE, U+FFFF) replaced by U+FFFD.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The SVG's body as it is drawn.
#[derive(Default)]
struct Svg {
    body: String,
}

impl Svg {
    fn defs(&mut self) {
        let _ = writeln!(
            self.body,
            r##"<defs><pattern id="{GAP_PATTERN}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="6" stroke="{GAP_INK}" stroke-width="2.5"/></pattern></defs>"##
        );
    }

    fn open_group(&mut self, class: &str, role: &str) {
        let _ = writeln!(
            self.body,
            r#"<g class="{class}" data-role="{}">"#,
            escape(role)
        );
    }

    fn close_group(&mut self) {
        self.body.push_str("</g>\n");
    }

    /// A `<title>` for the element it is in: shown on hover, read by screen readers.
    fn tooltip(&mut self, words: &str) {
        let _ = writeln!(self.body, "<title>{}</title>", escape(words));
    }

    /// A rectangle `(x, y, width, height)`; `attributes` are the caller's, never data.
    fn rect(
        &mut self,
        class: &str,
        (x, y, w, h): (f64, f64, f64, f64),
        attributes: &str,
        tip: Option<&str>,
    ) {
        let _ = write!(
            self.body,
            r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}" {attributes}"#,
            num(x),
            num(y),
            num(w),
            num(h)
        );
        match tip {
            Some(tip) => {
                let _ = writeln!(self.body, "><title>{}</title></rect>", escape(tip));
            }
            None => self.body.push_str("/>\n"),
        }
    }

    fn line(&mut self, class: &str, x: f64, y1: f64, y2: f64) {
        let _ = writeln!(
            self.body,
            r#"<line class="{class}" x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="{INK}" stroke-width="1.5"/>"#,
            num(x),
            num(y1),
            num(y2)
        );
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, font: &Font, words: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{}" y="{}" text-anchor="{anchor}" font-size="{}" font-weight="{}" fill="{}">{}</text>"#,
            num(x),
            num(y),
            num(font.size),
            font.weight,
            font.fill,
            escape(words)
        );
    }

    fn finish(self, height: f64, title: &str) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {} {}\" \
             role=\"img\" font-family=\"system-ui, sans-serif\">\n<title>{}</title>\n{}</svg>\n",
            num(WIDTH),
            num(height),
            escape(title),
            self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GAPS: &str = include_str!("../../tests/fixtures/manifest_gaps.json");
    const MIC: &str = include_str!("../../tests/fixtures/manifest_mic_reference.json");
    const VIDEO_ONLY: &str = include_str!("../../tests/fixtures/manifest_video_only.json");

    fn manifest(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    fn with_class<'a>(doc: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .collect()
    }

    fn attr(node: &roxmltree::Node, name: &str) -> f64 {
        node.attribute(name).unwrap().parse().unwrap()
    }

    /// Where `seconds` after `from` falls on an axis `length` seconds long.
    fn x_at(seconds: f64, length: f64) -> f64 {
        PLOT_LEFT + seconds / length * (PLOT_RIGHT - PLOT_LEFT)
    }

    #[test]
    fn one_lane_per_input_with_the_cut_where_the_manifest_puts_it() {
        let svg = timeline_svg(&manifest(GAPS));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("role"), Some("img"));
        assert_eq!(root.attribute("viewBox"), Some("0 0 960.0 248.0"));
        assert!(root.first_element_child().unwrap().has_tag_name("title"));
        let roles: Vec<_> = with_class(&doc, "lane")
            .iter()
            .map(|l| l.attribute("data-role").unwrap())
            .collect();
        assert_eq!(roles, ["camera", "screen", "cti_audio"]);
        // The axis runs from the call's start (09:13:59.120) to the camera's end
        // (09:15:32.120): 93 s; in at 11 s, out at 86.5 s.
        let cut_in = &with_class(&doc, "cut-in")[0];
        let cut_out = &with_class(&doc, "cut-out")[0];
        assert!(
            (attr(cut_in, "x1") - x_at(11.0, 93.0)).abs() <= 0.05,
            "{svg}"
        );
        assert!(
            (attr(cut_out, "x1") - x_at(86.5, 93.0)).abs() <= 0.05,
            "{svg}"
        );
        let labels: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        assert!(
            labels.contains(&"in") && labels.contains(&"out"),
            "{labels:?}"
        );
        // Both sides of the cut are shaded: from the axis' start to in, from out to its end.
        let excluded = with_class(&doc, "excluded");
        assert_eq!(excluded.len(), 2);
        assert_eq!(attr(&excluded[0], "x"), PLOT_LEFT);
        assert!((attr(&excluded[0], "width") - (x_at(11.0, 93.0) - PLOT_LEFT)).abs() <= 0.1);
        // A gap in each lane, the camera's over 09:14:22.120 + 3.5 s.
        let gaps = with_class(&doc, "gap");
        assert_eq!(gaps.len(), 3);
        let camera_gap = &gaps[0];
        assert_eq!(
            camera_gap.parent().unwrap().attribute("data-role"),
            Some("camera")
        );
        assert!((attr(camera_gap, "x") - x_at(23.0, 93.0)).abs() <= 0.05);
        assert!((attr(camera_gap, "width") - 3.5 / 93.0 * (PLOT_RIGHT - PLOT_LEFT)).abs() <= 0.1);
    }

    #[test]
    fn the_axis_counts_from_the_in_point_and_the_caption_gives_the_clock() {
        let svg = timeline_svg(&manifest(GAPS));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let axis = &with_class(&doc, "axis")[0];
        let ticks: Vec<_> = axis
            .children()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        // 93 s over about 8 ticks: every 15 s from in, which is 11 s into the axis.
        assert_eq!(
            ticks,
            [
                "time from the in point",
                "0:00",
                "0:15",
                "0:30",
                "0:45",
                "1:00",
                "1:15"
            ]
        );
        assert!(svg.contains("CTI offset -3000.0 ms · drift +120.0 ppm · no microphone reference"));
        assert!(svg.contains("In 2026-11-21 09:14:10.120 – out 2026-11-21 09:15:25.620 UTC"));
    }

    #[test]
    fn a_corrected_call_is_drawn_where_it_was_muxed_with_the_call_record_dashed() {
        let svg = timeline_svg(&manifest(MIC));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let cti = with_class(&doc, "lane")
            .into_iter()
            .find(|l| l.attribute("data-role") == Some("cti_audio"))
            .unwrap();
        let span = cti
            .children()
            .find(|n| n.attribute("class") == Some("span"))
            .unwrap();
        let record = cti
            .children()
            .find(|n| n.attribute("class") == Some("call-record"))
            .unwrap();
        // The axis: the call as muxed (09:31:38.500) to the camera's end (09:33:10.000).
        assert_eq!(attr(&span, "x"), PLOT_LEFT);
        assert!(
            (attr(&record, "x") - x_at(0.73, 91.5)).abs() <= 0.05,
            "{svg}"
        );
        assert!(svg.contains("confidence 98 % (high)"));
        assert_eq!(with_class(&doc, "lane").len(), 3);
    }

    #[test]
    fn a_video_only_recording_has_video_lanes_and_says_so() {
        let svg = timeline_svg(&manifest(VIDEO_ONLY));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(with_class(&doc, "lane").len(), 2);
        assert!(svg.contains("Video only: no call recording · agent clock ±19.2 ms"));
        // A long name keeps both ends beside the lane, and is whole in the lane's tooltip.
        let camera = &with_class(&doc, "lane")[0];
        let texts: Vec<_> = camera
            .children()
            .filter(roxmltree::Node::is_element)
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(
            texts[..3],
            [
                "Camera: session 5b0e7c1a-93d4-4f2e-8a61-0c2f9d7e4b18/camera",
                "Camera",
                "session 5b…4b18/camera"
            ]
        );
        // In and out are the screen's start and end: nothing of the screen is excluded.
        let screen = &with_class(&doc, "span")[1];
        let cut_in = &with_class(&doc, "cut-in")[0];
        assert_eq!(attr(screen, "x"), attr(cut_in, "x1"));
    }

    #[test]
    fn strings_from_the_manifest_are_escaped() {
        let hostile = "<script>alert(\"x\")</script> & 'q' \u{1}";
        let mut m = manifest(GAPS);
        m["inputs"][0]["file"] = json!(hostile);
        m["inputs"][1]["role"] = json!(hostile);
        m["gaps"][0]["filled_with"] = json!(hostile);
        let svg = timeline_svg(&m);
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains('\u{1}'));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
        let lanes = with_class(&doc, "lane");
        let clean = hostile.replace('\u{1}', "\u{fffd}");
        assert_eq!(lanes[1].attribute("data-role"), Some(clean.as_str()));
        let tooltips: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text())
            .collect();
        assert!(
            tooltips.contains(&format!("Camera: {clean}").as_str()),
            "{tooltips:?}"
        );
        assert!(
            tooltips
                .iter()
                .any(|t| t.ends_with(&format!("filled with {clean}")))
        );
    }

    #[test]
    fn the_same_manifest_gives_the_same_bytes() {
        let m = manifest(MIC);
        assert_eq!(timeline_svg(&m), timeline_svg(&m));
        assert_eq!(timeline_svg(&m), timeline_svg(&manifest(MIC)));
    }

    #[test]
    fn no_style_attribute_no_script_no_outside_reference() {
        for json in [GAPS, MIC, VIDEO_ONLY] {
            let svg = timeline_svg(&manifest(json));
            let doc = roxmltree::Document::parse(&svg).unwrap();
            for node in doc.descendants().filter(roxmltree::Node::is_element) {
                assert!(node.attribute("style").is_none());
                assert!(!node.has_tag_name("script") && !node.has_tag_name("image"));
                for a in node.attributes() {
                    assert!(!a.value().contains("http") || a.name() == "xmlns", "{a:?}");
                }
            }
        }
    }

    /// Every field of a real manifest replaced in turn by something it should not be.
    #[test]
    fn odd_values_anywhere_still_give_a_well_formed_picture_and_view() {
        let odd = [
            json!(null),
            json!("not a time <&>"),
            json!(-1),
            json!(1e300),
            json!([]),
            json!({}),
            json!("0001-01-01T00:00:00Z"),
            json!("9999-12-31T23:59:59.999999999Z"),
        ];
        for fixture in [GAPS, MIC, VIDEO_ONLY] {
            let m = manifest(fixture);
            for path in leaves(&m, String::new()) {
                for value in &odd {
                    let mut changed = m.clone();
                    *changed.pointer_mut(&path).unwrap() = value.clone();
                    let svg = timeline_svg(&changed);
                    roxmltree::Document::parse(&svg)
                        .unwrap_or_else(|e| panic!("{path} = {value}: {e}\n{svg}"));
                    let view =
                        crate::recordings::manifest_view::ManifestView::from_manifest(&changed);
                    assert!(view.section("Recording").is_some());
                }
            }
        }
        for other in [json!(null), json!(3), json!({"inputs": [1, {"role": []}]})] {
            let svg = timeline_svg(&other);
            let doc = roxmltree::Document::parse(&svg).unwrap();
            assert!(svg.contains("No timeline: the manifest gives no usable times."));
            assert_eq!(
                with_class(&doc, "lane").len(),
                other["inputs"].as_array().map_or(0, Vec::len)
            );
        }
    }

    /// JSON pointers to every scalar in `v`.
    fn leaves(v: &Value, at: String) -> Vec<String> {
        match v {
            Value::Object(map) => map
                .iter()
                .flat_map(|(k, v)| leaves(v, format!("{at}/{k}")))
                .collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .flat_map(|(i, v)| leaves(v, format!("{at}/{i}")))
                .collect(),
            _ => vec![at],
        }
    }

    #[test]
    fn relative_times_read_like_a_player() {
        assert_eq!(clock_text(0), "0:00");
        assert_eq!(clock_text(90 * NS_PER_S), "1:30");
        assert_eq!(clock_text(-5 * NS_PER_S), "-0:05");
        assert_eq!(clock_text(3723 * NS_PER_S), "1:02:03");
    }
}
