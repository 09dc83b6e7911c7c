//! # netref-calloop
//!
//! Runs [`netref`] connections on a [calloop](https://docs.rs/calloop) 0.14
//! event loop, the loop smithay-client-toolkit (Wayland) tools already run.
//! A connection becomes a [`ConnectionSource`]: an [`EventSource`] composed of
//! the socket (a [`Generic`] source, write interest only while output is
//! pending), a [`Ping`] that other threads ring, and a [`Timer`] armed for the
//! connection's next deadline. Replies, callbacks, the peer's requests and
//! expiries happen on the loop's thread as data arrives; nothing polls on a
//! timer. [`ListenerSource`] and [`serve`] accept and serve many connections
//! on the loop's thread.
//!
//! ```
//! use calloop::EventLoop;
//! use netref::{Builder, ObjectBuilder, Service};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A peer to talk to (here: a socketpair served by a thread).
//! let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
//! let (conn, peer) = Builder::default().pair(Builder::default().service(Service::object(calc)))?;
//! std::thread::spawn(move || peer.serve_all());
//!
//! let mut event_loop: EventLoop<'_, Option<i64>> = EventLoop::try_new()?;
//! let token = netref_calloop::insert(&event_loop.handle(), &conn)?;
//!
//! let root = conn.root()?;
//! let signal = event_loop.get_signal();
//! let answer = netref::async_(&root).call_method("add", (40, 2));
//! answer.add_callback(move |r| {
//!     assert_eq!(r.value_as::<i64>().unwrap(), 42); // runs on the loop's thread
//!     signal.stop();
//! });
//! let mut state = None;
//! event_loop.run(None, &mut state, |_| {})?;
//! event_loop.handle().remove(token); // unregisters the socket, then detaches
//! # Ok(())
//! # }
//! ```
//!
//! A synchronous call made inside a calloop callback works: it waits on the
//! connection's own fd, without re-entering `dispatch`.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::Instant;

use calloop::generic::Generic;
use calloop::ping::{make_ping, Ping, PingSource};
use calloop::timer::{TimeoutAction, Timer};
use calloop::{
    EventSource, Interest, LoopHandle, Mode, Poll, PostAction, Readiness, RegistrationToken, Token,
    TokenFactory,
};
use netref::server::ACCEPT_BACKOFF;
use netref::{Accepted, Builder, Connection, Listener};

/// The connection's fd, kept open by the `Connection` held beside it.
struct ConnFd {
    fd: RawFd,
    _conn: Connection,
}

impl AsFd for ConnFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `_conn` keeps the transport, and so the fd, open while
        // `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

/// What a [`ConnectionSource`] reports to its callback.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection closed (with the reason); the source then removes
    /// itself from the loop.
    Closed(Option<netref::CloseReason>),
}

/// A connection as a calloop event source. Insert it with
/// [`insert`] or `LoopHandle::insert_source`; registering attaches the
/// connection to the loop's thread, unregistering (removal) detaches it.
pub struct ConnectionSource {
    conn: Connection,
    socket: Generic<ConnFd>,
    ping: PingSource,
    wake: Ping,
    timer: Option<Timer>,
    armed: Option<Instant>,
}

impl ConnectionSource {
    /// A source for `conn` (which must have a file descriptor).
    pub fn new(conn: &Connection) -> io::Result<ConnectionSource> {
        let fd = conn.raw_fd().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "the connection's transport has no file descriptor")
        })?;
        let (wake, ping) = make_ping()?;
        let socket = Generic::new(ConnFd { fd, _conn: conn.clone() }, Interest::READ, Mode::Level);
        Ok(ConnectionSource { conn: conn.clone(), socket, ping, wake, timer: None, armed: None })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn wanted_interest(&self) -> Interest {
        if self.conn.wants_write() {
            Interest::BOTH
        } else {
            Interest::READ
        }
    }

    fn register_timer(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        if let Some(mut old) = self.timer.take() {
            old.unregister(poll)?;
        }
        self.armed = self.conn.next_deadline();
        if let Some(deadline) = self.armed {
            let mut timer = Timer::from_deadline(deadline);
            timer.register(poll, factory)?;
            self.timer = Some(timer);
        }
        Ok(())
    }
}

impl EventSource for ConnectionSource {
    type Event = ConnectionEvent;
    type Metadata = ();
    type Ret = ();
    type Error = io::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> io::Result<PostAction>
    where
        F: FnMut(ConnectionEvent, &mut ()),
    {
        let mut active = false;
        self.socket.process_events(readiness, token, |_, _| {
            active = true;
            Ok(PostAction::Continue)
        })?;
        self.ping.process_events(readiness, token, |(), _| active = true).map_err(io::Error::other)?;
        let mut fired = false;
        if let Some(timer) = &mut self.timer {
            timer.process_events(readiness, token, |_, _| {
                fired = true;
                TimeoutAction::Drop
            })?;
        }
        if fired {
            // The wheel already dropped the entry; re-arm below.
            self.timer = None;
            self.armed = None;
            self.conn.handle_timeout();
        }
        if active || fired {
            // Errors of the connection show up as `is_closed`.
            let _ = self.conn.poll_all();
            let _ = self.conn.flush();
        }
        if self.conn.is_closed() {
            callback(ConnectionEvent::Closed(self.conn.close_reason()), &mut ());
            return Ok(PostAction::Remove);
        }
        if self.wanted_interest().writable != self.socket.interest.writable
            || self.conn.next_deadline() != self.armed
        {
            return Ok(PostAction::Reregister);
        }
        Ok(PostAction::Continue)
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        let wake = self.wake.clone();
        self.conn.attach(move || wake.ping());
        self.socket.interest = self.wanted_interest();
        self.socket.register(poll, factory)?;
        self.ping.register(poll, factory)?;
        self.register_timer(poll, factory)
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.socket.interest = self.wanted_interest();
        self.socket.reregister(poll, factory)?;
        self.ping.reregister(poll, factory)?;
        self.register_timer(poll, factory)
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.conn.detach();
        self.socket.unregister(poll)?;
        self.ping.unregister(poll)?;
        if let Some(mut timer) = self.timer.take() {
            timer.unregister(poll)?;
        }
        self.armed = None;
        Ok(())
    }
}

