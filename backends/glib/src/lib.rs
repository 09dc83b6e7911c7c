//! # netref-glib
//!
//! Runs [`netref`] connections on a GLib [`MainContext`] (the default one a
//! GTK application iterates, or a private one): replies, callbacks, the
//! peer's requests and expiries happen on the context's thread as data
//! arrives, with no extra thread and no polling on a timer. It is the Rust
//! form of PyGTK's `io_add_watch` over an RPyC connection.
//!
//! ## The loop's contract
//!
//! This crate is the [drive loop](netref::Driver#the-drive-loop), written
//! once in netref's docs, with the context's iteration as its wait:
//!
//! 1. On the thread that iterates the context (for `MainContext::default()`,
//!    the GTK main thread), [`attach`] the connection. Only this thread then
//!    reads, writes and serves it.
//! 2. Iterate the context as usual (`MainLoop::run`, `gtk::Application`).
//! 3. The connection's sources serve it when they fire: a permanent `IN`
//!    watch on its fd; an `OUT` watch that exists only while output is
//!    pending (GLib watches are level-triggered, so an idle `OUT` watch would
//!    spin); a timeout source for its next deadline; and a timeout due at
//!    once that other threads queue when the connection has new output or a
//!    nearer deadline.
//! 4. Each serving re-arms them; once the connection has closed they are
//!    destroyed.
//! 5. Dropping the [`Attached`] (or [`Attached::detach`]) destroys the
//!    sources and detaches the connection: any thread may then serve it.
//!
//! A synchronous call made inside a callback waits on the connection's own
//! fd, without iterating the context. [`callback`] and [`local_callback`]
//! let callbacks capture widgets; [`Server`] accepts and serves many
//! connections on the context's thread: a listener watch over netref's
//! [`LoopListener`], each connection with its own sources.
//!
//! ```
//! use glib::MainContext;
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use netref::{AsyncResult, Builder, ObjectBuilder, Service};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A peer to talk to (here: a socketpair served by a thread).
//! let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
//! let (conn, peer) = Builder::default().pair(Builder::default().service(Service::object(calc)))?;
//! std::thread::spawn(move || peer.serve_all());
//!
//! let ctx = MainContext::new(); // or MainContext::default() in a GTK program
//! ctx.with_thread_default(|| -> Result<(), Box<dyn std::error::Error>> {
//!     let attached = netref_glib::attach(&conn, &ctx)?;
//!     let root = conn.root()?;
//!
//!     // A callback may capture !Send things (a GTK widget, an Rc): it runs
//!     // on the context's thread.
//!     let label = Rc::new(Cell::new(0i64));
//!     let shown = label.clone();
//!     let answer = netref::async_(&root).call_method("add", (40, 2));
//!     answer.add_callback(netref_glib::local_callback(&ctx, move |r: &AsyncResult| {
//!         shown.set(r.value_as::<i64>().unwrap());
//!     }));
//!     while label.get() == 0 {
//!         ctx.iteration(true);
//!     }
//!     assert_eq!(label.get(), 42);
//!     drop(attached); // destroys the sources, then detaches
//!     Ok(())
//! })??;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use glib::{ControlFlow, IOCondition, MainContext, Priority, Source};
use netref::server::{millis_until, LoopConnections, LoopListener};
use netref::{Connection, Driver, Invoke, LocalObject, LoopHome};

pub use glib::thread_guard::ThreadGuard;

#[derive(Default)]
struct Sources {
    input: Option<Source>,
    output: Option<Source>,
    timer: Option<(Instant, Source)>,
}

struct Inner {
    driver: Driver,
    ctx: MainContext,
    sources: Mutex<Sources>,
    detached: AtomicBool,
}

/// A connection attached to a [`MainContext`] (see [`attach`]). Dropping it
/// (or [`detach`](Self::detach)) destroys its sources and detaches the
/// connection; it also lets go by itself when the connection closes.
pub struct Attached {
    inner: Arc<Inner>,
}

