//! Proxies for the peer's objects (RPyC's netrefs).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::connection::async_result::AsyncResult;
use crate::error::{Error, Misuse, RemoteError, Result};
use crate::protocol::Call;
use crate::value::object::{CallResult, LocalObject, Object};
use crate::value::{from_value_at, to_value, Value};

/// What a proxy needs from the connection it came from.
pub(crate) trait Session: Send + Sync + 'static {
    /// Sends `call`; the result expires after `timeout` if given.
    fn submit(&self, call: Call, timeout: Option<Duration>) -> AsyncResult;
    /// The default timeout of synchronous calls.
    fn sync_timeout(&self) -> Option<Duration> {
        None
    }
    /// Whether this thread may make a synchronous call now: not when it is
    /// nested as deep as [`Config::max_nesting`](crate::Config::max_nesting).
    fn check_nesting(&self) -> Result<()> {
        Ok(())
    }
    /// A proxy was dropped and the release queue went from empty to not
    /// empty: ask whoever drives the connection to flush soon. Must not take
    /// the connection's state lock (a proxy may drop while it is held).
    fn release_queued(&self) {}
    /// A proxy now keeps the connection open.
    fn retain_handle(&self) {}
    /// A proxy no longer keeps the connection open.
    fn release_handle(&self) {}
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

pub(crate) struct ProxyInner {
    pub(crate) id: u64,
    pub(crate) protocol_id: u64,
    pub(crate) session: Option<Arc<dyn Session>>,
    pub(crate) releases: Weak<ReleaseQueue>,
}

impl ProxyInner {
    pub(crate) fn new(
        id: u64,
        protocol_id: u64,
        session: Option<Arc<dyn Session>>,
        releases: Weak<ReleaseQueue>,
    ) -> Self {
        if let Some(s) = &session {
            s.retain_handle();
        }
        ProxyInner { id, protocol_id, session, releases }
    }
}

