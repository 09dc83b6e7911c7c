//! # netref-glib
//!
//! Runs [`netref`] connections on a GLib [`MainContext`] (the default one a
//! GTK application iterates, or a private one): replies, callbacks, the
//! peer's requests and expiries happen on the context's thread as data
//! arrives, with no extra thread and no polling on a timer. It is the Rust
//! form of PyGTK's `io_add_watch` over an RPyC connection.
//!
//! ```
//! use glib::MainContext;
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use netref::{Builder, ObjectBuilder, Service};
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
//!     answer.add_callback(netref_glib::local_callback(&ctx, move |r| {
//!         shown.set(r.value_as::<i64>().unwrap());
//!     }));
//!     while label.get() == 0 {
//!         ctx.iteration(true);
//!     }
//!     assert_eq!(label.get(), 42);
//!     drop(attached); // destroys the watches, then detaches
//!     Ok(())
//! })??;
//! # Ok(())
//! # }
//! ```
//!
//! How it maps onto GLib: a permanent `IN` watch on the connection's fd; an
//! `OUT` watch that exists only while output is pending (GLib watches are
//! level-triggered, so an idle `OUT` watch would spin); a timeout source for
//! the connection's next deadline; and wake-ups from other threads as idle
//! sources attached to the context. A synchronous call made inside a
//! callback waits on the connection's own fd, without iterating the context.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use glib::{ControlFlow, IOCondition, MainContext, Priority, Source};
use netref::server::ACCEPT_BACKOFF;
use netref::{Accepted, AsyncResult, Builder, Connection, Invoke, Listener, LocalObject, RemoteError};

pub use glib::thread_guard::ThreadGuard;

type OnClose = Box<dyn FnOnce() + Send>;
/// A close handler that may capture widgets: it lives on the context's thread.
type ClosedHandler = OnContext<Box<dyn FnOnce()>>;

#[derive(Default)]
struct Sources {
    input: Option<Source>,
    output: Option<Source>,
    timer: Option<(Instant, Source)>,
}

struct Inner {
    conn: Connection,
    fd: RawFd,
    ctx: MainContext,
    sources: Mutex<Sources>,
    wake_pending: AtomicBool,
    detached: AtomicBool,
    on_close: Mutex<Option<OnClose>>,
    closed_handlers: Mutex<Vec<ClosedHandler>>,
}

/// A connection attached to a [`MainContext`]. Dropping it (or
/// [`detach`](Self::detach)) destroys its watches and detaches the
/// connection; it also lets go by itself when the connection closes.
pub struct GlibConnection {
    inner: Arc<Inner>,
}

/// Attaches `conn` to `ctx`. Call on the thread that iterates `ctx` (for
/// `MainContext::default()`, the GTK main thread): from then on that thread
/// reads, writes and serves the connection.
pub fn attach(conn: &Connection, ctx: &MainContext) -> io::Result<GlibConnection> {
    let fd = conn.raw_fd().ok_or_else(|| {
        io::Error::new(io::ErrorKind::Unsupported, "the connection's transport has no file descriptor")
    })?;
    let inner = Arc::new(Inner {
        conn: conn.clone(),
        fd,
        ctx: ctx.clone(),
        sources: Mutex::new(Sources::default()),
        wake_pending: AtomicBool::new(false),
        detached: AtomicBool::new(false),
        on_close: Mutex::new(None),
        closed_handlers: Mutex::new(Vec::new()),
    });
    let weak = Arc::downgrade(&inner);
    conn.attach(move || {
        if let Some(inner) = weak.upgrade() {
            inner.wake();
        }
    });
    let weak = Arc::downgrade(&inner);
    let input = glib_unix::fd_source_new(
        fd,
        IOCondition::IN | IOCondition::HUP | IOCondition::ERR,
        Some("netref input"),
        Priority::DEFAULT,
        move |_, _| match weak.upgrade() {
            Some(inner) if !inner.detached.load(Ordering::Acquire) => {
                inner.drive();
                ControlFlow::Continue
            }
            _ => ControlFlow::Break,
        },
    );
    input.attach(Some(ctx));
    inner.lock().input = Some(input);
    // The hello may still be queued, and data may already be buffered.
    inner.drive();
    Ok(GlibConnection { inner })
}

