//! Progress bars: shown only on a terminal and only for work big enough to wait for.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish before a bar would be worth drawing.
const MIN_BYTES: u64 = 4 * 1024 * 1024;

/// A byte-count bar on stderr when stdout is a terminal and `total` is large; hidden otherwise.
pub fn bytes(total: u64, verb: &str) -> ProgressBar {
    if total < MIN_BYTES || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>9} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(verb.to_owned());
    bar
}

/// A fraction-done bar (0..=1000 per mille) on stderr when stdout is a terminal.
pub fn fraction(verb: &str) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:32}] {percent:>3}% eta {eta}")
            .expect("static template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(verb.to_owned());
    bar
}
