//! An index of many connections' deadlines, for single-threaded servers.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Connections' deadlines by time, earliest first, keyed by the server's
/// own connection key: the loop's timeout is [`first`](Self::first) and the
/// connections due are [`due`](Self::due), without going through every
/// connection on every turn.
///
/// The server records a connection's deadline each time it drives it (the
/// [`Step`](crate::Step)'s `next_deadline`).
/// That is complete when every change that makes a deadline *earlier* also
/// wakes the loop for that connection, which an attached connection does
/// (a request with an expiry and `set_expiry` call its waker).
///
/// ```
/// use std::time::{Duration, Instant};
/// use netref::DeadlineIndex;
///
/// let now = Instant::now();
/// let mut index = DeadlineIndex::default();
/// index.set(1, Some(now + Duration::from_secs(5)));
/// index.set(2, Some(now));
/// assert_eq!(index.first(), Some(now));
/// assert_eq!(index.due(now), [2]);
/// index.set(2, None); // no deadline any more, or gone
/// assert_eq!(index.first(), Some(now + Duration::from_secs(5)));
/// ```
#[derive(Debug, Default)]
pub struct DeadlineIndex {
    by_time: BTreeSet<(Instant, usize)>,
    of: HashMap<usize, Instant>,
}

impl DeadlineIndex {
    /// Records connection `key`'s deadline (`None`: it has none, or is gone).
    pub fn set(&mut self, key: usize, deadline: Option<Instant>) {
        let old = match deadline {
            Some(t) => self.of.insert(key, t),
            None => self.of.remove(&key),
        };
        if old != deadline {
            if let Some(t) = old {
                self.by_time.remove(&(t, key));
            }
            if let Some(t) = deadline {
                self.by_time.insert((t, key));
            }
        }
    }

    /// The earliest deadline.
    pub fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|&(t, _)| t)
    }

    /// The connections whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: Instant) -> Vec<usize> {
        self.by_time.iter().take_while(|&&(t, _)| t <= now).map(|&(_, k)| k).collect()
    }

    /// Forgets every connection.
    pub fn clear(&mut self) {
        self.by_time.clear();
        self.of.clear();
    }
}
