//! Connections: the protocol core driven over a transport, with blocking
//! synchronous calls, `AsyncResult`s, serving, and event-loop entry points.
//!
//! # How serving works
//!
//! One thread at a time is the *driver*: it waits on the transport, reads,
//! feeds the protocol and delivers replies to whichever thread waits for
//! them. Every thread that waits for something (a synchronous call, `value()`,
//! `serve`, a [`BgServingThread`]) either becomes the driver or sleeps on a
//! condition variable until the driver delivers its reply or steps down. So
//! replies are never lost between threads and each is delivered exactly once.
//!
//! Requests from the peer are queued in arrival order and run by whichever
//! serving thread takes them next, with no lock held, so a method may call
//! back into the peer (nested callbacks work at any depth). **When one thread
//! serves a connection, its requests run in the order they arrived**; with
//! several serving threads they may overlap. Before it returns, a
//! synchronous call runs the requests still queued that arrived with (or
//! before) its reply, so when nobody else serves the connection a reply
//! never overtakes a callback the peer sent before it.
//!
//! A connection *attached* to an event loop (through a
//! [`Driver`](crate::Driver), which the backends use) is only driven and
//! served by the loop's thread: other threads' calls queue their request,
//! wake the loop, and sleep until the loop delivers the reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::{self, ThreadId};
use std::time::Duration;

use crate::auth::Credentials;
use crate::clock::Clock;
use crate::config::Config;
use crate::connection::remote::RemoteObject;
use crate::connection::serve::Serve;
use crate::error::{CloseReason, Error, Result};
use crate::protocol::{Call, Protocol};
use crate::transport::Transport;
use crate::value::remote::ProxyOwner;
use crate::value::Value;

// One concern a file; the types every step shares (`Shared`, the handle
// `Connection`) stay here, and each step is an `impl Shared` block of its own.
pub(crate) mod async_result; // AsyncResult and the slot a reply lands in
mod batch; // output held back for a batch, written in one go
mod bg_thread; // BgServingThread
pub(crate) mod budget; // the memory budget connections share
mod builder; // Builder, connect
mod close; // close hooks, lingering, failing what is pending
mod dispatch; // protocol events into work; running requests
mod flusher; // writes coalesced output still held when its time is up
mod inbox; // the peer's requests waiting to run, cancelled in O(1)
           // The driver-facing side (`Driver`, `Step`): a child module, so the drive
           // step reaches the connection's state without widening visibility.
pub(crate) mod driver;
pub(crate) mod loop_data; // the loop's shared data lent to callbacks
pub(crate) mod loop_thread; // callbacks bound to a loop's thread
mod read; // reading from the transport
mod reconnect; // Reconnecting: dialling again when the connection is lost
pub(crate) mod remote; // proxies: RemoteObject, async_, timed
mod serve; // the serving loop
mod service; // Service: root object and hooks
mod session; // submitting calls; waiting for replies
mod state; // the state behind the lock, its guard, deferred work
mod subproc; // connect_subproc and connect_stdpipes: a child over its stdio
mod tasks; // the peer's calls of asynchronous methods, while they run
#[cfg(feature = "tls")]
mod tls; // connect_tls, Builder::tls

use batch::Batch;
use bg_thread::Standing;
use inbox::Inbox;
use read::READ_BUF_LEN;
use service::CloseHook;
use state::{After, ServiceStart, State, StateGuard};

pub use batch::batch;
pub use bg_thread::BgServingThread;
pub use builder::{connect, Builder, DEFAULT_AUTH_TIMEOUT};
pub use reconnect::{LinkState, ReconnectBuilder, Reconnecting};
pub use service::Service;

