//! [`Event<T>`]: what a server emits and its subscribers receive, each
//! subscription with its own bounded queue and policy.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Args, Handle};
use crate::error::{Error, Misuse, RemoteError, Result};
use crate::value::object::{CallResult, LocalObject};
use crate::value::{to_value, Value};

mod queue;
mod subscriber;

use queue::{Hub, Item, Offer, Sub};
pub use subscriber::{EventIter, EventStream, Subscription};

/// The most events one subscription's queue may hold.
pub const MAX_CAPACITY: usize = 4096;

/// An event of type `T` (a tuple of what each occurrence carries): the
/// server's, which it [`emit`](Self::emit)s, or the peer's, which this
/// side subscribes to.
///
/// In a `#[netref::service]` trait an event is a method marked
/// `#[netref(event)]` returning the server's `Event<T>`:
///
/// ```
/// use netref::typed::Event;
///
/// #[netref::service]
/// pub trait Thermometer {
///     /// Each reading: (sensor, degrees).
///     #[netref(event)]
///     fn readings(&self) -> Event<(String, f64)>;
/// }
///
/// struct Sensors {
///     readings: Event<(String, f64)>,
/// }
///
/// impl Thermometer for Sensors {
///     fn readings(&self) -> Event<(String, f64)> {
///         self.readings.clone()
///     }
/// }
///
/// # use netref::{testing::Pair, typed::{Missed, Subscribe}, Service};
/// let sensors = Sensors { readings: Event::new() };
/// let readings = sensors.readings.clone();
/// let pair = Pair::new(Service::none(), Service::typed::<dyn Thermometer>(sensors));
///
/// // The client keeps the latest reading of each sensor, 16 sensors at most.
/// let thermometer = ThermometerProxy::root(&pair.client)?;
/// let mut latest = thermometer.readings().iter(Subscribe::coalesce(16))?;
/// readings.emit(("kitchen".into(), 21.5))?;
/// readings.emit(("kitchen".into(), 22.0))?;
/// assert!(matches!(latest.next(), Some(Err(Missed::Lagged(1)))));
/// assert_eq!(latest.next().unwrap().unwrap(), ("kitchen".to_string(), 22.0));
/// # Ok::<(), netref::Error>(())
/// ```
///
/// The server emits ([`emit`](Event::emit)); a client subscribes through
/// the proxy (`thermometer.readings().subscribe(..)`), choosing how many
/// events its queue holds and what happens when it is full
/// ([`Subscribe`]): block the emitter, drop the oldest, coalesce by key,
/// or disconnect the subscriber. It receives them with a closure run
/// wherever its connection is served ([`subscribe`](Event::subscribe)),
/// a [`Stream`](futures_core::Stream) ([`stream`](Event::stream)), or a
/// blocking iterator ([`iter`](Event::iter)).
///
/// On the wire an event method takes the subscription's options and
/// returns a subscription object, whose asynchronous `pull()` answers
/// with what is queued once there is something: a subscriber pulls again
/// when it has handled a batch, so one that falls behind fills only its
/// own queue, and neither the connection nor the other subscribers wait
/// for it.
///
/// [`Event::new`] makes one; clones are the same event. A
/// `#[netref(event)]` method returns it, and the proxy's method of the
/// same name gives the peer's event to subscribe to. Dropping every clone
/// of the server's event ends its subscriptions ([`Ended::Dropped`]).
pub struct Event<T> {
    source: Source,
    /// `fn(T) -> T`: the event is `Send + Sync` and holds no `T`.
    events: PhantomData<fn(T) -> T>,
}

#[derive(Clone)]
enum Source {
    /// This side's own event.
    Here(Arc<Hub>),
    /// The event of an object's method (the peer's, or this side's own
    /// reached through a proxy): subscribing calls the method.
    Method { object: Handle, method: Arc<str> },
}

/// What a subscription does when its queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The emitter waits until the subscriber has taken some:
    /// [`emit`](Event::emit) blocks, [`emit_async`](Event::emit_async)
    /// stays pending. Nothing is lost; a slow subscriber slows the event
    /// down (for every subscriber), not the connection.
    Block,
    /// The oldest queued event is dropped for the new one; the subscriber
    /// is told how many it missed ([`Missed::Lagged`]).
    DropOldest,
    /// An event whose key (the first element of its tuple; the whole
    /// value otherwise) equals a queued one's replaces it in place, so the
    /// subscriber sees the latest of each key. A new key arriving at a
    /// full queue drops the oldest. Replaced and dropped events count as
    /// lag.
    Coalesce,
    /// The subscription ends ([`Ended::Overflowed`]) once the subscriber
    /// is a full queue behind; it still receives what was queued.
    Disconnect,
}

