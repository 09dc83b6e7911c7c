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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::auth::{Authenticator, Credentials, Secret};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::connection::async_result::{AsyncResult, ReplySource, Slot};
use crate::connection::remote::{RemoteObject, Session};
use crate::error::{CloseReason, Error, LimitError, Misuse, RemoteError, Result};
use crate::protocol::{Call, Event, Protocol, Request};
use crate::transport::{SocketTransport, Stream, Transport};
use crate::value::object::LocalObject;
use crate::value::{to_value, Value};
use crate::wire::BufferPool;

pub(crate) mod async_result;
// The driver-facing side (`Driver`, `Step`), in its own file: a child
// module, so the drive step reaches the connection's state without widening
// visibility all over this file.
pub(crate) mod driver;
pub(crate) mod loop_thread;
pub(crate) mod remote;

type Hook = Arc<dyn Fn(&Connection) + Send + Sync>;
type RootFactory = Arc<dyn Fn(&Connection) -> LocalObject + Send + Sync>;
type CloseHook = Box<dyn FnOnce(&CloseReason) + Send>;

/// What one side exposes: a root object made per connection, and lifecycle
/// hooks (RPyC's `Service` with `on_connect` / `on_disconnect`).
#[derive(Clone, Default)]
pub struct Service {
    root: Option<RootFactory>,
    on_connect: Option<Hook>,
    before_close: Option<Hook>,
    on_disconnect: Option<Hook>,
}

impl Service {
    /// A service whose root object is made by `root` for each new connection.
    /// To call the peer from the root's methods, capture a
    /// [`WeakConnection`] (a strong one would keep the connection open).
    pub fn new(root: impl Fn(&Connection) -> LocalObject + Send + Sync + 'static) -> Self {
        Service { root: Some(Arc::new(root)), ..Default::default() }
    }

    /// A service whose every connection shares one root object.
    pub fn object(root: LocalObject) -> Self {
        Service::new(move |_| root.clone())
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

/// Sets up connections: the service exposed, the limits, the clock, and
/// authentication.
#[derive(Clone)]
pub struct Builder {
    service: Service,
    config: Config,
    clock: Arc<dyn Clock>,
    authenticator: Option<Arc<dyn Authenticator>>,
    secret: Option<Secret>,
    auth_timeout: Duration,
    pool: BufferPool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            service: Service::none(),
            config: Config::default(),
            clock: Arc::new(SystemClock),
            authenticator: None,
            secret: None,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            pool: BufferPool::new(),
        }
    }
}

/// How long authentication may take by default (see [`Builder::auth_timeout`]).
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

impl Builder {
    /// The service this side exposes (default: none).
    pub fn service(mut self, service: Service) -> Self {
        self.service = service;
        self
    }

    /// The limits (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Shares `pool`'s spare buffers for large byte strings with the
    /// connections this builder starts (default: a pool of this builder's
    /// own, which every connection started from it or a clone of it
    /// shares; see [`BufferPool`]).
    pub fn buffer_pool(mut self, pool: &BufferPool) -> Self {
        self.pool = pool.clone();
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the peer of every stream this builder starts a connection
    /// over, before the handshake (see [`auth`](crate::auth)); the result is
    /// [`Connection::credentials`]. A refused peer's stream is closed and
    /// the connection is not made ([`Error::Auth`]). Servers usually set it
    /// with their own `authenticator` method.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Answers a server's [`SharedSecret`](crate::auth::SharedSecret)
    /// challenge with `secret` before the handshake, and checks that the
    /// server knows it too. The secret never crosses the wire.
    pub fn shared_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(Secret::new(secret.into()));
        self
    }

    /// How long authentication may block on the peer (default: 10 s); past
    /// it the peer is refused with a timeout error.
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// True when starting a connection with this builder may wait for the
    /// peer (a non-[instant](Authenticator::is_instant) authenticator or a
    /// shared secret): single-threaded event-loop servers refuse such
    /// builders rather than stall their loop.
    pub fn auth_may_block(&self) -> bool {
        self.secret.is_some() || self.authenticator.as_ref().is_some_and(|a| !a.is_instant())
    }

    /// Runs this builder's authentication on `stream` (blocking, within
    /// `auth_timeout`). `None` when nothing is configured.
    fn authenticate(&self, stream: &mut Stream) -> Result<Option<Credentials>> {
        if self.authenticator.is_none() && self.secret.is_none() {
            return Ok(None);
        }
        stream.set_timeouts(Some(self.auth_timeout))?;
        let mut credentials = None;
        if let Some(auth) = &self.authenticator {
            credentials = Some(auth.authenticate(stream)?);
        }
        if let Some(secret) = &self.secret {
            let proved = crate::auth::answer_challenge(stream, secret)?;
            credentials.get_or_insert(proved);
        }
        stream.set_timeouts(None)?;
        Ok(credentials)
    }

    /// Connects over TCP (RPyC's `rpyc.connect(host, port)`).
    pub fn connect_tcp(self, addr: impl ToSocketAddrs) -> Result<Connection> {
        self.over_stream(TcpStream::connect(addr)?)
    }

    /// Connects to a Unix socket.
    pub fn connect_unix(self, path: impl AsRef<Path>) -> Result<Connection> {
        self.over_stream(UnixStream::connect(path)?)
    }

    /// Runs a connection over an already connected stream, after this
    /// builder's authentication (if any) succeeded on it.
    pub fn over_stream(self, stream: impl Into<Stream>) -> Result<Connection> {
        let mut stream = stream.into();
        let credentials = self.authenticate(&mut stream)?;
        Ok(Connection::start(self, Box::new(SocketTransport::new(stream)?), credentials))
    }

