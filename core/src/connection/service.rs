//! What a connection serves: its root object and lifecycle hooks ([`Service`]).

use std::sync::Arc;

use super::Connection;
use crate::error::CloseReason;
use crate::typed::{Implementation, Interface};
use crate::value::object::LocalObject;

pub(super) type Hook = Arc<dyn Fn(&Connection) + Send + Sync>;

pub(super) type RootFactory = Arc<dyn Fn(&Connection) -> LocalObject + Send + Sync>;

pub(super) type CloseHook = Box<dyn FnOnce(&CloseReason) + Send>;

/// What one side exposes: a root object made per connection, and lifecycle
/// hooks (RPyC's `Service` with `on_connect` / `on_disconnect`).
#[derive(Clone, Default)]
pub struct Service {
    pub(super) root: Option<RootFactory>,
    pub(super) on_connect: Option<Hook>,
    pub(super) before_close: Option<Hook>,
    pub(super) on_disconnect: Option<Hook>,
}

impl Service {
    /// A service whose root object is made by `root` for each new connection.
    /// To call the peer from the root's methods, capture a
    /// [`WeakConnection`](crate::WeakConnection) (a strong one would keep the connection open).
    pub fn new(root: impl Fn(&Connection) -> LocalObject + Send + Sync + 'static) -> Self {
        Service { root: Some(Arc::new(root)), ..Default::default() }
    }

    /// A service whose every connection shares one root object.
    pub fn object(root: LocalObject) -> Self {
        Service::new(move |_| root.clone())
    }

    /// A service whose every connection shares one root object, an
    /// implementation of the `#[netref::service]` trait `S`: only the
    /// trait's methods are reachable.
    ///
    /// `Service::typed::<dyn FileMonitor>(Monitor::new())`; for a root per
    /// connection, [`Service::new`] with [`typed::export`](crate::typed::export).
    pub fn typed<S: Interface + ?Sized>(root: impl Implementation<S>) -> Self {
        Service::object(crate::typed::export::<S>(root))
    }

    /// Exposes nothing (RPyC's `VoidService`); the peer's `root()` fails.
    pub fn none() -> Self {
        Service::default()
    }

    /// Runs when the connection is set up, before any request is served.
    pub fn on_connect(mut self, f: impl Fn(&Connection) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(f));
        self
    }

    /// Runs when this side closes the connection, before the peer is told: it
    /// may still call the peer.
    pub fn before_close(mut self, f: impl Fn(&Connection) + Send + Sync + 'static) -> Self {
        self.before_close = Some(Arc::new(f));
        self
    }

    /// Runs once after the connection has closed, whichever side closed it.
    pub fn on_disconnect(mut self, f: impl Fn(&Connection) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }
}