impl GlibConnection {
    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// True until detached or closed.
    pub fn is_attached(&self) -> bool {
        !self.inner.detached.load(Ordering::Acquire)
    }

    /// Destroys the watches and detaches the connection (any thread may then
    /// serve it). Same as dropping.
    pub fn detach(self) {}

    /// Runs `f` on the context's thread when the connection closes (the
    /// peer went away, sent garbage, or either side closed it), after the
    /// watches are gone. `f` may capture widgets. Call on the context's
    /// thread; handlers of a connection detached before it closes never run.
    pub fn connect_closed(&self, f: impl FnOnce() + 'static) {
        let handler = OnContext::new(&self.inner.ctx, Box::new(f) as Box<dyn FnOnce()>);
        self.inner.closed_handlers.lock().unwrap_or_else(|e| e.into_inner()).push(handler);
    }

    fn on_close(&self, f: impl FnOnce() + Send + 'static) {
        *self.inner.on_close.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }
}

impl Drop for GlibConnection {
    fn drop(&mut self) {
        self.inner.teardown();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From any thread, possibly with the connection's state lock held: only
    /// queue an idle source on the context.
    fn wake(self: &Arc<Self>) {
        if self.detached.load(Ordering::Acquire) || self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let idle = glib::idle_source_new(Some("netref wake"), Priority::DEFAULT, move || {
            if let Some(inner) = weak.upgrade() {
                inner.wake_pending.store(false, Ordering::Release);
                inner.drive();
            }
            ControlFlow::Break
        });
        idle.attach(Some(&self.ctx));
    }

    /// Reads and serves what arrived, flushes, re-arms the watches.
    fn drive(self: &Arc<Self>) {
        if self.detached.load(Ordering::Acquire) {
            return;
        }
        // Errors of the connection show up as `is_closed`.
        let _ = self.conn.poll_all();
        let _ = self.conn.flush();
        self.rearm();
    }

    fn rearm(self: &Arc<Self>) {
        if self.conn.is_closed() {
            self.teardown();
            let hook = self.on_close.lock().unwrap_or_else(|e| e.into_inner()).take();
            let handlers =
                std::mem::take(&mut *self.closed_handlers.lock().unwrap_or_else(|e| e.into_inner()));
            for handler in handlers {
                if let Some(f) = handler.into_inner() {
                    f();
                }
            }
            if let Some(hook) = hook {
                hook();
            }
            return;
        }
        let want_write = self.conn.wants_write();
        let deadline = self.conn.next_deadline();
        let mut s = self.lock();
        if self.detached.load(Ordering::Acquire) {
            return;
        }
        if want_write && s.output.is_none() {
            let weak = Arc::downgrade(self);
            let out = glib_unix::fd_source_new(
                self.fd,
                IOCondition::OUT | IOCondition::HUP | IOCondition::ERR,
                Some("netref output"),
                Priority::DEFAULT,
                move |_, _| {
                    if let Some(inner) = weak.upgrade() {
                        inner.drive(); // destroys this watch once output is done
                    }
                    ControlFlow::Continue
                },
            );
            out.attach(Some(&self.ctx));
            s.output = Some(out);
        } else if !want_write {
            if let Some(out) = s.output.take() {
                out.destroy();
            }
        }
        if s.timer.as_ref().map(|t| t.0) != deadline {
            if let Some((_, old)) = s.timer.take() {
                old.destroy();
            }
            if let Some(at) = deadline {
                // GLib counts whole milliseconds: round up, never fire early.
                let ms = at.saturating_duration_since(Instant::now()).as_nanos().div_ceil(1_000_000);
                let weak = Arc::downgrade(self);
                let timer = glib::timeout_source_new(
                    Duration::from_millis(ms as u64),
                    Some("netref deadline"),
                    Priority::DEFAULT,
                    move || {
                        if let Some(inner) = weak.upgrade() {
                            {
                                let mut s = inner.lock();
                                if s.timer.as_ref().is_some_and(|t| t.0 == at) {
                                    s.timer = None; // this source ends by returning Break
                                }
                            }
                            inner.conn.handle_timeout();
                            inner.drive();
                        }
                        ControlFlow::Break
                    },
                );
                timer.attach(Some(&self.ctx));
                s.timer = Some((at, timer));
            }
        }
    }

    fn teardown(&self) {
        if self.detached.swap(true, Ordering::AcqRel) {
            return;
        }
        let s = std::mem::take(&mut *self.lock());
        for source in [s.input, s.output, s.timer.map(|t| t.1)].into_iter().flatten() {
            source.destroy();
        }
        self.conn.detach();
    }
}

/// Wraps a callback that captures `!Send` values (GTK widgets, `Rc`s) so it
/// can be passed to [`AsyncResult::add_callback`]. It runs on the thread that
/// made it (the context's thread); if the result is delivered on another
/// thread, the call is sent to `ctx` with [`MainContext::invoke`].
///
/// The captures are held in a [`ThreadGuard`]: a callback that is dropped
/// without running (its result expired) must be dropped on the context's
/// thread, which is where an attached connection expires its results.
pub fn local_callback<F>(ctx: &MainContext, f: F) -> impl FnOnce(&AsyncResult) + Send + 'static
where
    F: FnOnce(&AsyncResult) + 'static,
{
    let guard = ThreadGuard::new(f);
    let ctx = ctx.clone();
    move |res: &AsyncResult| {
        if guard.is_owner() {
            (guard.into_inner())(res)
        } else {
            let res = res.clone();
            ctx.invoke(move || (guard.into_inner())(&res));
        }
    }
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
    netref::callback(LoopCallback { f: OnContext::new(ctx, f), marker: std::marker::PhantomData })
}

/// A closure pinned to a context's thread, callable by the peer.
struct LoopCallback<F: 'static, Args> {
    f: OnContext<F>,
    // `fn() -> Args` keeps the marker Send + Sync whatever `Args` is.
    marker: std::marker::PhantomData<fn() -> Args>,
}

