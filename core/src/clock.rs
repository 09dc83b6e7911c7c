//! Where a connection reads the time: the system clock, or a virtual one for
//! deterministic tests.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to. Timeouts on a connection using it
/// pass in no real time.
#[derive(Debug)]
pub struct VirtualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock { base: Instant::now(), offset: Mutex::new(Duration::ZERO) }
    }
}

impl VirtualClock {
    /// A clock standing at an arbitrary instant.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    /// Time elapsed on this clock since it was made.
    pub fn elapsed(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
}
