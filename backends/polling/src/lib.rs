//! # netref-polling
//!
//! Runs [`netref`] connections on a [polling](https://docs.rs/polling) 3.x
//! [`Poller`]: replies, callbacks, the peer's requests and expiries all happen
//! on the loop's thread as data arrives, and nothing polls on a timer.
//!
//! `Poller::add` is `unsafe` (the fd must be deleted before it closes);
//! [`PollingConnection`] wraps that contract: it keeps the connection (and so
//! its fd) alive while registered and deletes the fd when dropped.
//!
//! ```
//! use std::sync::Arc;
//! use polling::{Events, Poller};
//! use netref::{Builder, ObjectBuilder, Service};
//! use netref_polling::{Doorbell, PollingConnection};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A peer to talk to (here: a socketpair served by a thread).
//! let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
//! let (conn, peer) = Builder::default().pair(Builder::default().service(Service::object(calc)))?;
//! std::thread::spawn(move || peer.serve_all());
//!
//! const CONN: usize = 1;
//! let doorbell = Doorbell::new(Arc::new(Poller::new()?));
//! let mut attached = PollingConnection::attach(&conn, &doorbell, CONN)?;
//!
//! let root = conn.root()?;
//! let answer = netref::async_(&root).call_method("add", (40, 2));
//! let mut events = Events::new();
//! while !answer.ready() {
//!     events.clear();
//!     // Sleep until an event, a wake-up or the connection's next deadline.
//!     doorbell.poller().wait(&mut events, netref_polling::timeout(attached.next_deadline()))?;
//!     let rang = doorbell.take();
//!     if events.iter().any(|e| e.key == CONN) || rang.contains(&CONN) {
//!         attached.on_ready()?;
//!     }
//!     attached.on_timer()?; // fires passed deadlines only
//! }
//! assert_eq!(answer.value_as::<i64>()?, 42);
//! drop(attached); // deletes the fd from the poller and detaches
//! # Ok(())
//! # }
//! ```
//!
//! ## The loop's contract
//!
//! 1. Attach each connection under a key of your choice with
//!    [`PollingConnection::attach`], on the loop's thread. Only this thread
//!    then reads, writes and serves it.
//! 2. One [`Doorbell`] per poller: other threads (and the loop's own
//!    callbacks) ring it, through [`Poller::notify`], when a connection has
//!    new output or a nearer deadline; [`Doorbell::take`] says which keys rang.
//! 3. On every event with the key and whenever its key rang, call
//!    [`PollingConnection::on_ready`]: it reads until `WouldBlock`, serves,
//!    flushes, and re-arms the (oneshot) registration with write interest
//!    only while output is pending.
//! 4. Wait no longer than [`PollingConnection::next_deadline`] (see
//!    [`timeout`]) and call [`PollingConnection::on_timer`] after each wait.
//! 5. When `on_ready` returns `false` the connection has closed and its fd
//!    has been deleted: drop it.
//!
//! A synchronous call made inside a callback on the loop's thread works: it
//! waits on the connection's own fd, without re-entering the poller.
//!
//! [`Server`] is a ready-made single-threaded server loop built the same way.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netref::server::ACCEPT_BACKOFF;
use netref::{Accepted, Builder, Connection, DeadlineIndex, Listener};
use polling::{Event, Events, Poller};

/// The wake-up of one [`Poller`], shared by every connection on it: a queue
/// of keys that rang plus [`Poller::notify`].
pub struct Doorbell {
    poller: Arc<Poller>,
    rang: Mutex<Vec<usize>>,
}

impl Doorbell {
    /// The doorbell of `poller`.
    pub fn new(poller: Arc<Poller>) -> Arc<Doorbell> {
        Arc::new(Doorbell { poller, rang: Mutex::new(Vec::new()) })
    }

    /// The poller.
    pub fn poller(&self) -> &Arc<Poller> {
        &self.poller
    }

