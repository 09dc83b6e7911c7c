//! The peer's calls to asynchronous methods while their futures run: polled
//! by whichever thread or loop serves the connection when their waker
//! fires, answered when they are ready, dropped when the peer cancels or
//! the connection ends.
//!
//! A task is polled by one thread at a time: the thread that takes it out
//! leaves a mark in its place, and a wake-up arriving meanwhile is noted on
//! the mark, so the task is polled again once it is back, never lost.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use rustc_hash::FxBuildHasher;

use super::dispatch::{nested, panic_error};
use super::state::StateGuard;
use super::Shared;
use crate::error::{Error, LimitError, RemoteError};
use crate::value::object::PendingAnswer;

thread_local! {
    /// The connection whose call this thread is polling (null: none).
    static POLLING: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

/// Marks the thread as polling a call of a connection, while it lives.
struct Polling(*const Shared);

impl Polling {
    fn enter(shared: &Shared) -> Polling {
        Polling(POLLING.with(|p| p.replace(shared)))
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        // `try_with`: the thread's locals may be going away.
        let _ = POLLING.try_with(|p| p.set(self.0));
    }
}

/// Whether this thread is polling one of `shared`'s calls. Such a call is
/// polled only while something serves its connection, so a future it
/// awaits on the same connection will be served too, though no standing
/// server may serve it (an in-memory pair, a connection served by its
/// synchronous calls).
pub(super) fn polling_call_of(shared: &Shared) -> bool {
    POLLING.with(|p| std::ptr::eq(p.get(), shared))
}

/// The asynchronous calls of one connection, behind its state lock.
#[derive(Default)]
pub(super) struct Tasks {
    running: HashMap<u64, Running, FxBuildHasher>,
}

enum Running {
    /// Waiting for its waker.
    Idle(Task),
    /// A thread is polling it; `woken`: its waker fired meanwhile.
    Polled { woken: bool },
}

/// One call's future, and what the peer called (for a traceback).
pub(super) struct Task {
    future: PendingAnswer,
    what: String,
    waker: Arc<TaskWaker>,
}

impl Tasks {
    /// How many calls run.
    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    /// Forgets the call `seq` (the peer cancelled it): true when it was
    /// running. Its future, unless a thread is polling it (which then finds
    /// it gone and drops it), is returned to be dropped with no lock held.
    pub(super) fn cancel(&mut self, seq: u64) -> Option<Option<PendingAnswer>> {
        self.running.remove(&seq).map(|r| match r {
            Running::Idle(task) => Some(task.future),
            Running::Polled { .. } => None,
        })
    }

    /// Every call's future, when the connection ends.
    pub(super) fn drain(&mut self) -> Vec<PendingAnswer> {
        self.running
            .drain()
            .filter_map(|(_, r)| match r {
                Running::Idle(task) => Some(task.future),
                Running::Polled { .. } => None,
            })
            .collect()
    }
}

/// The call woken, as the queue of wake-ups outside the state lock: a
/// waker may fire anywhere, even where this thread holds the lock.
#[derive(Default)]
pub(super) struct Woken {
    queue: Mutex<VecDeque<u64>>,
    /// `queue.len()`, read without the lock on every serving turn.
    len: AtomicUsize,
}

impl Woken {
    fn push(&self, seq: u64) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.push_back(seq);
        self.len.store(queue.len(), Ordering::Release);
    }

    fn pop(&self) -> Option<u64> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        // Oldest first, so every woken call gets its turn.
        let seq = queue.pop_front();
        self.len.store(queue.len(), Ordering::Release);
        seq
    }

    /// Whether a woken call waits to be polled.
    pub(super) fn any(&self) -> bool {
        self.len.load(Ordering::Acquire) > 0
    }

    pub(super) fn clear(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.clear();
        self.len.store(0, Ordering::Release);
    }
}

