//! The subscriber's side of an [`Event`](super::Event): pulling batches
//! from the subscription object and handing their events to a closure
//! ([`Subscription`]), a stream ([`EventStream`]) or an iterator
//! ([`EventIter`]).
//!
//! Each pulls again only once it has handled the last batch (the closure
//! ran on each event; the stream or iterator was asked for more than it
//! had), so a slow consumer leaves its events in its own queue at the
//! server, where its policy applies.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use serde::de::DeserializeOwned;

use super::queue::{Sub, SubscriptionObject, SUBSCRIPTION};
use super::{Ended, Missed};
use crate::connection::async_result::AsyncResult;
use crate::error::{ConvertError, Error, Result};
use crate::typed::Handle;
use crate::value::object::LocalObject;
use crate::value::{from_value, Value};

/// Where a subscriber pulls from: the peer's subscription object, or this
/// side's own.
#[derive(Clone)]
enum Source {
    Peer(Handle),
    /// `_object` is never read, only held: the subscription lasts as long
    /// as its object, which ends it when dropped.
    Here {
        _object: LocalObject,
        sub: Arc<Sub>,
    },
}

impl Source {
    /// The subscription behind `object`, as a subscribe call answered.
    fn of(object: Handle) -> Result<Source> {
        let Some(local) = object.as_local() else { return Ok(Source::Peer(object)) };
        match (local.object() as &dyn Any).downcast_ref::<SubscriptionObject>() {
            Some(s) => Ok(Source::Here { sub: s.sub.clone(), _object: local.clone() }),
            None => Err(Error::Convert(ConvertError::other(format!(
                "subscribing answered this side's own `{}` object, not a `{SUBSCRIPTION}`",
                local.type_name()
            )))),
        }
    }

    /// Starts a pull of the peer's subscription.
    fn pull(object: &Handle) -> AsyncResult<Value> {
        object.async_method("pull", (), None)
    }
}

/// One pull's answer, read: what the subscriber sees, in order, and
/// whether the subscription ended (nothing follows it).
fn read_batch<T: DeserializeOwned>(
    answer: Result<Value>,
    into: &mut VecDeque<std::result::Result<T, Missed>>,
) -> bool {
    let (items, lagged, ended) = match answer.and_then(from_value::<(Vec<Value>, u64, Option<String>)>) {
        Ok(batch) => batch,
        Err(e) => {
            into.push_back(Err(Missed::Ended(Ended::Failed(e))));
            return true;
        }
    };
    if lagged > 0 {
        into.push_back(Err(Missed::Lagged(lagged)));
    }
    for item in items {
        match from_value::<T>(item) {
            Ok(t) => into.push_back(Ok(t)),
            Err(e) => {
                into.push_back(Err(Missed::Ended(Ended::Failed(e))));
                return true;
            }
        }
    }
    match ended.as_deref().map(Ended::from_wire) {
        None => false,
        // The subscriber cancelled it: it knows, and expects nothing more.
        Some(Ended::Cancelled) => true,
        Some(why) => {
            into.push_back(Err(Missed::Ended(why)));
            true
        }
    }
}

/// A subscription whose events run a closure; dropping it ends the
/// subscription (as [`cancel`](Self::cancel) does, without waiting).
///
/// The closure runs where the subscription's connection is served; a
/// batch is pulled again only once it has run on the last one.
pub struct Subscription<T> {
    shared: Arc<Closure<T>>,
}

/// What a closure subscription and its pulls share.
struct Closure<T> {
    f: Mutex<Box<dyn FnMut(T) + Send>>,
    /// The peer's subscription object while the subscription lasts
    /// (taken to end it); `None` for this side's own.
    object: Mutex<Option<Source>>,
    cancelled: AtomicBool,
    lagged: AtomicU64,
    ended: Mutex<Option<Ended>>,
}

impl<T: DeserializeOwned + Send + 'static> Subscription<T> {
    /// Runs `f` on each event of the subscription `object`.
    pub(super) fn start(object: Handle, f: Box<dyn FnMut(T) + Send>) -> Result<Self> {
        let source = Source::of(object)?;
        let shared = Arc::new(Closure {
            f: Mutex::new(f),
            object: Mutex::new(Some(source.clone())),
            cancelled: AtomicBool::new(false),
            lagged: AtomicU64::new(0),
            ended: Mutex::new(None),
        });
        match source {
            Source::Peer(object) => Closure::pull(shared.clone(), &object),
            Source::Here { sub, .. } => Arc::new(LocalPump { sub, shared: shared.clone() }).run(),
        }
        Ok(Subscription { shared })
    }
}

impl<T: DeserializeOwned + Send + 'static> Closure<T> {
    /// Pulls the next batch; its callback runs the closure and pulls again.
    fn pull(shared: Arc<Self>, object: &Handle) {
        Source::pull(object).add_callback(move |result| {
            let answer = result.value();
            if !shared.deliver(answer) {
                let next = shared.object.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(Source::Peer(object)) = next {
                    Closure::pull(shared, &object);
                }
            }
        });
    }

    /// Runs the closure on what a pull answered: true when the
    /// subscription ended.
    fn deliver(&self, answer: Result<Value>) -> bool {
        let mut seen = VecDeque::new();
        let ended = read_batch::<T>(answer, &mut seen);
        let mut f = self.f.lock().unwrap_or_else(|e| e.into_inner());
        for event in seen {
            if self.cancelled.load(Ordering::SeqCst) {
                return true;
            }
            match event {
                Ok(t) => f(t),
                Err(Missed::Lagged(n)) => {
                    log::debug!("an event subscriber fell behind: {n} events missed");
                    self.lagged.fetch_add(n, Ordering::SeqCst);
                }
                Err(Missed::Ended(why)) => {
                    log::debug!("an event subscription ended: {why}");
                    *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
            }
        }
        drop(f);
        if ended {
            // Dropped with the lock released: dropping this side's own
            // subscription object ends it, which wakes its pump.
            let object = self.object.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(object);
        }
        ended
    }
}