/// How a subscription queues: its [`Policy`] and how many events it holds
/// (from 1 to [`MAX_CAPACITY`]).
///
/// ```
/// use netref::typed::{Policy, Subscribe};
///
/// let latest = Subscribe::new(Policy::Coalesce, 16);
/// assert_eq!(latest.policy, Policy::Coalesce);
/// assert_eq!(Subscribe::drop_oldest(64), Subscribe::new(Policy::DropOldest, 64));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// What happens when the queue is full.
    pub policy: Policy,
    /// How many events the queue holds.
    pub capacity: usize,
}

impl Subscribe {
    /// A queue of `capacity` events with `policy`.
    pub fn new(policy: Policy, capacity: usize) -> Self {
        Subscribe { policy, capacity }
    }

    /// [`Policy::Block`] with `capacity`.
    pub fn block(capacity: usize) -> Self {
        Subscribe::new(Policy::Block, capacity)
    }

    /// [`Policy::DropOldest`] with `capacity`.
    pub fn drop_oldest(capacity: usize) -> Self {
        Subscribe::new(Policy::DropOldest, capacity)
    }

    /// [`Policy::Coalesce`] with `capacity`.
    pub fn coalesce(capacity: usize) -> Self {
        Subscribe::new(Policy::Coalesce, capacity)
    }

    /// [`Policy::Disconnect`] with `capacity`.
    pub fn disconnect(capacity: usize) -> Self {
        Subscribe::new(Policy::Disconnect, capacity)
    }

    /// The options as a subscriber sent them, checked; `event` names the
    /// event in the error.
    fn checked(self, event: &str) -> Result<Subscribe, RemoteError> {
        if (1..=MAX_CAPACITY).contains(&self.capacity) {
            return Ok(self);
        }
        Err(RemoteError::value_error(format!(
            "`{event}`: a subscription holds from 1 to {MAX_CAPACITY} events, not {}",
            self.capacity
        )))
    }
}

impl Default for Subscribe {
    /// What a subscriber sending no options gets (a dynamic or Python
    /// client calling the event method bare): drop the oldest of 64.
    fn default() -> Self {
        Subscribe::drop_oldest(64)
    }
}

/// Why a subscription ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Ended {
    /// This side cancelled it ([`Subscription::cancel`], or dropping it).
    Cancelled,
    /// Its policy is [`Policy::Disconnect`] and it fell a full queue behind.
    Overflowed,
    /// The server dropped the event.
    Dropped,
    /// Pulling failed: the connection closed, nothing serves it, or the
    /// peer answered with something that is not a batch of `T`.
    Failed(Error),
}

impl Ended {
    /// The name a pull's answer gives the reason.
    fn wire_name(&self) -> &'static str {
        match self {
            Ended::Cancelled => "cancelled",
            Ended::Overflowed => "overflowed",
            Ended::Dropped => "dropped",
            Ended::Failed(_) => "failed",
        }
    }

    /// The reason a pull's answer names.
    fn from_wire(name: &str) -> Ended {
        match name {
            "cancelled" => Ended::Cancelled,
            "overflowed" => Ended::Overflowed,
            "dropped" => Ended::Dropped,
            other => Ended::Failed(Error::Remote(RemoteError::new(
                "RuntimeError",
                format!("the subscription ended: {other}"),
            ))),
        }
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Cancelled => f.write_str("the subscription was cancelled"),
            Ended::Overflowed => {
                f.write_str("the subscriber fell a full queue behind, so its subscription ended")
            }
            Ended::Dropped => f.write_str("the server dropped the event"),
            Ended::Failed(e) => write!(f, "the subscription failed: {e}"),
        }
    }
}

/// What a subscriber did not receive, in the place of what it missed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Missed {
    /// The subscriber fell behind and this many events were dropped (or,
    /// coalescing, replaced by newer ones) before the next it receives.
    #[error("fell behind: {0} events missed")]
    Lagged(u64),
    /// The subscription ended: nothing follows.
    #[error("{0}")]
    Ended(Ended),
}

