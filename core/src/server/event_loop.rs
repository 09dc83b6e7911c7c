//! The many-connections side of a single-threaded event-loop server,
//! written once for every backend (netref-mio, -polling, -calloop, -glib).
//!
//! A backend's server is the [drive loop](crate::Driver#the-drive-loop)
//! run for many connections at once, with its loop's wait. What does not
//! depend on the loop lives here:
//!
//! - [`LoopListener`]: the listener and the builder its connections start
//!   with, and the accept loop over
//!   [`Listener::accept_connection`]. A listener failure is returned as
//!   data, the time until which to stop watching the listener
//!   ([`ACCEPT_BACKOFF`] from now), so a loop that is level-triggered does
//!   not spin on a listener that stays readable.
//! - [`Doorbell`]: the keys of the connections that asked for a step from
//!   another thread (a queued request, a nearer deadline), and the loop's
//!   wake-up.
//! - [`LoopServer`]: connections by key, their deadlines
//!   ([`DeadlineIndex`]), the accept backoff and the doorbell, for a loop
//!   that reports readiness by key (mio's tokens, polling's keys). One
//!   [`turn`](LoopServer::turn) after each wait: the loop's crate only
//!   translates its events into that call.
//! - [`listener_constructors!`](crate::listener_constructors): the
//!   servers' `bind_tcp`, `bind_unix`, `from_listener` and `local_addr`.
//!
//! Loops that keep one source per connection (calloop, GLib) give each its
//! own timer and wake-up, and use [`LoopListener`]; one whose sources do
//! not own their connection (GLib) keeps them in [`LoopConnections`].

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::driver::LoopConnection;
use crate::connection::{Builder, Connection};
use crate::server::{Accepted, DeadlineIndex, Listener, ACCEPT_BACKOFF};

/// The wait that wakes a loop at `deadline` (`None`: no deadline), as a
/// poll timeout.
pub fn timeout(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// The wait until `at` for a loop that counts whole milliseconds (GLib's
/// timeouts, poll(2)): rounded up, so it never wakes before the deadline and
/// steps for nothing.
pub fn millis_until(at: Instant) -> Duration {
    let ms = at.saturating_duration_since(Instant::now()).as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A listener for an event-loop server, with the [`Builder`] its
/// connections start with.
///
/// Made [ready for an event loop](Listener::prepare_for_event_loop):
/// non-blocking, and with a builder whose authentication does not wait for
/// the client.
pub struct LoopListener {
    listener: Listener,
    builder: Builder,
}

impl LoopListener {
    /// Serves `listener` with `builder`. Fails with `InvalidInput` for a
    /// builder whose authentication waits for the client (see
    /// [`Listener::prepare_for_event_loop`]).
    pub fn new(listener: impl Into<Listener>, builder: Builder) -> io::Result<LoopListener> {
        let listener = listener.into();
        listener.prepare_for_event_loop(&builder)?;
        Ok(LoopListener { listener, builder })
    }

    /// Listens on a TCP address (port 0 picks a free port).
    pub fn bind_tcp(addr: impl ToSocketAddrs, builder: Builder) -> io::Result<LoopListener> {
        LoopListener::new(Listener::bind_tcp(addr)?, builder)
    }

    /// Listens on a Unix socket path (the socket file stays when the
    /// listener is dropped).
    pub fn bind_unix(path: impl AsRef<Path>, builder: Builder) -> io::Result<LoopListener> {
        LoopListener::new(Listener::bind_unix(path)?, builder)
    }

    /// The listening socket.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// The TCP address listened on; `None` for a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts every waiting client, handing each started connection (not
    /// yet attached to any loop) to `each`. Call when the listener is
    /// readable, or when the pause it returned last has passed.
    ///
    /// Returns `Ok(None)` once no client is waiting: keep watching the
    /// listener. `Ok(Some(t))`: the listener failed (typically out of file
    /// descriptors; logged here): stop watching it until `t`, serving the
    /// other connections meanwhile, then call again. A client that failed
    /// alone (refused, gone) is already logged, and the next one accepted
    /// at once. An error of `each` stops the accepting and is returned.
    pub fn accept_all(
        &self,
        now: Instant,
        mut each: impl FnMut(Connection) -> io::Result<()>,
    ) -> io::Result<Option<Instant>> {
        loop {
            match self.listener.accept_connection(&self.builder) {
                Accepted::Connection(conn) => {
                    conn.mark_loop_served();
                    each(conn)?
                }
                Accepted::Rejected(_) => {}
                Accepted::WouldBlock => return Ok(None),
                Accepted::Failed(e) => {
                    log::warn!("netref server: accept failed ({e}); retrying in {ACCEPT_BACKOFF:?}");
                    return Ok(Some(now + ACCEPT_BACKOFF));
                }
            }
        }
    }
}

impl std::fmt::Debug for LoopListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopListener").field("listener", &self.listener).finish_non_exhaustive()
    }
}

