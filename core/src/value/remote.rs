//! Handles of the peer's objects: what a proxy *is* (an id at one peer, and
//! the connection it came through), apart from what it *does*.
//!
//! The protocol makes and resolves these handles by id and counts their
//! references; it never calls through them. Calls are the connection's:
//! `connection/remote.rs` adds the call methods to [`RemoteObject`] and
//! implements [`ProxyOwner`]. That keeps the layers one-way (wire, value,
//! protocol, connection), as quinn-proto hands out ids and leaves the
//! handles' behaviour to its I/O crate.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::value::object::LocalObject;

/// What a proxy's handle needs from the connection that runs its protocol.
/// `Any`, so that the connection layer can find itself behind a handle.
pub(crate) trait ProxyOwner: Any + Send + Sync {
    /// A proxy now keeps the connection open.
    fn retain_handle(&self);
    /// A proxy no longer keeps the connection open.
    fn release_handle(&self);
    /// A proxy was dropped and the release queue went from empty to not
    /// empty: ask whoever drives the connection to flush soon. Must not take
    /// the connection's state lock (a proxy may drop while it is held).
    fn release_queued(&self);
    /// What another connection exports when it is handed `proxy` (RPyC's
    /// rule: a proxy passed to a third party is an object of the process in
    /// the middle): an object of this side that forwards to it.
    fn relay(&self, proxy: &RemoteObject) -> LocalObject;
}

/// Ids of proxies whose last clone was dropped, waiting to be batched into
/// one release message. Kept apart from the protocol's lock because a proxy
/// may drop anywhere, including while that lock is held.
///
/// The protocol asks whether it is empty several times per message sent,
/// so an atomic flag answers without the lock.
#[derive(Default)]
pub(crate) struct ReleaseQueue {
    ids: Mutex<Vec<u64>>,
    /// Set (under the lock) when `ids` gains an entry, cleared when taken.
    queued: AtomicBool,
}

impl ReleaseQueue {
    /// Queues `id`; true when the queue was empty before.
    pub(crate) fn push(&self, id: u64) -> bool {
        let mut q = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        q.push(id);
        self.queued.store(true, Ordering::Release);
        q.len() == 1
    }
    /// Takes every queued id. One pushed concurrently may be left for the
    /// next take: its push returned true and asked for a flush.
    pub(crate) fn take(&self) -> Vec<u64> {
        if !self.queued.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut q = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        self.queued.store(false, Ordering::Release);
        std::mem::take(&mut *q)
    }
    pub(crate) fn is_empty(&self) -> bool {
        !self.queued.load(Ordering::Acquire)
    }
}

/// The shared part of every clone of one proxy.
pub(crate) struct ProxyInner {
    /// The peer's id for the object.
    pub(crate) id: u64,
    /// The protocol that imported it (see `Protocol::id`).
    pub(crate) protocol_id: u64,
    /// The connection running that protocol; none for a protocol driven
    /// directly.
    pub(crate) owner: Option<Arc<dyn ProxyOwner>>,
    /// Where the id goes when the last clone drops.
    pub(crate) releases: Weak<ReleaseQueue>,
}

impl ProxyInner {
    pub(crate) fn new(
        id: u64,
        protocol_id: u64,
        owner: Option<Arc<dyn ProxyOwner>>,
        releases: Weak<ReleaseQueue>,
    ) -> Self {
        if let Some(o) = &owner {
            o.retain_handle();
        }
        ProxyInner { id, protocol_id, owner, releases }
    }
}

impl Drop for ProxyInner {
    fn drop(&mut self) {
        if let Some(q) = self.releases.upgrade() {
            if q.push(self.id) {
                if let Some(o) = &self.owner {
                    o.release_queued();
                }
            }
        }
        if let Some(o) = &self.owner {
            o.release_handle();
        }
    }
}

/// A proxy for an object that lives at the peer (RPyC's netref).
///
/// Cloning is cheap and every clone is the same proxy: the same remote object
/// always maps to one proxy identity while any clone lives. When the last
/// clone drops, the peer is told (in a batch, on the next output) and frees
/// the object once no other reference to it is in flight.
///
/// Calls come in three forms, as in RPyC: synchronous ([`call_method`](Self::call_method),
/// blocking while serving the connection), asynchronous
/// ([`async_(&proxy).call_method(..)`](crate::async_), returning an
/// [`AsyncResult`](crate::AsyncResult)), and [`timed`](crate::timed).
///
/// A proxy passed to *another* connection (as an argument or a result) is
/// relayed, as in RPyC: that connection's peer gets a proxy of an object of
/// this process that forwards its calls here, so they reach the original
/// object; handed back to this process, it arrives as this proxy again, and
/// handed to the connection it came from, as the peer's own object. A proxy
/// of a [`Protocol`](crate::protocol::Protocol) driven directly, with no
/// connection to relay through, cannot be passed to another protocol
/// ([`Misuse::ForeignObject`](crate::Misuse::ForeignObject)).
#[derive(Clone)]
pub struct RemoteObject {
    pub(crate) inner: Arc<ProxyInner>,
}

impl RemoteObject {
    /// The peer's id for this object.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// True when both are proxies of the same remote object.
    pub fn same_as(&self, other: &RemoteObject) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The connection behind this proxy, as the connection layer's type
    /// `T`: none for a proxy of a protocol driven directly.
    pub(crate) fn owner<T: ProxyOwner>(&self) -> Option<&T> {
        let owner: &dyn Any = self.inner.owner.as_deref()?;
        owner.downcast_ref::<T>()
    }
}

impl fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteObject(#{})", self.inner.id)
    }
}