impl<T> Event<T> {
    /// A new event of this side's, with no subscribers yet.
    pub fn new() -> Self {
        Event { source: Source::Here(Arc::new(Hub::default())), events: PhantomData }
    }

    /// The event `method` of the object behind `object`: what a proxy's
    /// `#[netref(event)]` method gives. Nothing is sent until it is
    /// subscribed to.
    pub fn of(object: Handle, method: &str) -> Self {
        Event { source: Source::Method { object, method: method.into() }, events: PhantomData }
    }

    /// How many subscriptions this side's event has (0 for the peer's).
    pub fn subscribers(&self) -> usize {
        match &self.source {
            Source::Here(hub) => hub.len(),
            Source::Method { .. } => 0,
        }
    }

    /// This side's hub, or the misuse of emitting the peer's event.
    fn hub(&self) -> Result<&Arc<Hub>> {
        match &self.source {
            Source::Here(hub) => Ok(hub),
            Source::Method { method, .. } => Err(Misuse::EmitsPeerEvent { event: method.to_string() }.into()),
        }
    }

    /// Subscribes with `options`: the subscription object, this side's or
    /// the peer's.
    fn subscription(&self, options: Subscribe) -> Result<Handle> {
        match &self.source {
            Source::Here(hub) => {
                let options = options.checked("event").map_err(Error::Remote)?;
                Ok(Handle::from(hub.subscribe(options).1))
            }
            Source::Method { object, method } => object.call_method::<Handle, Error>(method, (options,)),
        }
    }

    /// A subscription with `options`, as the object the subscriber pulls
    /// from: how a dynamic server ([`ObjectBuilder`](crate::ObjectBuilder))
    /// serves an event, so that a typed client (`#[netref::proxy]`)
    /// subscribes to it. The options are checked; the error is the one
    /// the subscriber receives.
    ///
    /// ```
    /// use netref::testing::Pair;
    /// use netref::typed::{Event, Subscribe};
    /// use netref::{ObjectBuilder, Service};
    ///
    /// #[netref::proxy]
    /// pub trait Ticker {
    ///     #[netref(event)]
    ///     fn ticks(&self) -> Event<(u64,)>;
    /// }
    ///
    /// let ticks: Event<(u64,)> = Event::new();
    /// let served = ticks.clone();
    /// let ticker = ObjectBuilder::new("Ticker")
    ///     .try_method("ticks", move |options: Subscribe| served.serve(options))
    ///     .build();
    /// let pair = Pair::new(Service::none(), Service::object(ticker));
    /// let mut each = TickerProxy::root(&pair.client)?.ticks().iter(Subscribe::block(8))?;
    /// ticks.emit((1,))?;
    /// assert_eq!(each.next().unwrap().unwrap(), (1,));
    /// # Ok::<(), netref::Error>(())
    /// ```
    pub fn serve(&self, options: Subscribe) -> Result<LocalObject, RemoteError> {
        let options = options.checked("event")?;
        match &self.source {
            Source::Here(hub) => Ok(hub.subscribe(options).1),
            Source::Method { method, .. } => Err(RemoteError::type_error(format!(
                "`{method}` is an event of another object: serve that object's event instead"
            ))),
        }
    }

    /// Answers a subscriber's call of the event method `callee`
    /// (`Trait.method`): its optional argument is the [`Subscribe`]
    /// options, its answer the subscription object. What the macro's
    /// server side calls.
    #[doc(hidden)]
    pub fn serve_subscribe(&self, args: &mut Args) -> CallResult {
        let callee = args.callee().clone();
        let options: Subscribe = args.take_or_default()?;
        let options = options.checked(&callee)?;
        match &self.source {
            Source::Here(hub) => Ok(Value::from(hub.subscribe(options).1)),
            // An implementation handing on an event of another object:
            // subscribing here subscribes there.
            Source::Method { object, method } => object
                .call_method::<Value, Error>(method, (options,))
                .map_err(|e| RemoteError::from_error(&e)),
        }
    }
}

