//! Typed services: a Rust trait declared once with `#[netref::service]`,
//! implemented by the server and called through a typed proxy.
//!
//! The macro (crate `netref-macros`, re-exported as [`netref::service`](crate::service))
//! writes a thin layer over the dynamic API, out of the pieces here:
//!
//! - [`Interface`], implemented for `dyn Trait`: the trait's name and
//!   methods, how an implementation is exported ([`Export`]) and its proxy
//!   type ([`Proxy`]).
//! - [`Obj<dyn Trait>`](Obj): an object implementing the trait, this side's
//!   or the peer's, passed as an argument or a result. One of this side's
//!   own, handed back, is the original again ([`Obj::local`]).
//! - [`Callback<Args, R>`](Callback): a callable argument; a plain closure
//!   converts into one at the call site.
//! - [`Event<T>`](Event): what a server emits to its subscribers, each
//!   with a bounded queue and a [`Policy`] for when it is full.
//! - [`CallError<E>`](CallError): what a typed method returning
//!   `Result<T, E>` fails with on the client, telling the method's own `E`
//!   apart from a call that failed on the way.
//! - [`Handle`]: what every proxy holds, one of the peer's objects or one
//!   of this side's.
//!
//! The wire does not change: a typed method is a method by name, its
//! arguments positional values, so a typed client calls a dynamic
//! ([`ObjectBuilder`](crate::ObjectBuilder)) server and the other way
//! round. The one addition is a typed error's value, which travels with
//! the remote error ([`RemoteError::typed`](crate::RemoteError::typed)).

use std::sync::Arc;

use crate::connection::Connection;
use crate::error::{Misuse, Result};
use crate::value::object::LocalObject;
use crate::value::RemoteObject;

mod callback;
mod error;
mod event;
mod export;
mod handle;
mod obj;
#[cfg(test)]
mod tests;

pub use callback::Callback;
pub use error::CallError;
pub use event::{
    Emit, Ended, Event, EventIter, EventStream, Missed, Policy, Subscribe, Subscription, MAX_CAPACITY,
};
pub use export::{reply, reply_result, Args, Arity, Export};
pub use handle::Handle;
pub use obj::Obj;

/// A trait declared with `#[netref::service]`, implemented for its trait
/// object (`dyn FileMonitor`) by the macro: its name, its methods and its
/// proxy. How an implementation is served is [`ServedBy`].
pub trait Interface: Send + Sync + 'static {
    /// The trait's name, as errors and the object's type name give it.
    const NAME: &'static str;
    /// The trait's methods, as they are called on the wire: what a proxy
    /// checks the peer's object exposes ([`check`]).
    const METHODS: &'static [&'static str];
    /// The trait's typed proxy (`FileMonitorProxy`).
    type Proxy: Proxy;
}

/// The typed proxy of an [`Interface`], made by the macro: a [`Handle`] and
/// the trait's methods, blocking, with `async_()` and `timed(d)` views
/// whose methods return typed [`AsyncResult`](crate::AsyncResult)s.
pub trait Proxy: Clone + Send + Sync + 'static {
    /// A proxy calling through `handle`, unchecked (see [`check`]).
    fn from_handle(handle: Handle) -> Self;
    /// The object this proxy calls.
    fn handle(&self) -> &Handle;
}

/// `Self`, a trait object (`dyn Watch`), is served by a `T`: `T`
/// implements the trait. The macro implements it for every such `T`, with
/// `T` known, so that `async fn`s (which a trait object cannot call) are
/// served too. Users name [`Implementation`] instead.
pub trait ServedBy<T>: Interface {
    /// The object that serves `this` to the peer: the trait's methods,
    /// and nothing else, are reachable. Made with [`Export`].
    fn serve(this: Arc<T>) -> LocalObject;
}

/// An implementation of the trait whose object type is `S`: what
/// [`Obj::new`], [`export`] and [`Service::typed`](crate::Service::typed)
/// take. Implemented for every type implementing a `#[netref::service]`
/// trait.
pub trait Implementation<S: Interface + ?Sized>: Sized {
    /// The object serving `self` (see [`ServedBy::serve`]).
    fn into_object(self) -> LocalObject;
}

impl<T, S: ServedBy<T> + ?Sized> Implementation<S> for T {
    fn into_object(self) -> LocalObject {
        S::serve(Arc::new(self))
    }
}

