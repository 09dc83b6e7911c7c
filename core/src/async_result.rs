//! `AsyncResult`: a reply that will arrive later (RPyC's semantics exactly).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Place, Result};
use crate::value::{from_value_at, Value};

/// What an `AsyncResult` needs from the connection that will complete it.
pub(crate) trait Driver: Send + Sync + 'static {
    /// Serves whatever is already readable, without blocking.
    fn poll(&self);
    /// Serves the connection until `slot` is done or expired.
    fn wait_for(&self, slot: &Arc<Slot>) -> Result<()>;
    /// The connection's clock.
    fn now(&self) -> Instant;
    /// Tells the connection that request `seq` now expires at `deadline`.
    fn set_deadline(&self, seq: u64, deadline: Instant);
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
    waker: Option<Waker>,
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
                waker: None,
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
    pub(crate) fn complete(self: &Arc<Self>, outcome: Result<Value>, driver: Option<Arc<dyn Driver>>) {
        let (callbacks, waker) = {
            let mut s = self.lock();
            if s.outcome.is_some() || s.expired {
                return;
            }
            s.outcome = Some(outcome);
            (std::mem::take(&mut s.callbacks), s.waker.take())
        };
        if let Some(w) = waker {
            w.wake();
        }
        if !callbacks.is_empty() {
            let handle = AsyncResult { slot: self.clone(), driver };
            for cb in callbacks {
                cb(&handle);
            }
        }
    }

    /// Marks the result expired: its callbacks never run and a late reply is
    /// dropped.
    pub(crate) fn expire(&self) {
        let waker: (Vec<Callback>, Option<Waker>) = {
            let mut s = self.lock();
            if s.outcome.is_some() || s.expired {
                return;
            }
            s.expired = true;
            (std::mem::take(&mut s.callbacks), s.waker.take())
        };
        // Dropped outside the lock: a callback's captures may do anything on drop.
        drop(waker.0);
        if let Some(w) = waker.1 {
            w.wake();
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
/// Cloning is cheap; clones share the one result.
#[derive(Clone)]
pub struct AsyncResult {
    slot: Arc<Slot>,
    driver: Option<Arc<dyn Driver>>,
}

impl AsyncResult {
    pub(crate) fn new(slot: Arc<Slot>, driver: Arc<dyn Driver>) -> Self {
        AsyncResult { slot, driver: Some(driver) }
    }

    /// A result that is already an error (the call could not even be sent).
    pub fn failed(error: Error) -> Self {
        let slot = Slot::new(0, None, Place::Value);
        slot.complete(Err(error), None);
        AsyncResult { slot, driver: None }
    }

    fn settled(&self) -> bool {
        self.slot.is_settled()
    }

    fn now(&self) -> Instant {
        self.driver.as_ref().map_or_else(Instant::now, |d| d.now())
    }

    /// True when the reply has arrived. When it has not, serves what the
    /// connection has already received, without blocking.
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

    fn is_ready_now(&self) -> bool {
        self.slot.lock().outcome.is_some()
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
        let s = self.slot.lock();
        if s.outcome.is_some() {
            return Ok(());
        }
        let after = s.expiry.map_or(Duration::ZERO, |(_, d)| d);
        Err(Error::Timeout(after))
    }

    /// The value: waits for it ([`wait`](Self::wait)), then returns it, or the
    /// peer's error as `Err`. May be called again; it returns the same outcome.
    pub fn value(&self) -> Result<Value> {
        self.wait()?;
        self.slot.lock().outcome.clone().expect("waited until settled with an outcome")
    }

    /// [`value`](Self::value) converted to a Rust type; a conversion error
    /// names the call (``the result of `watch`: expected ...``).
    pub fn value_as<T: DeserializeOwned>(&self) -> Result<T> {
        from_value_at(self.value()?, &self.slot.place)
    }

    /// [`value`](Self::value), consuming the result: when this is its only
    /// handle the value is moved out rather than copied (a synchronous call
    /// returning a megabyte copied it once more just to drop the original).
    pub fn into_value(self) -> Result<Value> {
        self.wait()?;
        let mut s = self.slot.lock();
        // Nobody else can see the outcome: not a clone of this result, not
        // the connection (it lets go of a slot once it settles it).
        let outcome = if Arc::strong_count(&self.slot) == 1 { s.outcome.take() } else { s.outcome.clone() };
        outcome.expect("waited until settled with an outcome")
    }

    /// Runs `f` when the reply arrives, on the thread or loop that delivers
    /// it; at once when it is already here. Never runs if the result expires
    /// first.
    pub fn add_callback(&self, f: impl FnOnce(&AsyncResult) + Send + 'static) {
        {
            let mut s = self.slot.lock();
            if s.outcome.is_none() {
                if !s.expired {
                    s.callbacks.push(Box::new(f));
                }
                return;
            }
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

impl Future for AsyncResult {
    type Output = Result<Value>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.lock();
        if let Some(outcome) = &s.outcome {
            return Poll::Ready(outcome.clone());
        }
        if s.expired {
            let after = s.expiry.map_or(Duration::ZERO, |(_, d)| d);
            return Poll::Ready(Err(Error::Timeout(after)));
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl fmt::Debug for AsyncResult {
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
