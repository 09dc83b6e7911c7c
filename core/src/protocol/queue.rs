//! The events waiting for the driver, first in first out, with room for one
//! inside the protocol.

use std::collections::VecDeque;

use super::Event;

/// A FIFO of events whose first one is kept inline.
///
/// A connection that is only ever pinged, or asked for its root, queues one
/// event at a time: with a plain `VecDeque` that first event allocated room
/// for four (about 400 bytes, kept for the connection's life), which is a
/// quarter of what an idle connection costs an event-loop server. A
/// ping-pong connection never allocates here at all.
#[derive(Debug, Default)]
pub(super) struct EventQueue {
    /// The oldest event, when there is one and `rest` was empty as it came.
    first: Option<Event>,
    rest: VecDeque<Event>,
}

impl EventQueue {
    #[inline]
    pub(super) fn push_back(&mut self, event: Event) {
        if self.first.is_none() && self.rest.is_empty() {
            // Not `self.first = Some(event)`: that would drop the `None`
            // it replaces, a call per event.
            self.first.get_or_insert(event);
        } else {
            self.rest.push_back(event);
        }
    }

    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<Event> {
        self.first.take().or_else(|| self.rest.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expired(seq: u64) -> Event {
        Event::Expired { seq }
    }

    fn seqs(q: &mut EventQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.pop_front())
            .map(|e| match e {
                Event::Expired { seq } => seq,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn first_in_first_out_across_the_inline_slot() {
        let mut q = EventQueue::default();
        q.push_back(expired(1));
        assert!(q.rest.capacity() == 0, "one event allocates nothing");
        q.push_back(expired(2));
        q.push_back(expired(3));
        assert_eq!(q.pop_front().map(|e| matches!(e, Event::Expired { seq: 1 })), Some(true));
        // The slot is free while others wait: a new event goes behind them.
        q.push_back(expired(4));
        assert_eq!(seqs(&mut q), vec![2, 3, 4]);
        q.push_back(expired(5));
        assert_eq!(seqs(&mut q), vec![5]);
        assert!(q.pop_front().is_none());
    }
}