thread_local! {
    /// How many connection state locks this thread holds.
    static LOCKS_HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The buffer [`Shared::read_available`] reads into, shared by every
    /// connection this thread drives. Always initialised (zeroed once when
    /// it grows), so reads go straight into it.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_BUF_LEN]);
    /// This thread's open [`batch`] scopes, and the connections holding
    /// output back for it (see [`Shared::send_or_hold`]).
    static BATCH: std::cell::RefCell<Batch> = const { std::cell::RefCell::new(Batch { depth: 0, held: Vec::new() }) };
    /// The list an [`AfterBuf`] lends (empty while lent).
    static AFTER_SPARE: std::cell::RefCell<Vec<After>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Connections whose last handle dropped while this thread held a state
    /// lock: closing them then could deadlock, so they close on release.
    static DEFERRED_CLOSES: std::cell::RefCell<Vec<Arc<Shared>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// How many of the peers' requests this thread is running, one inside
    /// another (on any connection: they share the thread's stack), for
    /// [`Config::max_nesting`].
    static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Set while this thread steps a connection of an event-loop server
    /// (see [`Shared::loop_served`]): waiting for a reply now would stop
    /// the loop's other connections.
    static SERVER_STEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    transport: Box<dyn Transport>,
    /// The attached event loop's wake-up, kept outside `state` so that it can
    /// be rung from anywhere, even with the state lock held.
    loop_waker: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// [`Connection::on_close`] handlers, run once when it closes.
    close_hooks: Mutex<Vec<CloseHook>>,
    clock: Arc<dyn Clock>,
    /// Set when the service starts: the authenticator's credentials, with
    /// what the transport proved (TLS certificates).
    credentials: OnceLock<Option<Credentials>>,
    config: Arc<Config>,
    service: Service,
    label: String,
    handles: AtomicUsize,
    closing: AtomicBool,
    /// Standing servers: event loops attached, `BgServingThread`s and
    /// threads inside `serve_all` (see [`Shared::standing_server_started`]).
    standing: AtomicUsize,
    /// Asynchronous calls whose waker fired, to poll (see [`tasks`]).
    woken: tasks::Woken,
    /// Accepted by an event-loop server, whose loop serves many
    /// connections: a synchronous call from its methods would stop them
    /// all, so it fails ([`Misuse::BlocksLoopServer`]).
    loop_served: AtomicBool,
    /// The flusher is due to visit (see [`flusher`]).
    flush_scheduled: AtomicBool,
    /// The budget this connection's buffers count against, and its share.
    budget: budget::MemoryBudget,
    charged: AtomicUsize,
    me: Weak<Shared>,
}

/// A connection to a peer. Cheap to clone, `Send + Sync`: threads may share
/// one and call through it at once.
///
/// The connection stays open while any clone of it or any proxy
/// ([`RemoteObject`]) from it lives, so `netref::connect(addr)?.root()?`
/// works as in RPyC; it closes when the last of those drops, on
/// [`close`](Self::close), or when the peer goes. An object this side
/// exports that itself holds a proxy from the same connection keeps it open
/// until one of the latter: close such connections explicitly.
pub struct Connection {
    shared: Arc<Shared>,
}

/// A handle that does not keep the connection open.
#[derive(Clone)]
pub struct WeakConnection {
    shared: Weak<Shared>,
}

impl WeakConnection {
    /// True when this is a handle to `conn`: in an
    /// [`on_disconnect`](Service::on_disconnect) hook, which of the
    /// connections a server keeps track of has just ended.
    pub fn is(&self, conn: &Connection) -> bool {
        std::ptr::eq(self.shared.as_ptr(), Arc::as_ptr(&conn.shared))
    }

    /// The connection, if it is still open somewhere.
    pub fn upgrade(&self) -> Option<Connection> {
        let shared = self.shared.upgrade()?;
        // Only resurrect a connection someone still holds open.
        let mut n = shared.handles.load(Ordering::Acquire);
        loop {
            if n == 0 {
                return None;
            }
            match shared.handles.compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Connection { shared }),
                Err(actual) => n = actual,
            }
        }
    }
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        self.shared.retain();
        Connection { shared: self.shared.clone() }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({})", self.shared.label)
    }
}

impl Connection {
    /// A builder for connections with a service, limits or a clock.
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn start(b: Builder, transport: Box<dyn Transport>, credentials: Option<Credentials>) -> Connection {
        let now = b.clock.now();
        let label = transport.describe();
        // A TLS handshake an event loop drives: the service starts when it
        // is over (`ServiceStart`).
        let establishing = transport.establishing();
        let shared = Arc::new_cyclic(|me: &Weak<Shared>| {
            let owner: Weak<dyn ProxyOwner> = me.clone();
            Shared {
                state: Mutex::new(State {
                    proto: Protocol::with_owner(b.config.clone(), now, Some(owner), b.pool.clone()),
                    service: ServiceStart::Waiting(credentials),
                    served: None,
                    slots: HashMap::default(),
                    inbox: Inbox::default(),
                    tasks: Default::default(),
                    driver: None,
                    loop_thread: None,
                    closed: None,
                    root: Weak::new(),
                    progress: 0,
                    sleepers: 0,
                    held: false,
                    closing: None,
                }),
                cond: Condvar::new(),
                transport,
                loop_waker: Mutex::new(None),
                close_hooks: Mutex::new(Vec::new()),
                clock: b.clock,
                credentials: OnceLock::new(),
                config: b.config,
                service: b.service,
                label,
                handles: AtomicUsize::new(1),
                closing: AtomicBool::new(false),
                standing: AtomicUsize::new(0),
                woken: Default::default(),
                loop_served: AtomicBool::new(false),
                flush_scheduled: AtomicBool::new(false),
                budget: b.budget.clone(),
                charged: AtomicUsize::new(0),
                me: me.clone(),
            }
        });
        let conn = Connection { shared };
        conn.shared.budget.register(Arc::downgrade(&conn.shared));
        if !establishing {
            conn.shared.start_service(&conn);
        }
        // Send the hello now; a failure here surfaces on first use.
        let after = {
            let mut st = conn.shared.lock();
            let mut after = Vec::new();
            conn.shared.flush_locked(&mut st, &mut after);
            after
        };
        conn.shared.finish(after);
        log::debug!("netref connection to {} open", conn.shared.label);
        conn
    }

