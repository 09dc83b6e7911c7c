//! The peer's requests waiting to run, in the order they came, with a
//! cancel that costs O(1) however many wait.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxBuildHasher;

use crate::protocol::Request;

/// The peer's requests waiting to run.
///
/// A cancel never looks for its request by walking the queue (a peer
/// sending k requests and k cancels in one read made that O(k²)). A
/// well-behaved peer's sequence numbers increase, so the queue is sorted
/// and a cancel finds its entry by binary search and empties it in place
/// (its arguments, and the proxies in them, go at once). A peer that breaks
/// the order switches the queue to counting by sequence number until it
/// drains: a cancel then marks its number, and the first waiting entry of
/// that number is skipped when it reaches the front. The common path pays
/// for neither: no hashing per request.
#[derive(Default)]
pub(super) struct Inbox {
    /// `None`: cancelled, skipped when it reaches the front.
    queue: VecDeque<(u64, Option<Request>)>,
    /// Entries in `queue` not cancelled.
    live: usize,
    /// Set while the sequence numbers in `queue` are out of order (boxed:
    /// rare, and every connection's state would carry its size).
    unordered: Option<Box<Counts>>,
}

/// Entries of an out-of-order queue, counted by sequence number (several
/// when the peer reused one).
#[derive(Default)]
struct Counts {
    waiting: HashMap<u64, u32, FxBuildHasher>,
    cancelled: HashMap<u64, u32, FxBuildHasher>,
}

impl Inbox {
    /// Queues the peer's request `seq`.
    #[inline]
    pub(super) fn push(&mut self, seq: u64, request: Request) {
        if self.unordered.is_none() && self.queue.back().is_some_and(|&(last, _)| last >= seq) {
            let mut counts = Box::<Counts>::default();
            for (s, _) in self.queue.iter().filter(|(_, r)| r.is_some()) {
                *counts.waiting.entry(*s).or_default() += 1;
            }
            self.unordered = Some(counts);
        }
        if let Some(counts) = &mut self.unordered {
            *counts.waiting.entry(seq).or_default() += 1;
        }
        self.queue.push_back((seq, Some(request)));
        self.live += 1;
    }

    /// The request that came first and was not cancelled.
    #[inline]
    pub(super) fn pop(&mut self) -> Option<(u64, Request)> {
        while let Some((seq, request)) = self.queue.pop_front() {
            // Emptied by a cancel while the queue was in order.
            let Some(request) = request else { continue };
            if let Some(counts) = &mut self.unordered {
                if take_one(&mut counts.cancelled, seq) {
                    continue;
                }
                take_one(&mut counts.waiting, seq);
                if self.queue.is_empty() {
                    // Drained: whatever order comes next is checked afresh.
                    self.unordered = None;
                }
            }
            self.live -= 1;
            return Some((seq, request));
        }
        // Drained by skipping cancelled entries.
        if self.unordered.is_some() {
            self.unordered = None;
        }
        None
    }

    /// Cancels the waiting request `seq`; false when none waits (it runs,
    /// or ran, or never came).
    pub(super) fn cancel(&mut self, seq: u64) -> bool {
        let cancelled = match &mut self.unordered {
            Some(counts) => {
                let waiting = take_one(&mut counts.waiting, seq);
                if waiting {
                    *counts.cancelled.entry(seq).or_default() += 1;
                }
                waiting
            }
            None => match self.queue.binary_search_by_key(&seq, |&(s, _)| s) {
                Ok(at) => self.queue[at].1.take().is_some(),
                Err(_) => false,
            },
        };
        if cancelled {
            self.live -= 1;
        }
        cancelled
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
        self.unordered = None;
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

    /// Pushes `seqs` in order, cancels every even one, last first (a scan
    /// from the front would cost every entry before each), and checks that
    /// the queue itself was not walked or moved: every entry is still
    /// there, to be skipped when it reaches the front.
    fn cancel_half(seqs: Vec<u64>) -> Inbox {
        let mut inbox = Inbox::default();
        for &seq in &seqs {
            inbox.push(seq, ping(seq));
        }
        for &seq in seqs.iter().rev().filter(|s| *s % 2 == 0) {
            assert!(inbox.cancel(seq));
        }
        assert_eq!(inbox.queue.len(), seqs.len(), "cancelled entries wait where they are");
        assert_eq!(inbox.len(), seqs.len() / 2);
        let odd: Vec<u64> = seqs.iter().copied().filter(|s| s % 2 == 1).collect();
        assert_eq!(self::seqs(&mut inbox), odd);
        assert!(inbox.is_empty() && inbox.unordered.is_none());
        inbox
    }

    #[test]
    fn a_cancel_leaves_the_queue_alone() {
        let k = 20_000;
        // A well-behaved peer: increasing numbers, found by binary search.
        cancel_half((1..=k).collect());
        // A peer counting down: counted by number instead.
        cancel_half((1..=k).rev().collect());
    }

    #[test]
    fn a_cancel_in_order_drops_the_arguments_at_once() {
        let mut inbox = Inbox::default();
        inbox.push(1, ping(1));
        inbox.push(2, ping(2));
        assert!(inbox.cancel(1));
        assert!(inbox.queue[0].1.is_none(), "emptied in place");
        assert_eq!(seqs(&mut inbox), vec![2]);
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
