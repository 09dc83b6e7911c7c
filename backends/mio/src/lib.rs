//! # netref-mio
//!
//! Runs [`netref`] connections on a [mio](https://docs.rs/mio) 1.x event
//! loop: replies, callbacks, the peer's requests and expiries all happen on
//! the loop's thread as data arrives, and nothing polls on a timer.
//!
//! ## The loop's contract
//!
//! This crate is the [drive loop](netref::Driver#the-drive-loop), written
//! once in netref's docs, with mio's poll as its wait:
//!
//! 1. Make one [`Doorbell`] per [`Poll`]: other threads (and the loop's own
//!    callbacks) ring it with a connection's token when that connection has
//!    new output or a nearer deadline.
//! 2. On the loop's thread, [`attach`] each connection under a [`Token`] of
//!    your choice. Only this thread then reads, writes and serves it.
//! 3. Poll, with the timeout of the earliest [`next_deadline`] (see
//!    [`timeout`]).
//! 4. [`drive`](Attached::drive) every connection whose token had an
//!    event, rang ([`Doorbell::take`]), or is [due](netref::LoopConnection::is_due):
//!    that is the drive step, then write interest re-armed only while output
//!    is pending.
//! 5. When `drive` returns `false` the connection has closed and has been
//!    deregistered: drop it. To stop earlier, call [`Attached::detach`]
//!    (dropping it without the registry leaves the fd registered).
//!
//! A synchronous call made inside a callback on the loop's thread works: it
//! waits on the connection's own fd, without re-entering the loop.
//! [`callback`] makes callbacks that stay on the loop's thread, so they may
//! capture `!Send` state. [`Server`] is a ready-made single-threaded server
//! over [`netref::server::LoopServer`].
//!
//! [`next_deadline`]: netref::LoopConnection::next_deadline
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

use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use netref::server::{LoopListener, LoopServer};
use netref::{Connection, LoopConnection};

pub use netref::server::{timeout, ServerHandle};
pub use netref::thread_callback as callback;

/// The wake-up of one [`Poll`], shared by every connection attached to it:
/// a mio [`Waker`] behind netref's [`Doorbell`](netref::server::Doorbell),
/// which queues the tokens that rang.
pub struct Doorbell {
    bell: Arc<netref::server::Doorbell>,
    token: Token,
}

impl Doorbell {
    /// Creates the doorbell of the poll owning `registry`; its events arrive
    /// with `token` (mio allows one `Waker` per `Poll`).
    pub fn new(registry: &Registry, token: Token) -> io::Result<Arc<Doorbell>> {
        let waker = Waker::new(registry, token)?;
        let bell = netref::server::Doorbell::new(move || {
            if let Err(e) = waker.wake() {
                log::warn!("netref-mio: waking the poll failed: {e}");
            }
        });
        Ok(Arc::new(Doorbell { bell, token }))
    }

    /// The token the doorbell's events carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Queues `token` and wakes the poll. Callable from any thread.
    pub fn ring(&self, token: Token) {
        self.bell.ring(token.0);
    }

    /// Wakes the poll without queueing a token.
    pub fn wake(&self) {
        self.bell.wake();
    }

    /// Takes the tokens that rang since the last call. Call after every poll
    /// (whether or not the doorbell's own event is among the events).
    pub fn take(&self) -> Vec<Token> {
        self.bell.take().into_iter().map(Token).collect()
    }
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
    let conn = LoopConnection::attach(conn, move || bell.ring(token))?;
    registry.register(&mut SourceFd(&conn.as_fd().as_raw_fd()), token, Interest::READABLE)?;
    let mut me = Attached { conn, token, write_armed: false };
    // Output queued before attaching (the hello) and data already received
    // must not wait for an edge that has passed.
    me.drive(registry)?;
    Ok(me)
}

/// A connection attached to a mio loop under a token (see [`attach`]). It
/// derefs to its [`LoopConnection`]: `connection()`, `next_deadline()`,
/// `is_due()`, `is_attached()`.
pub struct Attached {
    conn: LoopConnection,
    token: Token,
    write_armed: bool,
}

