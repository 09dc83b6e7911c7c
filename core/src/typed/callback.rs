//! [`Callback`]: a typed callable argument.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Handle;
use crate::connection::async_result::AsyncResult;
use crate::connection::remote::IntoArgs;
use crate::error::Result;
use crate::value::object::{callback, Invoke, LocalObject};
use crate::value::RemoteObject;

/// A callable argument of a typed method: the caller passes a closure
/// taking `Args` (a tuple: `Callback<(Stat, Stat)>` is called with two
/// `Stat`s) and returning `R`; the receiver calls it.
///
/// At the call site a plain closure converts into one (its parameters
/// need their types written): `mon.watch(path, |old: Stat, new: Stat| ..)`.
/// A closure capturing state that is not `Send` (a GTK widget, an `Rc`)
/// goes through [`on_thread`](Self::on_thread), or an event-loop crate's
/// callback (netref-glib's `callback`) through [`from_object`](Self::from_object).
///
/// The receiver calls it blocking ([`call`](Self::call), serving its
/// connection meanwhile, so the callback may call back), without waiting
/// ([`call_async`](Self::call_async), [`call_timed`](Self::call_timed)),
/// or one-way ([`notify`](Self::notify)). Dropping the last handle
/// releases the caller's closure.
pub struct Callback<Args, R = ()> {
    handle: Handle,
    /// `fn(Args) -> R`: the handle is `Send + Sync` and owns neither.
    signature: PhantomData<fn(Args) -> R>,
}

impl<Args, R> Callback<Args, R> {
    /// A callback of a closure whose captures need not be `Send`: it runs
    /// only on the thread that made it, which must be the event loop's
    /// serving the connection (see [`thread_callback`](crate::thread_callback)).
    pub fn on_thread<F>(f: F) -> Self
    where
        Args: 'static,
        F: Invoke<Args, Output = R>,
        R: Serialize,
    {
        Callback::from_object(crate::thread_callback(f))
    }

    /// [`on_thread`](Self::on_thread) for a loop that can run a job on
    /// its thread when asked from another one ([`LoopHome`](crate::LoopHome),
    /// GLib's `MainContext::invoke`): released elsewhere, its captures are
    /// sent home to be dropped (see [`thread_callback_at`](crate::thread_callback_at)).
    /// netref-glib's `typed_callback` is this for a `MainContext`.
    pub fn on_thread_at<F>(home: &crate::LoopHome, f: F) -> Self
    where
        Args: 'static,
        F: Invoke<Args, Output = R>,
        R: Serialize,
    {
        Callback::from_object(crate::thread_callback_at(home, f))
    }

    /// A callback of an object this side made otherwise (an event-loop
    /// crate's loop-thread callback). Its arguments and result are not
    /// checked here; the object's own conversions check them when it runs.
    pub fn from_object(object: LocalObject) -> Self {
        Callback { handle: object.into(), signature: PhantomData }
    }

    /// A callback of the peer's callable object, unchecked: a proxy from
    /// the dynamic API.
    pub fn from_remote(remote: RemoteObject) -> Self {
        Callback { handle: remote.into(), signature: PhantomData }
    }

    /// The callable object.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl<Args: IntoArgs, R: DeserializeOwned> Callback<Args, R> {
    /// Calls it and waits for what it returns, serving the connection
    /// meanwhile (so it may call back into this side). Fails as a
    /// synchronous call does: with the closure's error (a panic, a
    /// wrong argument), a timeout after the connection's
    /// `sync_request_timeout`, or a closed connection.
    pub fn call(&self, args: Args) -> Result<R> {
        self.handle.call(args)
    }

    /// Calls it without waiting: the result comes later.
    pub fn call_async(&self, args: Args) -> AsyncResult<R> {
        self.handle.async_call(args, None)
    }

    /// Calls it without waiting; the result expires after `timeout` (RPyC's `timed`).
    pub fn call_timed(&self, timeout: Duration, args: Args) -> AsyncResult<R> {
        self.handle.async_call(args, Some(timeout))
    }

    /// Calls it one-way: nothing waits for it, and an error it raises is
    /// logged (`log::warn!`) rather than lost.
    pub fn notify(&self, args: Args) {
        // An AsyncResult whose error nobody read logs it when dropped.
        drop(self.call_async(args));
    }
}

/// A closure taking the arguments `Args` (up to eight) converts into a
/// callback of them.
macro_rules! from_closure {
    ($($a:ident),*) => {
        impl<F, R, $($a),*> From<F> for Callback<($($a,)*), R>
        where
            F: Fn($($a),*) -> R + Send + Sync + 'static,
            $($a: DeserializeOwned + 'static,)*
            R: Serialize,
        {
            fn from(f: F) -> Self {
                Callback::from_object(callback(f))
            }
        }
    };
}
from_closure!();
from_closure!(A1);
from_closure!(A1, A2);
from_closure!(A1, A2, A3);
from_closure!(A1, A2, A3, A4);
from_closure!(A1, A2, A3, A4, A5);
from_closure!(A1, A2, A3, A4, A5, A6);
from_closure!(A1, A2, A3, A4, A5, A6, A7);
from_closure!(A1, A2, A3, A4, A5, A6, A7, A8);

impl<Args, R> Clone for Callback<Args, R> {
    fn clone(&self) -> Self {
        Callback { handle: self.handle.clone(), signature: PhantomData }
    }
}

impl<Args, R> fmt::Debug for Callback<Args, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Callback").field(&self.handle).finish()
    }
}

impl<Args, R> Serialize for Callback<Args, R> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle.serialize(s)
    }
}

impl<'de, Args, R> Deserialize<'de> for Callback<Args, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Handle::deserialize(d).map(|handle| Callback { handle, signature: PhantomData })
    }
}
