//! `AsyncResult`: a reply that will arrive later (RPyC's semantics exactly).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Misuse, Place, Result};
use crate::value::{from_value_at, Value};

/// What an `AsyncResult` needs from the connection that will complete it.
pub(crate) trait ReplySource: Send + Sync + 'static {
    /// Serves whatever is already readable, without blocking.
    fn poll(&self);
    /// Serves the connection until `slot` is done or expired.
    fn wait_for(&self, slot: &Arc<Slot>) -> Result<()>;
    /// The connection's clock.
    fn now(&self) -> Instant;
    /// Tells the connection that request `seq` now expires at `deadline`.
    fn set_deadline(&self, seq: u64, deadline: Instant);
    /// True while something serves the connection on its own (an event
    /// loop it is attached to, a `BgServingThread`, a thread in
    /// `serve_all`): only then can a future wait for a reply.
    fn is_served(&self) -> bool;
}

type Callback = Box<dyn FnOnce(&AsyncResult) + Send>;

pub(crate) struct Slot {
    state: Mutex<SlotState>,
    /// What the value is (the result of which call), for conversion errors.
    place: Place,
}

struct SlotState {
    seq: u64,
    outcome: Option<Result<Value>>,
    /// Set when the expiry passed before the reply arrived.
    expired: bool,
    expiry: Option<(Instant, Duration)>,
    callbacks: Vec<Callback>,
    /// Every task awaiting the result (clones may be awaited by several).
    wakers: Vec<Waker>,
    /// Someone learned the outcome (a `value*`, `error`, `wait`, `ready`
    /// that returned true, a callback, a completed future): an unread
    /// remote error is logged when the slot is freed.
    observed: bool,
}