    /// True when both are handles to the same connection.
    pub fn same_as(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// A handle that does not keep the connection open.
    pub fn downgrade(&self) -> WeakConnection {
        WeakConnection { shared: Arc::downgrade(&self.shared) }
    }

    /// The peer's root object (cached after the first call).
    pub fn root(&self) -> Result<RemoteObject> {
        {
            let st = self.shared.lock();
            if let Some(why) = &st.closed {
                return Err(Error::Closed(why.clone()));
            }
            if let Some(inner) = st.root.upgrade() {
                return Ok(RemoteObject { inner });
            }
        }
        let root: RemoteObject =
            self.shared.submit(Call::Root, self.shared.config.sync_request_timeout, false).value_as()?;
        self.shared.lock().root = Arc::downgrade(&root.inner);
        Ok(root)
    }

    /// One round trip to the peer.
    pub fn ping(&self) -> Result<()> {
        let payload = Value::Bytes(b"netref ping".to_vec());
        let echo = self
            .shared
            .submit(Call::Ping(payload.clone()), self.shared.config.sync_request_timeout, false)
            .value()?;
        if echo != payload {
            return Err(Error::Protocol(crate::error::ProtocolError::Unexpected(
                "ping echoed a different payload".into(),
            )));
        }
        Ok(())
    }

    /// Serves whatever arrives within `timeout` (RPyC's `serve`). Returns
    /// whether anything was received or served.
    pub fn serve(&self, timeout: Duration) -> Result<bool> {
        let start = self.shared.lock().progress;
        let deadline = self.shared.clock.now() + timeout;
        self.shared.serve_until(&|st: &State| st.progress != start, Some(deadline), Serve::Blocking)?;
        Ok(self.shared.lock().progress != start)
    }

    /// Serves everything already received, without blocking (RPyC's
    /// `poll_all`); also what an event loop calls when the connection's fd is
    /// readable. Returns whether anything was received or served.
    pub fn poll_all(&self) -> Result<bool> {
        let start = self.shared.lock().progress;
        self.shared.serve_until(&|_| false, None, Serve::Ready)?;
        Ok(self.shared.lock().progress != start)
    }

    /// Serves until the connection closes (RPyC's `serve_all`). Returns `Ok`
    /// after an [orderly](CloseReason::is_orderly) close, the error
    /// otherwise ([`Error::Closed`] with why: the connection was lost, the
    /// peer misbehaved).
    pub fn serve_all(&self) -> Result<()> {
        let _standing = Standing::new(&self.shared);
        match self.shared.serve_until(&|_| false, None, Serve::Blocking).map(drop) {
            Err(Error::Closed(why)) if why.is_orderly() => Ok(()),
            other => other,
        }
    }

    /// Closes the connection: runs the service's `before_close` hook (which
    /// may still call the peer), tells the peer, fails pending calls at once
    /// with [`Error::Closed`] ([`CloseReason::ByThisSide`]), then runs
    /// `on_disconnect`.
    pub fn close(&self) {
        if let Some(hook) = self.shared.service.before_close.clone() {
            if !self.shared.closing.swap(true, Ordering::AcqRel) && !self.is_closed() {
                hook(self);
            }
        }
        self.shared.close_now("closed by this side");
    }

    /// True once the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.lock().closed.clone()
    }

    /// The peer's address or a description of the transport.
    pub fn peer(&self) -> &str {
        &self.shared.label
    }