/// Inserts `conn` into the loop of `handle` as a [`ConnectionSource`] whose
/// events are ignored (it removes itself when the connection closes). Call
/// on the loop's thread. `handle.remove(token)` detaches it.
pub fn insert<D>(handle: &LoopHandle<'_, D>, conn: &Connection) -> calloop::Result<RegistrationToken> {
    let source = ConnectionSource::new(conn)?;
    handle.insert_source(source, |_, _, _| {}).map_err(|e| e.error)
}

/// A listener as a calloop event source: each accepted client becomes a
/// [`Connection`] (not yet attached) handed to the callback, which usually
/// inserts it (see [`serve`]).
pub struct ListenerSource {
    listener: Generic<Listener>,
    builder: Builder,
    backoff: Option<Timer>,
}

impl ListenerSource {
    /// Accepts on a bound TCP listener (made non-blocking here).
    pub fn tcp(listener: TcpListener, builder: Builder) -> io::Result<ListenerSource> {
        Self::new(listener.into(), builder)
    }

    /// Accepts on a bound Unix listener (made non-blocking here).
    pub fn unix(listener: UnixListener, builder: Builder) -> io::Result<ListenerSource> {
        Self::new(listener.into(), builder)
    }

    /// Accepts on a bound [`Listener`], TCP or Unix (made non-blocking here).
    ///
    /// Fails with `InvalidInput` for a builder whose authentication waits for
    /// the client: see [`Listener::prepare_for_event_loop`].
    pub fn new(listener: Listener, builder: Builder) -> io::Result<ListenerSource> {
        listener.prepare_for_event_loop(&builder)?;
        Ok(ListenerSource {
            listener: Generic::new(listener, Interest::READ, Mode::Level),
            builder,
            backoff: None,
        })
    }

    /// The TCP address listened on.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    fn fd(&self) -> RawFd {
        self.listener.get_ref().as_fd().as_raw_fd()
    }
}

impl EventSource for ListenerSource {
    type Event = Connection;
    type Metadata = ();
    type Ret = ();
    type Error = io::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> io::Result<PostAction>
    where
        F: FnMut(Connection, &mut ()),
    {
        let mut ready = false;
        self.listener.process_events(readiness, token, |_, _| {
            ready = true;
            Ok(PostAction::Continue)
        })?;
        if let Some(timer) = &mut self.backoff {
            timer.process_events(readiness, token, |_, _| {
                ready = true;
                TimeoutAction::Drop
            })?;
        }
        if !ready {
            return Ok(PostAction::Continue);
        }
        let was_backing_off = self.backoff.take().is_some();
        loop {
            match self.listener.get_ref().accept_connection(&self.builder) {
                Accepted::Connection(conn) => callback(conn, &mut ()),
                // That client's failure, logged by netref: the next one now.
                Accepted::Rejected(_) => {}
                Accepted::WouldBlock => break,
                Accepted::Failed(e) => {
                    // Typically out of file descriptors: stop watching the
                    // (still readable) listener for a moment instead of
                    // spinning, and keep serving the others.
                    log::warn!(
                        "netref-calloop: accept on fd {} failed ({e}); retrying in {ACCEPT_BACKOFF:?}",
                        self.fd()
                    );
                    self.backoff = Some(Timer::from_duration(ACCEPT_BACKOFF));
                    self.listener.interest = Interest::EMPTY;
                    return Ok(PostAction::Reregister);
                }
            }
        }
        if was_backing_off {
            self.listener.interest = Interest::READ;
            return Ok(PostAction::Reregister);
        }
        Ok(PostAction::Continue)
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.listener.register(poll, factory)?;
        if let Some(timer) = &mut self.backoff {
            timer.register(poll, factory)?;
        }
        Ok(())
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.listener.reregister(poll, factory)?;
        if let Some(timer) = &mut self.backoff {
            timer.reregister(poll, factory)?;
        }
        Ok(())
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.listener.unregister(poll)?;
        if let Some(timer) = &mut self.backoff {
            timer.unregister(poll)?;
        }
        Ok(())
    }
}

/// Inserts `listener` into the loop of `handle` and serves every accepted
/// connection on the loop's thread (each inserted with [`insert`]).
///
/// ```no_run
/// use calloop::EventLoop;
/// use netref::{Builder, ObjectBuilder, Service};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let listener = std::net::TcpListener::bind("127.0.0.1:18861")?;
/// let source = netref_calloop::ListenerSource::tcp(listener, Builder::default().service(Service::object(calc)))?;
/// let mut event_loop: EventLoop<'_, ()> = EventLoop::try_new()?;
/// netref_calloop::serve(&event_loop.handle(), source)?;
/// event_loop.run(None, &mut (), |_| {})?;
/// # Ok(())
/// # }
/// ```
pub fn serve<'l, D: 'l>(
    handle: &LoopHandle<'l, D>,
    listener: ListenerSource,
) -> calloop::Result<RegistrationToken> {
    let h = handle.clone();
    handle
        .insert_source(listener, move |conn, _, _| {
            if let Err(e) = insert(&h, &conn) {
                log::warn!("netref-calloop: could not insert a connection from {}: {e}", conn.peer());
            }
        })
        .map_err(|e| e.error)
}