impl<Args: 'static, F: Invoke<Args>> Invoke<Args> for LoopCallback<F, Args> {
    type Output = F::Output;

    fn invoke(&self, args: Vec<netref::Value>) -> Result<F::Output, RemoteError> {
        match self.f.get() {
            Some(f) => f.invoke(args),
            None => Err(RemoteError::new(
                "RuntimeError",
                "a main-thread callback was called from another thread: attach the connection to the \
                 MainContext the callback was made for",
            )),
        }
    }
}

/// A value usable only on the thread of its context, and always dropped
/// there: dropped elsewhere, it is sent to the context to die (a
/// `ThreadGuard` dropped off its thread would panic).
struct OnContext<T: 'static> {
    guard: Option<ThreadGuard<T>>,
    ctx: MainContext,
}

impl<T: 'static> OnContext<T> {
    fn new(ctx: &MainContext, value: T) -> Self {
        OnContext { guard: Some(ThreadGuard::new(value)), ctx: ctx.clone() }
    }

    /// The value, when called on its thread.
    fn get(&self) -> Option<&T> {
        self.guard.as_ref().filter(|g| g.is_owner()).map(|g| g.get_ref())
    }

    /// The value, when called on its thread; elsewhere it is dropped (on
    /// its thread) and `None` returned.
    fn into_inner(mut self) -> Option<T> {
        match self.guard.take() {
            Some(g) if g.is_owner() => Some(g.into_inner()),
            other => {
                self.guard = other;
                None
            }
        }
    }
}

impl<T: 'static> Drop for OnContext<T> {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            if !g.is_owner() {
                self.ctx.invoke(move || drop(g));
            }
        }
    }
}

struct ServerInner {
    listener: Listener,
    builder: Builder,
    ctx: MainContext,
    conns: Mutex<HashMap<u64, GlibConnection>>,
    source: Mutex<Option<Source>>,
    next: AtomicU64,
    closed: AtomicBool,
}

/// Accepts on a listener and serves every accepted connection on the
/// thread that iterates the context. Cloning gives another handle to the
/// same server; [`close`](Self::close) stops it.
///
/// ```no_run
/// use glib::{MainContext, MainLoop};
/// use netref::{Builder, ObjectBuilder, Service};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let listener = std::net::TcpListener::bind("127.0.0.1:18861")?;
/// let ctx = MainContext::default();
/// let _server = netref_glib::Server::tcp(listener, Builder::default().service(Service::object(calc)), &ctx)?;
/// MainLoop::new(Some(&ctx), false).run();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<ServerInner>,
}