impl AsFd for LoopListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// A loop's wake-up, shared by the connections on it: the keys that rang
/// since the loop last [took](Self::take) them, and a function that wakes
/// the loop (mio's `Waker`, polling's `notify`).
pub struct Doorbell {
    rang: Mutex<Vec<usize>>,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Doorbell {
    /// A doorbell that calls `wake` to wake the loop. `wake` may be called
    /// from any thread, with a connection's lock held: it must only wake.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Arc<Doorbell> {
        Arc::new(Doorbell { rang: Mutex::new(Vec::new()), wake: Box::new(wake) })
    }

    /// Queues `key` and wakes the loop. Callable from any thread.
    pub fn ring(&self, key: usize) {
        self.rang.lock().unwrap_or_else(|e| e.into_inner()).push(key);
        self.wake();
    }

    /// Wakes the loop without queueing a key.
    pub fn wake(&self) {
        (self.wake)()
    }

    /// Takes the keys that rang since the last call. Call after every wait
    /// (whether or not the wake-up is among the loop's events).
    pub fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *self.rang.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell").finish_non_exhaustive()
    }
}

/// Stops a [`LoopServer`]'s loop and reads its connection count, from any
/// thread.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    doorbell: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
}

impl ServerHandle {
    /// Makes the server's `run` return soon.
    pub fn close(&self) {
        self.stop.store(true, Ordering::Release);
        self.doorbell.wake();
    }