    /// Runs a connection over any transport. Authentication does not apply
    /// here (it needs a [`Stream`]): authenticate the transport's bytes
    /// yourself before.
    pub fn over_transport(self, transport: impl Transport) -> Connection {
        if self.authenticator.is_some() || self.secret.is_some() {
            log::warn!("netref: over_transport() skips the builder's authentication");
        }
        Connection::start(self, Box::new(transport), None)
    }

    /// Two connected connections in one process over a socketpair: `self`'s
    /// service on the first, `other`'s on the second. Authentication does
    /// not apply (both ends are this process).
    pub fn pair(self, other: Builder) -> Result<(Connection, Connection)> {
        let (a, b) = UnixStream::pair()?;
        let a = Box::new(SocketTransport::new(a)?);
        let b = Box::new(SocketTransport::new(b)?);
        Ok((Connection::start(self, a, None), Connection::start(other, b, None)))
    }
}

/// Connects over TCP with default settings and no service of our own.
pub fn connect(addr: impl ToSocketAddrs) -> Result<Connection> {
    Builder::default().connect_tcp(addr)
}

/// Bytes read from a transport at a time.
const READ_BUF_LEN: usize = 64 * 1024;

/// A thread's read buffer grows to hold everything one drive reads (until
/// the transport would block); past this it goes back to [`READ_BUF_LEN`]
/// after use, so one burst does not pin its size for the thread's life.
const READ_BUF_KEEP: usize = 4 << 20;

/// Most bytes read in one pass before they are fed to the protocol. A peer
/// that keeps sending could otherwise keep one pass reading (and the buffer
/// growing) before any limit is checked; the driver reads again at once.
const READ_PASS_MAX: usize = 4 << 20;

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
}

/// Runs a request from the peer one level deeper, or refuses it when this
/// thread already runs `max` of them one inside another: running it would
/// take the stack one level further towards an overflow.
fn nested(
    max: usize,
    run: impl FnOnce() -> Result<Value, (RemoteError, String)>,
) -> Result<Value, (RemoteError, String)> {
    let depth = NESTING.with(|n| n.get());
    if depth >= max {
        let e = Error::from(LimitError::TooDeeplyNested { max });
        return Err((e.into_remote(), "request".to_string()));
    }
    NESTING.with(|n| n.set(depth + 1));
    // `run_request` catches panics, so the depth is always restored.
    let result = run();
    NESTING.with(|n| n.set(depth));
    result
}

/// Fails when this thread already runs `max` of the peers' requests one
/// inside another: a synchronous call now would serve the next level while
/// it waits (see [`Config::max_nesting`]).
fn check_nesting(max: usize) -> Result<()> {
    if NESTING.with(|n| n.get()) >= max {
        return Err(LimitError::TooDeeplyNested { max }.into());
    }
    Ok(())
}

/// How long a close waits, on the connection's [`Clock`], for its farewell
/// (and whatever was queued before it) to leave.
const LINGER: Duration = Duration::from_millis(100);

/// Most output a connection holds back for a batch; past it, it is written.
/// A socket buffer's worth: bigger batches save no system calls worth having
/// and would only delay the peer.
const HOLD_MAX: usize = 64 * 1024;

/// A thread's batching state.
struct Batch {
    /// Nesting depth of [`batch`] calls.
    depth: u32,
    /// Connections that held output back for this thread.
    held: Vec<Arc<Shared>>,
}

/// Runs `f`, writing the messages this thread sends inside it together: the
/// async calls it makes and the replies it serves stay queued until `f`
/// returns, instead of costing one system call each.
///
/// This is for bulk senders: a loop of [`async_`](crate::async_) calls, a
/// server method emitting many events. Nothing waits on a batch: whenever
/// this thread is about to wait for the peer (a synchronous call,
/// [`AsyncResult::wait`], `serve`), it first writes everything it held back,
/// so a batch can never deadlock. Output held on one connection is written
/// once it reaches 64 KiB; another thread's write on the same connection
/// takes the held messages along. Batches nest; the outermost one writes.
/// Blocking inside a batch on anything else (a channel, a lock another
/// thread holds while it waits for a reply to a held call) is the one way
/// to stall it: end the batch first.
///
/// ```
/// # fn main() -> netref::Result<()> {
/// # let (client, server) = netref::Builder::default().pair(netref::Builder::default()
/// #     .service(netref::Service::object(netref::ObjectBuilder::new("S")
/// #         .method("add", |a: i64, b: i64| a + b).build())))?;
/// # let _serving = netref::BgServingThread::new(&server);
/// let root = client.root()?;
/// // Ten calls, one write.
/// let results: Vec<_> = netref::batch(|| {
///     (0..10i64).map(|i| netref::async_(&root).call_method("add", (i, 1i64))).collect()
/// });
/// let sums: Vec<i64> = results.iter().map(|r| r.value_as()).collect::<Result<_, _>>()?;
/// assert_eq!(sums, (1..=10).collect::<Vec<_>>());
/// # Ok(())
/// # }
/// ```
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    /// Ends the scope even when `f` panics, so the thread never stays batched.
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            let outermost = BATCH.with(|b| {
                let mut b = b.borrow_mut();
                b.depth -= 1;
                b.depth == 0
            });
            if outermost {
                Shared::write_held();
            }
        }
    }
    BATCH.with(|b| b.borrow_mut().depth += 1);
    let _end = End;
    f()
}

/// True inside a [`batch`] on this thread.
fn in_batch() -> bool {
    BATCH.with(|b| b.borrow().depth > 0)
}

