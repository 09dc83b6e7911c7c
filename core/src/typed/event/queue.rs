//! The server's side of an [`Event`](super::Event): one bounded queue per
//! subscription, filled by the emitter under the subscription's policy and
//! emptied by the subscriber's pulls.
//!
//! A subscriber pulls: its `pull` call (an asynchronous method of the
//! subscription object) answers with everything queued as soon as there
//! is something, and the subscriber pulls again once it has handled that.
//! So at most one batch is on its way per subscription, a subscriber that
//! falls behind holds back nothing but its own queue, and the emitter
//! never waits on the wire (only a `block` subscription, by choice, makes
//! it wait for room).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use super::{Ended, Policy, Subscribe};
use crate::error::RemoteError;
use crate::value::object::{Answer, CallResult, LocalObject, Object};
use crate::value::Value;

/// The type name of a subscription object, as the peer's errors and
/// `repr` see it.
pub(super) const SUBSCRIPTION: &str = "Subscription";

/// The subscribers of one event.
#[derive(Default)]
pub(super) struct Hub {
    subs: Mutex<Vec<Arc<Sub>>>,
}

/// One emitted event, converted once for every subscriber.
pub(super) struct Item {
    pub(super) value: Value,
    /// What `coalesce` compares: the first element of a tuple (or list),
    /// otherwise the whole value. Only computed when someone coalesces.
    key: Option<Value>,
}

impl Hub {
    /// The subscriptions, for one emit (not holding the hub's lock while
    /// offering, so subscriptions may come and go meanwhile).
    pub(super) fn subscribers(&self) -> Vec<Arc<Sub>> {
        lock(&self.subs).clone()
    }

    /// How many subscriptions are live.
    pub(super) fn len(&self) -> usize {
        lock(&self.subs).len()
    }

    /// `value` as an item for the current subscribers.
    pub(super) fn item(&self, subs: &[Arc<Sub>], value: Value) -> Item {
        let key = subs.iter().any(|s| s.options.policy == Policy::Coalesce).then(|| match &value {
            Value::Array(items) if !items.is_empty() => items[0].clone(),
            other => other.clone(),
        });
        Item { value, key }
    }

    /// Adds a subscription: the object the subscriber pulls from, which
    /// ends the subscription when it is released.
    pub(super) fn subscribe(self: &Arc<Self>, options: Subscribe) -> (Arc<Sub>, LocalObject) {
        let sub = Arc::new(Sub { options, state: Mutex::new(State::default()), room: Condvar::new() });
        lock(&self.subs).push(sub.clone());
        let object = LocalObject::new(SubscriptionObject { sub: sub.clone(), hub: Arc::downgrade(self) });
        (sub, object)
    }

    /// Forgets `sub`, which has ended.
    pub(super) fn remove(&self, sub: &Arc<Sub>) {
        lock(&self.subs).retain(|s| !Arc::ptr_eq(s, sub));
    }
}

impl Drop for Hub {
    /// The event is gone (the server dropped every handle of it): its
    /// subscribers learn so at their next pull.
    fn drop(&mut self) {
        for sub in lock(&self.subs).drain(..) {
            sub.end(Ended::Dropped);
        }
    }
}

/// One subscription: its options and its queue.
pub(super) struct Sub {
    pub(super) options: Subscribe,
    state: Mutex<State>,
    /// Signalled when there is room again or the subscription ended: what
    /// a blocking emitter and a local blocking pull wait on.
    room: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    /// Events dropped or superseded since the last batch.
    lagged: u64,
    ended: Option<Ended>,
    /// Pulls waiting for the next event.
    pullers: Vec<Waker>,
    /// Emitters (`emit_async`) waiting for room.
    emitters: Vec<Waker>,
}

struct Queued {
    value: Value,
    key: Option<Value>,
}

/// What offering an event to a subscription did.
#[derive(Debug, PartialEq)]
pub(super) enum Offer {
    /// Queued (maybe dropping or replacing an older one).
    Queued,
    /// A `block` subscription is full: the emitter must wait for room.
    Full,
    /// The subscription has ended (now or before): the hub forgets it.
    Ended,
}

/// What one pull takes: the queued events, how many were missed before
/// them, and why the subscription ended, once it has.
pub(super) struct Batch {
    pub(super) items: Vec<Value>,
    pub(super) lagged: u64,
    pub(super) ended: Option<Ended>,
}

impl Batch {
    /// The batch as the pull's answer: `[items, lagged, ended]`, where
    /// `ended` is null or the reason's name ([`Ended::wire_name`]).
    pub(super) fn into_value(self) -> Value {
        Value::Array(vec![
            Value::Array(self.items),
            Value::Integer(i128::from(self.lagged)),
            self.ended.map_or(Value::Null, |e| Value::Text(e.wire_name().to_owned())),
        ])
    }
}

impl Sub {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Offers `item` under the subscription's policy.
    pub(super) fn offer(&self, item: &Item) -> Offer {
        let mut st = self.state();
        if st.ended.is_some() {
            return Offer::Ended;
        }
        let capacity = self.options.capacity;
        match self.options.policy {
            Policy::Coalesce => {
                if let Some(older) = st.queue.iter_mut().find(|q| q.key == item.key) {
                    older.value = item.value.clone();
                    st.lagged += 1;
                    return Offer::Queued;
                }
                if st.queue.len() >= capacity {
                    st.queue.pop_front();
                    st.lagged += 1;
                }
            }
            Policy::DropOldest => {
                if st.queue.len() >= capacity {
                    st.queue.pop_front();
                    st.lagged += 1;
                }
            }
            Policy::Disconnect if st.queue.len() >= capacity => {
                // What is queued still reaches the subscriber, then the end.
                st.ended = Some(Ended::Overflowed);
                let pullers = std::mem::take(&mut st.pullers);
                drop(st);
                self.room.notify_all();
                pullers.into_iter().for_each(Waker::wake);
                return Offer::Ended;
            }
            Policy::Block if st.queue.len() >= capacity => return Offer::Full,
            Policy::Disconnect | Policy::Block => {}
        }
        st.queue.push_back(Queued { value: item.value.clone(), key: item.key.clone() });
        let pullers = std::mem::take(&mut st.pullers);
        drop(st);
        // A local blocking pull waits on the condition variable too.
        self.room.notify_all();
        pullers.into_iter().for_each(Waker::wake);
        Offer::Queued
    }

