//! What a connection serves: its root object and lifecycle hooks ([`Service`]).

use std::sync::Arc;

use super::state::ServiceStart;
use super::Connection;
use crate::auth::Credentials;
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

impl super::Shared {
    /// Starts the service: records the credentials (the authenticator's,
    /// with what the transport proved), makes the root and runs
    /// `on_connect`, with no lock held. At most once; while it runs, the
    /// peer's root requests get what a side with no service answers (as
    /// when a root factory calls the peer). Called when the connection
    /// starts, or once its transport is established ([`ServiceStart`]).
    pub(super) fn start_service(&self, conn: &Connection) {
        let authenticated = {
            let mut st = self.lock();
            match std::mem::replace(&mut st.service, ServiceStart::Starting) {
                ServiceStart::Waiting(credentials) => credentials,
                other => {
                    st.service = other;
                    return;
                }
            }
        };
        let _ = self.credentials.set(merge(authenticated, self.transport.credentials()));
        if let Some(make_root) = &self.service.root {
            let root = make_root(conn);
            self.lock().served = Some(root);
        }
        if let Some(hook) = self.service.on_connect.clone() {
            hook(conn);
        }
        self.lock().service = ServiceStart::Started;
    }
}

/// The authenticator's credentials, completed with the transport's: its
/// certificates, and its method when the authenticator proved nothing.
fn merge(authenticated: Option<Credentials>, transport: Option<Credentials>) -> Option<Credentials> {
    match (authenticated, transport) {
        (Some(mut a), Some(t)) => {
            a.certificates = t.certificates;
            Some(a)
        }
        (a, t) => a.or(t),
    }
}