/// The state lock, held. Tracks holding per thread so that a handle dropped
/// under the lock (a proxy inside a discarded message, say) defers the close
/// it triggers until the lock is released.
struct StateGuard<'a> {
    guard: Option<MutexGuard<'a, State>>,
    shared: &'a Shared,
}

impl<'a> StateGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        let guard = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        LOCKS_HELD.with(|n| n.set(n.get() + 1));
        StateGuard { guard: Some(guard), shared }
    }

    /// Waits on the connection's condition variable, releasing the lock meanwhile.
    fn wait(mut self, timeout: Option<Duration>) -> Self {
        let mut guard = self.guard.take().expect("held");
        guard.sleepers += 1;
        LOCKS_HELD.with(|n| n.set(n.get() - 1));
        let mut guard = match timeout {
            Some(d) => self.shared.cond.wait_timeout(guard, d).unwrap_or_else(|e| e.into_inner()).0,
            None => self.shared.cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
        };
        guard.sleepers -= 1;
        LOCKS_HELD.with(|n| n.set(n.get() + 1));
        self.guard = Some(guard);
        self
    }
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_ref().expect("held")
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard.as_mut().expect("held")
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.guard.take().is_none() {
            return;
        }
        let now_free = LOCKS_HELD.with(|n| {
            n.set(n.get() - 1);
            n.get() == 0
        });
        if now_free {
            let deferred = DEFERRED_CLOSES.with(|d| std::mem::take(&mut *d.borrow_mut()));
            for shared in deferred {
                shared.close_now("every handle to the connection was dropped");
            }
        }
    }
}

/// A serving loop's list of work for after the lock, lent by the thread
/// and given back when the loop returns: each synchronous call runs one
/// loop, and a fresh `Vec` was an allocation per call.
struct AfterBuf(Vec<After>);

impl AfterBuf {
    fn take() -> AfterBuf {
        AfterBuf(AFTER_SPARE.with(|s| std::mem::take(&mut *s.borrow_mut())))
    }
}

impl std::ops::Deref for AfterBuf {
    type Target = Vec<After>;
    fn deref(&self) -> &Vec<After> {
        &self.0
    }
}

impl std::ops::DerefMut for AfterBuf {
    fn deref_mut(&mut self) -> &mut Vec<After> {
        &mut self.0
    }
}

impl Drop for AfterBuf {
    fn drop(&mut self) {
        // Only an empty list of modest size goes back (a loop that ended
        // in an error may have left work undone: it is dropped here, as a
        // fresh list's would be).
        if self.0.is_empty() && self.0.capacity() <= 64 {
            let buf = std::mem::take(&mut self.0);
            // `try_with`: the thread's locals may be going away.
            let _ = AFTER_SPARE.try_with(|s| *s.borrow_mut() = buf);
        }
    }
}