    /// Queues `key` and wakes the poller. Callable from any thread.
    pub fn ring(&self, key: usize) {
        self.rang.lock().unwrap_or_else(|e| e.into_inner()).push(key);
        self.wake();
    }

    /// Wakes the poller without queueing a key.
    pub fn wake(&self) {
        if let Err(e) = self.poller.notify() {
            log::warn!("netref-polling: notify failed: {e}");
        }
    }

    /// Takes the keys that rang since the last call; call after every wait.
    pub fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *self.rang.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The wait timeout that wakes the loop at `deadline` (`None`: no deadline).
pub fn timeout(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// A connection attached to a poller under a key. Dropping it deletes the fd
/// from the poller (before the fd can close) and detaches the connection.
pub struct PollingConnection {
    conn: Connection,
    fd: RawFd,
    key: usize,
    poller: Arc<Poller>,
    rung: Arc<AtomicBool>,
    registered: bool,
}

impl PollingConnection {
    /// Adds `conn`'s fd to the doorbell's poller under `key` and attaches the
    /// connection to the calling thread, which must be the loop's thread.
    pub fn attach(conn: &Connection, doorbell: &Arc<Doorbell>, key: usize) -> io::Result<PollingConnection> {
        let fd = conn.raw_fd().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "the connection's transport has no file descriptor")
        })?;
        let poller = doorbell.poller().clone();
        // SAFETY: the fd belongs to `conn`'s transport, which stays open at
        // least as long as the `Connection` clone held by the value returned
        // here; that value deletes the fd from the poller before releasing
        // the clone (in `unregister`, called on close and on drop).
        unsafe { poller.add(fd, Event::readable(key))? };
        let rung = Arc::new(AtomicBool::new(false));
        let flag = rung.clone();
        let bell = doorbell.clone();
        conn.attach(move || {
            if !flag.swap(true, Ordering::AcqRel) {
                bell.ring(key);
            }
        });
        let mut me = PollingConnection { conn: conn.clone(), fd, key, poller, rung, registered: true };
        me.on_ready()?;
        Ok(me)
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The key this connection's events carry.
    pub fn key(&self) -> usize {
        self.key
    }

    /// Serves the connection: reads until `WouldBlock`, runs what arrived,
    /// flushes, then re-arms the registration (write interest only while
    /// output is pending). Call on every event with this key and whenever
    /// the doorbell rang it.
    ///
    /// Returns `Ok(false)` once the connection has closed; its fd is then
    /// deleted from the poller. An `Err` is a failure of the poller.
    pub fn on_ready(&mut self) -> io::Result<bool> {
        if !self.registered {
            return Ok(false);
        }
        self.rung.store(false, Ordering::Release);
        let _ = self.conn.poll_all();
        let _ = self.conn.flush();
        if self.conn.is_closed() {
            self.unregister()?;
            return Ok(false);
        }
        let interest = Event::new(self.key, true, self.conn.wants_write());
        self.poller.modify(self.borrowed(), interest)?;
        Ok(true)
    }

    /// Fires the connection's deadlines that have passed; does nothing
    /// before the deadline.
    pub fn on_timer(&mut self) -> io::Result<bool> {
        if !self.registered {
            return Ok(false);
        }
        if self.next_deadline().is_some_and(|d| d <= Instant::now()) {
            self.conn.handle_timeout();
            return self.on_ready();
        }
        Ok(true)
    }

    /// When the loop should next call [`on_timer`](Self::on_timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.registered {
            self.conn.next_deadline()
        } else {
            None
        }
    }

    /// True while registered (false once the connection closed).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    fn borrowed(&self) -> BorrowedFd<'_> {
        // SAFETY: `self.conn` keeps the fd open for as long as `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    fn unregister(&mut self) -> io::Result<()> {
        if !self.registered {
            return Ok(());
        }
        self.registered = false;
        self.conn.detach();
        self.poller.delete(self.borrowed())
    }
}

impl Drop for PollingConnection {
    fn drop(&mut self) {
        if let Err(e) = self.unregister() {
            log::warn!("netref-polling: deleting a connection's fd failed: {e}");
        }
    }
}