/// Attaches `conn` to `ctx`. Call on the thread that iterates `ctx` (for
/// `MainContext::default()`, the GTK main thread): from then on that thread
/// reads, writes and serves the connection. Fails with `Unsupported` for a
/// connection that has no fd or is already attached.
pub fn attach(conn: &Connection, ctx: &MainContext) -> io::Result<Attached> {
    // The waker needs the `Inner` it is part of: it finds it here. It only
    // queues a timeout that looks `Inner` up on the context's thread:
    // it may run on any thread with the connection's lock held, where the
    // last reference to `Inner` (and the driver in it) must not die.
    let slot: Arc<OnceLock<Weak<Inner>>> = Arc::default();
    let found = slot.clone();
    let wake_ctx = ctx.clone();
    let driver = Driver::attach(conn, move || {
        // A timeout due now: the next iteration, never this call.
        on_timeout(&wake_ctx, Instant::now(), found.get().cloned().unwrap_or_default(), Inner::drive);
    })
    .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    let inner = Arc::new(Inner {
        driver,
        ctx: ctx.clone(),
        sources: Mutex::new(Sources::default()),
        detached: AtomicBool::new(false),
    });
    let _ = slot.set(Arc::downgrade(&inner));
    let input = inner.watch(IOCondition::IN, "netref input");
    inner.lock().input = Some(input);
    // The hello may still be queued, and data may already be buffered.
    inner.drive();
    Ok(Attached { inner })
}

impl Attached {
    /// The connection.
    pub fn connection(&self) -> &Connection {
        self.inner.driver.connection()
    }

    /// True until detached or closed.
    pub fn is_attached(&self) -> bool {
        !self.inner.detached.load(Ordering::Acquire)
    }

    /// Destroys the sources and detaches the connection (any thread may then
    /// serve it). Same as dropping.
    pub fn detach(self) {}
}

