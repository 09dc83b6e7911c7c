//! Servers that accept connections and serve each on its own thread
//! (RPyC's `ThreadedServer` and `OneShotServer`).
//!
//! ```no_run
//! use netref::{Builder, ObjectBuilder, Service, ThreadedServer};
//!
//! let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
//! let server = ThreadedServer::bind_tcp("127.0.0.1:18861", Builder::default().service(Service::object(calc)))?;
//! server.start(); // blocks until server.close() is called from another thread
//! # Ok::<(), netref::Error>(())
//! ```
//!
//! Each accepted connection gets its own thread at once; authentication
//! (see [`ThreadedServer::authenticator`]) runs there, so a slow or hostile
//! client never holds up the accept loop, and a refused client is logged and
//! dropped without pausing it. When the process runs out of file descriptors
//! (or threads), the server logs a warning, backs off for [`ACCEPT_BACKOFF`]
//! and tries again, serving the connections it has (see [`listener`](crate::server::listener)).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::auth::Authenticator;
use crate::connection::{Builder, WeakConnection};
use crate::error::Result;
use crate::server::listener::{start_accepted, Listener};
use crate::transport::{poll_timeout, poll_until, Bell, Stream};
use rustix::event::{PollFd, PollFlags};

/// The server's listener, plus the socket file to remove once it closes.
struct Bound {
    listener: Listener,
    unix_path: Option<PathBuf>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A listener that a `close()` from another thread can interrupt.
struct Acceptor {
    /// Read-locked while an accept loop polls and accepts on it, so that it
    /// stays open meanwhile; `stop` takes it (write-locked) to close it.
    listener: RwLock<Option<Bound>>,
    /// Rung by `stop`, never cleared: a latch that ends every poll, present
    /// and future.
    stop_bell: Bell,
    stopped: AtomicBool,
    /// Set when setting up a connection ran out of resources: the next
    /// accept waits [`ACCEPT_BACKOFF`] first.
    backoff: AtomicBool,
}

impl Acceptor {
    fn new(listener: Bound) -> Result<Acceptor> {
        // `Listener::bind_*` made the listener non-blocking: the poll below
        // may report a client that is gone by the time we accept.
        Ok(Acceptor {
            listener: RwLock::new(Some(listener)),
            stop_bell: Bell::new()?,
            stopped: AtomicBool::new(false),
            backoff: AtomicBool::new(false),
        })
    }

