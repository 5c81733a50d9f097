//! Remote control, with the customer in charge: the operator's input events are injected only
//! while the customer is idle, and the customer's own input takes control back at once — the
//! operator's events are then dropped, and the operator is told — until the customer has left
//! the mouse and keyboard alone for [`HOLD`].
//!
//! Whose input is whose: after each injection the [`Controller`] notes what the display looks
//! like (pointer position, buttons, keys down). It looks again every [`POLL`]; anything
//! different that it did not inject is the customer's. This works on any X server (Xvfb
//! included, where every input device is virtual) and catches a customer's move within one
//! poll. The injection itself goes through the [`Injector`] trait; [`X11Injector`] uses the
//! XTest extension.
//!
//! Looking, injecting and noting the result is one step the display does for nobody else in
//! between ([`Injector::exclusive`]; a server grab on X, held for three round trips): a
//! customer's event that landed between the look and the note would otherwise be taken for
//! the operator's own, and one that landed between the look and the injection would be
//! overwritten unseen.

use std::time::{Duration, Instant};

use proto::{ControlHolder, InputEvent};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

/// How often the display is looked at for the customer's input.
pub const POLL: Duration = Duration::from_millis(5);
/// How long the customer must leave the input alone before the operator's counts again.
pub const HOLD: Duration = Duration::from_secs(2);

/// What the display's input state is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputState {
    /// Pointer position on the root window.
    pub pointer: (i16, i16),
    /// Button and modifier mask.
    pub mask: u16,
    /// Keys down (a bit per keycode).
    pub keys: [u8; 32],
}

/// Injects input and reads the display's input state.
pub trait Injector: Send {
    /// Injects one event.
    ///
    /// # Errors
    /// The display refused or went away.
    fn inject(&mut self, event: &InputEvent) -> Result<(), String>;

    /// The input state now.
    ///
    /// # Errors
    /// The display went away.
    fn state(&mut self) -> Result<InputState, String>;

    /// While `on`, the display takes input requests from this injector only (other clients'
    /// requests wait). The default does nothing, for displays where one client cannot race
    /// another.
    ///
    /// # Errors
    /// The display went away.
    fn exclusive(&mut self, on: bool) -> Result<(), String> {
        let _ = on;
        Ok(())
    }
}

/// XTest on an X display.
pub struct X11Injector {
    conn: RustConnection,
    root: xproto::Window,
    min_keycode: u8,
    keysyms_per_keycode: u8,
    keysyms: Vec<u32>,
}

