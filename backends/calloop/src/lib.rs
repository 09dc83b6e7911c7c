//! # netref-calloop
//!
//! Runs [`netref`] connections on a [calloop](https://docs.rs/calloop) 0.14
//! event loop, the loop smithay-client-toolkit (Wayland) tools already run.
//! Replies, callbacks, the peer's requests and expiries happen on the
//! loop's thread as data arrives; nothing polls on a timer.
//!
//! ## The loop's contract
//!
//! This crate is the [drive loop](netref::Driver#the-drive-loop), written
//! once in netref's docs, with calloop's dispatch as its wait:
//!
//! 1. On the loop's thread, [`attach`] the connection: it becomes a
//!    [`ConnectionSource`], an [`EventSource`] composed of the socket (a
//!    [`Generic`] source), a [`Ping`] that other threads ring when the
//!    connection has new output or a nearer deadline, and a [`Timer`] for
//!    its next deadline.
//! 2. Run the loop (`dispatch` or `run`) as usual.
//! 3. When one of the three fires, the source's callback serves the
//!    connection ([`Serve::lending`]): deadlines that passed fire, what
//!    arrived is read and served, output is flushed. Meanwhile the loop's
//!    data is lent to the [`callback`]s the peer calls.
//! 4. The source re-arms itself: write interest only while output is
//!    pending, the timer for the next deadline. Once the connection has
//!    closed it removes itself from the loop.
//! 5. Dropping the [`Attached`] (or [`Attached::detach`]) removes the source
//!    and detaches the connection: any thread may then serve it.
//!
//! A synchronous call made inside a calloop callback works: it waits on the
//! connection's own fd, without re-entering `dispatch`. [`Server`] accepts
//! and serves many connections on the loop's thread: a listener source over
//! netref's [`LoopListener`], each connection its own source.
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
//! let attached = netref_calloop::attach(&event_loop.handle(), &conn)?;
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
//! drop(attached); // removes the source, then detaches
//! # Ok(())
//! # }
//! ```
//!
//! ## Callbacks that reach the loop's data
//!
//! [`callback`] makes a callback for the peer from a closure that takes the
//! loop's shared data first, `Fn(&mut D, A1, ..., An) -> R`. It need not be
//! `Send`: it runs on the loop's thread, while calloop dispatches the
//! connection, with the `&mut D` that dispatch holds.
//!
//! ```
//! use std::rc::Rc;
//!
//! struct Tool { headlines: Vec<String> }
//! let prefix = Rc::new(String::from("news: ")); // !Send is fine
//! let on_news = netref_calloop::callback(move |tool: &mut Tool, headline: String| {
//!     tool.headlines.push(format!("{prefix}{headline}"));
//! });
//! # let _ = on_news;
//! ```

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use calloop::generic::Generic;
use calloop::ping::{make_ping, Ping, PingSource};
use calloop::timer::{TimeoutAction, Timer};
use calloop::transient::TransientSource;
use calloop::{
    EventSource, Interest, LoopHandle, Mode, Poll, PostAction, Readiness, RegistrationToken, Token,
    TokenFactory,
};
use netref::server::LoopListener;
use netref::{Connection, Driver, InvokeWith, LocalObject, Step};

/// Puts `conn` on the loop of `handle` as a [`ConnectionSource`] that lends
/// the loop's data to [`callback`]s. Call on the loop's thread. Fails for a
/// connection that has no fd or is already attached.
pub fn attach<'l, D: 'static>(
    handle: &LoopHandle<'l, D>,
    conn: &Connection,
) -> calloop::Result<Attached<'l, D>> {
    let (token, live) = insert(handle, conn)?;
    Ok(Attached { handle: handle.clone(), token, conn: conn.clone(), live })
}

/// Inserts a [`ConnectionSource`] for `conn` that lends the loop's data;
/// returns its token and its liveness.
fn insert<D: 'static>(
    handle: &LoopHandle<'_, D>,
    conn: &Connection,
) -> calloop::Result<(RegistrationToken, Arc<AtomicBool>)> {
    let source = ConnectionSource::new(conn)?;
    let live = source.live.clone();
    let token = handle.insert_source(source, |(), serve, data| serve.lending(data)).map_err(|e| e.error)?;
    Ok((token, live))
}

