//! The "remote support in progress" notice: while a session runs the customer always sees
//! that it does — a status line on the terminal the agent runs in, repeated whenever what is
//! shared changes. There is no silent mode.

use std::io::Write;

use proto::Track;
use uuid::Uuid;

/// Prints the notice for the state now.
pub fn show(session: Uuid, sending: &[Track], paused: bool, hidden_regions: usize) {
    let tracks = sending
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(" and ");
    let state = if paused {
        format!("sharing PAUSED ({tracks} not sent)")
    } else {
        format!("sending {tracks}")
    };
    let hidden = match hidden_regions {
        0 => String::new(),
        1 => ", 1 screen region hidden".into(),
        n => format!(", {n} screen regions hidden"),
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "● REMOTE SUPPORT IN PROGRESS — session {session} — {state}{hidden}. \
         Commands: pause, resume, blind x,y,w,h[;…], unblind, end (or Ctrl-C)."
    );
}

/// Prints that the session is over.
pub fn ended(how: &str) {
    let _ = writeln!(std::io::stderr().lock(), "○ Remote support ended: {how}.");
}
