//! # netref-mio
//!
//! Runs [`netref`] connections on a [mio](https://docs.rs/mio) 1.x event
//! loop: replies, callbacks, the peer's requests and expiries all happen on
//! the loop's thread as data arrives, and nothing polls on a timer.
//!
//! ## The loop's contract
//!
//! 1. Make one [`Doorbell`] per [`Poll`]: other threads (and the loop's own
//!    callbacks) ring it with a connection's token when that connection has
//!    new output or a nearer deadline.
//! 2. On the loop's thread, [`attach`] each connection under a [`Token`] of
//!    your choice. Only this thread then reads, writes and serves it.
//! 3. Poll, with the timeout of the earliest [`Attached::next_deadline`]
//!    (see [`timeout`]).
//! 4. After each poll, [`drive`](Attached::drive) every connection whose
//!    token had an event, whose token rang ([`Doorbell::take`]), or whose
//!    deadline passed: it reads until `WouldBlock` (mio is edge-triggered),
//!    serves what arrived, flushes, and arms write interest only while
//!    output is pending.
//! 5. When `drive` returns `false` the connection has closed and has been
//!    deregistered: drop it. To stop earlier, call
//!    [`Attached::detach`] (dropping it without the registry leaves the fd
//!    registered). Otherwise go to 3.
//!
//! A synchronous call made inside a callback on the loop's thread works: it
//! waits on the connection's own fd, without re-entering the loop.
//! [`callback`] makes callbacks that stay on the loop's thread, so they may
//! capture `!Send` state. [`Server`] is a ready-made single-threaded server
//! loop built the same way.
//!
//! ```
//! use mio::{Events, Poll, Token};
//! use netref::{Builder, ObjectBuilder, Service};
//! use netref_mio::Doorbell;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A peer to talk to (here: a socketpair served by a thread).
//! let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
//! let (conn, peer) = Builder::default().pair(Builder::default().service(Service::object(calc)))?;
//! std::thread::spawn(move || peer.serve_all());
//!
//! const DOORBELL: Token = Token(0);
//! const CONN: Token = Token(1);
//! let mut poll = Poll::new()?;
//! let doorbell = Doorbell::new(poll.registry(), DOORBELL)?;
//! let mut attached = netref_mio::attach(&conn, poll.registry(), CONN, &doorbell)?;
//!
//! let root = conn.root()?;
//! let answer = netref::async_(&root).call_method("add", (40, 2));
//! let mut events = Events::with_capacity(64);
//! while !answer.ready() {
//!     poll.poll(&mut events, netref_mio::timeout(attached.next_deadline()))?;
//!     let ready = events.iter().any(|e| e.token() == CONN) || doorbell.take().contains(&CONN);
//!     if ready || attached.is_due() {
//!         attached.drive(poll.registry())?;
//!     }
//! }
//! assert_eq!(answer.value_as::<i64>()?, 42);
//! attached.detach(poll.registry())?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use netref::server::ACCEPT_BACKOFF;
use netref::{Accepted, Builder, Connection, DeadlineIndex, Driver, Listener};

pub use netref::thread_callback as callback;

/// The wake-up of one [`Poll`], shared by every connection attached to it:
/// a mio [`Waker`] used as a doorbell over a queue of tokens that rang.
pub struct Doorbell {
    waker: Waker,
    token: Token,
    rang: Mutex<Vec<Token>>,
}

impl Doorbell {
    /// Creates the doorbell of the poll owning `registry`; its events arrive
    /// with `token` (mio allows one `Waker` per `Poll`).
    pub fn new(registry: &Registry, token: Token) -> io::Result<Arc<Doorbell>> {
        Ok(Arc::new(Doorbell { waker: Waker::new(registry, token)?, token, rang: Mutex::new(Vec::new()) }))
    }

    /// The token the doorbell's events carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Queues `token` and wakes the poll. Callable from any thread.
    pub fn ring(&self, token: Token) {
        self.rang.lock().unwrap_or_else(|e| e.into_inner()).push(token);
        self.wake();
    }

