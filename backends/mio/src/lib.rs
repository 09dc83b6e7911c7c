//! # netref-mio
//!
//! Runs [`netref`] connections on a [mio](https://docs.rs/mio) 1.x event
//! loop: replies, callbacks, the peer's requests and expiries all happen on
//! the loop's thread as data arrives, and nothing polls on a timer.
//!
//! ```
//! use std::time::Duration;
//! use mio::{Events, Poll, Token};
//! use netref::{Builder, ObjectBuilder, Service};
//! use netref_mio::{Doorbell, MioConnection};
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
//! let mut attached = MioConnection::register(&conn, poll.registry(), CONN, &doorbell)?;
//!
//! let root = conn.root()?;
//! let answer = netref::async_(&root).call_method("add", (40, 2));
//! let mut events = Events::with_capacity(64);
//! while !answer.ready() {
//!     // Sleep until an event or the connection's next deadline.
//!     poll.poll(&mut events, netref_mio::timeout(attached.next_deadline()))?;
//!     for event in events.iter() {
//!         if event.token() == CONN {
//!             attached.on_ready(poll.registry())?;
//!         }
//!     }
//!     for token in doorbell.take() {
//!         if token == CONN {
//!             attached.on_ready(poll.registry())?;
//!         }
//!     }
//!     attached.on_timer(poll.registry())?; // fires passed deadlines only
//! }
//! assert_eq!(answer.value_as::<i64>()?, 42);
//! attached.deregister(poll.registry())?;
//! # Ok(())
//! # }
//! ```
//!
//! ## The loop's contract
//!
//! 1. Register each connection under a [`Token`] of your choice with
//!    [`MioConnection::register`], on the loop's thread. The connection is
//!    then *attached*: only this thread reads, writes and serves it.
//! 2. Make one [`Doorbell`] per [`Poll`]: other threads (and the loop's own
//!    callbacks) ring it when a connection has new output or a nearer
//!    deadline; [`Doorbell::take`] says which tokens rang.
//! 3. On every event for the token and every time its token rang, call
//!    [`MioConnection::on_ready`]: it reads until `WouldBlock` (mio is
//!    edge-triggered), serves what arrived, flushes, and arms write interest
//!    only while output is pending.
//! 4. Compute the poll timeout from [`MioConnection::next_deadline`] (see
//!    [`timeout`]) and call [`MioConnection::on_timer`] after each poll.
//! 5. When `on_ready` returns `false` the connection has closed and has
//!    been deregistered: drop it. Otherwise call
//!    [`MioConnection::deregister`] before dropping it.
//!
//! A synchronous call made inside a callback on the loop's thread works: it
//! waits on the connection's own fd, without re-entering the loop.
//!
//! [`Server`] is a ready-made single-threaded server loop built the same way.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use netref::server::ACCEPT_BACKOFF;
use netref::{Accepted, Builder, Connection, DeadlineIndex, Listener};

