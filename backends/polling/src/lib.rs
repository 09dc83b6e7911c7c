//! # netref-polling
//!
//! Runs [`netref`] connections on a [polling](https://docs.rs/polling) 3.x
//! [`Poller`]: replies, callbacks, the peer's requests and expiries all happen
//! on the loop's thread as data arrives, and nothing polls on a timer.
//!
//! ## The loop's contract
//!
//! 1. Make one [`Doorbell`] per poller: other threads (and the loop's own
//!    callbacks) ring it, through [`Poller::notify`], with a connection's
//!    key when that connection has new output or a nearer deadline.
//! 2. On the loop's thread, [`attach`] each connection under a key of your
//!    choice. Only this thread then reads, writes and serves it.
//! 3. Wait on the poller, no longer than the earliest
//!    [`Attached::next_deadline`] (see [`timeout`]).
//! 4. After each wait, [`drive`](Attached::drive) every connection whose key
//!    had an event, whose key rang ([`Doorbell::take`]), or whose deadline
//!    passed: it reads until `WouldBlock`, serves, flushes, and re-arms the
//!    (oneshot) registration with write interest only while output is
//!    pending.
//! 5. When `drive` returns `false` the connection has closed and its fd has
//!    been deleted from the poller: drop it. Dropping an [`Attached`] (or
//!    [`detach`](Attached::detach)) deletes the fd and detaches the
//!    connection. Otherwise go to 3.
//!
//! `Poller::add` is `unsafe` (the fd must be deleted before it closes);
//! [`Attached`] keeps that contract: it keeps the connection (and so its
//! fd) open while the fd is in the poller, and deletes it when dropped.
//!
//! A synchronous call made inside a callback on the loop's thread works: it
//! waits on the connection's own fd, without re-entering the poller.
//! [`callback`] makes callbacks that stay on the loop's thread, so they may
//! capture `!Send` state. [`Server`] is a ready-made single-threaded server
//! loop built the same way.
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

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netref::server::ACCEPT_BACKOFF;
use netref::{Accepted, Builder, Connection, DeadlineIndex, Driver, Listener};
use polling::{Event, Events, Poller};

pub use netref::thread_callback as callback;

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

/// Adds `conn`'s fd to the doorbell's poller under `key` and attaches the
/// connection to the calling thread, which must be the loop's thread.
/// Fails with `Unsupported` for a connection that has no fd or is already
/// attached.
pub fn attach(conn: &Connection, doorbell: &Arc<Doorbell>, key: usize) -> io::Result<Attached> {
    let bell = doorbell.clone();
    let driver = Driver::attach(conn, move || bell.ring(key))
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    let poller = doorbell.poller().clone();
    // SAFETY: the fd belongs to the driver's connection, which keeps it open
    // while the driver lives; the `Attached` returned owns the driver and
    // deletes the fd from the poller before the driver drops (on close and
    // in `Drop`, which runs before its fields are dropped).
    unsafe { poller.add(driver.as_fd().as_raw_fd(), Event::readable(key))? };
    let mut me = Attached { driver, key, poller, deadline: None, attached: true };
    // The hello may still be queued, and data may already be buffered.
    me.drive()?;
    Ok(me)
}

/// A connection attached to a poller under a key (see [`attach`]). Dropping
/// it deletes the fd from the poller (before the fd can close) and detaches
/// the connection.
pub struct Attached {
    driver: Driver,
    key: usize,
    poller: Arc<Poller>,
    deadline: Option<Instant>,
    attached: bool,
}

impl Attached {
    /// The connection.
    pub fn connection(&self) -> &Connection {
        self.driver.connection()
    }

    /// The key this connection's events carry.
    pub fn key(&self) -> usize {
        self.key
    }

    /// Serves the connection: fires the deadlines that passed, reads until
    /// `WouldBlock`, runs what arrived, flushes, then re-arms the
    /// registration (write interest only while output is pending). Call on
    /// every event with this key, whenever the doorbell rang it, and when
    /// its deadline passes.
    ///
    /// Returns `Ok(false)` once the connection has closed; its fd is then
    /// deleted from the poller. An `Err` is a failure of the poller.
    pub fn drive(&mut self) -> io::Result<bool> {
        if !self.attached {
            return Ok(false);
        }
        let step = self.driver.step();
        self.deadline = step.next_deadline;
        if step.closed {
            self.delete()?;
            return Ok(false);
        }
        self.poller.modify(&self.driver, Event::new(self.key, true, step.wants_write))?;
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

    /// Deletes the fd from the poller and detaches the connection (any
    /// thread may then serve it). Same as dropping.
    pub fn detach(self) {}

    fn delete(&mut self) -> io::Result<()> {
        if !self.attached {
            return Ok(());
        }
        self.attached = false;
        self.poller.delete(&self.driver)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            log::warn!("netref-polling: deleting a connection's fd failed: {e}");
        }
    }
}

// The server keeps its connections' deadlines in a `netref::DeadlineIndex`
// and re-reads one only when it drove that connection; see netref-mio's
// server for why that misses nothing (a deadline moves earlier only with a
// wake-up, which rings the connection's key).

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
    conns: HashMap<usize, Attached>,
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
        let deadline = if c.drive()? {
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
                    let c = attach(&conn, &self.doorbell, key)?;
                    if c.is_attached() {
                        self.deadlines.set(key, c.next_deadline());
                        self.conns.insert(key, c);
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

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