    /// Connections currently served.
    pub fn connection_count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// A single-threaded server's connections, for a loop that reports
/// readiness by key: the loop-independent half of netref-mio's and
/// netref-polling's `Server`. `C` is the backend's attached connection,
/// which derefs to its [`LoopConnection`].
///
/// # The server's loop
///
/// 1. Wait on the loop, at most [`timeout`](Self::timeout): the earliest
///    connection's deadline, or the end of an accept backoff.
/// 2. Call [`turn`](Self::turn) with the keys that had events and whether
///    the listener had one. It accepts (when the listener was readable or
///    its backoff ended), attaching each new connection with the backend's
///    `attach`, then drives, with the backend's `drive`, every connection
///    that had an event, rang the [`Doorbell`] or is due.
/// 3. Until the [`ServerHandle`] closed the server
///    ([`is_closing`](Self::is_closing)), go to 1; then
///    [`close_all`](Self::close_all).
///
/// The smallest such server, over poll(2) (which takes the list of fds
/// anew on every wait, so it re-arms by itself):
///
/// ```
/// use std::ops::Deref;
/// use rustix::event::{poll, PollFd, PollFlags, Timespec};
/// use netref::server::{Doorbell, LoopListener, LoopServer};
/// use netref::{Builder, LoopConnection, ObjectBuilder, Service};
///
/// /// This loop keeps nothing more per connection than netref's part.
/// struct Attached(LoopConnection);
///
/// impl Deref for Attached {
///     type Target = LoopConnection;
///     fn deref(&self) -> &LoopConnection {
///         &self.0
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let listener = LoopListener::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(calc)))?;
/// let addr = listener.local_addr().unwrap();
/// // poll(2) has no wake-up of its own: a real loop would add an eventfd
/// // to the fds and write to it here.
/// let mut server: LoopServer<Attached> = LoopServer::new(listener, Doorbell::new(|| {}));
/// let client = std::thread::spawn(move || -> netref::Result<i64> {
///     let conn = Builder::default().connect_tcp(addr)?;
///     conn.root()?.call_method("add", (40, 2)) // then `conn` drops and closes
/// });
/// let mut served = false;
/// while !served || server.connection_count() > 0 {
///     // 1. Wait.
///     let mut fds = vec![PollFd::new(server.listener(), PollFlags::IN)];
///     let keys: Vec<usize> = server.connections().map(|(key, _)| key).collect();
///     for (_, c) in server.connections() {
///         let write = if c.wants_write() { PollFlags::OUT } else { PollFlags::empty() };
///         fds.push(PollFd::new(c.driver(), PollFlags::IN | write));
///     }
///     let timeout = server.timeout(None).map(|t| Timespec::try_from(t).unwrap());
///     poll(&mut fds, timeout.as_ref())?;
///     // 2. Turn: accept, then the drive steps.
///     let listener_ready = !fds[0].revents().is_empty();
///     let ready: Vec<usize> =
///         keys.iter().zip(&fds[1..]).filter(|(_, fd)| !fd.revents().is_empty()).map(|(&k, _)| k).collect();
///     server.turn(
///         ready,
///         listener_ready,
///         |conn, _key| {
///             let mut c = Attached(LoopConnection::attach(conn, || {})?);
///             c.0.step(); // the hello may be queued, data already read
///             Ok(c)
///         },
///         |c| {
///             if c.0.step().is_some_and(|step| step.closed) {
///                 c.0.detach(); // poll(2) has nothing to deregister
///             }
///             Ok(())
///         },
///     )?;
///     served |= server.connection_count() > 0;
/// }
/// assert_eq!(client.join().unwrap()?, 42);
/// # Ok(())
/// # }
/// ```
///
/// # Deadlines
///
/// The deadlines are kept in a [`DeadlineIndex`], so a turn need not go
/// through every connection, and one connection's (its last [`Step`]'s) is
/// re-read only when that connection was driven. That misses nothing,
/// because a deadline moves *earlier* only in two places, and both ring the
/// connection's key: a request with an expiry and
/// [`AsyncResult::set_expiry`](crate::AsyncResult::set_expiry) wake the
/// connection's driver, which rings the doorbell (once per step: if the key
/// is already queued, or was taken and its drive has not run yet, that drive
/// sees the change). A new connection's first deadline (its idle timeout) is
/// read when it is attached. Everything else only moves a deadline later or
/// removes it; when that happens outside a drive (a synchronous call made on
/// the loop's thread serves its connection itself), the entry left is too
/// early: harmless, as that connection is then driven once for nothing and
/// its deadline re-read.
///
/// [`Step`]: crate::Step
#[derive(Debug)]
pub struct LoopServer<C> {
    listener: LoopListener,
    conns: HashMap<usize, C>,
    deadlines: DeadlineIndex,
    next_key: usize,
    /// Set while the listener is not watched after it failed: until then.
    paused_until: Option<Instant>,
    handle: ServerHandle,
}

impl<C: Deref<Target = LoopConnection>> LoopServer<C> {
    /// A server accepting on `listener`, whose connections ring `doorbell`.
    pub fn new(listener: LoopListener, doorbell: Arc<Doorbell>) -> LoopServer<C> {
        LoopServer {
            listener,
            conns: HashMap::new(),
            deadlines: DeadlineIndex::default(),
            next_key: 0,
            paused_until: None,
            handle: ServerHandle { doorbell, stop: Arc::default(), count: Arc::default() },
        }
    }

    /// The listener.
    pub fn listener(&self) -> &LoopListener {
        &self.listener
    }

    /// The doorbell the connections ring.
    pub fn doorbell(&self) -> &Arc<Doorbell> {
        &self.handle.doorbell
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// True once [`ServerHandle::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.handle.stop.load(Ordering::Acquire)
    }