impl Server {
    /// Serves a bound TCP listener (made non-blocking here) on `ctx`. Call
    /// on the thread that iterates `ctx`.
    pub fn tcp(listener: TcpListener, builder: Builder, ctx: &MainContext) -> io::Result<Server> {
        Server::from_listener(listener.into(), builder, ctx)
    }

    /// Serves a bound Unix listener (made non-blocking here) on `ctx`.
    pub fn unix(listener: UnixListener, builder: Builder, ctx: &MainContext) -> io::Result<Server> {
        Server::from_listener(listener.into(), builder, ctx)
    }

    /// Serves a bound [`Listener`], TCP or Unix (made non-blocking here), on
    /// `ctx`.
    ///
    /// Fails with `InvalidInput` for a builder whose authentication waits for
    /// the client: see [`Listener::prepare_for_event_loop`].
    pub fn from_listener(listener: Listener, builder: Builder, ctx: &MainContext) -> io::Result<Server> {
        listener.prepare_for_event_loop(&builder)?;
        let inner = Arc::new(ServerInner {
            listener,
            builder,
            ctx: ctx.clone(),
            conns: Mutex::new(HashMap::new()),
            source: Mutex::new(None),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        ServerInner::watch(&inner);
        Ok(Server { inner })
    }

    /// The TCP address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.listener.local_addr()
    }

    /// Connections currently served.
    pub fn connection_count(&self) -> usize {
        self.inner.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops accepting and closes every connection. Call on the context's
    /// thread.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(s) = self.inner.source.lock().unwrap_or_else(|e| e.into_inner()).take() {
            s.destroy();
        }
        let conns = std::mem::take(&mut *self.inner.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, c) in conns {
            let conn = c.connection().clone();
            drop(c);
            conn.close();
        }
    }
}

impl ServerInner {
    fn accept(this: &Arc<ServerInner>) {
        loop {
            let conn = match this.listener.accept_connection(&this.builder) {
                Accepted::Connection(c) => c,
                // That client's failure, logged by netref: the next one now.
                Accepted::Rejected(_) => continue,
                Accepted::WouldBlock => return,
                Accepted::Failed(e) => {
                    // Typically out of file descriptors. The watch is
                    // level-triggered: pause it briefly instead of spinning.
                    log::warn!("netref-glib server: accept failed ({e}); retrying in {ACCEPT_BACKOFF:?}");
                    ServerInner::pause(this);
                    return;
                }
            };
            let attached = match attach(&conn, &this.ctx) {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("netref-glib server: could not attach a connection: {e}");
                    continue;
                }
            };
            let key = this.next.fetch_add(1, Ordering::Relaxed);
            let weak: Weak<ServerInner> = Arc::downgrade(this);
            attached.on_close(move || {
                if let Some(s) = weak.upgrade() {
                    let gone = s.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                    drop(gone);
                }
            });
            if attached.is_attached() {
                this.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(key, attached);
            }
        }
    }

    /// Watches the listener for clients.
    fn watch(this: &Arc<ServerInner>) {
        let fd = this.listener.as_raw_fd();
        let weak = Arc::downgrade(this);
        let source = glib_unix::fd_source_new(
            fd,
            IOCondition::IN,
            Some("netref listener"),
            Priority::DEFAULT,
            move |_, _| match weak.upgrade() {
                Some(inner) => {
                    ServerInner::accept(&inner);
                    ControlFlow::Continue
                }
                None => ControlFlow::Break,
            },
        );
        source.attach(Some(&this.ctx));
        if let Some(old) = this.source.lock().unwrap_or_else(|e| e.into_inner()).replace(source) {
            old.destroy();
        }
    }

    /// Stops watching the listener for a moment.
    fn pause(this: &Arc<ServerInner>) {
        if let Some(source) = this.source.lock().unwrap_or_else(|e| e.into_inner()).take() {
            source.destroy();
        }
        let weak = Arc::downgrade(this);
        let retry = glib::timeout_source_new(ACCEPT_BACKOFF, None, Priority::DEFAULT, move || {
            if let Some(inner) = weak.upgrade() {
                if !inner.closed.load(Ordering::Acquire) {
                    ServerInner::watch(&inner);
                }
            }
            ControlFlow::Break
        });
        retry.attach(Some(&this.ctx));
    }
}
