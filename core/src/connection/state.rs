//! A connection's state behind its lock, the guard that tracks the locks a
//! thread holds, and the work to run once the lock is released.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use super::inbox::Inbox;
use super::tasks::Tasks;
use super::{Shared, AFTER_SPARE, DEFERRED_CLOSES, LOCKS_HELD};
use crate::auth::Credentials;
use crate::connection::async_result::Slot;
use crate::error::{CloseReason, Result};
use crate::protocol::Protocol;
use crate::value::object::{LocalObject, PendingAnswer};
use crate::value::Value;

/// The state lock, held. Tracks holding per thread so that a handle dropped
/// under the lock (a proxy inside a discarded message, say) defers the close
/// it triggers until the lock is released.
pub(super) struct StateGuard<'a> {
    pub(super) guard: Option<MutexGuard<'a, State>>,
    pub(super) shared: &'a Shared,
}

impl<'a> StateGuard<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        let guard = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        LOCKS_HELD.with(|n| n.set(n.get() + 1));
        StateGuard { guard: Some(guard), shared }
    }

    /// Waits on the connection's condition variable, releasing the lock meanwhile.
    pub(super) fn wait(mut self, timeout: Option<Duration>) -> Self {
        let mut guard = self.guard.take().expect("held");
        guard.sleepers += 1;
        LOCKS_HELD.with(|n| n.set(n.get() - 1));
        let mut guard = match timeout {
            Some(d) => self.shared.cond.wait_timeout(guard, d).unwrap_or_else(|e| e.into_inner()).0,
            None => self.shared.cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
        };
        guard.sleepers -= 1;
        LOCKS_HELD.with(|n| n.set(n.get() + 1));
        self.guard = Some(guard);
        self
    }
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_ref().expect("held")
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard.as_mut().expect("held")
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.guard.take().is_none() {
            return;
        }
        let now_free = LOCKS_HELD.with(|n| {
            n.set(n.get() - 1);
            n.get() == 0
        });
        if now_free {
            let deferred = DEFERRED_CLOSES.with(|d| std::mem::take(&mut *d.borrow_mut()));
            for shared in deferred {
                shared.close_now("every handle to the connection was dropped");
            }
        }
    }
}

/// A serving loop's list of work for after the lock, lent by the thread
/// and given back when the loop returns: each synchronous call runs one
/// loop, and a fresh `Vec` was an allocation per call.
pub(super) struct AfterBuf(Vec<After>);

impl AfterBuf {
    pub(super) fn take() -> AfterBuf {
        AfterBuf(AFTER_SPARE.with(|s| std::mem::take(&mut *s.borrow_mut())))
    }
}

impl std::ops::Deref for AfterBuf {
    type Target = Vec<After>;
    fn deref(&self) -> &Vec<After> {
        &self.0
    }
}

impl std::ops::DerefMut for AfterBuf {
    fn deref_mut(&mut self) -> &mut Vec<After> {
        &mut self.0
    }
}

impl Drop for AfterBuf {
    fn drop(&mut self) {
        // Only an empty list of modest size goes back (a loop that ended
        // in an error may have left work undone: it is dropped here, as a
        // fresh list's would be).
        if self.0.is_empty() && self.0.capacity() <= 64 {
            let buf = std::mem::take(&mut self.0);
            // `try_with`: the thread's locals may be going away.
            let _ = AFTER_SPARE.try_with(|s| *s.borrow_mut() = buf);
        }
    }
}

/// One queued piece of work to do once the state lock is released.
pub(super) enum After {
    Complete(Arc<Slot>, Result<Value>),
    Expire(Arc<Slot>),
    Disconnected,
    /// The transport is established (a TLS handshake on an event loop
    /// ended): start the service (see [`ServiceStart`]).
    StartService,
    Drop(#[allow(dead_code)] Vec<LocalObject>),
    /// Futures of asynchronous calls cancelled or cut off by the end of
    /// the connection (user code: dropped with no lock held).
    Abandon(#[allow(dead_code)] Vec<PendingAnswer>),
    /// The memory budget this connection shares is spent: close the
    /// connection holding the most.
    OverBudget,
}

/// Where the connection's service is: its root made and `on_connect` run
/// when the connection starts, or, over a transport still being
/// established on an event loop (a TLS handshake), once it is, so that the
/// service sees the credentials the handshake proved.
pub(super) enum ServiceStart {
    /// Waiting for the transport, with the credentials the builder's
    /// authenticator established.
    Waiting(Option<Credentials>),
    /// The root factory or `on_connect` is running.
    Starting,
    /// Started.
    Started,
}

pub(super) struct State {
    pub(super) proto: Protocol,
    pub(super) service: ServiceStart,
    /// Keyed by our own sequence numbers (see `Protocol`'s pending calls).
    pub(super) slots: HashMap<u64, Arc<Slot>, rustc_hash::FxBuildHasher>,
    pub(super) inbox: Inbox,
    /// The peer's calls of asynchronous methods, while their futures run.
    pub(super) tasks: Tasks,
    /// The driving thread and how deeply it re-entered (in-memory pairs).
    pub(super) driver: Option<(ThreadId, u32)>,
    /// In attached mode, the only thread that drives and serves.
    pub(super) loop_thread: Option<ThreadId>,
    pub(super) closed: Option<CloseReason>,
    /// This side's root object (its service), answered to the peer's root
    /// requests; dropped (outside the lock) when the connection ends.
    pub(super) served: Option<LocalObject>,
    /// The peer's root, cached weakly: a proxy keeps the connection open, and
    /// the connection must not keep itself open.
    pub(super) root: Weak<crate::value::remote::ProxyInner>,
    /// Bumped whenever anything is received or served (for `serve`).
    pub(super) progress: u64,
    /// Threads asleep on the condition variable (see [`Shared::notify`]).
    pub(super) sleepers: usize,
    /// Output is queued but held back for a batch (see
    /// [`Shared::send_or_hold`]); the next write takes it along.
    pub(super) held: bool,
    /// The thread closing the connection, while it waits for the close
    /// message to leave (see [`Shared::close_now`]).
    pub(super) closing: Option<ThreadId>,
}

impl State {
    /// The local objects no longer reachable, to drop with no lock held:
    /// those the peer released and, once the connection has ended, this
    /// side's root.
    pub(super) fn take_dead(&mut self) -> Vec<LocalObject> {
        let mut dead = self.proto.take_released_objects();
        if self.proto.is_closed() {
            dead.extend(self.served.take());
        }
        dead
    }
}
