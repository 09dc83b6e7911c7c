//! Dispatch: the protocol's events turned into work (a local method run and its
//! reply queued, an `AsyncResult` completed), and the work run with no lock
//! held.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use super::state::{After, ServiceStart, State};
use super::{Connection, Shared, NESTING};
use crate::error::{CloseReason, Error, LimitError, RemoteError, Result};
use crate::protocol::{Event, Request};
use crate::value::object::{Answer, PendingAnswer};
use crate::value::{to_value, ObjectRef, Value};

/// Runs a request from the peer (or polls its future) one level deeper, or
/// refuses it when this thread already runs `max` of them one inside
/// another: running it would take the stack one level further towards an
/// overflow.
pub(super) fn nested<T>(max: usize, run: impl FnOnce() -> T) -> Result<T, RemoteError> {
    let depth = NESTING.with(|n| n.get());
    if depth >= max {
        return Err(Error::from(LimitError::TooDeeplyNested { max }).into_remote());
    }
    NESTING.with(|n| n.set(depth + 1));
    // `run` catches panics (`guarded`), so the depth is always restored.
    let result = run();
    NESTING.with(|n| n.set(depth));
    Ok(result)
}

/// Fails when this thread already runs `max` of the peers' requests one
/// inside another: a synchronous call now would serve the next level while
/// it waits (see [`Config::max_nesting`]).
pub(super) fn check_nesting(max: usize) -> Result<()> {
    if NESTING.with(|n| n.get()) >= max {
        return Err(LimitError::TooDeeplyNested { max }.into());
    }
    Ok(())
}

/// How a request of the peer started: answered, or (an asynchronous
/// method) going on as a future.
pub(super) enum Started {
    /// The answer, or the error with what was called, for its traceback.
    Done(Result<Value, (RemoteError, String)>),
    /// An asynchronous method's future, and what was called.
    Later(PendingAnswer, String),
}

/// Starts a request's method, catching a panic as a remote error. An error
/// comes with what was called, for its traceback; the description is only
/// formatted then (or for a call that goes on as a future), not for every
/// request. [`Shared::process_events`] answers pings, and root requests
/// once the service has started, before anything is queued
/// ([`answer_at_once`]); a root request queued while the service waits for
/// its transport is answered by [`Shared::dispatch`] itself. Here they get
/// what a side with no root would answer.
pub(super) fn start_request(request: Request) -> Started {
    match request {
        Request::Root => Started::Done(Err((no_service(), "root".into()))),
        Request::Ping(payload) => Started::Done(Ok(payload)),
        Request::Call { target, args } => started(guarded_start(|| target.object().start_call(args)), || {
            format!("{}()", target.type_name())
        }),
        Request::CallMethod { target, name, args } => {
            started(guarded_start(|| target.object().start_method(&name, args)), || {
                format!("{}.{}()", target.type_name(), name)
            })
        }
        Request::GetAttr { target, name } => Started::Done(
            guarded(|| target.object().getattr(&name))
                .map_err(|e| (e, format!("{}.{}", target.type_name(), name))),
        ),
        Request::Dir { target } => Started::Done(
            guarded(|| to_value(&target.object().try_dir()?).map_err(|e| e.into_remote()))
                .map_err(|e| (e, format!("dir({})", target.type_name()))),
        ),
        Request::Invalid(e) => Started::Done(Err((e, "request".to_string()))),
    }
}

/// A started call as [`Started`], naming it with `what` when that is needed.
fn started(answer: Answer, what: impl FnOnce() -> String) -> Started {
    match answer {
        Answer::Ready(result) => Started::Done(result.map_err(|e| (e, what()))),
        Answer::Later(future) => Started::Later(future, what()),
    }
}

/// The answer to a root request on a side that serves nothing.
fn no_service() -> RemoteError {
    RemoteError::new("AttributeError", "the peer exposes no service")
}