impl Drop for Attached {
    fn drop(&mut self) {
        // The driver (and with it the attachment) goes with the last
        // reference to `inner`: here, or when a serving in progress ends.
        self.inner.teardown();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves the connection and re-arms the sources.
    fn drive(self: &Arc<Self>) {
        if self.detached.load(Ordering::Acquire) {
            return;
        }
        let step = self.driver.step();
        if step.closed {
            self.teardown();
            return;
        }
        let mut s = self.lock();
        if self.detached.load(Ordering::Acquire) {
            return;
        }
        if step.wants_write && s.output.is_none() {
            // Destroyed by the drive that finds the output done.
            s.output = Some(self.watch(IOCondition::OUT, "netref output"));
        } else if !step.wants_write {
            s.output.take().into_iter().for_each(|out| out.destroy());
        }
        if s.timer.as_ref().map(|t| t.0) != step.next_deadline {
            s.timer.take().into_iter().for_each(|(_, old)| old.destroy());
            if let Some(at) = step.next_deadline {
                let timer = on_timeout(&self.ctx, at, Arc::downgrade(self), move |inner| {
                    // This source ends on return.
                    inner.lock().timer.take_if(|t| t.0 == at);
                    inner.drive();
                });
                s.timer = Some((at, timer));
            }
        }
    }

    /// A watch on the connection's fd for `condition` (and hang-ups and
    /// errors) that drives it, attached to the context; it ends once the
    /// connection is detached.
    fn watch(self: &Arc<Self>, condition: IOCondition, name: &str) -> Source {
        let condition = condition | IOCondition::HUP | IOCondition::ERR;
        on_fd(&self.ctx, self.driver.as_fd(), condition, name, Arc::downgrade(self), |inner| {
            let live = !inner.detached.load(Ordering::Acquire);
            if live {
                inner.drive();
            }
            live
        })
    }

    fn teardown(&self) {
        if self.detached.swap(true, Ordering::AcqRel) {
            return;
        }
        let s = std::mem::take(&mut *self.lock());
        for source in [s.input, s.output, s.timer.map(|t| t.1)].into_iter().flatten() {
            source.destroy();
        }
    }
}

/// Wraps a one-shot handler that captures `!Send` values (GTK widgets,
/// `Rc`s) so it can be handed to an API that wants a `Send` one:
/// [`AsyncResult::add_callback`](netref::AsyncResult::add_callback),
/// [`Connection::on_close`]. It runs on the thread that made it (the
/// context's thread); called on another thread, it clones its argument and
/// runs on `ctx`'s thread through [`MainContext::invoke`]. Dropped without
/// running, its captures are dropped on the context's thread too.
///
/// ```
/// use glib::MainContext;
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// # fn main() -> netref::Result<()> {
/// let ctx = MainContext::default();
/// # let (conn, _peer) = netref::Builder::default().pair(netref::Builder::default())?;
/// let status: Rc<RefCell<String>> = Rc::default(); // stands in for a label
/// let shown = status.clone();
/// conn.on_close(netref_glib::local_callback(&ctx, move |why: &netref::CloseReason| {
///     *shown.borrow_mut() = format!("disconnected: {why}");
/// }));
/// # Ok(())
/// # }
/// ```
pub fn local_callback<T, F>(ctx: &MainContext, f: F) -> impl FnOnce(&T) + Send + 'static
where
    T: Clone + Send + 'static,
    F: FnOnce(&T) + 'static,
{
    netref::thread_handler(&home(ctx), f)
}

/// Makes an event callback (a [`LocalObject`] the peer calls, like
/// [`netref::callback`]) from a closure that captures `!Send` values: GTK
/// widgets, models, `Rc`s. It runs on the context's thread, which is where
/// an attached connection serves the peer's calls.
///
/// If the connection is served by another thread (not attached to `ctx`),
/// the peer's call fails with a `RuntimeError` naming the mistake rather
/// than touching widgets off their thread. When the peer releases the
/// callback, its captures are dropped on the context's thread.
///
/// ```
/// use glib::MainContext;
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// let ctx = MainContext::default();
/// let seen: Rc<RefCell<Vec<String>>> = Rc::default(); // stands in for a widget
/// let log = seen.clone();
/// let on_change = netref_glib::callback(&ctx, move |path: String| log.borrow_mut().push(path));
/// # let _ = on_change;
/// ```
pub fn callback<Args, F>(ctx: &MainContext, f: F) -> LocalObject
where
    Args: 'static,
    F: Invoke<Args>,
    F::Output: serde::Serialize,
{
    netref::thread_callback_at(&home(ctx), f)
}

/// [`callback`] as a typed [`Callback`](netref::typed::Callback), for a
/// `#[netref::service]` method's callback argument: a closure that may
/// capture widgets, run on `ctx`'s thread.
///
/// ```no_run
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// let ctx = glib::MainContext::default();
/// let log: Rc<RefCell<Vec<u64>>> = Rc::default(); // !Send is fine
/// let l = log.clone();
/// let on_size: netref::typed::Callback<(u64,)> =
///     netref_glib::typed_callback(&ctx, move |size: u64| l.borrow_mut().push(size));
/// # let _ = on_size;
/// ```
pub fn typed_callback<Args, R, F>(ctx: &MainContext, f: F) -> netref::typed::Callback<Args, R>
where
    Args: 'static,
    F: Invoke<Args, Output = R>,
    R: serde::Serialize,
{
    netref::typed::Callback::on_thread_at(&home(ctx), f)
}

/// Where closures pinned to `ctx`'s thread go when released or called on
/// another thread: netref's thread-bound closures, run there by
/// [`MainContext::invoke`].
fn home(ctx: &MainContext) -> LoopHome {
    let ctx = ctx.clone();
    LoopHome::new(move |job| ctx.invoke(job))
}

struct ServerInner {
    listener: LoopListener,
    ctx: OnceLock<MainContext>,
    conns: LoopConnections<Attached>,
    source: Mutex<Option<Source>>,
    closed: AtomicBool,
}

/// Accepts on a listener and serves every accepted connection on the
/// thread that iterates the context it is [attached](Self::attach) to.
/// Cloning gives another handle to the same server; [`close`](Self::close)
/// stops it.
///
/// One thread serves every connection, so a method that waits for its peer
/// (a callback's reply, a nested call) must be asynchronous
/// ([`ObjectBuilder::async_method`](netref::ObjectBuilder::async_method)):
/// the loop serves the other connections while it waits. A synchronous
/// wait from a method fails at once with
/// [`Misuse::BlocksLoopServer`](netref::Misuse::BlocksLoopServer).
///
/// ```no_run
/// use glib::{MainContext, MainLoop};
/// use netref::{Builder, ObjectBuilder, Service};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let server = netref_glib::Server::bind_tcp("127.0.0.1:18861", Builder::default().service(Service::object(calc)))?;
/// let ctx = MainContext::default();
/// server.attach(&ctx)?;
/// MainLoop::new(Some(&ctx), false).run();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<ServerInner>,
}

impl Server {
    netref::listener_constructors!();

