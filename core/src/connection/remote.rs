//! What proxies of the peer's objects (RPyC's netrefs) do: their calls, in
//! the three forms RPyC has (synchronous, `async_`, `timed`), and the relay
//! that carries one to another connection. What a proxy *is* (a handle: an
//! id and its connection) is the value layer's, `value/remote.rs`.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dispatch::check_nesting;
use super::Shared;
use crate::connection::async_result::AsyncResult;
use crate::error::{Error, Misuse, RemoteError, Result};
use crate::protocol::Call;
use crate::value::object::{CallResult, LocalObject, Object};
pub use crate::value::remote::RemoteObject;
use crate::value::{from_value_at, to_value, Value};

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

/// Arguments already converted one by one, or the first conversion's
/// error (what a typed proxy passes: each argument converted where its
/// type is written).
impl IntoArgs for Result<Vec<Value>> {
    fn into_args(self) -> Result<Vec<Value>> {
        self
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
    /// The connection this proxy came through: none for a proxy of a
    /// protocol driven directly.
    fn session(&self) -> Option<&Shared> {
        self.owner::<Shared>()
    }

    /// Sends an asynchronous call (it may coalesce with the next ones).
    fn submit(&self, call: Call, timeout: Option<Duration>) -> AsyncResult {
        match self.session() {
            Some(s) => s.submit(call, timeout, true),
            None => AsyncResult::failed(Misuse::NoConnection.into()),
        }
    }

    /// Sends `call` and waits for its reply, for `timeout` (`None`: the
    /// connection's `sync_request_timeout`; `Some(None)`: forever).
    fn sync<R: DeserializeOwned>(&self, call: Call, timeout: Option<Option<Duration>>) -> Result<R> {
        let Some(s) = self.session() else { return Err(Misuse::NoConnection.into()) };
        // Refused before anything is sent: the peer never runs a call
        // whose caller was told it failed.
        check_nesting(s.config.max_nesting)?;
        super::driver::check_may_wait()?;
        let place = call.result_place();
        let timeout = timeout.unwrap_or(s.config.sync_request_timeout);
        from_value_at(s.submit(call, timeout, false).into_value()?, &place)
    }

    /// Calls the remote method `name` and waits for its result, serving the
    /// connection meanwhile (so callbacks into this side run). One round trip.
    ///
    /// Fails with the peer's error, with [`Error::Timeout`](crate::Error::Timeout)
    /// after the connection's `sync_request_timeout`, or when the connection closes.
    pub fn call_method<R: DeserializeOwned>(&self, name: &str, args: impl IntoArgs) -> Result<R> {
        let call = Call::CallMethod { target: self.id(), name: name.to_owned(), args: args.into_args()? };
        self.sync(call, None)
    }

    /// [`call_method`](Self::call_method) with its own timeout (`None`: wait forever).
    pub fn call_method_timeout<R: DeserializeOwned>(
        &self,
        name: &str,
        args: impl IntoArgs,
        timeout: Option<Duration>,
    ) -> Result<R> {
        let call = Call::CallMethod { target: self.id(), name: name.to_owned(), args: args.into_args()? };
        self.sync(call, Some(timeout))
    }

    /// Calls the remote object itself and waits for the result.
    pub fn call<R: DeserializeOwned>(&self, args: impl IntoArgs) -> Result<R> {
        let call = Call::Call { target: self.id(), args: args.into_args()? };
        self.sync(call, None)
    }

    /// Reads the remote attribute `name`.
    pub fn getattr<R: DeserializeOwned>(&self, name: &str) -> Result<R> {
        self.sync(Call::GetAttr { target: self.id(), name: name.to_owned() }, None)
    }

    /// Lists the remote object's exposed names.
    pub fn dir(&self) -> Result<Vec<String>> {
        self.sync(Call::Dir { target: self.id() }, None)
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
            Ok(args) => self.proxy.submit(Call::Call { target: self.proxy.id(), args }, self.expiry),
            Err(e) => AsyncResult::failed(e),
        }
    }

    /// Calls the method `name` of the proxied object. The result holds the
    /// reply as a [`Value`]; [`typed`](AsyncResult::typed) reads it as a Rust
    /// type (`async_(&p).call_method("add", (1, 2)).typed::<i64>()`).
    pub fn call_method(&self, name: &str, args: impl IntoArgs) -> AsyncResult {
        match args.into_args() {
            Ok(args) => self.proxy.submit(
                Call::CallMethod { target: self.proxy.id(), name: name.to_owned(), args },
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