/// Answers at once, under the lock, the requests that run no user code: the
/// root request (from this side's root) and pings. A ping then measures the
/// connection, not the queue, and a connection that was only pinged never
/// allocates an inbox (10,000 idle connections cost 0.8 KiB more each when
/// pings were queued). Returns any other request, to be queued.
fn answer_at_once(st: &mut State, seq: u64, request: Request) -> Option<Request> {
    let reply = match request {
        // The service starts later (`ServiceStart`): dispatch starts it.
        Request::Root if matches!(st.service, ServiceStart::Waiting(_)) => return Some(request),
        Request::Root => {
            st.served.clone().map(|root| Value::Object(ObjectRef::Local(root))).ok_or_else(no_service)
        }
        Request::Ping(payload) => Ok(payload),
        other => return Some(other),
    };
    st.proto.send_reply(seq, reply);
    None
}

/// Runs `run`, turning a panic into a remote error.
pub(super) fn guarded(run: impl FnOnce() -> Result<Value, RemoteError>) -> Result<Value, RemoteError> {
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| Err(panic_error(panic)))
}

/// Starts a call with `run`, turning a panic into a remote error.
fn guarded_start(run: impl FnOnce() -> Answer) -> Answer {
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| Answer::Ready(Err(panic_error(panic))))
}

/// A method's panic as the remote error the peer receives: its message.
pub(super) fn panic_error(panic: Box<dyn Any + Send>) -> RemoteError {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a method panicked".into());
    RemoteError::new("Panic", msg)
}

impl Shared {
    /// Moves protocol events into the connection's state; work that runs user
    /// code is queued in `after`.
    pub(super) fn process_events(&self, st: &mut State, after: &mut Vec<After>) {
        if matches!(st.service, ServiceStart::Waiting(_)) && !self.transport.establishing() {
            after.push(After::StartService);
        }
        let mut changed = false;
        while let Some(event) = st.proto.poll_event() {
            changed = true;
            st.progress += 1;
            match event {
                Event::Request { seq, request } => {
                    if let Some(request) = answer_at_once(st, seq, request) {
                        st.inbox.push(seq, request);
                    }
                }
                Event::Reply { seq, result } => {
                    if let Some(slot) = st.slots.remove(&seq) {
                        after.push(After::Complete(slot, result.map_err(Error::Remote)));
                    }
                }
                Event::Expired { seq } => {
                    if let Some(slot) = st.slots.remove(&seq) {
                        after.push(After::Expire(slot));
                    }
                }
                Event::Cancelled { seq } => {
                    // Waiting in the inbox, or running as a future (dropped
                    // with no lock held; a thread polling it drops it).
                    let cancelled = st.inbox.cancel(seq)
                        || st
                            .tasks
                            .cancel(seq)
                            .map(|future| after.push(After::Abandon(future.into_iter().collect())))
                            .is_some();
                    if cancelled {
                        st.proto.send_reply(
                            seq,
                            Err(RemoteError::new("Cancelled", "the caller gave up waiting")),
                        );
                    }
                }
                Event::Closed { reason } => {
                    log::debug!("netref connection to {} closed: {reason}", self.label);
                    self.fail_all(st, reason, after);
                    // Exported objects die before `on_disconnect` runs.
                    after.push(After::Drop(st.take_dead()));
                    after.push(After::Disconnected);
                }
            }
        }
        let dead = st.proto.take_released_objects();
        if !dead.is_empty() {
            after.push(After::Drop(dead));
        }
        if changed {
            self.notify(st);
        }
    }

    /// Wakes the threads asleep on the condition variable. Call with the
    /// state lock held: sleepers are counted under it, so none is missed,
    /// and with none asleep this costs no futex syscall (std's `notify_all`
    /// always makes one; a synchronous call used to make three).
    pub(super) fn notify(&self, st: &State) {
        if st.sleepers > 0 {
            self.cond.notify_all();
        }
    }

    pub(super) fn fail_all(&self, st: &mut State, reason: CloseReason, after: &mut Vec<After>) {
        if st.closed.is_some() {
            return;
        }
        if matches!(reason, CloseReason::Protocol(_) | CloseReason::Decode(_) | CloseReason::Limit(_)) {
            log::warn!("netref connection to {} ended by bad input: {reason}", self.label);
        }
        st.closed = Some(reason.clone());
        for (_, slot) in st.slots.drain() {
            after.push(After::Complete(slot, Err(Error::Closed(reason.clone()))));
        }
        st.inbox.clear();
        after.push(After::Abandon(st.tasks.drain()));
        self.woken.clear();
        self.charge(st, after);
        self.transport.shutdown();
        self.notify(st);
    }