impl X11Injector {
    /// Connects to `display` (`:99`; the `DISPLAY` variable when `None`).
    ///
    /// # Errors
    /// No such display, or no XTest extension.
    pub fn connect(display: Option<&str>) -> Result<Self, String> {
        let (conn, screen) = x11rb::connect(display).map_err(|e| e.to_string())?;
        let root = conn.setup().roots[screen].root;
        conn.xtest_get_version(2, 2)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| format!("no XTest extension: {e}"))?;
        let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
        let mapping = conn
            .get_keyboard_mapping(min, max - min + 1)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            conn,
            root,
            min_keycode: min,
            keysyms_per_keycode: mapping.keysyms_per_keycode,
            keysyms: mapping.keysyms,
        })
    }

    fn keycode(&self, keysym: u32) -> Option<u8> {
        let per = usize::from(self.keysyms_per_keycode.max(1));
        self.keysyms
            .iter()
            .position(|&s| s == keysym)
            .map(|i| self.min_keycode + (i / per) as u8)
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), String> {
        self.conn
            .xtest_fake_input(kind, detail, x11rb::CURRENT_TIME, self.root, x, y, 0)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Injector for X11Injector {
    fn inject(&mut self, event: &InputEvent) -> Result<(), String> {
        match *event {
            InputEvent::PointerMove { x, y } => self.fake(
                xproto::MOTION_NOTIFY_EVENT,
                0,
                i16::try_from(x).unwrap_or(i16::MAX),
                i16::try_from(y).unwrap_or(i16::MAX),
            )?,
            InputEvent::Button { button, pressed } => {
                let kind = if pressed {
                    xproto::BUTTON_PRESS_EVENT
                } else {
                    xproto::BUTTON_RELEASE_EVENT
                };
                self.fake(kind, button, 0, 0)?;
            }
            InputEvent::Key { keysym, pressed } => {
                let Some(code) = self.keycode(keysym) else {
                    return Err(format!("no key for keysym {keysym:#x}"));
                };
                let kind = if pressed {
                    xproto::KEY_PRESS_EVENT
                } else {
                    xproto::KEY_RELEASE_EVENT
                };
                self.fake(kind, code, 0, 0)?;
            }
        }
        // A round trip, so the state read next already includes this event.
        self.conn
            .get_input_focus()
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn state(&mut self) -> Result<InputState, String> {
        let pointer = self
            .conn
            .query_pointer(self.root)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        let keys = self
            .conn
            .query_keymap()
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?
            .keys;
        Ok(InputState {
            pointer: (pointer.root_x, pointer.root_y),
            mask: u16::from(pointer.mask),
            keys,
        })
    }

    fn exclusive(&mut self, on: bool) -> Result<(), String> {
        let cookie = if on {
            self.conn.grab_server()
        } else {
            self.conn.ungrab_server()
        };
        cookie.map_err(|e| e.to_string())?;
        // An ungrab must reach the server now, not with the next request seconds later.
        self.conn.flush().map_err(|e| e.to_string())
    }
}

/// A change of who has control, to tell the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Who has it now.
    pub holder: ControlHolder,
    /// When it changed (for the customer: when their input was seen).
    pub at: Instant,
}

/// Decides whose input counts.
pub struct Controller<I: Injector> {
    injector: I,
    expected: Option<InputState>,
    customer_seen: Option<Instant>,
    holder: ControlHolder,
    suppressed: u64,
    hold: Duration,
}

impl<I: Injector> Controller<I> {
    /// A controller injecting through `injector`; the operator has control until the
    /// customer's input is seen, and again after the customer was idle for [`HOLD`].
    pub fn new(injector: I) -> Self {
        Self::with_hold(injector, HOLD)
    }

    /// As [`Controller::new`], the customer's idleness counted over `hold`.
    pub fn with_hold(injector: I, hold: Duration) -> Self {
        Self {
            injector,
            expected: None,
            customer_seen: None,
            holder: ControlHolder::Operator,
            suppressed: 0,
            hold,
        }
    }

    /// Who has control now.
    pub fn holder(&self) -> ControlHolder {
        self.holder
    }

    /// Operator events dropped because the customer had control.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// The operator's events: injected if the operator has control (the customer's input is
    /// looked for first), dropped otherwise. Returns a change of control, if one was seen.
    ///
    /// # Errors
    /// The display failed.
    pub fn operator(&mut self, events: &[InputEvent]) -> Result<Option<Change>, String> {
        self.injector.exclusive(true)?;
        let result = self.look_then_inject(events);
        let released = self.injector.exclusive(false);
        let change = result?;
        released?;
        Ok(change)
    }

    fn look_then_inject(&mut self, events: &[InputEvent]) -> Result<Option<Change>, String> {
        let change = self.poll()?;
        if self.holder == ControlHolder::Customer {
            self.suppressed += events.len() as u64;
            return Ok(change);
        }
        for event in events {
            self.injector.inject(event)?;
        }
        self.expected = Some(self.injector.state()?);
        Ok(change)
    }

    /// Looks at the display: the customer's input takes control; their idleness for the
    /// hold time gives it back to the operator.
    ///
    /// # Errors
    /// The display failed.
    pub fn poll(&mut self) -> Result<Option<Change>, String> {
        let now = Instant::now();
        let state = self.injector.state()?;
        let customer_acted = self.expected.as_ref().is_some_and(|e| *e != state);
        self.expected = Some(state);
        if customer_acted {
            self.customer_seen = Some(now);
            if self.holder == ControlHolder::Operator {
                self.holder = ControlHolder::Customer;
                return Ok(Some(Change {
                    holder: ControlHolder::Customer,
                    at: now,
                }));
            }
        } else if self.holder == ControlHolder::Customer
            && self
                .customer_seen
                .is_none_or(|seen| now - seen >= self.hold)
        {
            self.holder = ControlHolder::Operator;
            return Ok(Some(Change {
                holder: ControlHolder::Operator,
                at: now,
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A display in memory: injected events move its state; `customer` moves it too.
    #[derive(Default)]
    struct Fake {
        state: (i16, i16),
    }

    impl Injector for Fake {
        fn inject(&mut self, event: &InputEvent) -> Result<(), String> {
            if let InputEvent::PointerMove { x, y } = *event {
                self.state = (x as i16, y as i16);
            }
            Ok(())
        }

        fn state(&mut self) -> Result<InputState, String> {
            Ok(InputState {
                pointer: self.state,
                mask: 0,
                keys: [0; 32],
            })
        }
    }

    #[test]
    fn the_customers_input_takes_control_and_drops_the_operators() {
        let mut control = Controller::new(Fake::default());
        let to = |x| [InputEvent::PointerMove { x, y: 10 }];
        assert_eq!(control.operator(&to(5)).unwrap(), None);
        assert_eq!(control.injector.state, (5, 10));
        control.poll().unwrap();
        // The customer moves the mouse.
        control.injector.state = (300, 200);
        let change = control.operator(&to(6)).unwrap().unwrap();
        assert_eq!(change.holder, ControlHolder::Customer);
        assert_eq!(
            control.injector.state,
            (300, 200),
            "the operator's move is dropped"
        );
        assert_eq!(control.suppressed(), 1);
        assert_eq!(control.poll().unwrap(), None, "still the customer's");
        control.customer_seen = Some(Instant::now() - HOLD);
        let back = control.poll().unwrap().unwrap();
        assert_eq!(back.holder, ControlHolder::Operator);
        control.operator(&to(7)).unwrap();
        assert_eq!(control.injector.state, (7, 10));
    }
}
