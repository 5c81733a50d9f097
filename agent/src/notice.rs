//! The "remote support in progress" notice: while a session runs the customer always sees
//! that it does — a status line on the terminal the agent runs in, repeated whenever what is
//! shared changes, and, when the screen shared is an X display, a red banner across its top
//! that stays above every window ([`Banner`]). There is no silent mode.

use std::io::Write;

use proto::Track;
use uuid::Uuid;

/// Prints the notice for the state now.
pub fn show(session: Uuid, sending: &[Track], paused: bool, hidden_regions: usize) {
    let tracks = sending
        .iter()
        .map(|&t| what_is_sent(t))
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
         Commands: pause, resume, blind x,y,w,h[;…], unblind, say TEXT, end (or Ctrl-C)."
    );
}

/// Shows a chat message from an operator. Control characters were refused by the server,
/// but the terminal is the customer's: anything that is not printable is shown escaped.
pub fn chat(from: &str, text: &str) {
    let printable = |s: &str| -> String {
        s.chars()
            .flat_map(|c| {
                if c.is_control() && c != '\n' {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    };
    let _ = writeln!(
        std::io::stderr().lock(),
        "✉ {} (bank): {}",
        printable(from),
        printable(text)
    );
}

/// A track as the customer knows it.
fn what_is_sent(track: Track) -> &'static str {
    match track {
        // Said plainly: the customer is told the microphone is on, and what for.
        Track::MicReference => "microphone (timing reference)",
        other => other.name(),
    }
}

/// Prints that the session is over.
pub fn ended(how: &str) {
    let _ = writeln!(std::io::stderr().lock(), "○ Remote support ended: {how}.");
}

/// The notice on an X display: a red strip across the top of the screen, above every other
/// window (override-redirect, raised again every second), saying that remote support is in
/// progress. It is shown for as long as the value lives.
pub struct Banner {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The window's name, so it can be found (tests, accessibility tools).
pub const BANNER_NAME: &str = "idv: remote support in progress";

impl Banner {
    /// Shows the banner on `display` (`DISPLAY` when `None`).
    ///
    /// # Errors
    /// The display cannot be opened.
    pub fn show(display: Option<&str>, text: String) -> Result<Self, String> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::{
            AtomEnum, ConfigureWindowAux, ConnectionExt as _, CreateGCAux, CreateWindowAux,
            PropMode, StackMode, WindowClass,
        };
        use x11rb::wrapper::ConnectionExt as _;

        let (conn, screen_num) = x11rb::connect(display).map_err(|e| e.to_string())?;
        let screen = conn.setup().roots[screen_num].clone();
        let window = conn.generate_id().map_err(|e| e.to_string())?;
        let height = 22u16;
        let red = 0x00B0_1010;
        conn.create_window(
            screen.root_depth,
            window,
            screen.root,
            0,
            0,
            screen.width_in_pixels,
            height,
            0,
            WindowClass::INPUT_OUTPUT,
            screen.root_visual,
            &CreateWindowAux::new()
                .background_pixel(red)
                .override_redirect(1)
                .event_mask(x11rb::protocol::xproto::EventMask::EXPOSURE),
        )
        .map_err(|e| e.to_string())?;
        conn.change_property8(
            PropMode::REPLACE,
            window,
            AtomEnum::WM_NAME,
            AtomEnum::STRING,
            BANNER_NAME.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let font = conn.generate_id().map_err(|e| e.to_string())?;
        conn.open_font(font, b"fixed").map_err(|e| e.to_string())?;
        let gc = conn.generate_id().map_err(|e| e.to_string())?;
        conn.create_gc(
            gc,
            window,
            &CreateGCAux::new()
                .foreground(screen.white_pixel)
                .background(red)
                .font(font),
        )
        .map_err(|e| e.to_string())?;
        conn.map_window(window).map_err(|e| e.to_string())?;
        conn.flush().map_err(|e| e.to_string())?;

        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        let thread = std::thread::spawn(move || {
            let line: Vec<u8> = text.bytes().filter(u8::is_ascii).take(255).collect();
            while !running.load(Ordering::SeqCst) {
                let _ = conn.configure_window(
                    window,
                    &ConfigureWindowAux::new().stack_mode(StackMode::ABOVE),
                );
                let _ = conn.image_text8(window, gc, 8, 15, &line);
                let _ = conn.flush();
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            let _ = conn.destroy_window(window);
            let _ = conn.flush();
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Banner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