    /// Waits, blocking this thread, until a `block` subscription takes
    /// `item`, or ends.
    pub(super) fn offer_blocking(&self, item: &Item) {
        loop {
            if self.offer(item) != Offer::Full {
                return;
            }
            let st = self.state();
            if st.ended.is_none() && st.queue.len() >= self.options.capacity {
                drop(self.room.wait(st).unwrap_or_else(|e| e.into_inner()));
            }
        }
    }

    /// [`offer`](Self::offer), registering `waker` to be woken when there
    /// is room if the subscription is full.
    pub(super) fn poll_offer(&self, item: &Item, waker: &Waker) -> Poll<()> {
        if self.offer(item) != Offer::Full {
            return Poll::Ready(());
        }
        let mut st = self.state();
        if st.ended.is_some() || st.queue.len() < self.options.capacity {
            // Room came (or the end) between the offer and now: try again.
            drop(st);
            waker.wake_by_ref();
        } else if !st.emitters.iter().any(|w| w.will_wake(waker)) {
            st.emitters.push(waker.clone());
        }
        Poll::Pending
    }

    /// Takes what is queued, if anything is (or the subscription ended);
    /// otherwise registers `waker` (if given) for the next event.
    pub(super) fn take(&self, waker: Option<&Waker>) -> Option<Batch> {
        let mut st = self.state();
        if st.queue.is_empty() && st.lagged == 0 && st.ended.is_none() {
            if let Some(waker) = waker {
                if !st.pullers.iter().any(|w| w.will_wake(waker)) {
                    st.pullers.push(waker.clone());
                }
            }
            return None;
        }
        let items = st.queue.drain(..).map(|q| q.value).collect();
        let batch = Batch { items, lagged: std::mem::take(&mut st.lagged), ended: st.ended.clone() };
        let emitters = std::mem::take(&mut st.emitters);
        drop(st);
        self.room.notify_all();
        emitters.into_iter().for_each(Waker::wake);
        Some(batch)
    }

    /// Takes what is queued, blocking this thread until there is something:
    /// a local subscriber's iterator.
    pub(super) fn take_blocking(&self) -> Batch {
        loop {
            if let Some(batch) = self.take(None) {
                return batch;
            }
            let st = self.state();
            if st.queue.is_empty() && st.lagged == 0 && st.ended.is_none() {
                drop(self.room.wait(st).unwrap_or_else(|e| e.into_inner()));
            }
        }
    }

    /// Ends the subscription (unless it already ended): waiting pulls
    /// answer with `why`, waiting emitters go on without it.
    pub(super) fn end(&self, why: Ended) {
        let mut st = self.state();
        if st.ended.is_some() {
            return;
        }
        st.ended = Some(why);
        let mut wakers = std::mem::take(&mut st.pullers);
        wakers.append(&mut st.emitters);
        drop(st);
        self.room.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// A pull: ready with the next batch.
pub(super) struct Pull(pub(super) Arc<Sub>);

impl Future for Pull {
    type Output = Batch;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Batch> {
        match self.0.take(Some(cx.waker())) {
            Some(batch) => Poll::Ready(batch),
            None => Poll::Pending,
        }
    }
}

/// The object a subscriber holds: `pull()` answers with the next batch
/// (asynchronously: it waits for an event), `cancel()` ends the
/// subscription. Released by the subscriber (or with its connection), it
/// ends the subscription too.
pub(super) struct SubscriptionObject {
    pub(super) sub: Arc<Sub>,
    hub: Weak<Hub>,
}

impl SubscriptionObject {
    fn cancel(&self) {
        self.sub.end(Ended::Cancelled);
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(&self.sub);
        }
    }
}

impl Object for SubscriptionObject {
    fn type_name(&self) -> &str {
        SUBSCRIPTION
    }

    fn dir(&self) -> Vec<String> {
        vec!["cancel".into(), "pull".into()]
    }

    fn start_method(&self, name: &str, args: Vec<Value>) -> Answer {
        if !args.is_empty() && (name == "pull" || name == "cancel") {
            return Answer::Ready(Err(RemoteError::type_error(format!(
                "`{SUBSCRIPTION}.{name}` takes no arguments but {} were given",
                args.len()
            ))));
        }
        match name {
            "pull" => {
                let pull = Pull(self.sub.clone());
                Answer::Later(Box::pin(async move { CallResult::Ok(pull.await.into_value()) }))
            }
            "cancel" => {
                self.cancel();
                Answer::Ready(Ok(Value::Null))
            }
            _ => Answer::Ready(Err(RemoteError::attribute(SUBSCRIPTION, name))),
        }
    }

    fn call_method(&self, name: &str, args: Vec<Value>) -> CallResult {
        self.start_method(name, args).into_ready(|| format!("{SUBSCRIPTION}.{name}"))
    }
}

impl Drop for SubscriptionObject {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