/// The object serving `implementation` to the peer as an `S`, for the
/// dynamic API (a per-connection root made by [`Service::new`](crate::Service::new)):
/// `netref::typed::export::<dyn FileMonitor>(Monitor::new())`.
pub fn export<S: Interface + ?Sized>(implementation: impl Implementation<S>) -> LocalObject {
    implementation.into_object()
}

/// The peer's root object as a proxy of `S`, checked to serve it
/// ([`check`]): what a generated `FileMonitorProxy::root(&conn)` calls.
pub fn root<S: Interface + ?Sized>(conn: &Connection) -> Result<S::Proxy> {
    let root = conn.root()?;
    check::<S>(&root, "root")?;
    Ok(S::Proxy::from_handle(Handle::from(root)))
}

/// Checks that the peer's object `remote` exposes every method of `S`, in
/// one round trip (the object's `dir()`): a typed proxy over the wrong
/// object would otherwise fail at its first call, far from the mistake.
/// Fails with [`Misuse::WrongInterface`], naming what is missing and what
/// the object has; `object` is what the error calls it.
///
/// The check is by name, so a dynamic server exposing the right methods
/// passes, and so does a newer server that added methods.
pub fn check<S: Interface + ?Sized>(remote: &RemoteObject, object: &str) -> Result<()> {
    let exposed = remote.dir()?;
    let missing: Vec<String> =
        S::METHODS.iter().filter(|m| !exposed.iter().any(|e| e == *m)).map(|m| m.to_string()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Misuse::WrongInterface { interface: S::NAME, object: object.to_owned(), missing, exposed }.into())
}

/// What the macro's expansion names, kept apart from the API users write:
/// the checks that make a type's missing serde derive an error at the
/// type, in the user's words.
#[doc(hidden)]
pub mod __private {
    use std::fmt::Display;

    /// serde, for the bounds the macro puts on a generic trait's parameters.
    pub use serde;

    use serde::de::DeserializeOwned;
    use serde::Serialize;

    /// A type a service method can take.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot cross the wire as an argument of a service method",
        label = "not a serde type",
        note = "derive `serde::Serialize` and `serde::Deserialize` for it, or take a type that does \
                (a closure: `Callback<(Args,)>`, an object: `Obj<dyn Trait>`)"
    )]
    pub trait Argument: Serialize + DeserializeOwned {}
    impl<T: Serialize + DeserializeOwned> Argument for T {}

    /// A type a service method can return.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot cross the wire as the result of a service method",
        label = "not a serde type",
        note = "derive `serde::Serialize` and `serde::Deserialize` for it, or return a type that does \
                (an object: `Obj<dyn Trait>`)"
    )]
    pub trait Reply: Serialize + DeserializeOwned {}
    impl<T: Serialize + DeserializeOwned> Reply for T {}

    /// A type a service method can fail with.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the error of a service method",
        label = "needs serde and `Display`",
        note = "derive `serde::Serialize` and `serde::Deserialize` for it and implement `Display` \
                (`thiserror::Error` does): the peer gets it back as `CallError::App`"
    )]
    pub trait AppError: Serialize + DeserializeOwned + Display + 'static {}
    impl<T: Serialize + DeserializeOwned + Display + 'static> AppError for T {}

    /// A type an argument added later can default to.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` has no default, so it cannot be a `#[netref(default)]` argument",
        label = "no `Default`",
        note = "implement or derive `Default` for it: older callers leave the argument out"
    )]
    pub trait Defaulted: Default {}
    impl<T: Default> Defaulted for T {}

    /// What an event can carry.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot cross the wire as an event",
        label = "not a serde type",
        note = "derive `serde::Serialize` and `serde::Deserialize` for it, or carry a type that does \
                (events usually carry a tuple: `Event<(String, u64)>`)"
    )]
    pub trait EventItem: Serialize + DeserializeOwned + Send + 'static {}
    impl<T: Serialize + DeserializeOwned + Send + 'static> EventItem for T {}

    /// Checks, where the macro writes it, that an event's type can cross.
    pub fn event_item<T: EventItem>() {}

    /// An argument of a proxy's call, converted for the wire.
    pub fn argument<T: Argument>(value: &T) -> crate::Result<crate::Value> {
        crate::to_value(value)
    }
}