    /// Runs queued work with no lock held.
    pub(super) fn finish(&self, mut after: Vec<After>) {
        self.finish_all(&mut after);
    }

    /// [`finish`](Self::finish), keeping `after`'s allocation for the next
    /// round (the serving loop completes a call per round: a fresh `Vec`
    /// was an allocation per synchronous call).
    pub(super) fn finish_all(&self, after: &mut Vec<After>) {
        for a in after.drain(..) {
            match a {
                After::Complete(slot, outcome) => {
                    slot.complete(outcome, Some(self.arc()));
                    self.settled();
                }
                After::Expire(slot) => {
                    slot.expire();
                    self.settled();
                }
                After::Drop(objects) => drop(objects),
                After::Abandon(futures) => drop(futures),
                After::OverBudget => self.enforce_budget(),
                After::StartService => {
                    self.handles.fetch_add(1, Ordering::AcqRel);
                    self.start_service(&Connection { shared: self.arc() });
                }
                After::Disconnected => {
                    // A service that never started is not told it ended.
                    let started = !matches!(self.lock().service, ServiceStart::Waiting(_));
                    if let Some(hook) = self.service.on_disconnect.clone().filter(|_| started) {
                        self.handles.fetch_add(1, Ordering::AcqRel);
                        let conn = Connection { shared: self.arc() };
                        hook(&conn);
                    }
                    self.run_close_hooks();
                }
            }
        }
    }

    /// Runs one queued request (no lock held) and sends its reply, or holds
    /// the reply back (see [`send_or_hold`](Self::send_or_hold)) when `hold`.
    /// Every kind of the peer's requests is answered here, in the order
    /// they came (an asynchronous method's, when its future is ready); the
    /// root request runs no user code and is answered under the lock, from
    /// this side's root.
    pub(super) fn dispatch(&self, seq: u64, request: Request, hold: bool) {
        if matches!(request, Request::Root) {
            return self.answer_root(seq, hold);
        }
        match nested(self.config.max_nesting, || start_request(request)) {
            Ok(Started::Later(future, what)) => self.start_task(seq, future, what, hold),
            Ok(Started::Done(result)) => self.answer(seq, result, hold),
            Err(too_deep) => self.answer(seq, Err((too_deep, "request".to_string())), hold),
        }
    }

    /// Answers a root request queued while the service waited for its
    /// transport (see [`ServiceStart`]), starting the service first. Out of
    /// line: `dispatch` runs at every level of nested calls, and its frame
    /// stays small.
    #[inline(never)]
    fn answer_root(&self, seq: u64, hold: bool) {
        self.handles.fetch_add(1, Ordering::AcqRel);
        self.start_service(&Connection { shared: self.arc() });
        let root = self.lock().served.clone();
        let reply = root.map(|root| Value::Object(ObjectRef::Local(root))).ok_or_else(no_service);
        self.answer(seq, reply.map_err(|e| (e, "root".into())), hold);
    }

    /// Sends the answer to the peer's request `seq` (with its traceback
    /// when it failed), or holds it back when `hold`.
    pub(super) fn answer(&self, seq: u64, result: Result<Value, (RemoteError, String)>, hold: bool) {
        let result = result.map_err(|(mut e, what)| {
            if self.config.include_traceback {
                e.traceback.push(format!(
                    "Traceback (most recent call last):\n  in {what} (served to {})\n{}: {}",
                    self.label, e.type_name, e.message
                ));
            }
            e
        });
        let mut after = Vec::new();
        {
            let mut st = self.lock();
            st.progress += 1;
            st.proto.send_reply(seq, result);
            let held = self.send_or_hold(&mut st, &mut after, hold);
            if !held && self.wants_write(&st) {
                self.wake_driver(&st);
            }
            self.charge(&st, &mut after);
        }
        self.finish(after);
    }
}