impl<T: Serialize> Event<T> {
    /// Emits `value` to every subscriber: queued under each one's policy.
    /// Returns at once unless a [`Policy::Block`] subscription is full,
    /// when it blocks this thread until that subscriber takes some (other
    /// subscribers get `value` first).
    ///
    /// Fails when `value` cannot be converted, when this is the peer's
    /// event ([`Misuse::EmitsPeerEvent`]), or when it would block an
    /// event-loop server ([`Misuse::EmitBlocksLoopServer`]: await
    /// [`emit_async`](Self::emit_async) there). Blocking the thread that
    /// serves the blocked subscriber's own connection would wait for
    /// ever, so from a connection's serving thread prefer `emit_async`
    /// or another policy.
    pub fn emit(&self, value: T) -> Result<()> {
        let (item, full) = self.offer(&value)?;
        if full.is_empty() {
            return Ok(());
        }
        crate::connection::driver::check_may_wait().map_err(|_| Misuse::EmitBlocksLoopServer)?;
        for sub in full {
            sub.offer_blocking(&item);
        }
        Ok(())
    }

    /// [`emit`](Self::emit) without blocking: the future is ready once
    /// every [`Policy::Block`] subscriber has room for `value` (at once
    /// when none is full). What an `async fn`, or a task on an event
    /// loop, awaits.
    pub fn emit_async(&self, value: T) -> Emit {
        match self.offer(&value) {
            Ok((item, full)) => Emit { pending: Ok((item, full)) },
            Err(e) => Emit { pending: Err(Some(e)) },
        }
    }

    /// Offers `value` to every subscriber; the `block` ones that are full
    /// are left to wait for.
    fn offer(&self, value: &T) -> Result<(Item, Vec<Arc<Sub>>)> {
        let hub = self.hub()?;
        let subs = hub.subscribers();
        let item = hub.item(&subs, to_value(value)?);
        let mut full = Vec::new();
        for sub in subs {
            match sub.offer(&item) {
                Offer::Queued => {}
                Offer::Full => full.push(sub),
                Offer::Ended => hub.remove(&sub),
            }
        }
        Ok((item, full))
    }
}

impl<T: DeserializeOwned + Send + 'static> Event<T> {
    /// Subscribes, running `f` on each event where the connection is
    /// served (its event loop, its `BgServingThread`, or a thread waiting
    /// on a call); a local event's `f` runs on the emitting thread.
    ///
    /// What it missed and why it ended are on the returned
    /// [`Subscription`], which ends the subscription when dropped.
    pub fn subscribe(
        &self,
        options: Subscribe,
        f: impl FnMut(T) + Send + 'static,
    ) -> Result<Subscription<T>> {
        Subscription::start(self.subscription(options)?, Box::new(f))
    }

    /// Subscribes, receiving the events as a [`Stream`](futures_core::Stream)
    /// (awaited on an event loop, or wherever the connection is served).
    pub fn stream(&self, options: Subscribe) -> Result<EventStream<T>> {
        EventStream::new(self.subscription(options)?)
    }

    /// Subscribes, receiving the events from a blocking iterator: each
    /// `next()` waits for the next event, serving the connection
    /// meanwhile.
    pub fn iter(&self, options: Subscribe) -> Result<EventIter<T>> {
        EventIter::new(self.subscription(options)?)
    }
}

impl<T> Default for Event<T> {
    fn default() -> Self {
        Event::new()
    }
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Self {
        Event { source: self.source.clone(), events: PhantomData }
    }
}

impl<T> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Here(hub) => write!(f, "Event({} subscribers)", hub.len()),
            Source::Method { object, method } => write!(f, "Event({method} of {object:?})"),
        }
    }
}

/// What [`Event::emit_async`] returns: ready once every `block`
/// subscriber has taken the event.
#[must_use = "a blocked event is not queued until the future is awaited"]
pub struct Emit {
    pending: std::result::Result<(Item, Vec<Arc<Sub>>), Option<Error>>,
}

impl Future for Emit {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.pending {
            Err(e) => Poll::Ready(Err(e.take().unwrap_or(Error::Misuse(Misuse::Unserved)))),
            Ok((item, full)) => {
                full.retain(|sub| sub.poll_offer(item, cx.waker()).is_pending());
                if full.is_empty() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl fmt::Debug for Emit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pending {
            Ok((_, full)) => write!(f, "Emit(waiting for {} subscribers)", full.len()),
            Err(_) => f.write_str("Emit(failed)"),
        }
    }
}
