//! Captures a test binary's log records (info and up), so a test can wait
//! for what a server logged (a refusal, an accept failure, a connection
//! ended by bad input) instead of sleeping. The one log capture of the
//! workspace: the core's tests and the backends' conformance suite use it.
//!
//! The first call of any function here installs the capture as the
//! binary's logger (a binary has at most one). Every record is kept with
//! the thread that logged it, so a test among parallel ones can count what
//! one server thread logged ([`wait_on_thread`]).

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

struct Capture {
    lines: Mutex<Vec<(ThreadId, String)>>,
    cond: Condvar,
    echo: bool,
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, Vec<(ThreadId, String)>> {
        // A test that panicked while holding the lock poisons nothing here.
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `found` finds something in the lines; panics after
    /// `patience`, naming `what` and showing every line.
    fn wait<T>(
        &self,
        what: &str,
        patience: Duration,
        found: impl Fn(&[(ThreadId, String)]) -> Option<T>,
    ) -> T {
        let give_up = Instant::now() + patience;
        let mut lines = self.lock();
        loop {
            if let Some(t) = found(&lines) {
                return t;
            }
            let now = Instant::now();
            assert!(
                now < give_up,
                "timed out ({patience:?}) waiting for {what}; the log holds {:#?}",
                *lines
            );
            lines = self.cond.wait_timeout(lines, give_up - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {}", record.level(), record.args());
        if self.echo {
            // A child process reports to its parent through stdout.
            println!("LOG {line}");
        }
        self.lock().push((thread::current().id(), line));
        self.cond.notify_all();
    }

    fn flush(&self) {}
}

fn capture(echo: bool) -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture =
            Box::leak(Box::new(Capture { lines: Mutex::new(Vec::new()), cond: Condvar::new(), echo }));
        log::set_logger(c).expect("the log capture is the only logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
        c
    })
}

/// Starts capturing (idempotent): call it before what the test waits for
/// is logged.
pub fn install() {
    capture(false);
}

/// Starts capturing and echoes every record to stdout as `LOG <level>
/// <message>`, for a child process whose parent follows its output. Only
/// the first call of this module's functions in a binary decides whether
/// records are echoed.
pub fn install_echo() {
    capture(true);
}

/// Waits until a line (of any thread) contains every one of `needles`;
/// returns it. Panics after `patience`.
pub fn wait_for(needles: &[&str], patience: Duration) -> String {
    let has_all = |l: &String| needles.iter().all(|n| l.contains(n));
    capture(false).wait(&format!("a line with {needles:?}"), patience, |lines| {
        lines.iter().map(|(_, l)| l).find(|l| has_all(l)).cloned()
    })
}

/// True when a line captured so far contains every one of `needles`. For
/// records logged synchronously by the calling thread (no waiting).
pub fn logged(needles: &[&str]) -> bool {
    capture(false).lock().iter().any(|(_, l)| needles.iter().all(|n| l.contains(n)))
}

/// Waits until the lines `thread` logged satisfy `done`; returns them.
/// Panics after `patience`, naming `what`.
pub fn wait_on_thread(
    thread: ThreadId,
    what: &str,
    patience: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    capture(false).wait(what, patience, |lines| {
        let mine: Vec<String> = lines.iter().filter(|(t, _)| *t == thread).map(|(_, l)| l.clone()).collect();
        done(&mine).then_some(mine)
    })
}
