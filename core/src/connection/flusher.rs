//! The flusher: writes coalesced output ([`Config::coalesce`]) that is
//! still held when its time is up, because the thread that made it went
//! on with work of its own (a slow method, a computation between calls).
//!
//! One thread for the process, started on first use, asleep while nothing
//! is held. Output normally leaves before: its thread writes it when it
//! waits, ends its serving pass, or holds 64 KiB.
//!
//! [`Config::coalesce`]: crate::Config::coalesce

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread;
use std::time::Instant;

use super::Shared;

struct Flusher {
    /// When each connection's held output must be written, soonest first.
    due: Mutex<VecDeque<(Instant, Weak<Shared>)>>,
    bell: Condvar,
}

/// The flusher, started on first use; `None` when no thread could be
/// started (then nothing is held: see [`schedule`]).
fn flusher() -> Option<&'static Flusher> {
    static FLUSHER: OnceLock<Option<&'static Flusher>> = OnceLock::new();
    *FLUSHER.get_or_init(|| {
        let flusher: &'static Flusher =
            Box::leak(Box::new(Flusher { due: Mutex::new(VecDeque::new()), bell: Condvar::new() }));
        let started = thread::Builder::new().name("netref-flusher".into()).spawn(move || run(flusher));
        match started {
            Ok(_) => Some(flusher),
            Err(e) => {
                log::warn!("netref: no flusher thread ({e}); messages leave as soon as they are made");
                None
            }
        }
    })
}

/// Has `shared`'s held output written at `at` if it is still held then.
/// False when there is no flusher: write it now instead.
pub(super) fn schedule(shared: &Arc<Shared>, at: Instant) -> bool {
    let Some(flusher) = flusher() else { return false };
    let mut due = flusher.due.lock().unwrap_or_else(|e| e.into_inner());
    // Asleep without a deadline, or until a later one: wake it.
    let wake = due.front().is_none_or(|&(first, _)| at < first);
    let place = due.iter().rposition(|&(t, _)| t <= at).map_or(0, |i| i + 1);
    due.insert(place, (at, Arc::downgrade(shared)));
    drop(due);
    if wake {
        flusher.bell.notify_one();
    }
    true
}

fn run(flusher: &'static Flusher) {
    // Deadlines tens of microseconds apart: the kernel's default 50 µs of
    // timer slack would double them.
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only
    // this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
    let mut due = flusher.due.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let Some(&(at, _)) = due.front() else {
            due = flusher.bell.wait(due).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = Instant::now();
        if at > now {
            due = flusher.bell.wait_timeout(due, at - now).unwrap_or_else(|e| e.into_inner()).0;
            continue;
        }
        let (_, shared) = due.pop_front().expect("a front entry");
        drop(due);
        if let Some(shared) = shared.upgrade() {
            shared.write_held_late();
        }
        due = flusher.due.lock().unwrap_or_else(|e| e.into_inner());
    }
}
