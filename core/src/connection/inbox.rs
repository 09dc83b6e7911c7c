//! The peer's requests waiting to run, in the order they came, with a
//! cancel that costs O(1) however many wait.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxBuildHasher;

use crate::protocol::Request;

/// The peer's requests waiting to run.
///
/// A cancel does not look for its request in the queue (a peer sending k
/// requests and k cancels in one read made that O(k²)): it marks the
/// sequence number, and the cancelled entry is skipped when it reaches the
/// front. A peer that reuses a sequence number while a request of it waits
/// gets the first one cancelled, as a scan from the front would.
#[derive(Default)]
pub(super) struct Inbox {
    queue: VecDeque<(u64, Request)>,
    /// Entries in `queue` not cancelled, by sequence number (several when
    /// the peer reused one).
    waiting: HashMap<u64, u32, FxBuildHasher>,
    /// Entries in `queue` cancelled, skipped when they reach the front.
    cancelled: HashMap<u64, u32, FxBuildHasher>,
    /// Entries in `queue` not cancelled.
    live: usize,
}

impl Inbox {
    /// Queues the peer's request `seq`.
    pub(super) fn push(&mut self, seq: u64, request: Request) {
        self.queue.push_back((seq, request));
        *self.waiting.entry(seq).or_default() += 1;
        self.live += 1;
    }

    /// The request that came first and was not cancelled.
    pub(super) fn pop(&mut self) -> Option<(u64, Request)> {
        loop {
            let (seq, request) = self.queue.pop_front()?;
            if take_one(&mut self.cancelled, seq) {
                // Dropped here: its arguments (and the proxies in them)
                // go as the queue moves past it.
                continue;
            }
            take_one(&mut self.waiting, seq);
            self.live -= 1;
            return Some((seq, request));
        }
    }

    /// Cancels the waiting request `seq`; false when none waits (it runs,
    /// or ran, or never came).
    pub(super) fn cancel(&mut self, seq: u64) -> bool {
        if !take_one(&mut self.waiting, seq) {
            return false;
        }
        *self.cancelled.entry(seq).or_default() += 1;
        self.live -= 1;
        true
    }

    /// Requests waiting (cancelled ones aside).
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// True when no request waits.
    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Forgets every request (the connection ended).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
        self.waiting.clear();
        self.cancelled.clear();
        self.live = 0;
    }
}

/// Takes one from `counts[key]`; false when there was none.
fn take_one(counts: &mut HashMap<u64, u32, FxBuildHasher>, key: u64) -> bool {
    match counts.get_mut(&key) {
        Some(1) => {
            counts.remove(&key);
            true
        }
        Some(n) => {
            *n -= 1;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn ping(i: u64) -> Request {
        Request::Ping(Value::Integer(i.into()))
    }

    fn seqs(inbox: &mut Inbox) -> Vec<u64> {
        std::iter::from_fn(|| inbox.pop().map(|(s, _)| s)).collect()
    }

    #[test]
    fn a_cancel_leaves_the_queue_alone() {
        let k = 20_000;
        let mut inbox = Inbox::default();
        for seq in 1..=k {
            inbox.push(seq, ping(seq));
        }
        // Cancelled last first. Finding and removing each one in the queue
        // would cost every entry before it (k²/2 in all, the 14 s of the
        // hostile-peer report); a cancel only marks its sequence number.
        for seq in (1..=k).rev().filter(|s| s % 2 == 0) {
            assert!(inbox.cancel(seq));
        }
        assert_eq!(inbox.queue.len(), k as usize, "cancelled entries wait, untouched, to be skipped");
        assert_eq!(inbox.len(), (k / 2) as usize);
        assert_eq!(seqs(&mut inbox), (1..=k).filter(|s| s % 2 == 1).collect::<Vec<_>>());
        assert!(inbox.is_empty());
    }

    #[test]
    fn order_is_kept_and_cancels_of_nothing_waiting_are_refused() {
        let mut inbox = Inbox::default();
        for seq in [5, 3, 9] {
            inbox.push(seq, ping(seq));
        }
        assert!(!inbox.cancel(4), "never came");
        assert!(inbox.cancel(3));
        assert!(!inbox.cancel(3), "already cancelled");
        assert_eq!(inbox.pop().map(|(s, _)| s), Some(5));
        assert!(!inbox.cancel(5), "already taken to run");
        assert_eq!(seqs(&mut inbox), vec![9]);
    }

    #[test]
    fn a_reused_sequence_number_cancels_the_first() {
        let mut inbox = Inbox::default();
        inbox.push(7, ping(1));
        inbox.push(8, ping(2));
        inbox.push(7, ping(3));
        assert!(inbox.cancel(7));
        let left: Vec<_> = std::iter::from_fn(|| inbox.pop()).collect();
        assert!(
            matches!(
                &left[..],
                [(8, Request::Ping(Value::Integer(2))), (7, Request::Ping(Value::Integer(3)))]
            ),
            "{left:?}"
        );
        inbox.push(1, ping(1));
        inbox.clear();
        assert!(inbox.is_empty() && inbox.pop().is_none());
    }
}
