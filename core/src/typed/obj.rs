//! [`Obj`]: a typed object reference, this side's or the peer's.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::export::Typed;
use super::{check, Handle, Implementation, Interface, Proxy};
use crate::error::Result;
use crate::value::object::LocalObject;
use crate::value::RemoteObject;

/// An object implementing the `#[netref::service]` trait whose object type
/// is `S` (`Obj<dyn Watch>`), wherever it lives: made here
/// ([`Obj::new`]), or the peer's, received as an argument or a result.
///
/// Either way it calls through the trait's typed proxy (it derefs to
/// `S::Proxy`: `watch.stop()?`). Passed to the peer, one of this side's
/// own becomes a proxy there; handed back, it is the original again:
/// [`local`](Self::local) gives the implementation itself, and
/// [`same_as`](Self::same_as) holds. Dropping the last handle of the
/// peer's object releases it.
pub struct Obj<S: Interface + ?Sized> {
    proxy: S::Proxy,
    /// The implementation, when the object is this side's own.
    local: Option<Arc<S>>,
}

impl<S: Interface + ?Sized> Obj<S> {
    /// One of this side's objects, serving `implementation`.
    pub fn new(implementation: impl Implementation<S>) -> Self {
        let object = implementation.into_object();
        let local = implementation_of::<S>(&object);
        Obj { proxy: S::Proxy::from_handle(object.into()), local }
    }

    /// The peer's object `remote` as an `S`, checked to expose the trait's
    /// methods (one round trip; see [`check`](super::check)).
    pub fn from_remote(remote: RemoteObject) -> Result<Self> {
        check::<S>(&remote, &format!("remote object #{}", remote.id()))?;
        Ok(Obj { proxy: S::Proxy::from_handle(remote.into()), local: None })
    }

    /// The implementation, when this is one of this side's own objects
    /// (made here, or handed back by the peer).
    pub fn local(&self) -> Option<&Arc<S>> {
        self.local.as_ref()
    }

    /// The implementation as its own type `T`, when this is one of this
    /// side's own objects and serves a `T`: what calls its `async fn`s,
    /// which the trait object cannot.
    pub fn downcast<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let object = self.proxy.handle().as_local()?;
        let typed = (object.object() as &dyn Any).downcast_ref::<Typed<S>>()?;
        typed.concrete.clone().downcast::<T>().ok()
    }

    /// The peer's object, when this is one.
    pub fn remote(&self) -> Option<&RemoteObject> {
        self.proxy.handle().as_remote()
    }

    /// The typed proxy calling the object.
    pub fn proxy(&self) -> &S::Proxy {
        &self.proxy
    }

    /// True when both are the same object.
    pub fn same_as(&self, other: &Obj<S>) -> bool {
        self.proxy.handle().same_as(other.proxy.handle())
    }
}

impl<S: Interface + ?Sized> Deref for Obj<S> {
    type Target = S::Proxy;

    fn deref(&self) -> &S::Proxy {
        &self.proxy
    }
}

impl<S: Interface + ?Sized> Clone for Obj<S> {
    fn clone(&self) -> Self {
        Obj { proxy: self.proxy.clone(), local: self.local.clone() }
    }
}

impl<S: Interface + ?Sized> fmt::Debug for Obj<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Obj<dyn {}>({:?})", S::NAME, self.proxy.handle())
    }
}

impl<S: Interface + ?Sized> Serialize for Obj<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.proxy.handle().serialize(s)
    }
}

impl<'de, S: Interface + ?Sized> Deserialize<'de> for Obj<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let handle = Handle::deserialize(d)?;
        let local = match handle.as_local() {
            None => None,
            Some(l) => match implementation_of::<S>(l) {
                Some(this) => Some(this),
                None => {
                    return Err(D::Error::custom(format!(
                        "expected a `{}` object, got this side's own `{}` object, handed back",
                        S::NAME,
                        l.type_name()
                    )))
                }
            },
        };
        Ok(Obj { proxy: S::Proxy::from_handle(handle), local })
    }
}

/// The implementation `object` serves, when it serves an `S`.
fn implementation_of<S: Interface + ?Sized>(object: &LocalObject) -> Option<Arc<S>> {
    (object.object() as &dyn Any).downcast_ref::<Typed<S>>().map(|typed| typed.this.clone())
}
