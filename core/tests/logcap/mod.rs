//! Captures this test process's log records so tests can wait for what a
//! server logged (a refusal, an accept failure) instead of sleeping.
#![allow(dead_code)]

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Capture {
    lines: Mutex<Vec<String>>,
    cond: Condvar,
    echo: bool,
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
        self.lines.lock().unwrap().push(line);
        self.cond.notify_all();
    }

    fn flush(&self) {}
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

fn capture(echo: bool) -> &'static Capture {
    CAPTURE.get_or_init(|| {
        let c: &'static Capture =
            Box::leak(Box::new(Capture { lines: Mutex::new(Vec::new()), cond: Condvar::new(), echo }));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
        c
    })
}

/// Starts capturing (idempotent).
pub(crate) fn install() {
    capture(false);
}

/// Starts capturing and echoes every record to stdout as `LOG <level> <msg>`.
pub(crate) fn install_echo() {
    capture(true);
}

/// Waits until a captured line contains every one of `needles`; returns it.
/// Panics after `patience`.
pub(crate) fn wait_for(needles: &[&str], patience: Duration) -> String {
    let c = capture(false);
    let give_up = Instant::now() + patience;
    let mut lines = c.lines.lock().unwrap();
    loop {
        if let Some(l) = lines.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.clone();
        }
        let now = Instant::now();
        assert!(now < give_up, "no log line with {needles:?} within {patience:?}; got {:#?}", *lines);
        lines = c.cond.wait_timeout(lines, give_up - now).unwrap().0;
    }
}

/// True when a line captured so far contains every one of `needles`. For
/// records logged synchronously by the calling thread (no waiting).
pub(crate) fn logged(needles: &[&str]) -> bool {
    capture(false).lines.lock().unwrap().iter().any(|l| needles.iter().all(|n| l.contains(n)))
}