// Why the server's `netref::DeadlineIndex` of its connections (by deadline,
// earliest first, so that a turn
// need not ask every connection (each `next_deadline` takes that
// connection's lock): the wait's timeout is the first entry, and the
// connections due are a prefix.
//
// The server re-reads a connection's deadline only when it drove it (after
// `attach`, `on_ready` or `on_timer`, in `Server::driven`). That misses
// nothing, because a deadline moves *earlier* only in two places, and both
// ring the connection's key:
//
// - core's `Shared::submit` (a request with an expiry) and
//   `Driver::set_deadline` (`AsyncResult::set_expiry`) call `wake_driver`
//   after the change, under the connection's lock; on an attached
//   connection that calls the waker [`PollingConnection::attach`]
//   installed, which queues the key in the [`Doorbell`]. Whoever made the
//   change (another thread, or the loop's own thread dispatching another
//   connection's request), the key is in the next turn's `ready` and its
//   `on_ready` runs before the re-read. The waker does not queue the key
//   again while its `rung` flag is set, but then the key is already queued,
//   or was taken and its `on_ready` (which clears the flag first) has not
//   yet run.
// - A new connection's first deadline (`idle_timeout`) is read when it is
//   attached.
//
// Everything else only moves a deadline later or removes it: a reply
// arriving, an expiry firing, input pushing `idle_timeout` back, closing.
// When that happens outside `on_ready` (a synchronous call made on the
// loop's thread reads its connection itself), the entry left is too early:
// harmless, as that connection's `on_timer` then runs once for nothing and
// its deadline is re-read.

// polling reserves `usize::MAX` for its own notifications.
const LISTENER: usize = usize::MAX - 1;

/// A single-threaded server: accepts on a listener and serves every
/// accepted connection on the thread that calls [`run`](Self::run).
///
/// ```no_run
/// use netref::{Builder, ObjectBuilder, Service};
///
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let mut server =
///     netref_polling::Server::bind_tcp("127.0.0.1:18861", Builder::default().service(Service::object(calc)))?;
/// let handle = server.handle(); // handle.close() from any thread stops it
/// server.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    doorbell: Arc<Doorbell>,
    events: Events,
    // Declared before `listener`: connections and the listener are deleted
    // from the poller before their fds close.
    conns: HashMap<usize, PollingConnection>,
    deadlines: DeadlineIndex,
    listener: Listener,
    builder: Builder,
    next_key: usize,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    accept_retry: Option<Instant>,
}

/// Stops a [`Server`] and reads its connection count, from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    doorbell: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
}

impl ServerHandle {
    /// Makes [`Server::run`] return soon.
    pub fn close(&self) {
        self.stop.store(true, Ordering::Release);
        self.doorbell.wake();
    }

    /// Connections currently served.
    pub fn connection_count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Server {
    /// Binds a TCP listener.
    pub fn bind_tcp(addr: impl ToSocketAddrs, builder: Builder) -> io::Result<Server> {
        Server::from_tcp(TcpListener::bind(addr)?, builder)
    }

    /// Serves a bound TCP listener (made non-blocking here).
    pub fn from_tcp(listener: TcpListener, builder: Builder) -> io::Result<Server> {
        Server::from_listener(listener.into(), builder)
    }

    /// Serves a bound Unix listener (made non-blocking here).
    pub fn from_unix(listener: UnixListener, builder: Builder) -> io::Result<Server> {
        Server::from_listener(listener.into(), builder)
    }

    /// Serves a bound [`Listener`], TCP or Unix (made non-blocking here).
    ///
    /// Fails with `InvalidInput` for a builder whose authentication waits for
    /// the client: see [`Listener::prepare_for_event_loop`].
    pub fn from_listener(listener: Listener, builder: Builder) -> io::Result<Server> {
        listener.prepare_for_event_loop(&builder)?;
        let doorbell = Doorbell::new(Arc::new(Poller::new()?));
        // SAFETY: the listener is owned by the server, which deletes it from
        // the poller in `Drop` before the listener closes.
        unsafe { doorbell.poller().add(listener.as_raw_fd(), Event::readable(LISTENER))? };
        Ok(Server {
            doorbell,
            events: Events::new(),
            conns: HashMap::new(),
            deadlines: DeadlineIndex::default(),
            listener,
            builder,
            next_key: 0,
            stop: Arc::new(AtomicBool::new(false)),
            count: Arc::new(AtomicUsize::new(0)),
            accept_retry: None,
        })
    }

    /// The TCP address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle { doorbell: self.doorbell.clone(), stop: self.stop.clone(), count: self.count.clone() }
    }