/// A connection on a calloop loop (see [`attach`]). Dropping it removes its
/// source from the loop and detaches the connection.
pub struct Attached<'l, D> {
    handle: LoopHandle<'l, D>,
    token: RegistrationToken,
    conn: Connection,
    live: Arc<AtomicBool>,
}

impl<D> Attached<'_, D> {
    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The source's registration in the loop.
    pub fn token(&self) -> RegistrationToken {
        self.token
    }

    /// True until the connection closed (its source then removed itself) or
    /// was detached.
    pub fn is_attached(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Removes the source and detaches the connection (any thread may then
    /// serve it). Same as dropping.
    pub fn detach(self) {}
}

impl<D> Drop for Attached<'_, D> {
    fn drop(&mut self) {
        if self.live.load(Ordering::Acquire) {
            self.handle.remove(self.token);
        }
    }
}

/// A connection as a calloop event source: the socket, a ping other threads
/// ring, and a timer for the next deadline. [`attach`] inserts one; insert
/// it yourself (or compose it into a source of your own) with a callback
/// that serves it:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (conn, _peer) = netref::Builder::default().pair(netref::Builder::default())?;
/// # struct Data;
/// let event_loop: calloop::EventLoop<'_, Data> = calloop::EventLoop::try_new()?;
/// let source = netref_calloop::ConnectionSource::new(&conn)?;
/// event_loop.handle().insert_source(source, |(), serve, data: &mut Data| serve.lending(data))?;
/// # Ok(())
/// # }
/// ```
///
/// Making the source attaches the connection to the calling thread, which
/// must be the loop's; dropping it (calloop does, when it is removed)
/// detaches it. It removes itself once the connection has closed.
pub struct ConnectionSource {
    serve: Serve,
    socket: Generic<Arc<Driver>>,
    ping: PingSource,
    wake: Ping,
    timer: TransientSource<Timer>,
    /// The timer's deadline, as of the last step.
    armed: Option<Instant>,
    /// False once the source removed itself or was dropped.
    live: Arc<AtomicBool>,
}

/// What a [`ConnectionSource`] hands its callback: serve the connection with
/// [`lending`](Self::lending) (a callback that does not, gets it served
/// without the loop's data).
pub struct Serve {
    driver: Arc<Driver>,
    step: Option<Step>,
}

impl Serve {
    /// Serves the connection now, lending `data` (the loop's shared data) to
    /// the [`callback`]s the peer calls meanwhile.
    pub fn lending<D: 'static>(&mut self, data: &mut D) {
        let driver = &self.driver;
        self.step = Some(netref::lend_loop_data(data, || driver.step()));
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        self.driver.connection()
    }
}