/// One queued piece of work to do once the state lock is released.
enum After {
    Complete(Arc<Slot>, Result<Value>),
    Expire(Arc<Slot>),
    Disconnected,
    Drop(#[allow(dead_code)] Vec<LocalObject>),
}

struct State {
    proto: Protocol,
    /// Keyed by our own sequence numbers (see `Protocol`'s pending calls).
    slots: HashMap<u64, Arc<Slot>, rustc_hash::FxBuildHasher>,
    inbox: VecDeque<(u64, Request)>,
    /// The driving thread and how deeply it re-entered (in-memory pairs).
    driver: Option<(ThreadId, u32)>,
    /// In attached mode, the only thread that drives and serves.
    loop_thread: Option<ThreadId>,
    closed: Option<CloseReason>,
    /// The peer's root, cached weakly: a proxy keeps the connection open, and
    /// the connection must not keep itself open.
    root: Weak<crate::connection::remote::ProxyInner>,
    /// Bumped whenever anything is received or served (for `serve`).
    progress: u64,
    /// Threads asleep on the condition variable (see [`Shared::notify`]).
    sleepers: usize,
    /// Output is queued but held back for a batch (see
    /// [`Shared::send_or_hold`]); the next write takes it along.
    held: bool,
    /// The thread closing the connection, while it waits for the close
    /// message to leave (see [`Shared::close_now`]).
    closing: Option<ThreadId>,
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
    credentials: Option<Credentials>,
    config: Config,
    service: Service,
    label: String,
    handles: AtomicUsize,
    closing: AtomicBool,
    /// Standing servers: event loops attached, `BgServingThread`s and
    /// threads inside `serve_all` (see [`Shared::standing_server_started`]).
    standing: AtomicUsize,
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
        let shared = Arc::new_cyclic(|me: &Weak<Shared>| {
            let session: Weak<dyn Session> = me.clone();
            Shared {
                state: Mutex::new(State {
                    proto: Protocol::with_session(b.config.clone(), None, now, session, b.pool.clone()),
                    slots: HashMap::default(),
                    inbox: VecDeque::new(),
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
                credentials,
                config: b.config,
                service: b.service,
                label,
                handles: AtomicUsize::new(1),
                closing: AtomicBool::new(false),
                standing: AtomicUsize::new(0),
                me: me.clone(),
            }
        });
        let conn = Connection { shared };
        if let Some(make_root) = &conn.shared.service.root {
            let root = make_root(&conn);
            conn.shared.lock().proto.set_root(root);
        }
        if let Some(hook) = conn.shared.service.on_connect.clone() {
            hook(&conn);
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
            self.shared.submit(Call::Root, self.shared.config.sync_request_timeout).value_as()?;
        self.shared.lock().root = Arc::downgrade(&root.inner);
        Ok(root)
    }

    /// One round trip to the peer.
    pub fn ping(&self) -> Result<()> {
        let payload = Value::Bytes(b"netref ping".to_vec());
        let echo = self
            .shared
            .submit(Call::Ping(payload.clone()), self.shared.config.sync_request_timeout)
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
        self.shared.serve_until(&|st: &State| st.progress != start, Some(deadline), true)?;
        Ok(self.shared.lock().progress != start)
    }

    /// Serves everything already received, without blocking (RPyC's
    /// `poll_all`); also what an event loop calls when the connection's fd is
    /// readable. Returns whether anything was received or served.
    pub fn poll_all(&self) -> Result<bool> {
        let start = self.shared.lock().progress;
        self.shared.serve_until(&|_| false, None, false)?;
        Ok(self.shared.lock().progress != start)
    }

    /// Serves until the connection closes (RPyC's `serve_all`). Returns `Ok`
    /// after an [orderly](CloseReason::is_orderly) close, the error
    /// otherwise ([`Error::Closed`] with why: the connection was lost, the
    /// peer misbehaved).
    pub fn serve_all(&self) -> Result<()> {
        let _standing = Standing::new(&self.shared);
        match self.shared.serve_until(&|_| false, None, true) {
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
    /// shared-secret exchange) established about the peer; `None` for an
    /// unauthenticated connection. Already set when the service's root
    /// factory and `on_connect` run.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.shared.credentials.as_ref()
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

    fn submit(&self, call: Call, timeout: Option<Duration>) -> AsyncResult {
        let now = self.clock.now();
        let expiry = timeout.map(|d| (now + d, d));
        let mut after = Vec::new();
        let slot = {
            let mut st = self.lock();
            if let Some(why) = &st.closed {
                return AsyncResult::failed(Error::Closed(why.clone()));
            }
            let place = call.result_place();
            let seq = match st.proto.send_request(call, expiry.map(|e| e.0)) {
                Ok(seq) => seq,
                Err(e) => return AsyncResult::failed(e),
            };
            let slot = Slot::new(seq, expiry, place);
            st.slots.insert(seq, slot.clone());
            let held = self.send_or_hold(&mut st, &mut after, in_batch());
            // A driver asleep in the transport's wait must learn of a new
            // deadline even when the request itself is held back.
            if (!held && st.proto.wants_write()) || expiry.is_some() {
                self.wake_driver(&st);
            }
            slot
        };
        self.finish(after);
        AsyncResult::new(slot, self.arc())
    }

    /// Writes what was just queued, or holds it back when `hold` (the thread
    /// is in a [`batch`], or serves requests that arrived together with
    /// [`Config::batch_replies`]) and less than [`HOLD_MAX`] is queued. Held
    /// output is registered with the thread, which writes it before it
    /// waits for anything and when its batch ends. Returns whether it held.
    fn send_or_hold(&self, st: &mut State, after: &mut Vec<After>, hold: bool) -> bool {
        if hold && st.proto.pending_output_len() < HOLD_MAX {
            st.held = true;
            BATCH.with(|b| {
                let mut b = b.borrow_mut();
                if !b.held.iter().any(|s| std::ptr::eq(&**s, self)) {
                    b.held.push(self.arc());
                }
            });
            return true;
        }
        self.flush_locked(st, after);
        false
    }

    /// True when this thread holds output back on some connection.
    fn thread_holds() -> bool {
        BATCH.with(|b| !b.borrow().held.is_empty())
    }

    /// Writes the output this thread held back, on every connection. Call
    /// with no state lock held (it takes each connection's).
    fn write_held() {
        let held = BATCH.with(|b| std::mem::take(&mut b.borrow_mut().held));
        for shared in held {
            let mut after = Vec::new();
            {
                let mut st = shared.lock();
                if st.held && st.closed.is_none() {
                    shared.flush_locked(&mut st, &mut after);
                    if st.proto.wants_write() {
                        shared.wake_driver(&st);
                    }
                }
            }
            shared.finish(after);
        }
    }

    /// Writes output until the transport would block; a write error ends the
    /// connection.
    fn flush_locked(&self, st: &mut State, after: &mut Vec<After>) {
        self.write_pending(st);
        self.process_events(st, after);
    }

    /// The writing of [`flush_locked`](Self::flush_locked), without taking
    /// the events: false when the transport refused the output (an error,
    /// or a write of zero bytes).
    fn write_pending(&self, st: &mut State) -> bool {
        st.held = false;
        loop {
            // Slices, so that a large byte string is written from its own
            // buffer instead of being copied behind its frame's head.
            let mut slices = [io::IoSlice::new(&[]); 8];
            let n = st.proto.pending_output_slices(&mut slices);
            if n == 0 {
                break;
            }
            let written = match n {
                1 => self.transport.write(&slices[0]),
                _ => self.transport.write_vectored(&slices[..n]),
            };
            match written {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the peer stopped accepting data");
                    st.proto.handle_transport_error(e);
                    return false;
                }
                Ok(n) => st.proto.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    st.proto.handle_transport_error(e);
                    return false;
                }
            }
        }
        true
    }

    /// Fires the deadlines that passed by `now`.
    fn timeouts_locked(&self, st: &mut State, after: &mut Vec<After>, now: Instant) {
        if st.proto.poll_timeout().is_some_and(|t| t <= now) {
            st.proto.handle_timeout(now);
            self.process_events(st, after);
        }
    }

    /// Moves protocol events into the connection's state; work that runs user
    /// code is queued in `after`.
    fn process_events(&self, st: &mut State, after: &mut Vec<After>) {
        let mut changed = false;
        while let Some(event) = st.proto.poll_event() {
            changed = true;
            st.progress += 1;
            match event {
                Event::Request { seq, request } => st.inbox.push_back((seq, request)),
                Event::Reply { seq, result } => {
                    if let Some(slot) = st.slots.remove(&seq) {
                        after.push(After::Complete(slot, result.map_err(Error::Remote)));
                    }
                }
                Event::Expired { seq } => {
                    if let Some(slot) = st.slots.remove(&seq) {
                        after.push(After::Expire(slot));
                    }
                }
                Event::Cancelled { seq } => {
                    if let Some(pos) = st.inbox.iter().position(|(s, _)| *s == seq) {
                        st.inbox.remove(pos);
                        st.proto.send_reply(
                            seq,
                            Err(RemoteError::new("Cancelled", "the caller gave up waiting")),
                        );
                    }
                }
                Event::Closed { reason } => {
                    log::debug!("netref connection to {} closed: {reason}", self.label);
                    self.fail_all(st, reason, after);
                    // Exported objects die before `on_disconnect` runs.
                    after.push(After::Drop(st.proto.take_released_objects()));
                    after.push(After::Disconnected);
                }
            }
        }
        let dead = st.proto.take_released_objects();
        if !dead.is_empty() {
            after.push(After::Drop(dead));
        }
        if changed {
            self.notify(st);
        }
    }

    /// Wakes the threads asleep on the condition variable. Call with the
    /// state lock held: sleepers are counted under it, so none is missed,
    /// and with none asleep this costs no futex syscall (std's `notify_all`
    /// always makes one; a synchronous call used to make three).
    fn notify(&self, st: &State) {
        if st.sleepers > 0 {
            self.cond.notify_all();
        }
    }

    fn fail_all(&self, st: &mut State, reason: CloseReason, after: &mut Vec<After>) {
        if st.closed.is_some() {
            return;
        }
        if matches!(reason, CloseReason::Protocol(_) | CloseReason::Decode(_) | CloseReason::Limit(_)) {
            log::warn!("netref connection to {} ended by bad input: {reason}", self.label);
        }
        st.closed = Some(reason.clone());
        for (_, slot) in st.slots.drain() {
            after.push(After::Complete(slot, Err(Error::Closed(reason.clone()))));
        }
        st.inbox.clear();
        self.transport.shutdown();
        self.notify(st);
    }

    /// Runs queued work with no lock held.
    fn finish(&self, mut after: Vec<After>) {
        self.finish_all(&mut after);
    }

    /// [`finish`](Self::finish), keeping `after`'s allocation for the next
    /// round (the serving loop completes a call per round: a fresh `Vec`
    /// was an allocation per synchronous call).
    fn finish_all(&self, after: &mut Vec<After>) {
        for a in after.drain(..) {
            match a {
                After::Complete(slot, outcome) => {
                    slot.complete(outcome, Some(self.arc()));
                    self.settled();
                }
                After::Expire(slot) => {
                    slot.expire();
                    self.settled();
                }
                After::Drop(objects) => drop(objects),
                After::Disconnected => {
                    if let Some(hook) = self.service.on_disconnect.clone() {
                        self.handles.fetch_add(1, Ordering::AcqRel);
                        let conn = Connection { shared: self.arc() };
                        hook(&conn);
                    }
                    self.run_close_hooks();
                }
            }
        }
    }

    /// Runs the [`Connection::on_close`] handlers, once the close is done.
    fn run_close_hooks(&self) {
        let hooks = std::mem::take(&mut *self.close_hooks.lock().unwrap_or_else(|e| e.into_inner()));
        if hooks.is_empty() {
            return;
        }
        let Some(why) = self.lock().closed.clone() else { return };
        for hook in hooks {
            hook(&why);
        }
    }

    /// Wakes threads waiting for a result after it settled. The driver's
    /// `notify_all` in `process_events` runs before the result is stored (in
    /// `finish`, without the lock), so a waiter woken by it can find the
    /// result still pending and sleep again: without this second notify it
    /// would miss the reply (a cross-thread call on an attached connection
    /// hung until its timeout).
    ///
    /// The thread driving the transport may be the waiter itself: it checked
    /// its slot before this result was stored and now sleeps in the
    /// transport's `wait`, where a condvar cannot reach it. Wake it too.
    fn settled(&self) {
        let st = self.lock();
        self.notify(&st);
        if let Some((driver, _)) = st.driver {
            if driver != thread::current().id() {
                self.transport.wake();
            }
        }
    }

    /// Closes the connection: tells the peer, gives that message up to
    /// [`LINGER`] to leave, then fails what is pending and runs the hooks.
    fn close_now(&self, reason: &str) {
        let me = thread::current().id();
        let mut after = Vec::new();
        {
            let mut st = self.lock();
            loop {
                if st.closed.is_some() {
                    return;
                }
                match st.closing {
                    None => break,
                    // Re-entered while lingering (a handle dropped on this
                    // thread): the close under way finishes the job.
                    Some(t) if t == me => return,
                    // Another thread is lingering: the close is done when
                    // it is (`fail_all` wakes the sleepers).
                    Some(_) => st = st.wait(None),
                }
            }
            st.proto.close(reason);
            let accepted = self.write_pending(&mut st);
            self.process_events(&mut st, &mut after);
            if accepted && st.proto.wants_write() {
                st.closing = Some(me);
                st = self.linger(st, &mut after);
                st.closing = None;
            }
            let dead = st.proto.take_released_objects();
            after.push(After::Drop(dead));
            self.fail_all(&mut st, CloseReason::ByThisSide, &mut after);
            after.push(After::Disconnected);
            self.wake_driver(&st);
        }
        self.finish(after);
    }

    /// Waits for the close message to leave: until the output is gone, the
    /// transport refuses it, or [`LINGER`] passes on the connection's clock.
    /// The state lock is released while waiting, so an event loop or another
    /// thread using the connection meanwhile is not held up (they see a
    /// closed protocol: new calls fail at once).
    ///
    /// A wait that neither moved the output nor saw the clock move ends it
    /// too: with a virtual clock nobody advances, waiting again would never
    /// end.
    fn linger<'a>(&'a self, mut st: StateGuard<'a>, after: &mut Vec<After>) -> StateGuard<'a> {
        let until = self.clock.now() + LINGER;
        loop {
            let now = self.clock.now();
            if now >= until || !st.proto.wants_write() {
                return st;
            }
            let queued = st.proto.pending_output_len();
            drop(st);
            let waited = self.transport.wait(true, Some(until.saturating_duration_since(now)));
            st = self.lock();
            let accepted = self.write_pending(&mut st);
            self.process_events(&mut st, after);
            let moved = st.proto.pending_output_len() != queued;
            if waited.is_err() || !accepted || (!moved && self.clock.now() == now) {
                return st;
            }
        }
    }

    /// Runs one queued request (no lock held) and sends its reply, or holds
    /// the reply back (see [`send_or_hold`](Self::send_or_hold)) when `hold`.
    fn dispatch(&self, seq: u64, request: Request, hold: bool) {
        let result = nested(self.config.max_nesting, || run_request(request)).map_err(|(mut e, what)| {
            if self.config.include_traceback {
                e.traceback.push(format!(
                    "Traceback (most recent call last):\n  in {what} (served to {})\n{}: {}",
                    self.label, e.type_name, e.message
                ));
            }
            e
        });
        let mut after = Vec::new();
        {
            let mut st = self.lock();
            st.progress += 1;
            st.proto.send_reply(seq, result);
            let held = self.send_or_hold(&mut st, &mut after, hold);
            if !held && st.proto.wants_write() {
                self.wake_driver(&st);
            }
        }
        self.finish(after);
    }

    /// The serving loop behind every wait: dispatch queued requests, drive the
    /// transport when nobody else does, otherwise sleep until woken. Returns
    /// when `done` holds, the deadline passes, or (when `block` is false)
    /// nothing more is ready.
    ///
    /// Output this thread held back leaves before it waits, and when it
    /// returns (unless it is inside a [`batch`]). Serving a run of requests
    /// writes the held replies itself when it takes the last one; the
    /// write on return is for a run that ends otherwise (another thread
    /// queued more requests behind the last one this thread took).
    fn serve_until(
        &self,
        done: &dyn Fn(&State) -> bool,
        deadline: Option<Instant>,
        block: bool,
    ) -> Result<()> {
        if Self::thread_holds() {
            Self::write_held();
        }
        let result = self.serve_loop(done, deadline, block);
        if Self::thread_holds() && !in_batch() {
            Self::write_held();
        }
        result
    }

    /// The loop of [`serve_until`](Self::serve_until).
    fn serve_loop(
        &self,
        done: &dyn Fn(&State) -> bool,
        deadline: Option<Instant>,
        block: bool,
    ) -> Result<()> {
        let me = thread::current().id();
        let mut drove_once = false;
        let mut lend_next = false;
        let mut leftovers: Option<usize> = None;
        let mut after = AfterBuf::take();
        let mut st = self.lock();
        loop {
            if done(&st) {
                // Requests read along with what we waited for run before we
                // return, as they would if messages were handled one by one:
                // a reply must not overtake a callback the peer sent before
                // it. Only those queued now, so a steady stream of new
                // requests cannot keep the caller from returning.
                let budget = leftovers.get_or_insert(st.inbox.len());
                if *budget > 0 && Self::may_serve(&st, me) {
                    let served;
                    (st, served) = self.serve_next(st);
                    if served {
                        *budget -= 1;
                        continue;
                    }
                }
                self.hand_leftovers_to_loop(&st);
                return Ok(());
            }
            let may_serve = Self::may_serve(&st, me);
            if may_serve {
                let served;
                (st, served) = self.serve_next(st);
                if served {
                    continue;
                }
            }
            if let Some(why) = &st.closed {
                return Err(Error::Closed(why.clone()));
            }
            let now = self.clock.now();
            if deadline.is_some_and(|d| now >= d) {
                self.hand_leftovers_to_loop(&st);
                return Ok(());
            }
            self.timeouts_locked(&mut st, &mut after, now);
            if !after.is_empty() {
                drop(st);
                self.finish_all(&mut after);
                st = self.lock();
                continue;
            }
            if !block && drove_once {
                return Ok(());
            }
            if block && Self::thread_holds() {
                // Never sleep on output held back: the peer may need it to
                // answer what this thread waits for.
                drop(st);
                Self::write_held();
                st = self.lock();
                continue;
            }
            let can_drive = may_serve && st.driver.is_none_or(|(t, _)| t == me);
            if !can_drive {
                if !block {
                    return Ok(());
                }
                let wait =
                    earliest(deadline, st.proto.poll_timeout()).map(|t| t.saturating_duration_since(now));
                st = match wait {
                    Some(d) => st.wait(Some(d)),
                    None => st.wait(None),
                };
                continue;
            }
            // Drive: wait on the transport without the lock, then read.
            st.driver = Some(match st.driver {
                Some((t, depth)) => (t, depth + 1),
                None => (me, 1),
            });
            self.flush_locked(&mut st, &mut after);
            let want_write = st.proto.wants_write();
            let wait = if block {
                Some(earliest(deadline, st.proto.poll_timeout()).map(|t| t.saturating_duration_since(now)))
            } else {
                None
            };
            drop(st);
            self.finish_all(&mut after);
            let waited = match wait {
                Some(timeout) => self.transport.wait(want_write, timeout),
                None => Ok(()),
            };
            // Read without the lock, then lock and feed what arrived.
            let mut more = false;
            // Checked when the last read was fed, to spare small messages
            // a lock round trip.
            let lent = if lend_next { self.lock().proto.take_input_buffer() } else { None };
            st = match lent {
                // A large byte string arriving: straight into its buffer.
                Some(input) => self.read_lent(input, &mut more),
                None => self.read_available(|read| {
                    let mut st = self.lock();
                    match read {
                        Ok((bytes, eof, cut_short)) => {
                            more = cut_short;
                            if !bytes.is_empty() {
                                let _ = st.proto.handle_bytes(bytes, self.clock.now());
                            }
                            if eof {
                                st.proto.handle_eof();
                            }
                        }
                        Err(e) => st.proto.handle_transport_error(e),
                    }
                    st
                }),
            };
            lend_next = st.proto.lends_input_buffer();

            st.driver = match st.driver {
                Some((t, depth)) if depth > 1 => Some((t, depth - 1)),
                _ => None,
            };
            // A pass cut short at READ_PASS_MAX left data in the socket: a
            // non-blocking poll reads again (an edge-triggered loop would
            // get no new edge for it).
            drove_once = !more;
            // Objects the peer released die before anything else leaves:
            // the protocol answers pings inline, and a reply overtaking the
            // drop would let the peer observe a released object still alive.
            self.process_events(&mut st, &mut after);
            self.notify(&st);
            if !after.is_empty() {
                drop(st);
                self.finish_all(&mut after);
                st = self.lock();
            }
            self.flush_locked(&mut st, &mut after);
            if !after.is_empty() {
                drop(st);
                self.finish_all(&mut after);
                st = self.lock();
            }
            if let Err(e) = waited {
                if e.kind() == io::ErrorKind::WouldBlock {
                    // An in-memory pair found nothing that could ever progress.
                    return Err(Misuse::WaitsForever { detail: e.to_string() }.into());
                }
            }
        }
    }

    /// Serves the next queued request, if there is one: takes it, runs it
    /// with the lock released, and returns the lock again with whether it
    /// served one.
    fn serve_next<'a>(&'a self, mut st: StateGuard<'a>) -> (StateGuard<'a>, bool) {
        let Some((seq, request)) = st.inbox.pop_front() else {
            return (st, false);
        };
        let hold = self.hold_reply(&st);
        drop(st);
        self.dispatch(seq, request, hold);
        (self.lock(), true)
    }

    /// Whether the reply to the request just taken from the inbox may be
    /// held back: in a [`batch`], or under [`Config::batch_replies`] while
    /// requests that arrived with it wait behind it (the reply to the last
    /// of them writes them all).
    fn hold_reply(&self, st: &State) -> bool {
        in_batch() || (self.config.batch_replies && !st.inbox.is_empty())
    }

    /// Reads until the transport would block (or [`READ_PASS_MAX`] bytes
    /// are in), then calls `feed` with what arrived, whether the stream
    /// ended and whether more may be waiting (or the error, when nothing
    /// was read before it). No lock is held while reading.
    ///
    /// Everything goes into one buffer, the thread's own (a connection
    /// costs no 64 KiB of its own: an idle server holding 10,000
    /// connections would spend 640 MiB on them), which `feed` reads in
    /// place: no copy per read and no fresh memory for every megabyte
    /// received.
    fn read_available<R>(&self, feed: impl FnOnce(io::Result<(&[u8], bool, bool)>) -> R) -> R {
        READ_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                let read = self.read_into(&mut buf);
                let r = feed(read.map(|(n, eof, more)| (&buf[..n], eof, more)));
                if buf.len() > READ_BUF_KEEP {
                    *buf = vec![0; READ_BUF_LEN];
                }
                r
            }
            // Re-entered on this thread (a driver driving an in-memory
            // peer): a buffer of its own.
            Err(_) => {
                let mut buf = vec![0; READ_BUF_LEN];
                let read = self.read_into(&mut buf);
                feed(read.map(|(n, eof, more)| (&buf[..n], eof, more)))
            }
        })
    }

    /// Reads into the buffer the protocol lent until the transport would
    /// block or the buffer is full, gives it back and returns the lock.
    /// `more`: the buffer filled up, so more may be waiting.
    fn read_lent(&self, mut input: crate::wire::InputBuffer, more: &mut bool) -> StateGuard<'_> {
        let mut eof = false;
        let mut error = None;
        while !input.is_full() {
            match self.transport.read(input.unfilled()) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => input.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        *more = input.is_full();
        let mut st = self.lock();
        let _ = st.proto.handle_input(input, self.clock.now());
        if eof {
            st.proto.handle_eof();
        } else if let Some(e) = error {
            st.proto.handle_transport_error(e);
        }
        st
    }

    /// Reads into `buf` from its start, growing it as needed, until the
    /// transport would block or [`READ_PASS_MAX`] bytes are in: the bytes
    /// read, whether the stream ended, and whether the pass was cut short
    /// (more may be waiting).
    fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<(usize, bool, bool)> {
        let mut filled = 0;
        loop {
            if filled >= READ_PASS_MAX {
                return Ok((filled, false, true));
            }
            if buf.len() - filled < READ_BUF_LEN {
                // Zeroed once here; the buffer keeps its length afterwards.
                buf.resize(filled + READ_BUF_LEN, 0);
            }
            match self.transport.read(&mut buf[filled..]) {
                Ok(0) => return Ok((filled, true, false)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((filled, false, false)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if filled == 0 => return Err(e),
                Err(_) => return Ok((filled, false, false)),
            }
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs a request's method, catching a panic as a remote error. An error
/// comes with what was called, for its traceback; the description is only
/// formatted then, not for every request.
fn run_request(request: Request) -> Result<Value, (RemoteError, String)> {
    match request {
        Request::Call { target, args } => {
            guarded(|| target.object().call(args)).map_err(|e| (e, format!("{}()", target.type_name())))
        }
        Request::CallMethod { target, name, args } => guarded(|| target.object().call_method(&name, args))
            .map_err(|e| (e, format!("{}.{}()", target.type_name(), name))),
        Request::GetAttr { target, name } => guarded(|| target.object().getattr(&name))
            .map_err(|e| (e, format!("{}.{}", target.type_name(), name))),
        Request::Dir { target } => {
            guarded(|| to_value(&target.object().try_dir()?).map_err(|e| e.into_remote()))
                .map_err(|e| (e, format!("dir({})", target.type_name())))
        }
        Request::Invalid(e) => Err((e, "request".to_string())),
    }
}

/// Runs `run`, turning a panic into a remote error.
fn guarded(run: impl FnOnce() -> Result<Value, RemoteError>) -> Result<Value, RemoteError> {
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a method panicked".into());
        Err(RemoteError::new("Panic", msg))
    })
}

impl Session for Shared {
    fn submit(&self, call: Call, timeout: Option<Duration>) -> AsyncResult {
        Shared::submit(self, call, timeout)
    }
    fn sync_timeout(&self) -> Option<Duration> {
        self.config.sync_request_timeout
    }
    fn check_nesting(&self) -> Result<()> {
        check_nesting(self.config.max_nesting)
    }
    fn retain_handle(&self) {
        self.retain();
    }
    fn release_handle(&self) {
        self.release();
    }
    fn release_queued(&self) {
        if !self.ring_loop() {
            // Wakes a driver blocked in `wait`; with none, the release leaves
            // with the next output.
            self.transport.wake();
        }
    }
}

impl ReplySource for Shared {
    fn poll(&self) {
        // An attached connection is the loop's to serve: serving it here,
        // outside the loop's dispatch, would run the peer's requests where
        // loop-bound callbacks cannot reach what they need (calloop's data).
        if self.lock().loop_thread.is_some() {
            return;
        }
        let _ = self.serve_until(&|_| false, None, false);
    }

    fn wait_for(&self, slot: &Arc<Slot>) -> Result<()> {
        match self.serve_until(&|_| slot.is_settled(), None, true) {
            // A closed connection has already settled the slot with the error.
            Err(Error::Closed(_) | Error::Io(..)) if slot.is_settled() => Ok(()),
            Err(e) if slot.is_settled() => {
                let _ = e;
                Ok(())
            }
            other => other,
        }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn is_served(&self) -> bool {
        self.standing.load(Ordering::SeqCst) > 0
    }

    fn set_deadline(&self, seq: u64, deadline: Instant) {
        let st = &mut *self.lock();
        st.proto.set_deadline(seq, Some(deadline));
        self.wake_driver(st);
        self.notify(st);
    }
}

/// One standing server, for as long as it lives (see
/// [`Shared::standing_server_started`]).
struct Standing(Arc<Shared>);

impl Standing {
    fn new(shared: &Arc<Shared>) -> Standing {
        shared.standing_server_started();
        Standing(shared.clone())
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        self.0.standing_server_stopped();
    }
}

/// Serves a connection from a background thread (RPyC's `BgServingThread`),
/// so events from the peer run while the caller's thread does other things.
///
/// Each event is served as it arrives; there is no polling interval.
/// [`stop`](Self::stop) returns promptly: it wakes the thread rather than
/// waiting for a timeout.
pub struct BgServingThread {
    conn: Connection,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Result<()>>>,
}

impl BgServingThread {
    /// Starts serving `conn` in a new thread.
    pub fn new(conn: &Connection) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = conn.clone();
        let flag = stop.clone();
        // Counted from now, not from when the thread runs: a future awaited
        // right after `new` returns waits for it.
        let standing = Standing::new(&conn.shared);
        let thread = thread::Builder::new()
            .name("netref-bg-serving".into())
            .spawn(move || {
                let _standing = standing;
                let stopped = |_: &State| flag.load(Ordering::Acquire);
                match worker.shared.serve_until(&stopped, None, true) {
                    Err(Error::Closed(why)) if why.is_orderly() => Ok(()),
                    other => other,
                }
            })
            .expect("spawning a thread");
        BgServingThread { conn: conn.clone(), stop, thread: Some(thread) }
    }

    /// Stops the thread and waits for it; returns how it ended: `Ok` when
    /// stopped or after an [orderly](CloseReason::is_orderly) close, the
    /// error otherwise.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        {
            let _st = self.conn.shared.lock();
            self.conn.shared.cond.notify_all();
        }
        self.conn.shared.transport.wake();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(Misuse::ServingThreadPanicked.into())),
            None => Ok(()),
        }
    }
}

impl Drop for BgServingThread {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