    /// Connections currently served.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Serves until [`ServerHandle::close`]; then closes every connection.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stop.load(Ordering::Acquire) {
            self.run_once(None)?;
        }
        for (_, c) in self.conns.drain() {
            let conn = c.connection().clone();
            drop(c);
            conn.close();
        }
        self.deadlines.clear();
        self.count.store(0, Ordering::Release);
        Ok(())
    }

    /// One turn of the loop: waits for events (at most `max_wait`, and no
    /// later than the earliest deadline), accepts, serves, fires deadlines.
    pub fn run_once(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let deadline = self.deadlines.first().into_iter().chain(self.accept_retry).min();
        let wait = match (timeout(deadline), max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.events.clear();
        match self.doorbell.poller().wait(&mut self.events, wait) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            r => r?,
        };
        let mut ready: Vec<usize> = Vec::new();
        let mut accept = self.accept_retry.is_some_and(|t| t <= Instant::now());
        for event in self.events.iter() {
            if event.key == LISTENER {
                accept = true;
            } else {
                ready.push(event.key);
            }
        }
        ready.extend(self.doorbell.take());
        if accept {
            self.accept()?;
        }
        for k in ready {
            if let Some(c) = self.conns.get_mut(&k) {
                let open = c.on_ready()?;
                self.driven(k, open);
            }
        }
        for k in self.deadlines.due(Instant::now()) {
            if let Some(c) = self.conns.get_mut(&k) {
                let open = c.on_timer()?;
                self.driven(k, open);
            }
        }
        self.count.store(self.conns.len(), Ordering::Release);
        Ok(())
    }

    /// Connection `key` was just driven (attached, served or its timer ran):
    /// re-reads its deadline, or lets go of it once it closed.
    fn driven(&mut self, key: usize, open: bool) {
        let deadline = match self.conns.get(&key) {
            Some(c) if open => c.next_deadline(),
            _ => {
                self.conns.remove(&key);
                None
            }
        };
        self.deadlines.set(key, deadline);
    }

    fn accept(&mut self) -> io::Result<()> {
        self.accept_retry = None;
        loop {
            match self.listener.accept_connection(&self.builder) {
                Accepted::Connection(conn) => {
                    let key = self.next_key;
                    self.next_key += 1;
                    let c = PollingConnection::attach(&conn, &self.doorbell, key)?;
                    if c.is_registered() {
                        self.conns.insert(key, c);
                        self.driven(key, true);
                    }
                }
                // That client's failure, logged by netref: the next one now.
                Accepted::Rejected(_) => {}
                Accepted::WouldBlock => break,
                Accepted::Failed(e) => {
                    // Typically out of file descriptors: keep serving the
                    // others and come back on a timer (the listener is not
                    // re-armed, so it does not fire meanwhile).
                    log::warn!("netref-polling server: accept failed ({e}); retrying in {ACCEPT_BACKOFF:?}");
                    self.accept_retry = Some(Instant::now() + ACCEPT_BACKOFF);
                    return Ok(());
                }
            }
        }
        // Oneshot: re-arm the listener.
        self.doorbell.poller().modify(&self.listener, Event::readable(LISTENER))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.conns.clear();
        let _ = self.doorbell.poller().delete(&self.listener);
    }
}
