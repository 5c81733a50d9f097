//! Handing the heap's free pages back to the operating system while the server runs.
//!
//! Every frame an agent sends lands in a buffer of its own size (a few hundred bytes to a
//! 15 KB keyframe), allocated on one runtime thread and freed on whichever thread drops the
//! frame last. glibc's allocator keeps those freed pages in its arenas rather than returning
//! them, so a loaded node's resident size creeps towards the high-water mark of every arena
//! and stays there. `malloc_trim(0)` walks the arenas and gives their free pages back
//! (`madvise`), without moving anything still in use. Once a second, on a blocking thread:
//! at 1,000 agents it costs ~0.5 % of a core and holds ~7 KiB less per agent under load
//! (`benches/README.md`).

use std::time::Duration;

/// Trims the heap every `every` until the returned task is aborted; `None` where the C
/// library has no `malloc_trim` (anything but glibc), or for a zero interval.
#[must_use]
pub fn spawn_trimmer(every: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if every.is_zero() || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // It locks each arena in turn: never on a runtime thread.
            if tokio::task::spawn_blocking(trim).await.is_err() {
                return;
            }
        }
    }))
}

/// Returns the heap's free pages to the OS; whether glibc released any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: `malloc_trim` takes a padding size, has no preconditions and only releases
    // pages no allocation uses; glibc serialises it with every other allocator call.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// Nothing to do off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trimming_gives_freed_pages_back() {
        // Many mid-sized buffers, every other one freed: holes glibc keeps unless trimmed.
        let mut buffers: Vec<Vec<u8>> = (0..20_000)
            .map(|i| std::hint::black_box(vec![i as u8 | 1; 8 * 1024]))
            .collect();
        for buffer in buffers.iter_mut().skip(1).step_by(2) {
            *buffer = Vec::new();
        }
        let kept = buffers;
        let before = resident_kib();
        assert!(trim(), "glibc found nothing to give back");
        let after = resident_kib();
        assert!(
            after + 16 * 1024 < before,
            "resident {before} KiB before the trim, {after} KiB after"
        );
        drop(kept);
    }

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn no_trimmer_for_a_zero_interval() {
        assert!(spawn_trimmer(Duration::ZERO).is_none());
        let Some(task) = spawn_trimmer(Duration::from_millis(1)) else {
            return; // not glibc
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!task.is_finished());
        task.abort();
    }
}