    /// Wakes the poll without queueing a token.
    pub fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::warn!("netref-mio: waking the poll failed: {e}");
        }
    }

    /// Takes the tokens that rang since the last call. Call after every poll
    /// (whether or not the doorbell's own event is among the events).
    pub fn take(&self) -> Vec<Token> {
        std::mem::take(&mut *self.rang.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The poll timeout that wakes the loop at `deadline` (`None`: no deadline).
pub fn timeout(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Registers `conn` with the poll of `registry` under `token` and attaches
/// it to the calling thread, which must be the loop's thread. Wake-ups from
/// other threads ring `doorbell` with `token`. Fails with `Unsupported` for
/// a connection that has no fd or is already attached.
pub fn attach(
    conn: &Connection,
    registry: &Registry,
    token: Token,
    doorbell: &Arc<Doorbell>,
) -> io::Result<Attached> {
    let bell = doorbell.clone();
    let driver = Driver::attach(conn, move || bell.ring(token))
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    registry.register(&mut SourceFd(&driver.as_fd().as_raw_fd()), token, Interest::READABLE)?;
    let mut me = Attached { driver, token, write_armed: false, deadline: None, attached: true };
    // Output queued before attaching (the hello) and data already received
    // must not wait for an edge that has passed.
    me.drive(registry)?;
    Ok(me)
}

/// A connection attached to a mio loop under a token (see [`attach`]).
pub struct Attached {
    driver: Driver,
    token: Token,
    write_armed: bool,
    deadline: Option<Instant>,
    attached: bool,
}

impl Attached {
    /// The connection.
    pub fn connection(&self) -> &Connection {
        self.driver.connection()
    }

    /// The token this connection's events carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Serves the connection: fires the deadlines that passed, reads until
    /// `WouldBlock`, runs what arrived, flushes, then arms write interest
    /// only while output is pending. Call on every event with this token,
    /// whenever the doorbell rang it, and when its deadline passes.
    ///
    /// Returns `Ok(false)` once the connection has closed; it is then
    /// deregistered, and should be dropped. An `Err` is a failure of the
    /// poll itself, not of the connection.
    pub fn drive(&mut self, registry: &Registry) -> io::Result<bool> {
        if !self.attached {
            return Ok(false);
        }
        let step = self.driver.step();
        self.deadline = step.next_deadline;
        if step.closed {
            self.deregister(registry)?;
            return Ok(false);
        }
        if step.wants_write != self.write_armed {
            let interest =
                if step.wants_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            registry.reregister(&mut SourceFd(&self.fd()), self.token, interest)?;
            self.write_armed = step.wants_write;
        }
        Ok(true)
    }

    /// When the loop must [`drive`](Self::drive) this connection even if
    /// nothing happens on its fd (as of its last drive).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True once [`next_deadline`](Self::next_deadline) has passed.
    pub fn is_due(&self) -> bool {
        self.deadline.is_some_and(|d| d <= Instant::now())
    }

    /// True until the connection closed or was detached.
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// Deregisters the fd and detaches the connection (any thread may then
    /// serve it). Call this rather than dropping an attached connection:
    /// without the registry, a drop cannot deregister the fd.
    pub fn detach(mut self, registry: &Registry) -> io::Result<()> {
        self.deregister(registry)
    }

    fn fd(&self) -> RawFd {
        self.driver.as_fd().as_raw_fd()
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        if !self.attached {
            return Ok(());
        }
        self.attached = false;
        registry.deregister(&mut SourceFd(&self.fd()))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.attached {
            // Without the registry we cannot deregister; the kernel drops the
            // registration when the fd closes. The driver detaches.
            log::debug!("netref-mio: a connection was dropped without detach(registry)");
        }
    }
}

// The server keeps its connections' deadlines in a `netref::DeadlineIndex`,
// so that a turn need not go through every connection, and re-reads one
// (the last `Step`'s) only when it drove that connection. That misses
// nothing, because a deadline moves *earlier* only in two places, and both
// ring the connection's token: a request with an expiry and
// `AsyncResult::set_expiry` wake the connection's driver, which rings the
// `Doorbell` (once per step: if the token is already queued, or was taken
// and its drive has not run yet, that drive will see the change). A new
// connection's first deadline (`idle_timeout`) is read when it is attached.
// Everything else only moves a deadline later or removes it; when that
// happens outside a drive (a synchronous call made on the loop's thread
// reads its connection itself), the entry left is too early: harmless, as
// that connection is then driven once for nothing and its deadline re-read.

const LISTENER: Token = Token(usize::MAX);
const DOORBELL: Token = Token(usize::MAX - 1);

/// A single-threaded server: accepts on a listener and serves every
/// accepted connection on the thread that calls [`run`](Self::run).
///
/// ```no_run
/// use netref::{Builder, ObjectBuilder, Service};
///
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let mut server = netref_mio::Server::bind_tcp("127.0.0.1:18861", Builder::default().service(Service::object(calc)))?;
/// let handle = server.handle(); // handle.close() from any thread stops it
/// server.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    poll: Poll,
    events: Events,
    listener: Listener,
    builder: Builder,
    conns: HashMap<usize, Attached>,
    deadlines: DeadlineIndex,
    next_key: usize,
    doorbell: Arc<Doorbell>,
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
    /// Listens on a TCP address (port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr)).
    pub fn bind_tcp(addr: impl ToSocketAddrs, builder: Builder) -> io::Result<Server> {
        Server::from_listener(Listener::bind_tcp(addr)?, builder)
    }

    /// Listens on a Unix socket path (the socket file stays when the server
    /// is dropped).
    pub fn bind_unix(path: impl AsRef<Path>, builder: Builder) -> io::Result<Server> {
        Server::from_listener(Listener::bind_unix(path)?, builder)
    }

    /// Serves a bound listener: a std `TcpListener` or `UnixListener`, or a
    /// [`Listener`] (made non-blocking here).
    ///
    /// Fails with `InvalidInput` for a builder whose authentication waits for
    /// the client: see [`Listener::prepare_for_event_loop`].
    pub fn from_listener(listener: impl Into<Listener>, builder: Builder) -> io::Result<Server> {
        let listener = listener.into();
        listener.prepare_for_event_loop(&builder)?;
        let poll = Poll::new()?;
        poll.registry().register(&mut SourceFd(&listener.as_raw_fd()), LISTENER, Interest::READABLE)?;
        let doorbell = Doorbell::new(poll.registry(), DOORBELL)?;
        Ok(Server {
            poll,
            events: Events::with_capacity(256),
            listener,
            builder,
            conns: HashMap::new(),
            deadlines: DeadlineIndex::default(),
            next_key: 0,
            doorbell,
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
        let registry = self.poll.registry();
        for (_, c) in self.conns.drain() {
            let conn = c.connection().clone();
            c.detach(registry)?;
            conn.close();
        }
        self.deadlines.clear();
        registry.deregister(&mut SourceFd(&self.listener.as_raw_fd()))?;
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
        match self.poll.poll(&mut self.events, wait) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            r => r?,
        }
        let mut ready: Vec<usize> = Vec::new();
        let mut accept = self.accept_retry.is_some_and(|t| t <= Instant::now());
        for event in self.events.iter() {
            match event.token() {
                LISTENER => accept = true,
                DOORBELL => {}
                Token(k) => ready.push(k),
            }
        }
        ready.extend(self.doorbell.take().into_iter().map(|t| t.0));
        if accept {
            self.accept()?;
        }
        ready.extend(self.deadlines.due(Instant::now()));
        ready.sort_unstable();
        ready.dedup();
        for k in ready {
            self.drive(k)?;
        }
        self.count.store(self.conns.len(), Ordering::Release);
        Ok(())
    }

    /// Drives connection `key` (if it is still there), then re-reads its
    /// deadline, or lets go of it once it closed.
    fn drive(&mut self, key: usize) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(&key) else { return Ok(()) };
        let deadline = if c.drive(self.poll.registry())? {
            c.next_deadline()
        } else {
            self.conns.remove(&key);
            None
        };
        self.deadlines.set(key, deadline);
        Ok(())
    }

    fn accept(&mut self) -> io::Result<()> {
        self.accept_retry = None;
        loop {
            match self.listener.accept_connection(&self.builder) {
                Accepted::Connection(conn) => {
                    let key = self.next_key;
                    self.next_key += 1;
                    let c = attach(&conn, self.poll.registry(), Token(key), &self.doorbell)?;
                    if c.is_attached() {
                        self.deadlines.set(key, c.next_deadline());
                        self.conns.insert(key, c);
                    }
                }
                // That client's failure, logged by netref: the next one now.
                Accepted::Rejected(_) => {}
                Accepted::WouldBlock => return Ok(()),
                Accepted::Failed(e) => {
                    // Typically out of file descriptors: keep serving the
                    // others and try again shortly (the listener's edge has
                    // passed, so a timer must bring us back).
                    log::warn!("netref-mio server: accept failed ({e}); retrying in {ACCEPT_BACKOFF:?}");
                    self.accept_retry = Some(Instant::now() + ACCEPT_BACKOFF);
                    return Ok(());
                }
            }
        }
    }
}

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
