//! What the watermark of an exported recording says: who exported it, when, which session and
//! why — three short lines burnt into every video frame by [`super::export`], so a copy that
//! leaves the bank still names the person who took it out.
//!
//! The text is the exporter's own words (the reason) and name, so it is cleaned before it is
//! drawn: control characters become spaces, a long reason is cut, and the whole is escaped
//! for Pango, whose markup GStreamer's `textoverlay` reads (an unescaped `<` would blank the
//! watermark).

use time::OffsetDateTime;
use uuid::Uuid;

/// The most characters of the reason drawn (the full reason is in the audit log).
pub const REASON_CHARS: usize = 60;

/// Who exported which recording, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// The exporter as the audit log names them (`user:NAME`).
    pub exporter: String,
    /// When the export began (UTC).
    pub at: OffsetDateTime,
    /// The recording's session.
    pub session: Uuid,
    /// The reason the recording was opened for.
    pub reason: String,
}

impl Watermark {
    /// When, as drawn and audited: `2026-11-21 14:03 UTC`.
    #[must_use]
    pub fn when(&self) -> String {
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
        self.at.format(&f).unwrap_or_default()
    }

    /// The three lines drawn, as plain text.
    #[must_use]
    pub fn text(&self) -> String {
        format!(
            "Exported by {} · {}\nsession {}\nreason: {}",
            clean(&self.exporter, 80),
            self.when(),
            self.session,
            clean(&self.reason, REASON_CHARS),
        )
    }

    /// [`Self::text`] escaped for Pango markup (what `textoverlay`'s `text` property takes).
    #[must_use]
    pub fn markup(&self) -> String {
        escape_markup(&self.text())
    }
}

/// `text` on one line (control characters as spaces, runs of spaces as one), at most `max`
/// characters, a cut one ending in `…`.
fn clean(text: &str, max: usize) -> String {
    let joined = text
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Escapes the characters Pango markup gives a meaning.
fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(reason: &str) -> Watermark {
        Watermark {
            exporter: "user:carla".into(),
            at: time::macros::datetime!(2026-11-21 14:03:59 UTC),
            session: Uuid::nil(),
            reason: reason.into(),
        }
    }

    #[test]
    fn it_names_who_when_which_and_why() {
        assert_eq!(
            mark("customer complaint 2026-114").text(),
            "Exported by user:carla · 2026-11-21 14:03 UTC\n\
             session 00000000-0000-0000-0000-000000000000\n\
             reason: customer complaint 2026-114"
        );
    }

    #[test]
    fn a_long_or_multiline_reason_is_cut_to_one_line() {
        let text = mark(&format!("line one\r\nline\ttwo {}", "x".repeat(200))).text();
        let reason = text.lines().nth(2).unwrap();
        assert!(
            reason.starts_with("reason: line one line two xxx"),
            "{reason}"
        );
        assert!(reason.ends_with('…'));
        assert_eq!(reason.chars().count(), "reason: ".len() + REASON_CHARS);
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn markup_is_escaped() {
        let m = mark("<b>bold</b> & 'quoted' \"twice\"").markup();
        assert!(
            m.ends_with("reason: &lt;b&gt;bold&lt;/b&gt; &amp; &#39;quoted&#39; &quot;twice&quot;"),
            "{m}"
        );
    }
}