    /// Connections currently served.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The connections served, with their keys.
    pub fn connections(&self) -> impl Iterator<Item = (usize, &C)> {
        self.conns.iter().map(|(&key, c)| (key, c))
    }

    /// When the listener's watch resumes after it failed (`None`: it is
    /// watched).
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// How long the loop may wait: at most `max_wait`, and no later than the
    /// earliest deadline or the end of the accept backoff.
    pub fn timeout(&self, max_wait: Option<Duration>) -> Option<Duration> {
        let wake_at = self.deadlines.first().into_iter().chain(self.paused_until).min();
        match (timeout(wake_at), max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One turn after a wait: accepts when `listener_ready` or the backoff
    /// ended, making each new connection's `C` with `attach(conn, key)`
    /// (which attaches it under `key` and steps it once: its hello is
    /// queued, data may be buffered already); then drives, with `drive`, each connection in `ready` (the keys that
    /// had events), in the doorbell, or due, and lets go of those that
    /// closed. Errors of `attach` and `drive` are the loop's own (its poll
    /// failed) and end the turn.
    ///
    /// Returns true when it accepted and the listener is watched again (a
    /// oneshot registration re-arms it then); false when it did not accept,
    /// or the listener failed and is not watched until
    /// [`paused_until`](Self::paused_until).
    pub fn turn(
        &mut self,
        ready: impl IntoIterator<Item = usize>,
        listener_ready: bool,
        mut attach: impl FnMut(&Connection, usize) -> io::Result<C>,
        mut drive: impl FnMut(&mut C) -> io::Result<()>,
    ) -> io::Result<bool> {
        let now = Instant::now();
        let mut ready: Vec<usize> = ready.into_iter().chain(self.handle.doorbell.take()).collect();
        let accept = listener_ready || self.paused_until.is_some_and(|t| t <= now);
        if accept {
            let (conns, deadlines, next_key) = (&mut self.conns, &mut self.deadlines, &mut self.next_key);
            self.paused_until = self.listener.accept_all(now, |conn| {
                let key = *next_key;
                *next_key += 1;
                let c = attach(&conn, key)?;
                // Attaching steps once: the connection may be gone already.
                if c.is_attached() {
                    deadlines.set(key, c.next_deadline());
                    conns.insert(key, c);
                }
                Ok(())
            })?;
        }
        ready.extend(self.deadlines.due(Instant::now()));
        ready.sort_unstable();
        ready.dedup();
        for key in ready {
            let Some(c) = self.conns.get_mut(&key) else { continue };
            drive(c)?;
            if c.is_attached() {
                self.deadlines.set(key, c.next_deadline());
            } else {
                self.conns.remove(&key);
                self.deadlines.set(key, None);
            }
        }
        self.handle.count.store(self.conns.len(), Ordering::Release);
        Ok(accept && self.paused_until.is_none())
    }

    /// Takes every connection off the loop with `detach`, then closes it.
    pub fn close_all(&mut self, mut detach: impl FnMut(C) -> io::Result<()>) -> io::Result<()> {
        self.deadlines.clear();
        self.handle.count.store(0, Ordering::Release);
        for (_, c) in self.conns.drain() {
            let conn = c.connection().clone();
            detach(c)?;
            conn.close();
        }
        Ok(())
    }
}

/// The attached connections of a server whose loop keeps one set of
/// sources per connection (GLib): each is kept, by a key of its own, until
/// its connection closes, whichever thread closes it. `A` is the backend's
/// attachment; dropping it takes the connection off the loop.
///
/// ```
/// use netref::server::LoopConnections;
///
/// # fn main() -> netref::Result<()> {
/// let (conn, _peer) = netref::Builder::default().pair(netref::Builder::default())?;
/// let kept: LoopConnections<&'static str> = LoopConnections::new();
/// kept.keep(&conn, "its sources");
/// assert_eq!(kept.len(), 1);
/// conn.close(); // its close hook lets go of it
/// assert!(kept.is_empty());
/// # Ok(())
/// # }
/// ```
pub struct LoopConnections<A> {
    kept: Arc<Mutex<(u64, HashMap<u64, A>)>>,
}

impl<A: Send + 'static> LoopConnections<A> {
    /// No connections.
    pub fn new() -> LoopConnections<A> {
        LoopConnections { kept: Arc::default() }
    }

    /// Keeps `attached` until `conn` closes (at once if it already has).
    pub fn keep(&self, conn: &Connection, attached: A) {
        let key = {
            let mut kept = self.lock();
            kept.0 += 1;
            let key = kept.0;
            kept.1.insert(key, attached);
            key
        };
        // Registered after the insert: it runs at once if `conn` is closed.
        let weak = Arc::downgrade(&self.kept);
        conn.on_close(move |_| {
            if let Some(kept) = weak.upgrade() {
                // Dropped outside the lock: the attachment's drop is the backend's.
                let gone = kept.lock().unwrap_or_else(|e| e.into_inner()).1.remove(&key);
                drop(gone);
            }
        });
    }

    /// Connections kept.
    pub fn len(&self) -> usize {
        self.lock().1.len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lets go of every connection kept, handing each attachment back.
    pub fn take_all(&self) -> Vec<A> {
        std::mem::take(&mut self.lock().1).into_values().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, A>)> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<A: Send + 'static> Default for LoopConnections<A> {
    fn default() -> Self {
        LoopConnections::new()
    }
}

impl<A> std::fmt::Debug for LoopConnections<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopConnections").finish_non_exhaustive()
    }
}