    /// The next connection, or `None` once stopped.
    fn next(&self) -> Option<Stream> {
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return None;
            }
            if self.backoff.swap(false, Ordering::AcqRel) {
                self.pause();
                continue;
            }
            let guard = self.listener.read().unwrap_or_else(|e| e.into_inner());
            let bound = guard.as_ref()?;
            let mut fds =
                [PollFd::new(&bound.listener, PollFlags::IN), PollFd::new(&self.stop_bell, PollFlags::IN)];
            // A failed poll (ENOMEM) is as good as a spurious wake-up:
            // accept finds nothing and the loop polls again.
            let _ = poll_until(&mut fds, None);
            if self.stopped.load(Ordering::Acquire) {
                return None;
            }
            // `accept` already skips clients that went away; what errors
            // remain are the listener's own.
            match bound.listener.accept() {
                Ok(stream) => return Some(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // Typically EMFILE/ENFILE: the process is out of file
                    // descriptors. Keep serving existing connections and try
                    // again shortly rather than spinning or giving up.
                    log::warn!("netref server: accept failed ({e}); retrying in {ACCEPT_BACKOFF:?}");
                    drop(guard);
                    self.pause();
                }
            }
        }
    }

    /// Waits [`ACCEPT_BACKOFF`], or less if [`stop`](Self::stop) wakes us.
    fn pause(&self) {
        let backoff = poll_timeout(Some(ACCEPT_BACKOFF));
        let _ = poll_until(&mut [PollFd::new(&self.stop_bell, PollFlags::IN)], backoff.as_ref());
    }

    /// Makes the next accept wait [`ACCEPT_BACKOFF`] first.
    fn back_off(&self) {
        self.backoff.store(true, Ordering::Release);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // Ends the accept loops' polls, so they let go of the listener.
        self.stop_bell.ring();
        // Closing the listener refuses further clients at once.
        self.listener.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

struct Inner {
    acceptor: Acceptor,
    builder: Mutex<Builder>,
    local_addr: Option<SocketAddr>,
    conns: Mutex<Vec<WeakConnection>>,
    /// Handles to streams being authenticated, so `close` can interrupt them.
    authenticating: Mutex<Vec<(u64, Stream)>>,
    next_id: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Stack size of each connection's thread, bytes; `None`: std's default.
    stack_size: Mutex<Option<usize>>,
    /// Most connections open at once (see [`ThreadedServer::max_connections`]).
    max_connections: AtomicUsize,
    /// Connections accepted and not yet in `conns` (authenticating, or
    /// setting up): they count towards `max_connections` too.
    starting: AtomicUsize,
}

fn bind(listener: Bound, builder: Builder) -> Result<Arc<Inner>> {
    let local_addr = listener.listener.local_addr();
    Ok(Arc::new(Inner {
        acceptor: Acceptor::new(listener)?,
        builder: Mutex::new(builder),
        local_addr,
        conns: Mutex::new(Vec::new()),
        authenticating: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(0),
        threads: Mutex::new(Vec::new()),
        stack_size: Mutex::new(None),
        max_connections: AtomicUsize::new(DEFAULT_MAX_CONNECTIONS),
        starting: AtomicUsize::new(0),
    }))
}

fn tcp(addr: impl ToSocketAddrs) -> Result<Bound> {
    Ok(Bound { listener: Listener::bind_tcp(addr)?, unix_path: None })
}

fn unix(path: &Path) -> Result<Bound> {
    Ok(Bound { listener: Listener::bind_unix(path)?, unix_path: Some(path.to_owned()) })
}

/// A listener bound elsewhere; its socket file (if any) is the caller's.
fn given(listener: impl Into<Listener>) -> Result<Bound> {
    let listener = listener.into();
    // The accept loop polls, then accepts: a client gone in between must
    // not block it.
    listener.set_nonblocking(true)?;
    Ok(Bound { listener, unix_path: None })
}

impl Inner {
    fn builder(&self) -> Builder {
        self.builder.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_builder(&self, f: impl FnOnce(Builder) -> Builder) {
        let mut b = self.builder.lock().unwrap_or_else(|e| e.into_inner());
        *b = f(b.clone());
    }

    /// Connections open now: served, or accepted and starting.
    fn open_count(&self) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let served = conns.iter().filter_map(WeakConnection::upgrade).filter(|c| !c.is_closed()).count();
        served + self.starting.load(Ordering::Acquire)
    }

    /// Serves `stream` on a new thread, unless `max_connections` are open:
    /// then the client is refused (its socket closed at once, before any
    /// hello), and no thread is spent on it.
    fn serve_one(self: &Arc<Self>, stream: Stream) {
        let max = self.max_connections.load(Ordering::Relaxed);
        if self.open_count() >= max {
            log::warn!(
                "netref server: {max} connections open (max_connections); refusing {}",
                stream.describe_peer()
            );
            return;
        }
        self.starting.fetch_add(1, Ordering::AcqRel);
        let inner = self.clone();
        let mut thread = thread::Builder::new().name("netref-conn".into());
        if let Some(bytes) = *self.stack_size.lock().unwrap_or_else(|e| e.into_inner()) {
            thread = thread.stack_size(bytes);
        }
        let spawned = thread.spawn(move || {
            inner.run_connection(stream);
        });
        match spawned {
            Ok(t) => {
                let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(t);
            }
            Err(e) => {
                self.starting.fetch_sub(1, Ordering::AcqRel);
                log::warn!("netref server: could not spawn a thread ({e}); retrying in {ACCEPT_BACKOFF:?}");
                self.acceptor.back_off();
            }
        }
    }

    /// On the connection's own thread: authenticate, set up, serve.
    fn run_connection(self: &Arc<Self>, stream: Stream) {
        // Counted as starting until it is in `conns` (or has failed).
        let starting = Starting(&self.starting);
        let builder = self.builder();
        // A handle to the socket lets `close` interrupt a slow authentication.
        let mut guard = None;
        if builder.auth_may_block() {
            let handle = match stream.try_clone() {
                Ok(h) => h,
                Err(e) => {
                    // Out of file descriptors: this process's fault, not the
                    // client's, so let the accept loop back off.
                    let peer = stream.describe_peer();
                    log::warn!("netref server: could not set up a connection from {peer}: {e}");
                    self.acceptor.back_off();
                    return;
                }
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut pending = self.authenticating.lock().unwrap_or_else(|e| e.into_inner());
            if self.acceptor.is_stopped() {
                return;
            }
            pending.push((id, handle));
            guard = Some(id);
        }
        let result = start_accepted(builder, stream, false);
        if let Some(id) = guard {
            self.authenticating.lock().unwrap_or_else(|e| e.into_inner()).retain(|(i, _)| *i != id);
        }
        // A refusal or a client whose socket died is that client's failure,
        // logged by `start_accepted`: the accept loop carries on at once.
        let Ok(conn) = result else { return };
        {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            if self.acceptor.is_stopped() {
                // `close` already went through the list.
                drop(conns);
                conn.close();
                return;
            }
            conns.retain(|c| c.upgrade().is_some_and(|c| !c.is_closed()));
            conns.push(conn.downgrade());
            // Under the lock: `open_count` never sees it in neither place.
            drop(starting);
        }
        if let Err(e) = conn.serve_all() {
            log::info!("netref server: connection from {} ended: {e}", conn.peer());
        }
    }

    fn close(&self) {
        self.acceptor.stop();
        for (_, stream) in self.authenticating.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = stream.shutdown();
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for c in conns.iter().filter_map(WeakConnection::upgrade) {
            c.close();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let me = thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// Connections a [`ThreadedServer`] keeps open at once by default (see
/// [`ThreadedServer::max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// One accepted connection not yet in the server's list: counted in
/// `starting` until dropped.
struct Starting<'a>(&'a AtomicUsize);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections and serves each on its own thread.
///
/// Cloning gives another handle to the same server, e.g. to
/// [`close`](Self::close) it from another thread.
#[derive(Clone)]
pub struct ThreadedServer {
    inner: Arc<Inner>,
}

impl ThreadedServer {
    /// Listens on a TCP address (port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr)).
    pub fn bind_tcp(addr: impl ToSocketAddrs, builder: Builder) -> Result<Self> {
        Ok(ThreadedServer { inner: bind(tcp(addr)?, builder)? })
    }

    /// Listens on a Unix socket path (removed again when the server is dropped).
    pub fn bind_unix(path: impl AsRef<Path>, builder: Builder) -> Result<Self> {
        Ok(ThreadedServer { inner: bind(unix(path.as_ref())?, builder)? })
    }

    /// Serves a bound listener: a std `TcpListener` or `UnixListener`, or a
    /// [`Listener`] (made non-blocking here; a Unix socket file stays when
    /// the server is dropped).
    pub fn from_listener(listener: impl Into<Listener>, builder: Builder) -> Result<Self> {
        Ok(ThreadedServer { inner: bind(given(listener)?, builder)? })
    }

    /// Authenticates every client with `authenticator` before the handshake,
    /// on the client's own thread, within the builder's
    /// [`auth_timeout`](Builder::auth_timeout). A refused client's socket is
    /// closed and the reason logged (`warn`); the service reads what it
    /// produced with [`Connection::credentials`](crate::Connection::credentials).
    pub fn authenticator(self, authenticator: impl Authenticator) -> Self {
        self.inner.set_builder(|b| b.authenticator(authenticator));
        self
    }

    /// How long a client may take to authenticate (default 10 s).
    pub fn auth_timeout(self, timeout: Duration) -> Self {
        self.inner.set_builder(|b| b.auth_timeout(timeout));
        self
    }

    /// The stack size, in bytes, of the thread each connection is served
    /// on (std's default otherwise: 2 MiB, or `RUST_MIN_STACK`).
    ///
    /// Each level of nested callbacks (the client calls the server, which
    /// calls back into the client, which calls the server again...) runs
    /// one level deeper on this stack. [`Config::max_nesting`] stops the
    /// nesting with an error before the default stack runs out; raise both
    /// together for deeper nesting (or for methods with large frames).
    ///
    /// [`Config::max_nesting`]: crate::Config::max_nesting
    pub fn stack_size(self, bytes: usize) -> Self {
        *self.inner.stack_size.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
        self
    }

    /// Most connections open at once ([`DEFAULT_MAX_CONNECTIONS`], 1,024,
    /// by default). A client past it is refused with a log line: its socket
    /// is closed at once, before any hello, and no thread is spent on it
    /// (without a cap, 2,000 clients held 2,003 threads). Connections still
    /// authenticating count.
    pub fn max_connections(self, max: usize) -> Self {
        self.inner.max_connections.store(max, Ordering::Relaxed);
        self
    }

    /// The TCP address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// Accepts and serves connections until [`close`](Self::close) (RPyC's
    /// `start`, which blocks too).
    pub fn start(&self) {
        while let Some(stream) = self.inner.acceptor.next() {
            self.inner.serve_one(stream);
        }
    }

    /// Runs [`start`](Self::start) on a new thread.
    pub fn spawn(&self) -> JoinHandle<()> {
        let me = self.clone();
        thread::Builder::new()
            .name("netref-accept".into())
            .spawn(move || me.start())
            .expect("spawning a thread")
    }

    /// Stops accepting, closes every connection and waits for their threads.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        let conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.iter().filter_map(WeakConnection::upgrade).filter(|c| !c.is_closed()).count()
    }
}

/// Accepts one connection, stops listening, and serves it until it closes.
pub struct OneShotServer {
    inner: Arc<Inner>,
}

impl OneShotServer {
    /// Listens on a TCP address.
    pub fn bind_tcp(addr: impl ToSocketAddrs, builder: Builder) -> Result<Self> {
        Ok(OneShotServer { inner: bind(tcp(addr)?, builder)? })
    }

    /// Listens on a Unix socket path.
    pub fn bind_unix(path: impl AsRef<Path>, builder: Builder) -> Result<Self> {
        Ok(OneShotServer { inner: bind(unix(path.as_ref())?, builder)? })
    }

    /// Serves a bound listener (see [`ThreadedServer::from_listener`]).
    pub fn from_listener(listener: impl Into<Listener>, builder: Builder) -> Result<Self> {
        Ok(OneShotServer { inner: bind(given(listener)?, builder)? })
    }

    /// Authenticates the client before the handshake (see
    /// [`ThreadedServer::authenticator`]); a refused client ends
    /// [`start`](Self::start) with [`Error::Auth`](crate::Error::Auth).
    pub fn authenticator(self, authenticator: impl Authenticator) -> Self {
        self.inner.set_builder(|b| b.authenticator(authenticator));
        self
    }

    /// The TCP address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// Waits for one client, closes the listener, and serves the client until
    /// the connection closes. Returns how it ended.
    pub fn start(self) -> Result<()> {
        let Some(stream) = self.inner.acceptor.next() else { return Ok(()) };
        self.inner.acceptor.stop();
        start_accepted(self.inner.builder(), stream, false)?.serve_all()
    }
}

/// How long a server waits before retrying after its listener failed
/// ([`Accepted::Failed`](crate::Accepted::Failed)): [`ThreadedServer`] and
/// the event-loop backends' servers alike. A rejected client never causes it.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
