//! # netref-polling
//!
//! Runs [`netref`] connections on a [polling](https://docs.rs/polling) 3.x
//! [`Poller`]: replies, callbacks, the peer's requests and expiries all happen
//! on the loop's thread as data arrives, and nothing polls on a timer.
//!
//! ## The loop's contract
//!
//! This crate is the [drive loop](netref::Driver#the-drive-loop), written
//! once in netref's docs, with a poller's wait as its wait:
//!
//! 1. Make one [`Doorbell`] per poller: other threads (and the loop's own
//!    callbacks) ring it, through [`Poller::notify`], with a connection's
//!    key when that connection has new output or a nearer deadline.
//! 2. On the loop's thread, [`attach`] each connection under a key of your
//!    choice. Only this thread then reads, writes and serves it.
//! 3. Wait on the poller, no longer than the earliest
//!    [`Attached::next_deadline`] (see [`timeout`]).
//! 4. [`drive`](Attached::drive) every connection whose key had an event,
//!    rang ([`take`](netref::server::Doorbell::take)), or is
//!    [due](netref::LoopConnection::is_due): that is the drive step, then the
//!    (oneshot) registration re-armed, with write interest only while output
//!    is pending.
//! 5. When `drive` returns `false` the connection has closed and its fd has
//!    been deleted from the poller: drop it. Dropping an [`Attached`] (or
//!    [`detach`](Attached::detach)) deletes the fd and detaches the
//!    connection.
//!
//! `Poller::add` is `unsafe` (the fd must be deleted before it closes);
//! [`Attached`] keeps that contract: it keeps the connection (and so its
//! fd) open while the fd is in the poller, and deletes it when dropped.
//!
//! A synchronous call made inside a callback on the loop's thread works: it
//! waits on the connection's own fd, without re-entering the poller.
//! [`callback`] makes callbacks that stay on the loop's thread, so they may
//! capture `!Send` state. [`Server`] is a ready-made single-threaded server
//! over [`netref::server::LoopServer`].
//!
//! ```
//! use std::sync::Arc;
//! use polling::{Events, Poller};
//! use netref::{Builder, ObjectBuilder, Service};
//! use netref_polling::Doorbell;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A peer to talk to (here: a socketpair served by a thread).
//! let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
//! let (conn, peer) = Builder::default().pair(Builder::default().service(Service::object(calc)))?;
//! std::thread::spawn(move || peer.serve_all());
//!
//! const CONN: usize = 1;
//! let doorbell = Doorbell::new(Arc::new(Poller::new()?));
//! let mut attached = netref_polling::attach(&conn, &doorbell, CONN)?;
//!
//! let root = conn.root()?;
//! let answer = netref::async_(&root).call_method("add", (40, 2));
//! let mut events = Events::new();
//! while !answer.ready() {
//!     events.clear();
//!     doorbell.poller().wait(&mut events, netref_polling::timeout(attached.next_deadline()))?;
//!     let ready = events.iter().any(|e| e.key == CONN) || doorbell.take().contains(&CONN);
//!     if ready || attached.is_due() {
//!         attached.drive()?;
//!     }
//! }
//! assert_eq!(answer.value_as::<i64>()?, 42);
//! drop(attached); // deletes the fd from the poller and detaches
//! # Ok(())
//! # }
//! ```

use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netref::server::{LoopListener, LoopServer};
use netref::{Connection, LoopConnection};
use polling::{Event, Events, Poller};

pub use netref::server::{timeout, ServerHandle};
pub use netref::thread_callback as callback;

/// The wake-up of one [`Poller`], shared by every connection on it:
/// [`Poller::notify`] behind netref's
/// [`Doorbell`](netref::server::Doorbell), which it derefs to (`ring(key)`,
/// `wake()`, `take()`).
pub struct Doorbell {
    bell: Arc<netref::server::Doorbell>,
    poller: Arc<Poller>,
}

impl Doorbell {
    /// The doorbell of `poller`.
    pub fn new(poller: Arc<Poller>) -> Arc<Doorbell> {
        let notified = poller.clone();
        let bell = netref::server::Doorbell::new(move || {
            if let Err(e) = notified.notify() {
                log::warn!("netref-polling: notify failed: {e}");
            }
        });
        Arc::new(Doorbell { bell, poller })
    }

    /// The poller.
    pub fn poller(&self) -> &Arc<Poller> {
        &self.poller
    }
}

impl Deref for Doorbell {
    type Target = netref::server::Doorbell;

    fn deref(&self) -> &netref::server::Doorbell {
        &self.bell
    }
}

/// Adds `conn`'s fd to the doorbell's poller under `key` and attaches the
/// connection to the calling thread, which must be the loop's thread.
/// Fails with `Unsupported` for a connection that has no fd or is already
/// attached.
pub fn attach(conn: &Connection, doorbell: &Arc<Doorbell>, key: usize) -> io::Result<Attached> {
    let bell = doorbell.clone();
    let conn = LoopConnection::attach(conn, move || bell.ring(key))?;
    let poller = doorbell.poller().clone();
    // SAFETY: the fd belongs to the driver's connection, which keeps it open
    // while the driver lives; the `Attached` returned owns the driver and
    // deletes the fd from the poller before the driver drops (on close and
    // in `Drop`, which runs before its fields are dropped).
    unsafe { poller.add(conn.as_fd().as_raw_fd(), Event::readable(key))? };
    let mut me = Attached { conn, key, poller };
    // The hello may still be queued, and data may already be buffered.
    me.drive()?;
    Ok(me)
}

