//! Batching: output held back while a thread is in a [`batch`] (or serves
//! requests that arrived together), written in one go.

use std::sync::Arc;

use super::state::{After, State};
use super::{Shared, BATCH};

/// Most output a connection holds back for a batch; past it, it is written.
/// A socket buffer's worth: bigger batches save no system calls worth having
/// and would only delay the peer.
pub(super) const HOLD_MAX: usize = 64 * 1024;

/// A thread's batching state.
pub(super) struct Batch {
    /// Nesting depth of [`batch`] calls.
    pub(super) depth: u32,
    /// Connections that held output back for this thread.
    pub(super) held: Vec<Arc<Shared>>,
}

/// Runs `f`, writing the messages this thread sends inside it together: the
/// async calls it makes and the replies it serves stay queued until `f`
/// returns, instead of costing one system call each.
///
/// This is for bulk senders: a loop of [`async_`](crate::async_) calls, a
/// server method emitting many events. Nothing waits on a batch: whenever
/// this thread is about to wait for the peer (a synchronous call,
/// [`AsyncResult::wait`](crate::AsyncResult::wait), `serve`), it first writes everything it held back,
/// so a batch can never deadlock. Output held on one connection is written
/// once it reaches 64 KiB; another thread's write on the same connection
/// takes the held messages along. Batches nest; the outermost one writes.
/// Blocking inside a batch on anything else (a channel, a lock another
/// thread holds while it waits for a reply to a held call) is the one way
/// to stall it: end the batch first.
///
/// ```
/// # fn main() -> netref::Result<()> {
/// # let (client, server) = netref::Builder::default().pair(netref::Builder::default()
/// #     .service(netref::Service::object(netref::ObjectBuilder::new("S")
/// #         .method("add", |a: i64, b: i64| a + b).build())))?;
/// # let _serving = netref::BgServingThread::new(&server);
/// let root = client.root()?;
/// // Ten calls, one write.
/// let results: Vec<_> = netref::batch(|| {
///     (0..10i64).map(|i| netref::async_(&root).call_method("add", (i, 1i64))).collect()
/// });
/// let sums: Vec<i64> = results.iter().map(|r| r.value_as()).collect::<Result<_, _>>()?;
/// assert_eq!(sums, (1..=10).collect::<Vec<_>>());
/// # Ok(())
/// # }
/// ```
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    /// Ends the scope even when `f` panics, so the thread never stays batched.
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            let outermost = BATCH.with(|b| {
                let mut b = b.borrow_mut();
                b.depth -= 1;
                b.depth == 0
            });
            if outermost {
                Shared::write_held();
            }
        }
    }
    BATCH.with(|b| b.borrow_mut().depth += 1);
    let _end = End;
    f()
}

/// True inside a [`batch`] on this thread.
pub(super) fn in_batch() -> bool {
    BATCH.with(|b| b.borrow().depth > 0)
}

impl Shared {
    /// Writes what was just queued, or holds it back when `hold` (the thread
    /// is in a [`batch`], or serves requests that arrived together with
    /// [`Config::batch_replies`]) and less than [`HOLD_MAX`] is queued. Held
    /// output is registered with the thread, which writes it before it
    /// waits for anything and when its batch ends. Returns whether it held.
    ///
    /// Output held by coalescing ([`Config::coalesce`](crate::Config::coalesce))
    /// rather than a batch also leaves in time without this thread: the
    /// loop of an attached connection is rung (its step writes it in the
    /// same turn), and otherwise the flusher writes it if it is still held
    /// when the coalescing window has passed.
    pub(super) fn send_or_hold(&self, st: &mut State, after: &mut Vec<After>, hold: bool) -> bool {
        if hold && st.proto.pending_output_len() < HOLD_MAX {
            let first = !st.held;
            st.held = true;
            BATCH.with(|b| {
                let mut b = b.borrow_mut();
                if !b.held.iter().any(|s| std::ptr::eq(&**s, self)) {
                    b.held.push(self.arc());
                }
            });
            if first && !in_batch() && !self.bound_hold(st) {
                self.flush_locked(st, after);
                return false;
            }
            return true;
        }
        self.flush_locked(st, after);
        false
    }

    /// Makes sure output just held by coalescing leaves in time: false
    /// when it cannot be (no flusher), and must be written now.
    fn bound_hold(&self, st: &State) -> bool {
        // On an event loop, its step writes it in the same turn: ring,
        // unless this thread is that step (which writes it when it ends).
        // The flusher still bounds the wait, for a loop thread that blocks.
        if st.loop_thread.is_some() && st.driver.is_none_or(|(t, _)| t != std::thread::current().id()) {
            self.ring_loop();
        }
        match self.config.coalesce {
            // One visit of the flusher at a time: the one already due comes
            // sooner than this hold's own window would.
            Some(_) if self.flush_scheduled.swap(true, std::sync::atomic::Ordering::AcqRel) => true,
            Some(window) => {
                let scheduled = super::flusher::schedule(&self.arc(), std::time::Instant::now() + window);
                if !scheduled {
                    self.flush_scheduled.store(false, std::sync::atomic::Ordering::Release);
                }
                scheduled
            }
            // `batch_replies` alone: held until the pass ends, as it says.
            None => true,
        }
    }

    /// The flusher's write of output still held once its window passed
    /// (the thread that made it is busy): the bytes only. What the write
    /// brings about (a failure closing the connection, and the callbacks
    /// and hooks that runs; write interest when the socket is full) is left
    /// to whoever serves the connection, which is woken: the flusher runs
    /// no user code, which could stall it.
    pub(super) fn write_held_late(&self) {
        self.flush_scheduled.store(false, std::sync::atomic::Ordering::Release);
        let st = &mut *self.lock();
        if !st.held || st.closed.is_some() {
            return;
        }
        let wrote = self.write_pending(st);
        if !wrote || self.wants_write(st) {
            self.wake_driver(st);
        }
    }

    /// True when this thread holds output back on some connection.
    pub(super) fn thread_holds() -> bool {
        BATCH.with(|b| !b.borrow().held.is_empty())
    }

    /// Writes the output this thread held back, on every connection. Call
    /// with no state lock held (it takes each connection's).
    pub(super) fn write_held() {
        let held = BATCH.with(|b| std::mem::take(&mut b.borrow_mut().held));
        for shared in held {
            let mut after = Vec::new();
            {
                let mut st = shared.lock();
                if st.held && st.closed.is_none() {
                    shared.flush_locked(&mut st, &mut after);
                    if shared.wants_write(&st) {
                        shared.wake_driver(&st);
                    }
                }
            }
            shared.finish(after);
        }
    }
}