impl ConnectionSource {
    /// A source for `conn`, attached to the calling thread. Fails with
    /// `Unsupported` for a connection that has no fd or is already attached.
    pub fn new(conn: &Connection) -> io::Result<ConnectionSource> {
        let (wake, ping) = make_ping()?;
        let ring = wake.clone();
        let driver = Driver::attach(conn, move || ring.ping())
            .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
        let driver = Arc::new(driver);
        Ok(ConnectionSource {
            socket: Generic::new(driver.clone(), Interest::READ, Mode::Level),
            serve: Serve { driver, step: None },
            ping,
            wake,
            timer: no_timer(),
            armed: None,
            live: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        self.serve.connection()
    }
}

impl EventSource for ConnectionSource {
    type Event = ();
    type Metadata = Serve;
    type Ret = ();
    type Error = io::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> io::Result<PostAction>
    where
        F: FnMut((), &mut Serve),
    {
        let mut active = false;
        self.socket.process_events(readiness, token, |_, _| {
            active = true;
            Ok(PostAction::Continue)
        })?;
        self.ping.process_events(readiness, token, |(), _| active = true).map_err(io::Error::other)?;
        if fired(&mut self.timer, readiness, token)? {
            self.armed = None;
            active = true;
        }
        if !active {
            return Ok(PostAction::Continue);
        }
        self.serve.step = None;
        callback((), &mut self.serve);
        // A callback that did not serve the connection gets it served bare.
        let step = *self.serve.step.get_or_insert_with(|| self.serve.driver.step());
        if step.closed {
            self.live.store(false, Ordering::Release);
            return Ok(PostAction::Remove);
        }
        // Re-armed only when they change: write interest while output is
        // pending, the timer for the next deadline.
        let rearm = step.wants_write != self.socket.interest.writable || step.next_deadline != self.armed;
        if step.next_deadline != self.armed {
            self.armed = step.next_deadline;
            arm(&mut self.timer, self.armed);
        }
        self.socket.interest = if step.wants_write { Interest::BOTH } else { Interest::READ };
        Ok(if rearm { PostAction::Reregister } else { PostAction::Continue })
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.socket.register(poll, factory)?;
        self.ping.register(poll, factory)?;
        self.timer.register(poll, factory)?;
        if self.serve.step.is_none() {
            // The hello may still be queued and data already buffered: the
            // first dispatch serves the connection.
            self.wake.ping();
        }
        Ok(())
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.socket.reregister(poll, factory)?;
        self.ping.reregister(poll, factory)?;
        self.timer.reregister(poll, factory)
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.socket.unregister(poll)?;
        self.ping.unregister(poll)?;
        self.timer.unregister(poll)
    }
}

/// Processes `timer`'s events: true when it fired (the wheel dropped its
/// entry, and the slot lets go of it at the next reregister).
fn fired(timer: &mut TransientSource<Timer>, readiness: Readiness, token: Token) -> io::Result<bool> {
    let mut fired = false;
    timer.process_events(readiness, token, |_, _| {
        fired = true;
        TimeoutAction::Drop
    })?;
    Ok(fired)
}

/// An empty timer slot (calloop's is `Default` only for a `Default`
/// source): one timer, removed before it is ever registered.
fn no_timer() -> TransientSource<Timer> {
    let mut slot = TransientSource::from(Timer::immediate());
    slot.remove();
    slot
}

/// Points `timer` at `at`; the source's reregister, which must follow,
/// applies it.
fn arm(timer: &mut TransientSource<Timer>, at: Option<Instant>) {
    match at {
        // `replace` ignores an empty slot.
        Some(at) if timer.is_none() => *timer = Timer::from_deadline(at).into(),
        Some(at) => timer.replace(Timer::from_deadline(at)),
        None => timer.remove(),
    }
}

impl Drop for ConnectionSource {
    fn drop(&mut self) {
        self.live.store(false, Ordering::Release);
    }
}

/// A callback for the peer (a [`LocalObject`], like [`netref::callback`])
/// that reaches the loop's shared data: `f` is `Fn(&mut D, A1, ..., An) ->
/// R`, where `D` is the loop's `Data`, and need not be `Send` (it may
/// capture `Rc`s).
///
/// It runs on the thread that made it, while calloop dispatches the
/// connection's source (the peer's calls are served there), with the
/// `&mut D` that dispatch holds. The peer gets a `RuntimeError` instead
/// when the callback is called from another thread, outside that dispatch
/// (a synchronous call made outside calloop's callbacks serves the
/// connection itself, without the data), or while another loop-data
/// callback runs (a nested call cannot get a second `&mut D`).
///
/// Its captures are dropped on its thread (see [`netref::thread_callback`]);
/// the lending is netref's ([`netref::lend_loop_data`]).
pub fn callback<D, Args, F>(f: F) -> LocalObject
where
    D: 'static,
    Args: 'static,
    F: InvokeWith<D, Args>,
    F::Output: serde::Serialize,
{
    netref::loop_data_callback("calloop", f)
}

/// [`callback`] as a typed [`Callback`](netref::typed::Callback), for a
/// `#[netref::service]` method's callback argument: a closure given the
/// loop's data as it runs on the loop's thread, inside `dispatch`.
///
/// ```
/// struct Tool { seen: u64 }
/// let on_news: netref::typed::Callback<(u64, String)> =
///     netref_calloop::typed_callback(|tool: &mut Tool, n: u64, _headline: String| tool.seen = n);
/// # let _ = on_news;
/// ```
pub fn typed_callback<D, Args, R, F>(f: F) -> netref::typed::Callback<Args, R>
where
    D: 'static,
    Args: 'static,
    F: InvokeWith<D, Args, Output = R>,
    R: serde::Serialize,
{
    netref::typed::Callback::from_object(callback(f))
}

// ---- the server ------------------------------------------------------------------

/// A listener as a calloop event source: accepts clients and hands each
/// [`Connection`] (not yet attached) to its callback.
/// [`attach`](Self::attach) inserts it with a callback that puts every
/// connection on the loop, lending the loop's data to [`callback`]s.
///
/// One thread serves every connection, so a method that waits for its peer
/// (a callback's reply, a nested call) must be asynchronous
/// ([`ObjectBuilder::async_method`](netref::ObjectBuilder::async_method)):
/// the loop serves the other connections while it waits. A synchronous
/// wait from a method fails at once with
/// [`Misuse::BlocksLoopServer`](netref::Misuse::BlocksLoopServer).
///
/// ```no_run
/// use calloop::EventLoop;
/// use netref::{Builder, ObjectBuilder, Service};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let server = netref_calloop::Server::bind_tcp("127.0.0.1:18861", Builder::default().service(Service::object(calc)))?;
/// let mut event_loop: EventLoop<'_, ()> = EventLoop::try_new()?;
/// server.attach(&event_loop.handle())?;
/// event_loop.run(None, &mut (), |_| {})?;
/// # Ok(())
/// # }
/// ```
pub struct Server {
    listener: Generic<LoopListener>,
    /// The end of an accept backoff (netref's
    /// [`accept_all`](LoopListener::accept_all) said when), while the
    /// listener is not watched.
    backoff: TransientSource<Timer>,
}

impl Server {
    netref::listener_constructors!();

    fn from_loop_listener(listener: LoopListener) -> io::Result<Server> {
        Ok(Server { listener: Generic::new(listener, Interest::READ, Mode::Level), backoff: no_timer() })
    }

    fn loop_listener(&self) -> &LoopListener {
        self.listener.get_ref()
    }

    /// Inserts the server into the loop of `handle`, which then serves every
    /// accepted connection on its thread (each as a [`ConnectionSource`]
    /// lending the loop's data to [`callback`]s). Call on the loop's thread;
    /// `handle.remove(token)` stops accepting.
    pub fn attach<'l, D: 'static>(self, handle: &LoopHandle<'l, D>) -> calloop::Result<RegistrationToken> {
        let h = handle.clone();
        let serve = move |conn: Connection, _: &mut (), _: &mut D| {
            if let Err(e) = insert(&h, &conn) {
                log::warn!("netref-calloop server: could not attach a connection from {}: {e}", conn.peer());
            }
        };
        handle.insert_source(self, serve).map_err(|e| e.error)
    }
}

impl EventSource for Server {
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
        let backed_off = fired(&mut self.backoff, readiness, token)?;
        if !ready && !backed_off {
            return Ok(PostAction::Continue);
        }
        let pause = self.listener.get_ref().accept_all(Instant::now(), |conn| {
            callback(conn, &mut ());
            Ok(())
        })?;
        if pause.is_none() && !backed_off {
            return Ok(PostAction::Continue);
        }
        // The listener stays readable while it fails: not watched until the
        // backoff's timer ends, then watched again.
        arm(&mut self.backoff, pause);
        self.listener.interest = if pause.is_some() { Interest::EMPTY } else { Interest::READ };
        Ok(PostAction::Reregister)
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.listener.register(poll, factory)?;
        self.backoff.register(poll, factory)
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.listener.reregister(poll, factory)?;
        self.backoff.reregister(poll, factory)
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.listener.unregister(poll)?;
        self.backoff.unregister(poll)
    }
}

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