/// Writes an event-loop server's constructors and address getter, the same
/// for every backend: `bind_tcp`, `bind_unix`, `from_listener` and
/// `local_addr`. Invoke it inside the server's `impl` block; the type must
/// have `fn from_loop_listener(LoopListener) -> io::Result<Self>` and
/// `fn loop_listener(&self) -> &LoopListener` (see [`LoopListener`]).
///
/// ```
/// use std::io;
/// use netref::server::LoopListener;
///
/// /// A server that only listens.
/// pub struct Server {
///     listener: LoopListener,
/// }
///
/// impl Server {
///     netref::listener_constructors!();
///
///     fn from_loop_listener(listener: LoopListener) -> io::Result<Server> {
///         Ok(Server { listener })
///     }
///
///     fn loop_listener(&self) -> &LoopListener {
///         &self.listener
///     }
/// }
///
/// let server = Server::bind_tcp("127.0.0.1:0", netref::Builder::default())?;
/// assert!(server.local_addr().is_some());
/// # Ok::<(), io::Error>(())
/// ```
#[macro_export]
macro_rules! listener_constructors {
    () => {
        /// Listens on a TCP address (port 0 picks a free port; see
        /// [`local_addr`](Self::local_addr)).
        pub fn bind_tcp(
            addr: impl ::std::net::ToSocketAddrs,
            builder: $crate::Builder,
        ) -> ::std::io::Result<Self> {
            Self::from_loop_listener($crate::server::LoopListener::bind_tcp(addr, builder)?)
        }

        /// Listens on a Unix socket path (the socket file stays when the
        /// server is dropped).
        pub fn bind_unix(
            path: impl ::std::convert::AsRef<::std::path::Path>,
            builder: $crate::Builder,
        ) -> ::std::io::Result<Self> {
            Self::from_loop_listener($crate::server::LoopListener::bind_unix(path, builder)?)
        }

        /// Serves a bound listener: a std `TcpListener` or `UnixListener`,
        /// or a [`Listener`](netref::Listener) (made non-blocking here).
        ///
        /// Fails with `InvalidInput` for a builder whose authentication
        /// waits for the client: see
        /// [`Listener::prepare_for_event_loop`](netref::Listener::prepare_for_event_loop).
        pub fn from_listener(
            listener: impl ::std::convert::Into<$crate::Listener>,
            builder: $crate::Builder,
        ) -> ::std::io::Result<Self> {
            Self::from_loop_listener($crate::server::LoopListener::new(listener, builder)?)
        }

        /// The TCP address listened on; `None` for a Unix socket.
        pub fn local_addr(&self) -> ::std::option::Option<::std::net::SocketAddr> {
            self.loop_listener().local_addr()
        }
    };
}