impl Attached {
    /// The token this connection's events carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The drive step: fires the deadlines that passed, reads until
    /// `WouldBlock` (mio is edge-triggered), runs what arrived, flushes, then
    /// arms write interest only while output is pending. Call on every event
    /// with this token, whenever the doorbell rang it, and when it is due.
    ///
    /// Returns `Ok(false)` once the connection has closed; it is then
    /// deregistered, and should be dropped. An `Err` is a failure of the
    /// poll itself, not of the connection.
    pub fn drive(&mut self, registry: &Registry) -> io::Result<bool> {
        let Some(step) = self.conn.step() else { return Ok(false) };
        if step.closed {
            self.deregister(registry)?;
        } else if step.wants_write != self.write_armed {
            let interest =
                if step.wants_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            registry.reregister(&mut SourceFd(&self.fd()), self.token, interest)?;
            self.write_armed = step.wants_write;
        }
        Ok(!step.closed)
    }

    /// When the loop must [`drive`](Self::drive) this connection even if
    /// nothing happens on its fd (as of its last drive). Inherent, not only
    /// through `Deref`, so a loop can name it: `filter_map(Attached::next_deadline)`.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conn.next_deadline()
    }

    /// Deregisters the fd and detaches the connection (any thread may then
    /// serve it). Call this rather than dropping an attached connection:
    /// without the registry, a drop cannot deregister the fd.
    pub fn detach(mut self, registry: &Registry) -> io::Result<()> {
        self.deregister(registry)
    }

    fn fd(&self) -> RawFd {
        self.conn.as_fd().as_raw_fd()
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self.conn.detach() {
            true => registry.deregister(&mut SourceFd(&self.fd())),
            false => Ok(()),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.conn.is_attached() {
            // Without the registry we cannot deregister; the kernel drops the
            // registration when the fd closes. The driver detaches.
            log::debug!("netref-mio: a connection was dropped without detach(registry)");
        }
    }
}

impl Deref for Attached {
    type Target = LoopConnection;

    fn deref(&self) -> &LoopConnection {
        &self.conn
    }
}

const LISTENER: Token = Token(usize::MAX);
const DOORBELL: Token = Token(usize::MAX - 1);

/// A single-threaded server: accepts on a listener and serves every
/// accepted connection on the thread that calls [`run`](Self::run). Its
/// bookkeeping is netref's [`LoopServer`], which it derefs to (`handle()`,
/// `connection_count()`); this is its mio loop.
///
/// One thread serves every connection, so a method that waits for its peer
/// (a callback's reply, a nested call) must be asynchronous
/// ([`ObjectBuilder::async_method`](netref::ObjectBuilder::async_method)):
/// the loop serves the other connections while it waits. A synchronous
/// wait from a method fails at once with
/// [`Misuse::BlocksLoopServer`](netref::Misuse::BlocksLoopServer).
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
    doorbell: Arc<Doorbell>,
    core: LoopServer<Attached>,
}

impl Server {
    netref::listener_constructors!();

    fn from_loop_listener(listener: LoopListener) -> io::Result<Server> {
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&listener.as_fd().as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let doorbell = Doorbell::new(poll.registry(), DOORBELL)?;
        let core = LoopServer::new(listener, doorbell.bell.clone());
        Ok(Server { poll, events: Events::with_capacity(256), doorbell, core })
    }

    fn loop_listener(&self) -> &LoopListener {
        self.core.listener()
    }

    /// Serves until [`ServerHandle::close`]; then closes every connection.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.core.is_closing() {
            self.run_once(None)?;
        }
        let registry = self.poll.registry();
        self.core.close_all(|c| c.detach(registry))?;
        registry.deregister(&mut SourceFd(&self.core.listener().as_fd().as_raw_fd()))
    }

    /// One turn of the loop: waits for events (at most `max_wait`, and no
    /// later than the earliest deadline), accepts, serves, fires deadlines.
    pub fn run_once(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        if let Err(e) = self.poll.poll(&mut self.events, self.core.timeout(max_wait)) {
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        let listener = self.events.iter().any(|e| e.token() == LISTENER);
        let ready = self.events.iter().map(|e| e.token()).filter(|&t| t != LISTENER && t != DOORBELL);
        let (registry, doorbell) = (self.poll.registry(), &self.doorbell);
        // The listener's edge has passed when accepting fails: the core's
        // backoff deadline brings the loop back to it.
        self.core.turn(
            ready.map(|t| t.0),
            listener,
            |conn, key| attach(conn, registry, Token(key), doorbell),
            |c| c.drive(registry).map(drop),
        )?;
        Ok(())
    }
}

impl Deref for Server {
    type Target = LoopServer<Attached>;

    /// The loop-independent half: [`handle`](LoopServer::handle),
    /// [`connection_count`](LoopServer::connection_count).
    fn deref(&self) -> &LoopServer<Attached> {
        &self.core
    }
}

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