/// The wake-up of one [`Poll`], shared by every connection registered on it:
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
        if let Err(e) = self.waker.wake() {
            log::warn!("netref-mio: waking the poll failed: {e}");
        }
    }

    /// Wakes the poll without queueing a token.
    pub fn wake(&self) {
        let _ = self.waker.wake();
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

/// A connection attached to a mio loop under a token.
pub struct MioConnection {
    conn: Connection,
    fd: RawFd,
    token: Token,
    write_armed: bool,
    rung: Arc<AtomicBool>,
    registered: bool,
}

impl MioConnection {
    /// Registers `conn` with the poll of `registry` under `token` and
    /// attaches it to the calling thread, which must be the loop's thread.
    /// Wake-ups from other threads ring `doorbell` with `token`.
    pub fn register(
        conn: &Connection,
        registry: &Registry,
        token: Token,
        doorbell: &Arc<Doorbell>,
    ) -> io::Result<MioConnection> {
        let fd = conn.raw_fd().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "the connection's transport has no file descriptor")
        })?;
        registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        let rung = Arc::new(AtomicBool::new(false));
        let flag = rung.clone();
        let bell = doorbell.clone();
        conn.attach(move || {
            if !flag.swap(true, Ordering::AcqRel) {
                bell.ring(token);
            }
        });
        let mut me =
            MioConnection { conn: conn.clone(), fd, token, write_armed: false, rung, registered: true };
        // Output queued before registering (the hello) and data already
        // received must not wait for an edge that has passed.
        me.on_ready(registry)?;
        Ok(me)
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The token this connection's events carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Serves the connection: reads until `WouldBlock`, runs what arrived,
    /// flushes, then arms write interest only while output is pending. Call
    /// on every event with this token and whenever the doorbell rang it.
    ///
    /// Returns `Ok(false)` once the connection has closed; it is then
    /// deregistered and detached, and should be dropped. An `Err` is a
    /// failure of the poll itself, not of the connection.
    pub fn on_ready(&mut self, registry: &Registry) -> io::Result<bool> {
        if !self.registered {
            return Ok(false);
        }
        self.rung.store(false, Ordering::Release);
        // Errors of the connection show up as `is_closed`; the loop goes on.
        let _ = self.conn.poll_all();
        let _ = self.conn.flush();
        self.rearm(registry)
    }

    /// Fires the connection's deadlines that have passed (expiring results,
    /// sending cancels); does nothing before the deadline.
    pub fn on_timer(&mut self, registry: &Registry) -> io::Result<bool> {
        if !self.registered {
            return Ok(false);
        }
        if self.next_deadline().is_some_and(|d| d <= Instant::now()) {
            self.conn.handle_timeout();
            return self.on_ready(registry);
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

    /// Deregisters the fd and detaches the connection (any thread may then
    /// serve it). Call before dropping an open connection.
    pub fn deregister(mut self, registry: &Registry) -> io::Result<()> {
        self.unregister(registry)
    }

    fn unregister(&mut self, registry: &Registry) -> io::Result<()> {
        if !self.registered {
            return Ok(());
        }
        self.registered = false;
        self.conn.detach();
        registry.deregister(&mut SourceFd(&self.fd))
    }

    fn rearm(&mut self, registry: &Registry) -> io::Result<bool> {
        if self.conn.is_closed() {
            self.unregister(registry)?;
            return Ok(false);
        }
        let want = self.conn.wants_write();
        if want != self.write_armed {
            let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            registry.reregister(&mut SourceFd(&self.fd), self.token, interest)?;
            self.write_armed = want;
        }
        Ok(true)
    }
}

impl Drop for MioConnection {
    fn drop(&mut self) {
        if self.registered {
            // Without the registry we cannot deregister; the kernel drops the
            // registration when the fd closes. Let other threads serve.
            log::debug!("netref-mio: a connection was dropped without deregister()");
            self.conn.detach();
        }
    }
}

// The server keeps its connections' deadlines in a `netref::DeadlineIndex`,
// so that a turn need not ask every connection (each `next_deadline` takes
// that connection's lock).
//
// The server re-reads a connection's deadline only when it drove it (after
// `register`, `on_ready` or `on_timer`, in `Server::driven`). That misses
// nothing, because a deadline moves *earlier* only in two places, and both
// ring the connection's token:
//
// - core's `Shared::submit` (a request with an expiry) and
//   `Driver::set_deadline` (`AsyncResult::set_expiry`) call `wake_driver`
//   after the change, under the connection's lock; on an attached
//   connection that calls the waker `register` installed, which queues the
//   token in the `Doorbell`. Whoever made the change (another thread, or
//   the loop's own thread dispatching another connection's request), the
//   token is in the next turn's `ready` and its `on_ready` runs before the
//   re-read. The waker does not queue the token again while its `rung` flag
//   is set, but then the token is already queued, or was taken and its
//   `on_ready` (which clears the flag first) has not yet run.
// - A new connection's first deadline (`idle_timeout`) is read when it is
//   registered.
//
// Everything else only moves a deadline later or removes it: a reply
// arriving, an expiry firing, input pushing `idle_timeout` back, closing.
// When that happens outside `on_ready` (a synchronous call made on the
// loop's thread reads its connection itself), the entry left is too early:
// harmless, as that connection's `on_timer` then runs once for nothing and
// its deadline is re-read.

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
    conns: HashMap<usize, MioConnection>,
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
            c.deregister(registry)?;
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
        for k in ready {
            if let Some(c) = self.conns.get_mut(&k) {
                let open = c.on_ready(self.poll.registry())?;
                self.driven(k, open);
            }
        }
        for k in self.deadlines.due(Instant::now()) {
            if let Some(c) = self.conns.get_mut(&k) {
                let open = c.on_timer(self.poll.registry())?;
                self.driven(k, open);
            }
        }
        self.count.store(self.conns.len(), Ordering::Release);
        Ok(())
    }

    /// Connection `key` was just driven (registered, served or its timer
    /// ran): re-reads its deadline, or lets go of it once it closed.
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
                    let c = MioConnection::register(&conn, self.poll.registry(), Token(key), &self.doorbell)?;
                    if c.is_registered() {
                        self.conns.insert(key, c);
                        self.driven(key, true);
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