/// This side's own subscription run by its emitter: woken by each event,
/// it runs the closure on the emitting thread.
struct LocalPump<T> {
    sub: Arc<Sub>,
    shared: Arc<Closure<T>>,
}

impl<T: DeserializeOwned + Send + 'static> LocalPump<T> {
    fn run(self: Arc<Self>) {
        let waker = Waker::from(self.clone());
        while let Some(batch) = self.sub.take(Some(&waker)) {
            if self.shared.deliver(Ok(batch.into_value())) {
                return;
            }
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Wake for LocalPump<T> {
    fn wake(self: Arc<Self>) {
        self.run();
    }
}

impl<T> Subscription<T> {
    /// How many events it missed so far ([`Missed::Lagged`]): dropped, or
    /// replaced by newer ones, before the closure could run on them.
    pub fn lagged(&self) -> u64 {
        self.shared.lagged.load(Ordering::SeqCst)
    }

    /// Why it ended, once it has (a [`cancel`](Self::cancel)led one is
    /// not reported: it ends with the handle).
    pub fn ended(&self) -> Option<Ended> {
        self.shared.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ends the subscription and waits until the server has: the closure
    /// runs on no event emitted after this returns.
    pub fn cancel(self) -> Result<()> {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        let source = self.shared.object.lock().unwrap_or_else(|e| e.into_inner()).take();
        match source {
            Some(Source::Peer(object)) => object.call_method::<(), Error>("cancel", ()),
            // Dropping this side's object ends it.
            Some(Source::Here { .. }) | None => Ok(()),
        }
    }
}

impl<T> Drop for Subscription<T> {
    /// Ends the subscription without waiting: releasing the subscription
    /// object ends it at the server (a pull on its way answers that it
    /// ended, and nothing is pulled after).
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        // Dropped with the lock released (see `deliver`).
        let object = self.shared.object.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(object);
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").field("lagged", &self.lagged()).field("ended", &self.ended()).finish()
    }
}

/// A subscription's events as a [`Stream`]: `Ok(event)`, or what was
/// missed in its place ([`Missed::Lagged`], then the events after the
/// gap; [`Missed::Ended`], then the stream's end). Dropping it ends the
/// subscription.
///
/// The next batch is pulled when the stream is polled with nothing left,
/// so it is awaited where the connection is served (an event loop such
/// as GLib's `spawn_future_local`, calloop's executor, or a thread with a
/// `BgServingThread`); on a connection nothing serves, it ends with
/// [`Ended::Failed`] carrying [`Misuse::Unserved`](crate::Misuse::Unserved).
pub struct EventStream<T> {
    source: Source,
    pulling: Option<AsyncResult<Value>>,
    ready: VecDeque<std::result::Result<T, Missed>>,
    done: bool,
}

impl<T: DeserializeOwned> EventStream<T> {
    pub(super) fn new(object: Handle) -> Result<Self> {
        Ok(EventStream { source: Source::of(object)?, pulling: None, ready: VecDeque::new(), done: false })
    }
}

// Nothing in the stream is pinned: its events are moved out by value.
impl<T> Unpin for EventStream<T> {}

impl<T: DeserializeOwned> Stream for EventStream<T> {
    type Item = std::result::Result<T, Missed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(event));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let answer = match &this.source {
                Source::Here { sub, .. } => match sub.take(Some(cx.waker())) {
                    Some(batch) => Ok(batch.into_value()),
                    None => return Poll::Pending,
                },
                Source::Peer(object) => {
                    let pulling = this.pulling.get_or_insert_with(|| Source::pull(object));
                    match Pin::new(pulling).poll(cx) {
                        Poll::Ready(answer) => {
                            this.pulling = None;
                            answer
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
            };
            this.done = read_batch(answer, &mut this.ready);
        }
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").field("queued", &self.ready.len()).field("done", &self.done).finish()
    }
}

/// A subscription's events from a blocking iterator: items as
/// [`EventStream`]'s. Each `next()` with nothing left pulls and waits,
/// serving the connection meanwhile as a synchronous call does (so it
/// fails, ending the iteration, where a synchronous call would: on an
/// event-loop server's thread). Dropping it ends the subscription.
pub struct EventIter<T> {
    source: Source,
    ready: VecDeque<std::result::Result<T, Missed>>,
    done: bool,
    events: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> EventIter<T> {
    pub(super) fn new(object: Handle) -> Result<Self> {
        Ok(EventIter {
            source: Source::of(object)?,
            ready: VecDeque::new(),
            done: false,
            events: PhantomData,
        })
    }
}

impl<T: DeserializeOwned> Iterator for EventIter<T> {
    type Item = std::result::Result<T, Missed>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let answer = match &self.source {
                Source::Here { sub, .. } => Ok(sub.take_blocking().into_value()),
                Source::Peer(object) => Source::pull(object).value(),
            };
            self.done = read_batch(answer, &mut self.ready);
        }
    }
}

impl<T> fmt::Debug for EventIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventIter").field("queued", &self.ready.len()).field("done", &self.done).finish()
    }
}