impl Slot {
    pub(crate) fn new(seq: u64, expiry: Option<(Instant, Duration)>, place: Place) -> Arc<Slot> {
        Arc::new(Slot {
            place,
            state: Mutex::new(SlotState {
                seq,
                outcome: None,
                expired: false,
                expiry,
                callbacks: Vec::new(),
                wakers: Vec::new(),
                observed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once a reply arrived or the result expired: nothing more will happen.
    pub(crate) fn is_settled(&self) -> bool {
        let s = self.lock();
        s.outcome.is_some() || s.expired
    }

    /// Stores the outcome and runs the callbacks (outside the lock, so a
    /// callback may use the result). Ignored once settled.
    pub(crate) fn complete(self: &Arc<Self>, outcome: Result<Value>, driver: Option<Arc<dyn ReplySource>>) {
        let (callbacks, wakers) = {
            let mut s = self.lock();
            if s.outcome.is_some() || s.expired {
                return;
            }
            s.outcome = Some(outcome);
            let callbacks = std::mem::take(&mut s.callbacks);
            s.observed |= !callbacks.is_empty();
            (callbacks, std::mem::take(&mut s.wakers))
        };
        wakers.into_iter().for_each(Waker::wake);
        if !callbacks.is_empty() {
            let handle = AsyncResult::with(self.clone(), driver);
            for cb in callbacks {
                cb(&handle);
            }
        }
    }

    /// Marks the result expired: its callbacks never run and a late reply is
    /// dropped.
    pub(crate) fn expire(&self) {
        let (callbacks, wakers) = {
            let mut s = self.lock();
            if s.outcome.is_some() || s.expired {
                return;
            }
            s.expired = true;
            (std::mem::take(&mut s.callbacks), std::mem::take(&mut s.wakers))
        };
        // Dropped outside the lock: a callback's captures may do anything on drop.
        drop(callbacks);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Takes the wakers of every task awaiting this result, so that they
    /// poll again (the connection lost its last standing server).
    pub(crate) fn take_wakers(&self) -> Vec<Waker> {
        std::mem::take(&mut self.lock().wakers)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let (Some(Err(e @ Error::Remote(_))), false) = (&s.outcome, s.observed) {
            log::warn!("netref: an async call failed and nobody read its error: {e}");
        }
    }
}

/// The result of an asynchronous call, which arrives later.
///
/// As in RPyC: [`ready`](Self::ready), [`error`](Self::error),
/// [`expired`](Self::expired), [`value`](Self::value), [`wait`](Self::wait),
/// [`add_callback`](Self::add_callback), [`set_expiry`](Self::set_expiry).
/// It is also a [`Future`], woken by whichever thread or event loop serves the
/// connection when the reply arrives (or the result expires).
///
/// Cloning is cheap; clones share the one result, and every clone may be
/// awaited (each waiting task is woken).
///
/// # Typed results
///
/// `T` is what [`value`](Self::value), [`into_value`](Self::into_value) and
/// `.await` return, converted from the reply's [`Value`]. The calls of
/// [`async_`](crate::async_) and [`timed`](crate::timed) return
/// `AsyncResult<Value>` (plain `AsyncResult`); [`typed`](Self::typed) views
/// the same result as another type, without copying anything:
///
/// ```
/// # async fn demo(root: netref::RemoteObject) -> netref::Result<()> {
/// let sum = netref::async_(&root).call_method("add", (1, 2)).typed::<i64>().await?;
/// assert_eq!(sum, 3);
/// # Ok(()) }
/// ```
///
/// # Awaiting
///
/// `.await` does not serve the connection: the future waits for whoever
/// does to read the reply and wake it. What happens depends on the program:
///
/// - **The connection is attached to an event loop** (netref-glib,
///   netref-calloop, netref-mio, netref-polling): the loop reads the reply and
///   wakes the future, from any executor on any thread. The usual setup for
///   a GUI or any program that runs a loop.
/// - **A [`BgServingThread`](crate::BgServingThread) serves it** (or another
///   thread is inside [`Connection::serve_all`](crate::Connection::serve_all)):
///   that thread reads the reply and wakes the future. If the last of them
///   stops before the reply, a future already waiting is woken and fails
///   with `Unserved` (below) instead of hanging.
/// - **Nothing serves it**: awaiting fails at once with
///   [`Error::Misuse`]`(`[`Misuse::Unserved`]`)`, rather than wait for a reply
///   nobody will read. The fix, as the error says: attach the connection to
///   an event loop, or start a `BgServingThread`, or call
///   [`value`](Self::value) (or [`wait`](Self::wait)), which serves the
///   connection from the calling thread until the reply is here (RPyC's
///   semantics, for programs without a loop).
///
/// A result that has already settled (its reply arrived, or it expired) is
/// returned whatever serves the connection. An expiry
/// ([`set_expiry`](Self::set_expiry), [`timed`](crate::timed)) ends a wait
/// with [`Error::Timeout`] at its deadline.
///
/// # Errors nobody reads
///
/// When the reply is the peer's error ([`Error::Remote`]) and nobody learned
/// of it (no `value*`, [`error`](Self::error), [`wait`](Self::wait), `ready()`
/// that returned true, callback or completed future) by the time the last
/// handle is dropped, it is logged with `log::warn!`, so a fire-and-forget
/// call that fails does not fail silently. A closed connection and an expiry
/// are not replies and are not logged.
pub struct AsyncResult<T = Value, E = Error> {
    slot: Arc<Slot>,
    driver: Option<Arc<dyn ReplySource>>,
    /// `fn() -> (T, E)`: the handle is `Send + Sync` and owns no `T` or `E`.
    typed: PhantomData<fn() -> (T, E)>,
}

impl<T, E> Clone for AsyncResult<T, E> {
    fn clone(&self) -> Self {
        AsyncResult::with(self.slot.clone(), self.driver.clone())
    }
}

impl AsyncResult {
    pub(crate) fn new(slot: Arc<Slot>, driver: Arc<dyn ReplySource>) -> Self {
        AsyncResult::with(slot, Some(driver))
    }
}

impl<T, E> AsyncResult<T, E> {
    fn with(slot: Arc<Slot>, driver: Option<Arc<dyn ReplySource>>) -> Self {
        AsyncResult { slot, driver, typed: PhantomData }
    }

    /// A result that is already an error (the call could not even be sent).
    pub fn failed(error: Error) -> Self {
        // Not a reply: nothing to log if nobody reads it.
        AsyncResult::answered(Err(error), Place::Value, true)
    }

    /// A result already here: a call of one of this side's own objects
    /// through a typed proxy, which answered at once. `observed`: nothing
    /// to log if nobody reads an error.
    pub(crate) fn answered(outcome: Result<Value>, place: Place, observed: bool) -> Self {
        let slot = Slot::new(0, None, place);
        slot.complete(outcome, None);
        slot.lock().observed = observed;
        AsyncResult::with(slot, None)
    }

    /// The same result, whose [`value`](Self::value), [`into_value`](Self::into_value)
    /// and `.await` return a `U` (converted from the reply's [`Value`] when
    /// read). Shares the result with every clone; copies nothing.
    pub fn typed<U>(self) -> AsyncResult<U, E> {
        AsyncResult::with(self.slot, self.driver)
    }

    /// The same result, whose [`value`](Self::value), [`into_value`](Self::into_value)
    /// and `.await` fail with an `F` made from netref's [`Error`]: what a
    /// typed proxy's method returning `Result<T, E>` gives
    /// ([`CallError<E>`](crate::typed::CallError), which tells the method's
    /// own error apart from a failed call).
    pub fn with_error<F>(self) -> AsyncResult<T, F> {
        AsyncResult::with(self.slot, self.driver)
    }

    fn settled(&self) -> bool {
        self.slot.is_settled()
    }

    fn now(&self) -> Instant {
        self.driver.as_ref().map_or_else(Instant::now, |d| d.now())
    }

    /// True when the reply has arrived. When it has not, serves what the
    /// connection has already received, without blocking (RPyC's
    /// semantics); on a connection attached to an event loop it only
    /// looks, since the loop serves the connection.
    pub fn ready(&self) -> bool {
        if self.is_ready_now() {
            return true;
        }
        if self.expired() {
            return false;
        }
        if let Some(d) = &self.driver {
            d.poll();
        }
        self.is_ready_now()
    }

    /// True when the outcome is here; marks it read.
    fn is_ready_now(&self) -> bool {
        let mut s = self.slot.lock();
        s.observed |= s.outcome.is_some();
        s.outcome.is_some()
    }

    /// True when the reply has arrived and is an error.
    pub fn error(&self) -> bool {
        self.ready() && matches!(self.slot.lock().outcome, Some(Err(_)))
    }

    /// True when the expiry passed before the reply arrived. Without
    /// [`set_expiry`](Self::set_expiry) (or [`timed`](crate::timed)) a result never expires.
    pub fn expired(&self) -> bool {
        let s = self.slot.lock();
        if s.outcome.is_some() {
            return false;
        }
        s.expired || s.expiry.is_some_and(|(at, _)| self.now() >= at)
    }

    /// Serves the connection until the reply arrives or the result expires;
    /// fails with [`Error::Timeout`] in the latter case.
    pub fn wait(&self) -> Result<()> {
        if !self.settled() {
            if let Some(d) = &self.driver {
                d.wait_for(&self.slot)?;
            }
        }
        let mut s = self.slot.lock();
        if s.outcome.is_some() {
            s.observed = true;
            return Ok(());
        }
        let after = s.expiry.map_or(Duration::ZERO, |(_, d)| d);
        Err(Error::Timeout(after))
    }

    /// The reply as it arrived: waits for it ([`wait`](Self::wait)), then
    /// returns a copy of the value, or the peer's error as `Err`.
    fn outcome(&self) -> Result<Value> {
        self.wait()?;
        self.slot.lock().outcome.clone().expect("waited until settled with an outcome")
    }

    /// [`value`](Self::value) converted to another Rust type than `T`.
    pub fn value_as<U: DeserializeOwned>(&self) -> Result<U> {
        convert(self.outcome()?, &self.slot.place)
    }

    /// Runs `f` when the reply arrives, on the thread or loop that delivers
    /// it; at once when it is already here. Never runs if the result expires
    /// first.
    pub fn add_callback(&self, f: impl FnOnce(&AsyncResult<T, E>) + Send + 'static) {
        {
            let mut s = self.slot.lock();
            if s.outcome.is_none() {
                if !s.expired {
                    s.callbacks.push(Box::new(move |r: &AsyncResult| f(&r.clone().typed().with_error())));
                }
                return;
            }
            s.observed = true;
        }
        f(self);
    }

    /// Makes the result expire `timeout` from now unless the reply is here by
    /// then. An event-loop backend fires the expiry at its deadline (callbacks
    /// dropped, futures woken with the timeout error, the peer sent a cancel)
    /// even if nobody polls the result.
    pub fn set_expiry(&self, timeout: Duration) {
        let at = self.now() + timeout;
        let seq = {
            let mut s = self.slot.lock();
            if s.outcome.is_some() || s.expired {
                return;
            }
            s.expiry = Some((at, timeout));
            s.seq
        };
        if let Some(d) = &self.driver {
            d.set_deadline(seq, at);
        }
    }
}

impl<T: DeserializeOwned, E: From<Error>> AsyncResult<T, E> {
    /// The value: waits for it ([`wait`](Self::wait)), then returns it, or the
    /// peer's error as `Err`. May be called again; it returns the same outcome.
    pub fn value(&self) -> Result<T, E> {
        self.outcome().and_then(|v| convert(v, &self.slot.place)).map_err(E::from)
    }

    /// [`value`](Self::value), consuming the result: when this is its only
    /// handle the value is moved out rather than copied (a synchronous call
    /// returning a megabyte copied it once more just to drop the original).
    pub fn into_value(self) -> Result<T, E> {
        self.take_value().map_err(E::from)
    }

    fn take_value(self) -> Result<T> {
        self.wait()?;
        let mut s = self.slot.lock();
        // Nobody else can see the outcome: not a clone of this result, not
        // the connection (it lets go of a slot once it settles it).
        let outcome = if Arc::strong_count(&self.slot) == 1 { s.outcome.take() } else { s.outcome.clone() };
        drop(s);
        convert(outcome.expect("waited until settled with an outcome")?, &self.slot.place)
    }
}

/// The stored `Value` as a `T`: a `Value` is moved as it is (no check, no
/// walk: it came off the wire), anything else converted.
fn convert<T: DeserializeOwned>(value: Value, place: &Place) -> Result<T> {
    match crate::value::cast::<Value, T>(value) {
        Ok(t) => Ok(t),
        Err(value) => from_value_at(value, place),
    }
}

impl<T: DeserializeOwned, E: From<Error>> Future for AsyncResult<T, E> {
    type Output = Result<T, E>;

    /// Ready with the outcome once the reply is here or the result expired;
    /// otherwise registers the task's waker and stays pending while
    /// something serves the connection, or fails with
    /// [`Misuse::Unserved`] when nothing does (see [Awaiting](AsyncResult#awaiting)).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(ready) = self.poll_settled(Some(cx.waker())) {
            return Poll::Ready(ready.map_err(E::from));
        }
        // Checked after the waker is in: a last server stopping from now on
        // finds it and wakes it, so the future polls again and fails here.
        if self.driver.as_ref().is_some_and(|d| !d.is_served()) {
            // The reply may have come in meanwhile: a settled result wins.
            let outcome = self.poll_settled(None).unwrap_or(Err(Error::Misuse(Misuse::Unserved)));
            return Poll::Ready(outcome.map_err(E::from));
        }
        Poll::Pending
    }
}

impl<T: DeserializeOwned, E> AsyncResult<T, E> {
    /// The outcome when the result has settled; otherwise registers `waker`
    /// (if given) among the tasks to wake.
    fn poll_settled(&self, waker: Option<&Waker>) -> Option<Result<T>> {
        let mut s = self.slot.lock();
        if let Some(outcome) = &s.outcome {
            let outcome = outcome.clone();
            s.observed = true;
            drop(s);
            return Some(outcome.and_then(|v| convert(v, &self.slot.place)));
        }
        if s.expired {
            let after = s.expiry.map_or(Duration::ZERO, |(_, d)| d);
            return Some(Err(Error::Timeout(after)));
        }
        if let Some(waker) = waker {
            if !s.wakers.iter().any(|w| w.will_wake(waker)) {
                s.wakers.push(waker.clone());
            }
        }
        None
    }
}

impl<T, E> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.slot.lock();
        let state = match (&s.outcome, s.expired) {
            (Some(Ok(_)), _) => "ready",
            (Some(Err(_)), _) => "error",
            (None, true) => "expired",
            (None, false) => "pending",
        };
        write!(f, "<AsyncResult object ({state})>")
    }
}