    /// What the builder's [authenticator](Builder::authenticator) (or the
    /// shared-secret exchange) established about the peer, with the
    /// certificates it presented over TLS; `None` for an unauthenticated
    /// connection. Already set when the service's root factory and
    /// `on_connect` run (on an event loop's TLS server, they run once the
    /// handshake is over).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.shared.credentials.get().and_then(Option::as_ref)
    }

    /// Local objects the peer currently holds references to.
    pub fn exported_count(&self) -> usize {
        self.shared.lock().proto.exported_count()
    }

    /// Peer objects this side currently holds proxies for.
    pub fn imported_count(&self) -> usize {
        self.shared.lock().proto.imported_count()
    }

    /// Requests awaiting replies.
    pub fn pending_count(&self) -> usize {
        self.shared.lock().slots.len()
    }

    /// The limits of this connection.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Runs `f` once the connection has closed, with why: after pending
    /// calls failed, on the thread that noticed the close (an event loop's
    /// thread for an attached connection), or at once when it is already
    /// closed. It runs once, whoever closed the connection.
    ///
    /// For a handler that touches `!Send` things (GTK widgets), wrap it in
    /// netref-glib's `local_callback`, which runs it on the context's thread.
    ///
    /// ```
    /// # fn main() -> netref::Result<()> {
    /// let (client, server) = netref::Builder::default().pair(netref::Builder::default())?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// client.on_close(move |why| tx.send(why.to_string()).unwrap());
    /// server.close();
    /// client.serve(std::time::Duration::from_secs(10))?; // notices the close
    /// assert!(rx.recv().unwrap().contains("closed"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_close(&self, f: impl FnOnce(&CloseReason) + Send + 'static) {
        let why = {
            let st = self.shared.lock();
            match &st.closed {
                Some(why) => why.clone(),
                None => {
                    // Queued under the state lock: the close sets `closed`
                    // under it before it runs the hooks, so none is missed.
                    self.shared.close_hooks.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
                    return;
                }
            }
        };
        f(&why);
    }

    /// Bytes queued for the peer that the transport has not taken yet: a
    /// statistic, like [`pending_count`](Self::pending_count). (An event
    /// loop learns when to watch for writability from its
    /// [`Driver`](crate::Driver)'s [`Step`](crate::Step).)
    pub fn pending_output_len(&self) -> usize {
        self.shared.lock().proto.pending_output_len()
    }
}

impl Shared {
    fn lock(&self) -> StateGuard<'_> {
        StateGuard::new(self)
    }

    /// One more handle (a `Connection` or a proxy) keeps the connection open.
    fn retain(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// A handle went away; the last one closes the connection (later, if
    /// this thread holds a state lock now).
    fn release(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if LOCKS_HELD.with(|n| n.get()) > 0 {
            DEFERRED_CLOSES.with(|d| d.borrow_mut().push(self.arc()));
        } else {
            self.close_now("every handle to the connection was dropped");
        }
    }

    fn arc(&self) -> Arc<Shared> {
        self.me.upgrade().expect("a method runs on a live connection")
    }

    /// A standing server started: something now serves the connection on
    /// its own (an event loop it is attached to, a [`BgServingThread`], a
    /// thread inside [`Connection::serve_all`]), so a future awaited on it
    /// may wait for its reply. Pair each call with
    /// [`standing_server_stopped`](Self::standing_server_stopped).
    pub(crate) fn standing_server_started(&self) {
        self.standing.fetch_add(1, Ordering::SeqCst);
    }

    /// A standing server stopped. When it was the last, every future
    /// waiting on the connection is woken: it polls again and fails with
    /// [`Misuse::Unserved`] instead of waiting for a reply nobody will
    /// read. Call with no state lock held.
    pub(crate) fn standing_server_stopped(&self) {
        if self.standing.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let wakers: Vec<_> = self.lock().slots.values().flat_map(|slot| slot.take_wakers()).collect();
        wakers.into_iter().for_each(std::task::Waker::wake);
    }

    fn may_serve(st: &State, me: ThreadId) -> bool {
        st.loop_thread.is_none_or(|t| t == me)
    }

    /// Wakes whoever drives the connection so it notices new output or a
    /// nearer deadline.
    fn wake_driver(&self, st: &State) {
        if self.ring_loop() {
            return;
        }
        if let Some((t, _)) = st.driver {
            if t != thread::current().id() {
                self.transport.wake();
            }
        }
    }

    /// On an attached connection, requests read along with what a wait was
    /// waiting for (a synchronous call on the loop's thread outside the
    /// loop's own callbacks) are already off the socket, so the loop's fd
    /// may never signal for them again: ring the loop so that it serves them.
    fn hand_leftovers_to_loop(&self, st: &State) {
        if st.loop_thread.is_some() && !st.inbox.is_empty() {
            self.ring_loop();
        }
    }

    /// Calls the attached loop's waker; false when not attached.
    fn ring_loop(&self) -> bool {
        let waker = self.loop_waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match waker {
            Some(w) => {
                w();
                true
            }
            None => false,
        }
    }
}
