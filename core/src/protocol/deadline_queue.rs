//! The requests' deadlines, earliest first, at O(1) a request for the
//! common case: every request carries the connection's one timeout, so
//! deadlines arrive in time order and leave by reply in any order.
//!
//! Deadlines set in time order queue in `fifo`, and an answered request's
//! entry is not searched for: it goes stale and is dropped when it reaches
//! the front (an entry is live while its request is pending with that very
//! deadline). The rare deadline earlier than the last queued one goes to a
//! `tree`, removed by key. A `BTreeSet` for everything cost 20,000 expiring
//! calls in flight 15% of their throughput (its searches, with `Instant`
//! comparisons, in `send_request` and in every reply).

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

#[derive(Debug, Default)]
pub(super) struct DeadlineQueue {
    /// In time order; the front is live (or the queue empty).
    fifo: VecDeque<(Instant, u64)>,
    /// Deadlines earlier than the back of `fifo` when they were set.
    tree: BTreeSet<(Instant, u64)>,
}

impl DeadlineQueue {
    /// Adds request `seq`'s deadline `t`. `live` tells whether an entry's
    /// request still waits with that deadline; `pending` is how many
    /// requests do (a bound on the live entries).
    pub(super) fn insert(
        &mut self,
        t: Instant,
        seq: u64,
        pending: usize,
        live: impl Fn(Instant, u64) -> bool,
    ) {
        match self.fifo.back() {
            Some(&(last, _)) if t < last => {
                self.tree.insert((t, seq));
            }
            _ => self.fifo.push_back((t, seq)),
        }
        // Stale entries behind a live front (a request that waits long
        // while later ones are answered) are compacted away once they
        // outnumber the live ones: amortised O(1) an entry.
        if self.fifo.len() > 2 * pending + 1024 {
            self.fifo.retain(|&(t, s)| live(t, s));
        }
    }

    /// Takes request `seq`'s deadline `t` out (its request was answered,
    /// expired or given another deadline, so `live` no longer holds for
    /// it); returns how many entries it looked at.
    pub(super) fn remove(&mut self, t: Instant, seq: u64, live: impl Fn(Instant, u64) -> bool) -> u64 {
        if self.tree.remove(&(t, seq)) {
            return 1;
        }
        self.settle(live)
    }

    /// Drops stale entries from the front; returns how many.
    fn settle(&mut self, live: impl Fn(Instant, u64) -> bool) -> u64 {
        let mut dropped = 0;
        while let Some(&(t, s)) = self.fifo.front() {
            if live(t, s) {
                break;
            }
            self.fifo.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// The earliest deadline and its request.
    pub(super) fn first(&self) -> Option<(Instant, u64)> {
        match (self.fifo.front(), self.tree.first()) {
            (Some(&a), Some(&b)) => Some(a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// Takes the earliest deadline out if it is at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant, live: impl Fn(Instant, u64) -> bool) -> Option<u64> {
        let (t, seq) = self.first().filter(|&(t, _)| t <= now)?;
        if !self.tree.remove(&(t, seq)) {
            self.fifo.pop_front();
        }
        // The caller takes `seq` out of the pending table right after:
        // until then it still counts as live, so skip it by name.
        self.settle(|t, s| s == seq || live(t, s));
        Some(seq)
    }

    /// Forgets every deadline.
    pub(super) fn clear(&mut self) {
        self.fifo.clear();
        self.tree.clear();
    }

    /// True when no deadline is held (stale ones included).
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.tree.is_empty()
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.fifo.len() + self.tree.len()
    }
}
