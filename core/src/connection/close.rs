//! Closing: the close hooks, lingering for the last replies, and failing what
//! is still pending.

use std::thread;
use std::time::Duration;

use super::state::{After, State, StateGuard};
use super::Shared;
use crate::error::CloseReason;
use crate::protocol::Input;
use crate::transport::AsIo;

/// How long a close waits, on the connection's [`Clock`], for its farewell
/// (and whatever was queued before it) to leave.
pub(super) const LINGER: Duration = Duration::from_millis(100);

impl Shared {
    /// The writing of [`flush_locked`](Self::flush_locked), without taking
    /// the events: false when the transport refused the output (an error,
    /// or a write of zero bytes).
    pub(super) fn write_pending(&self, st: &mut State) -> bool {
        st.held = false;
        // What the transport still holds (TLS records) goes first.
        let flushed = if self.transport.wants_write() { self.transport.flush() } else { Ok(()) };
        match flushed.and_then(|()| st.proto.write_to(&mut AsIo(&*self.transport))) {
            Ok(_) => true,
            Err(e) => {
                let _ = st.proto.handle_input(self.clock.now(), Input::Failed(e));
                false
            }
        }
    }

    /// True while output waits for the socket: the protocol's, or what the
    /// transport holds (TLS records).
    pub(super) fn wants_write(&self, st: &State) -> bool {
        st.proto.wants_write() || self.transport.wants_write()
    }

    /// Runs the [`Connection::on_close`] handlers, once the close is done.
    pub(super) fn run_close_hooks(&self) {
        let hooks = std::mem::take(&mut *self.close_hooks.lock().unwrap_or_else(|e| e.into_inner()));
        if hooks.is_empty() {
            return;
        }
        let Some(why) = self.lock().closed.clone() else { return };
        for hook in hooks {
            hook(&why);
        }
    }

    /// Wakes threads waiting for a result after it settled. The driver's
    /// `notify_all` in `process_events` runs before the result is stored (in
    /// `finish`, without the lock), so a waiter woken by it can find the
    /// result still pending and sleep again: without this second notify it
    /// would miss the reply (a cross-thread call on an attached connection
    /// hung until its timeout).
    ///
    /// The thread driving the transport may be the waiter itself: it checked
    /// its slot before this result was stored and now sleeps in the
    /// transport's `wait`, where a condvar cannot reach it. Wake it too.
    pub(super) fn settled(&self) {
        let st = self.lock();
        self.notify(&st);
        if let Some((driver, _)) = st.driver {
            if driver != thread::current().id() {
                self.transport.wake();
            }
        }
    }

    /// Closes the connection: tells the peer, gives that message up to
    /// [`LINGER`] to leave, then fails what is pending and runs the hooks.
    pub(super) fn close_now(&self, reason: &str) {
        let me = thread::current().id();
        let mut after = Vec::new();
        {
            let mut st = self.lock();
            loop {
                if st.closed.is_some() {
                    return;
                }
                match st.closing {
                    None => break,
                    // Re-entered while lingering (a handle dropped on this
                    // thread): the close under way finishes the job.
                    Some(t) if t == me => return,
                    // Another thread is lingering: the close is done when
                    // it is (`fail_all` wakes the sleepers).
                    Some(_) => st = st.wait(None),
                }
            }
            st.proto.close(reason);
            let accepted = self.write_pending(&mut st);
            self.process_events(&mut st, &mut after);
            if accepted && self.wants_write(&st) {
                st.closing = Some(me);
                st = self.linger(st, &mut after);
                st.closing = None;
            }
            after.push(After::Drop(st.take_dead()));
            self.fail_all(&mut st, CloseReason::ByThisSide, &mut after);
            after.push(After::Disconnected);
            self.wake_driver(&st);
        }
        self.finish(after);
    }

    /// Waits for the close message to leave: until the output is gone, the
    /// transport refuses it, or [`LINGER`] passes on the connection's clock.
    /// The state lock is released while waiting, so an event loop or another
    /// thread using the connection meanwhile is not held up (they see a
    /// closed protocol: new calls fail at once).
    ///
    /// A wait that neither moved the output nor saw the clock move ends it
    /// too: with a virtual clock nobody advances, waiting again would never
    /// end.
    pub(super) fn linger<'a>(&'a self, mut st: StateGuard<'a>, after: &mut Vec<After>) -> StateGuard<'a> {
        let until = self.clock.now() + LINGER;
        loop {
            let now = self.clock.now();
            if now >= until || !self.wants_write(&st) {
                return st;
            }
            let queued = st.proto.pending_output_len();
            drop(st);
            let waited = self.transport.wait(true, Some(until.saturating_duration_since(now)));
            st = self.lock();
            let accepted = self.write_pending(&mut st);
            self.process_events(&mut st, after);
            let moved = st.proto.pending_output_len() != queued;
            if waited.is_err() || !accepted || (!moved && self.clock.now() == now) {
                return st;
            }
        }
    }
}