impl Drop for ProxyInner {
    fn drop(&mut self) {
        if let Some(q) = self.releases.upgrade() {
            if q.push(self.id) {
                if let Some(s) = &self.session {
                    s.release_queued();
                }
            }
        }
        if let Some(s) = &self.session {
            s.release_handle();
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
/// ([`async_(&proxy).call_method(..)`](async_), returning an [`AsyncResult`]), and
/// [`timed`].
///
/// A proxy passed to *another* connection (as an argument or a result) is
/// relayed, as in RPyC: that connection's peer gets a proxy of an object of
/// this process that forwards its calls here, so they reach the original
/// object; handed back to this process, it arrives as this proxy again, and
/// handed to the connection it came from, as the peer's own object. Only a
/// call's target must belong to the connection the call goes to
/// ([`Misuse::ForeignObject`]).
#[derive(Clone)]
pub struct RemoteObject {
    pub(crate) inner: Arc<ProxyInner>,
}

/// Arguments of a remote call: `()`, a tuple of up to eight serializable
/// values (object references included), or a `Vec<Value>`.
pub trait IntoArgs {
    /// Converts the arguments.
    fn into_args(self) -> Result<Vec<Value>>;
}

impl IntoArgs for Vec<Value> {
    fn into_args(self) -> Result<Vec<Value>> {
        Ok(self)
    }
}

macro_rules! impl_into_args {
    ($($a:ident),*) => {
        impl<$($a: Serialize),*> IntoArgs for ($($a,)*) {
            #[allow(non_snake_case)]
            fn into_args(self) -> Result<Vec<Value>> {
                let ($($a,)*) = self;
                Ok(vec![$(to_value(&$a)?),*])
            }
        }
    };
}
impl_into_args!();
impl_into_args!(A1);
impl_into_args!(A1, A2);
impl_into_args!(A1, A2, A3);
impl_into_args!(A1, A2, A3, A4);
impl_into_args!(A1, A2, A3, A4, A5);
impl_into_args!(A1, A2, A3, A4, A5, A6);
impl_into_args!(A1, A2, A3, A4, A5, A6, A7);
impl_into_args!(A1, A2, A3, A4, A5, A6, A7, A8);

impl RemoteObject {
    /// The peer's id for this object.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// True when both are proxies of the same remote object.
    pub fn same_as(&self, other: &RemoteObject) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn submit(&self, call: Call, timeout: Option<Duration>) -> AsyncResult {
        match &self.inner.session {
            Some(s) => s.submit(call, timeout),
            None => AsyncResult::failed(Misuse::NoConnection.into()),
        }
    }

    fn sync_timeout(&self) -> Option<Duration> {
        self.inner.session.as_ref().and_then(|s| s.sync_timeout())
    }

    fn sync<R: DeserializeOwned>(&self, call: Call, timeout: Option<Duration>) -> Result<R> {
        // Refused before anything is sent: the peer never runs a call
        // whose caller was told it failed.
        if let Some(s) = &self.inner.session {
            s.check_nesting()?;
        }
        let place = call.result_place();
        from_value_at(self.submit(call, timeout).into_value()?, &place)
    }

    /// Calls the remote method `name` and waits for its result, serving the
    /// connection meanwhile (so callbacks into this side run). One round trip.
    ///
    /// Fails with the peer's error, with [`Error::Timeout`](crate::Error::Timeout)
    /// after the connection's `sync_request_timeout`, or when the connection closes.
    pub fn call_method<R: DeserializeOwned>(&self, name: &str, args: impl IntoArgs) -> Result<R> {
        self.call_method_timeout(name, args, self.sync_timeout())
    }

    /// [`call_method`](Self::call_method) with its own timeout (`None`: wait forever).
    pub fn call_method_timeout<R: DeserializeOwned>(
        &self,
        name: &str,
        args: impl IntoArgs,
        timeout: Option<Duration>,
    ) -> Result<R> {
        let call = Call::CallMethod { target: self.clone(), name: name.to_owned(), args: args.into_args()? };
        self.sync(call, timeout)
    }

    /// Calls the remote object itself and waits for the result.
    pub fn call<R: DeserializeOwned>(&self, args: impl IntoArgs) -> Result<R> {
        let call = Call::Call { target: self.clone(), args: args.into_args()? };
        self.sync(call, self.sync_timeout())
    }

    /// Reads the remote attribute `name`.
    pub fn getattr<R: DeserializeOwned>(&self, name: &str) -> Result<R> {
        self.sync(Call::GetAttr { target: self.clone(), name: name.to_owned() }, self.sync_timeout())
    }

    /// Lists the remote object's exposed names.
    pub fn dir(&self) -> Result<Vec<String>> {
        self.sync(Call::Dir { target: self.clone() }, self.sync_timeout())
    }
}

impl fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteObject(#{})", self.inner.id)
    }
}

/// RPyC's `async_(proxy)`: a wrapper whose calls return [`AsyncResult`]s.
///
/// ```no_run
/// # fn demo(root: netref::RemoteObject) -> netref::Result<()> {
/// let res = netref::async_(&root).call_method("sleep", (2,));
/// assert!(!res.ready());
/// res.wait()?;
/// # Ok(()) }
/// ```
pub fn async_(proxy: &RemoteObject) -> Async {
    Async { proxy: proxy.clone(), expiry: None }
}

/// RPyC's `timed(proxy, timeout)`: calls return [`AsyncResult`]s that expire
/// after `timeout`, so `value()` fails with [`Error::Timeout`](crate::Error::Timeout)
/// (RPyC's `AsyncResultTimeout`) if the reply is late.
pub fn timed(proxy: &RemoteObject, timeout: Duration) -> Async {
    Async { proxy: proxy.clone(), expiry: Some(timeout) }
}

/// Asynchronous calls on one proxy; made by [`async_`] and [`timed`].
#[derive(Clone, Debug)]
pub struct Async {
    proxy: RemoteObject,
    expiry: Option<Duration>,
}

impl Async {
    /// Calls the proxied object itself.
    pub fn call(&self, args: impl IntoArgs) -> AsyncResult {
        match args.into_args() {
            Ok(args) => self.proxy.submit(Call::Call { target: self.proxy.clone(), args }, self.expiry),
            Err(e) => AsyncResult::failed(e),
        }
    }

    /// Calls the method `name` of the proxied object. The result holds the
    /// reply as a [`Value`]; [`typed`](AsyncResult::typed) reads it as a Rust
    /// type (`async_(&p).call_method("add", (1, 2)).typed::<i64>()`).
    pub fn call_method(&self, name: &str, args: impl IntoArgs) -> AsyncResult {
        match args.into_args() {
            Ok(args) => self.proxy.submit(
                Call::CallMethod { target: self.proxy.clone(), name: name.to_owned(), args },
                self.expiry,
            ),
            Err(e) => AsyncResult::failed(e),
        }
    }
}

/// What a connection exports when it is handed a proxy of *another*
/// connection (RPyC's rule: a proxy passed to a third party is an object of
/// the process in the middle). The third party's requests run here and are
/// forwarded to the proxy as synchronous calls, so they reach the original
/// object through this process; its results and errors travel back as they
/// came (an error keeps its remote type, message and traceback). Holding the
/// proxy keeps the original object alive: when the third party releases the
/// relay, the protocol drops it and the proxy's own release follows.
///
/// Each forwarded call blocks the thread serving the third party's
/// connection until the reply comes, serving the proxy's connection
/// meanwhile, as any nested synchronous call does.
struct Relay {
    proxy: RemoteObject,
    /// For errors and tracebacks: what is relayed.
    name: String,
}

/// A relay exporting `proxy` to a connection other than its own (see
/// [`Relay`]).
pub(crate) fn relay(proxy: &RemoteObject) -> LocalObject {
    LocalObject::new(Relay { proxy: proxy.clone(), name: format!("relay of remote object #{}", proxy.id()) })
}

impl Object for Relay {
    fn type_name(&self) -> &str {
        &self.name
    }

    fn call_method(&self, name: &str, args: Vec<Value>) -> CallResult {
        self.proxy.call_method::<Value>(name, args).map_err(Error::into_remote)
    }

    fn getattr(&self, name: &str) -> CallResult {
        self.proxy.getattr::<Value>(name).map_err(Error::into_remote)
    }

    fn call(&self, args: Vec<Value>) -> CallResult {
        self.proxy.call::<Value>(args).map_err(Error::into_remote)
    }

    /// Only for local callers; the peer's `dir()` runs [`try_dir`](Object::try_dir).
    fn dir(&self) -> Vec<String> {
        self.proxy.dir().unwrap_or_default()
    }

    fn try_dir(&self) -> Result<Vec<String>, RemoteError> {
        self.proxy.dir().map_err(Error::into_remote)
    }
}