/// A connection attached to a poller under a key (see [`attach`]). Dropping
/// it deletes the fd from the poller (before the fd can close) and detaches
/// the connection. It derefs to its [`LoopConnection`]: `connection()`,
/// `is_due()`, `is_attached()`.
pub struct Attached {
    conn: LoopConnection,
    key: usize,
    poller: Arc<Poller>,
}

impl Attached {
    /// The key this connection's events carry.
    pub fn key(&self) -> usize {
        self.key
    }

    /// The drive step: fires the deadlines that passed, reads until
    /// `WouldBlock`, runs what arrived, flushes, then re-arms the
    /// registration (write interest only while output is pending). Call on
    /// every event with this key, whenever the doorbell rang it, and when
    /// it is due.
    ///
    /// Returns `Ok(false)` once the connection has closed; its fd is then
    /// deleted from the poller. An `Err` is a failure of the poller.
    pub fn drive(&mut self) -> io::Result<bool> {
        match self.conn.step() {
            Some(step) if !step.closed => {
                self.poller.modify(&self.conn, Event::new(self.key, true, step.wants_write))?;
                Ok(true)
            }
            _ => self.delete().map(|()| false),
        }
    }

    /// When the loop must [`drive`](Self::drive) this connection even if
    /// nothing happens on its fd (as of its last drive). Inherent, not only
    /// through `Deref`, so a loop can name it: `filter_map(Attached::next_deadline)`.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conn.next_deadline()
    }

    /// Deletes the fd from the poller and detaches the connection (any
    /// thread may then serve it). Same as dropping.
    pub fn detach(self) {}

    fn delete(&mut self) -> io::Result<()> {
        match self.conn.detach() {
            true => self.poller.delete(&self.conn),
            false => Ok(()),
        }
    }
}

impl Deref for Attached {
    type Target = LoopConnection;

    fn deref(&self) -> &LoopConnection {
        &self.conn
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            log::warn!("netref-polling: deleting a connection's fd failed: {e}");
        }
    }
}

// polling reserves `usize::MAX` for its own notifications.
const LISTENER: usize = usize::MAX - 1;

/// A single-threaded server: accepts on a listener and serves every
/// accepted connection on the thread that calls [`run`](Self::run). Its
/// bookkeeping is netref's [`LoopServer`], which it derefs to (`handle()`,
/// `connection_count()`); this is its poller loop.
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
/// let mut server =
///     netref_polling::Server::bind_tcp("127.0.0.1:18861", Builder::default().service(Service::object(calc)))?;
/// let handle = server.handle(); // handle.close() from any thread stops it
/// server.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    doorbell: Arc<Doorbell>,
    events: Events,
    core: LoopServer<Attached>,
}

impl Server {
    netref::listener_constructors!();

    fn from_loop_listener(listener: LoopListener) -> io::Result<Server> {
        let doorbell = Doorbell::new(Arc::new(Poller::new()?));
        // SAFETY: the listener is owned by the server, which deletes it from
        // the poller in `Drop` before the listener closes.
        unsafe { doorbell.poller().add(listener.as_fd().as_raw_fd(), Event::readable(LISTENER))? };
        let core = LoopServer::new(listener, doorbell.bell.clone());
        Ok(Server { doorbell, events: Events::new(), core })
    }

    fn loop_listener(&self) -> &LoopListener {
        self.core.listener()
    }

    /// Serves until [`ServerHandle::close`]; then closes every connection.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.core.is_closing() {
            self.run_once(None)?;
        }
        self.core.close_all(|attached| {
            drop(attached); // deletes the fd from the poller, then detaches
            Ok(())
        })
    }

    /// One turn of the loop: waits for events (at most `max_wait`, and no
    /// later than the earliest deadline), accepts, serves, fires deadlines.
    pub fn run_once(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        self.events.clear();
        match self.doorbell.poller().wait(&mut self.events, self.core.timeout(max_wait)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            r => r?,
        };
        let (mut listener, mut ready) = (false, Vec::new());
        for event in self.events.iter() {
            match event.key {
                LISTENER => listener = true,
                key => ready.push(key),
            }
        }
        let doorbell = &self.doorbell;
        // Oneshot: the listener is re-armed after it was accepted on, unless
        // it failed (the core's backoff deadline brings the loop back).
        if self.core.turn(
            ready,
            listener,
            |conn, key| attach(conn, doorbell, key),
            |c| c.drive().map(drop),
        )? {
            doorbell.poller().modify(self.core.listener(), Event::readable(LISTENER))?;
        }
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.doorbell.poller().delete(self.core.listener());
    }
}

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
