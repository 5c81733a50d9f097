//! Guessing is slowed down: after [`MAX_PER_NAME`] failed sign-ins for one name, or
//! [`MAX_PER_ADDRESS`] from one address, within [`WINDOW`], further attempts are refused
//! without looking at the password until the window has passed since the last failure. A
//! success clears the name's count. Counts live in this console process's memory (a restart
//! forgets them; several console nodes count apart).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins allowed for one name within the window.
pub const MAX_PER_NAME: u32 = 5;
/// Failed sign-ins allowed from one address within the window.
pub const MAX_PER_ADDRESS: u32 = 20;
/// How long failures count.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed sign-ins by name and by address.
#[derive(Debug, Default)]
pub struct Throttle {
    names: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

fn blocked<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Failures>>,
    key: &K,
    max: u32,
    now: Instant,
) -> bool {
    let mut map = map.lock().expect("throttle lock");
    map.retain(|_, f| now.duration_since(f.last) < WINDOW);
    map.get(key).is_some_and(|f| f.count >= max)
}

fn count<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Failures>>, key: K, now: Instant) {
    let mut map = map.lock().expect("throttle lock");
    let entry = map.entry(key).or_insert(Failures {
        count: 0,
        last: now,
    });
    entry.count += 1;
    entry.last = now;
}

impl Throttle {
    /// Whether an attempt for `name` from `source` at `now` is refused outright.
    pub fn refuses(&self, name: &str, source: IpAddr, now: Instant) -> bool {
        blocked(&self.names, &name.to_lowercase(), MAX_PER_NAME, now)
            || blocked(&self.addresses, &source, MAX_PER_ADDRESS, now)
    }

    /// Counts a failed attempt.
    pub fn failed(&self, name: &str, source: IpAddr, now: Instant) {
        count(&self.names, name.to_lowercase(), now);
        count(&self.addresses, source, now);
    }

    /// A successful sign-in clears the name's failures.
    pub fn succeeded(&self, name: &str) {
        self.names
            .lock()
            .expect("throttle lock")
            .remove(&name.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_refused_after_their_failures_until_the_window_passes() {
        let throttle = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..MAX_PER_NAME {
            assert!(!throttle.refuses("ana", a, t0));
            throttle.failed("ana", a, t0);
        }
        assert!(throttle.refuses("ana", b, t0), "the name, from anywhere");
        assert!(throttle.refuses("ANA", b, t0), "whatever the case");
        assert!(
            !throttle.refuses("bo", a, t0),
            "another name from that address"
        );
        assert!(
            !throttle.refuses("ana", a, t0 + WINDOW),
            "the window passed"
        );
        for i in 0..MAX_PER_ADDRESS {
            throttle.failed(&format!("user{i}"), b, t0);
        }
        assert!(
            throttle.refuses("someone-new", b, t0),
            "the address, for any name"
        );
        throttle.succeeded("ana");
        assert!(!throttle.refuses("ana", a, t0), "a success clears the name");
    }
}
