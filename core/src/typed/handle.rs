//! [`Handle`]: the object a typed proxy or callback calls, the peer's or
//! this side's own.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::connection::async_result::AsyncResult;
use crate::connection::remote::{async_, timed, Async, IntoArgs};
use crate::error::{Error, Place, Result};
use crate::value::object::LocalObject;
use crate::value::{from_value_at, ObjectRef, RemoteObject, Value};

/// The object behind a typed proxy ([`Proxy`](super::Proxy)) or a
/// [`Callback`](super::Callback): one of the peer's objects, called over
/// the connection, or one of this side's own (made here, or handed back by
/// the peer), called in place.
///
/// Calling one of this side's own objects runs its method on the calling
/// thread and answers at once; an asynchronous method of such an object
/// needs a connection to run it, so calling it through a handle fails with
/// a `TypeError` saying so. Call the original instead
/// ([`Obj::local`](super::Obj::local)).
#[derive(Clone)]
pub struct Handle(Target);

#[derive(Clone)]
enum Target {
    Remote(RemoteObject),
    Local(LocalObject),
}

impl From<RemoteObject> for Handle {
    fn from(remote: RemoteObject) -> Self {
        Handle(Target::Remote(remote))
    }
}

impl From<LocalObject> for Handle {
    fn from(local: LocalObject) -> Self {
        Handle(Target::Local(local))
    }
}

impl From<ObjectRef> for Handle {
    fn from(object: ObjectRef) -> Self {
        match object {
            ObjectRef::Remote(r) => r.into(),
            ObjectRef::Local(l) => l.into(),
        }
    }
}

impl Handle {
    /// The peer's object, when it is one.
    pub fn as_remote(&self) -> Option<&RemoteObject> {
        match &self.0 {
            Target::Remote(r) => Some(r),
            Target::Local(_) => None,
        }
    }

    /// This side's own object, when it is one.
    pub fn as_local(&self) -> Option<&LocalObject> {
        match &self.0 {
            Target::Local(l) => Some(l),
            Target::Remote(_) => None,
        }
    }

    /// The object as a reference, for the dynamic API.
    pub fn to_object_ref(&self) -> ObjectRef {
        match &self.0 {
            Target::Remote(r) => ObjectRef::Remote(r.clone()),
            Target::Local(l) => ObjectRef::Local(l.clone()),
        }
    }

    /// True when both handles call the same object.
    pub fn same_as(&self, other: &Handle) -> bool {
        self.to_object_ref().same_as(&other.to_object_ref())
    }

    /// Calls the method `name` and waits for its result, serving the
    /// connection meanwhile, as [`RemoteObject::call_method`] does; the
    /// error is whatever `E` makes of netref's [`Error`].
    pub fn call_method<R, E>(&self, name: &str, args: impl IntoArgs) -> Result<R, E>
    where
        R: DeserializeOwned,
        E: From<Error>,
    {
        self.sync(Some(name), args).map_err(E::from)
    }

    /// Calls the object itself and waits for its result.
    pub fn call<R, E>(&self, args: impl IntoArgs) -> Result<R, E>
    where
        R: DeserializeOwned,
        E: From<Error>,
    {
        self.sync(None, args).map_err(E::from)
    }

    /// Calls the method `name` without waiting, as [`async_`] (no `expiry`)
    /// or [`timed`] do.
    pub fn async_method<R, E>(
        &self,
        name: &str,
        args: impl IntoArgs,
        expiry: Option<Duration>,
    ) -> AsyncResult<R, E> {
        self.start(Some(name), args, expiry)
    }

    /// Calls the object itself without waiting.
    pub fn async_call<R, E>(&self, args: impl IntoArgs, expiry: Option<Duration>) -> AsyncResult<R, E> {
        self.start(None, args, expiry)
    }

    fn sync<R: DeserializeOwned>(&self, method: Option<&str>, args: impl IntoArgs) -> Result<R> {
        match (&self.0, method) {
            (Target::Remote(r), Some(m)) => r.call_method(m, args),
            (Target::Remote(r), None) => r.call(args),
            (Target::Local(l), _) => from_value_at(local_answer(l, method, args)?, &result_place(method)),
        }
    }

    fn start<R, E>(
        &self,
        method: Option<&str>,
        args: impl IntoArgs,
        expiry: Option<Duration>,
    ) -> AsyncResult<R, E> {
        let result = match (&self.0, method) {
            (Target::Remote(r), Some(m)) => view(r, expiry).call_method(m, args),
            (Target::Remote(r), None) => view(r, expiry).call(args),
            (Target::Local(l), _) => {
                AsyncResult::answered(local_answer(l, method, args), result_place(method), false)
            }
        };
        result.typed().with_error()
    }
}

fn view(remote: &RemoteObject, expiry: Option<Duration>) -> Async {
    match expiry {
        Some(d) => timed(remote, d),
        None => async_(remote),
    }
}

/// Where a call's result is, for conversion errors.
fn result_place(method: Option<&str>) -> Place {
    Place::Result { method: method.map(str::to_owned) }
}

/// Runs a call of this side's own object in place.
fn local_answer(local: &LocalObject, method: Option<&str>, args: impl IntoArgs) -> Result<Value> {
    let args = args.into_args()?;
    let answer = match method {
        Some(m) => local.object().start_method(m, args),
        None => local.object().start_call(args),
    };
    Ok(answer.into_ready(|| match method {
        Some(m) => format!("{}.{m}", local.type_name()),
        None => format!("{}()", local.type_name()),
    })?)
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Target::Remote(r) => r.fmt(f),
            Target::Local(l) => l.fmt(f),
        }
    }
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_object_ref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ObjectRef::deserialize(d).map(Handle::from)
    }
}