    fn from_loop_listener(listener: LoopListener) -> io::Result<Server> {
        let inner = Arc::new(ServerInner {
            listener,
            ctx: OnceLock::new(),
            conns: LoopConnections::new(),
            source: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        Ok(Server { inner })
    }

    fn loop_listener(&self) -> &LoopListener {
        &self.inner.listener
    }

    /// Starts accepting on `ctx`, serving every connection on the thread
    /// that iterates it. Call on that thread, once (`AlreadyExists` after).
    pub fn attach(&self, ctx: &MainContext) -> io::Result<()> {
        self.inner.ctx.set(ctx.clone()).map_err(|_| {
            io::Error::new(io::ErrorKind::AlreadyExists, "this server is already attached to a context")
        })?;
        ServerInner::watch(&self.inner);
        Ok(())
    }

    /// Connections currently served.
    pub fn connection_count(&self) -> usize {
        self.inner.conns.len()
    }

    /// Stops accepting and closes every connection. Call on the context's
    /// thread.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.set_watch(None);
        for c in self.inner.conns.take_all() {
            let conn = c.connection().clone();
            drop(c);
            conn.close();
        }
    }
}

impl ServerInner {
    fn ctx(&self) -> &MainContext {
        self.ctx.get().expect("a watching server is attached")
    }

    fn accept(this: &Arc<ServerInner>) {
        let serve = |conn| {
            ServerInner::serve(this, conn);
            Ok(())
        };
        if let Ok(Some(until)) = this.listener.accept_all(Instant::now(), serve) {
            // The watch is level-triggered: pause it instead of spinning.
            ServerInner::pause(this, until);
        }
    }

    /// Attaches an accepted connection and keeps it until it closes.
    fn serve(this: &Arc<ServerInner>, conn: Connection) {
        let attached = match attach(&conn, this.ctx()) {
            Ok(a) => a,
            Err(e) => return log::warn!("netref-glib server: could not attach a connection: {e}"),
        };
        this.conns.keep(&conn, attached);
    }

    /// Replaces the listener's watch, destroying the one it had.
    fn set_watch(&self, source: Option<Source>) {
        let old = std::mem::replace(&mut *self.source.lock().unwrap_or_else(|e| e.into_inner()), source);
        old.into_iter().for_each(|old| old.destroy());
    }

    /// Watches the listener for clients.
    fn watch(this: &Arc<ServerInner>) {
        let weak = Arc::downgrade(this);
        let source =
            on_fd(this.ctx(), this.listener.as_fd(), IOCondition::IN, "netref listener", weak, |inner| {
                ServerInner::accept(inner);
                true
            });
        this.set_watch(Some(source));
    }

    /// Stops watching the listener until `until`.
    fn pause(this: &Arc<ServerInner>, until: Instant) {
        this.set_watch(None);
        on_timeout(this.ctx(), until, Arc::downgrade(this), |inner| {
            if !inner.closed.load(Ordering::Acquire) {
                ServerInner::watch(inner);
            }
        });
    }
}

/// A watch on `fd` for `condition`, attached to `ctx`: calls `on` with what
/// `weak` points at while it lives and `on` returns true.
fn on_fd<T: Send + Sync + 'static>(
    ctx: &MainContext,
    fd: BorrowedFd<'_>,
    condition: IOCondition,
    name: &str,
    weak: Weak<T>,
    on: impl Fn(&Arc<T>) -> bool + Send + 'static,
) -> Source {
    let on_event = move |_, _| ControlFlow::from(weak.upgrade().is_some_and(|t| on(&t)));
    let source = glib_unix::fd_source_new(fd.as_raw_fd(), condition, Some(name), Priority::DEFAULT, on_event);
    source.attach(Some(ctx));
    source
}

/// A one-shot timeout at `at`, attached to `ctx`: calls `on` with what
/// `weak` points at, if it still lives.
fn on_timeout<T: Send + Sync + 'static>(
    ctx: &MainContext,
    at: Instant,
    weak: Weak<T>,
    on: impl Fn(&Arc<T>) + Send + 'static,
) -> Source {
    let timer =
        glib::timeout_source_new(millis_until(at), Some("netref timeout"), Priority::DEFAULT, move || {
            if let Some(t) = weak.upgrade() {
                on(&t);
            }
            ControlFlow::Break
        });
    timer.attach(Some(ctx));
    timer
}

impl Drop for ServerInner {
    fn drop(&mut self) {
        // The listener closes now: its watch must not outlive it.
        self.set_watch(None);
    }
}

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