/// A call's waker: queues the call and wakes whoever serves the connection.
struct TaskWaker {
    seq: u64,
    /// Set from a wake-up until the next poll begins: one queue entry per
    /// wake-up burst.
    queued: AtomicBool,
    conn: Weak<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(shared) = self.conn.upgrade() {
            shared.woken.push(self.seq);
            if !shared.ring_loop() {
                shared.transport.wake();
            }
        }
    }
}

impl Shared {
    /// Starts the peer's call `seq` of an asynchronous method: polls its
    /// future once, and keeps it to poll again when it wakes. Refused with
    /// [`LimitError::TooManyAsyncCalls`] when `max_async_calls` run.
    pub(super) fn start_task(&self, seq: u64, future: PendingAnswer, what: String, hold: bool) {
        {
            let mut st = self.lock();
            if st.closed.is_some() {
                return;
            }
            let max = self.config.max_async_calls;
            let refusal = if st.tasks.len() >= max {
                Some(Error::from(LimitError::TooManyAsyncCalls { max }).into_remote())
            } else if st.tasks.running.contains_key(&seq) {
                // A peer reusing the number of a call still running: the
                // running one keeps its place (and its future its thread).
                Some(RemoteError::new(
                    "ValueError",
                    format!("request {seq} reuses the sequence number of a call still running"),
                ))
            } else {
                None
            };
            if let Some(e) = refusal {
                drop(st);
                drop(future);
                return self.answer(seq, Err((e, what)), hold);
            }
            st.tasks.running.insert(seq, Running::Polled { woken: false });
        }
        let waker = Arc::new(TaskWaker { seq, queued: AtomicBool::new(false), conn: self.me.clone() });
        self.poll_task(seq, Task { future, what, waker }, hold);
    }

    /// Polls the oldest woken call, if one waits and no other thread polls
    /// it; returns the lock again, with whether it polled one.
    pub(super) fn serve_woken<'a>(&'a self, mut st: StateGuard<'a>) -> (StateGuard<'a>, bool) {
        while let Some(seq) = self.woken.pop() {
            let Some(running) = st.tasks.running.get_mut(&seq) else {
                continue; // answered, cancelled or ended since it woke
            };
            match std::mem::replace(running, Running::Polled { woken: false }) {
                Running::Idle(task) => {
                    let hold = self.hold_reply(&st);
                    drop(st);
                    self.poll_task(seq, task, hold);
                    return (self.lock(), true);
                }
                Running::Polled { .. } => *running = Running::Polled { woken: true },
            }
        }
        (st, false)
    }

    /// Polls `task`, whose place in the table is marked as polled: answers
    /// the peer when it is ready, else puts it back. A task whose place is
    /// gone meanwhile was cancelled, or its connection ended: it is dropped
    /// unanswered.
    fn poll_task(&self, seq: u64, mut task: Task, hold: bool) {
        task.waker.queued.store(false, Ordering::Release);
        let waker = Waker::from(task.waker.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = nested(self.config.max_nesting, || {
            let _polling = Polling::enter(self);
            catch_unwind(AssertUnwindSafe(|| task.future.as_mut().poll(&mut cx)))
                .unwrap_or_else(|panic| Poll::Ready(Err(panic_error(panic))))
        });
        let result = match polled {
            Ok(Poll::Pending) => return self.park_task(seq, task),
            Ok(Poll::Ready(result)) => result,
            Err(too_deep) => Err(too_deep),
        };
        let Task { future, what, .. } = task;
        drop(future);
        if self.lock().tasks.running.remove(&seq).is_some() {
            self.answer(seq, result.map_err(|e| (e, what)), hold);
        }
    }

    /// Puts a pending task back in its place, to wait for its waker (and
    /// queues it again at once when it woke while polled elsewhere).
    fn park_task(&self, seq: u64, task: Task) {
        let mut st = self.lock();
        let Some(running) = st.tasks.running.get_mut(&seq) else {
            drop(st);
            return drop(task);
        };
        let woke = matches!(running, Running::Polled { woken: true });
        *running = Running::Idle(task);
        if woke {
            self.woken.push(seq);
        }
    }
}
