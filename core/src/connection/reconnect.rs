//! [`Reconnecting`]: a client connection that dials again when it is lost.
//!
//! One supervising thread owns the dialling: it notices a loss (the
//! connection's close hook), tells the user (`on_lost`), waits a bounded
//! exponential backoff with jitter, dials, fetches the new root and tells
//! the user again (`on_back`). Every user hook runs on that thread, never
//! inside the connection's own close.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::bg_thread::BgServingThread;
use super::Connection;
use crate::error::{CloseReason, Error, Result};
use crate::value::remote::RemoteObject;

type Dial = Box<dyn Fn() -> Result<Connection> + Send + Sync>;
type LostHook = Box<dyn Fn(&CloseReason) + Send + Sync>;
type BackHook = Box<dyn Fn(&Connection) + Send + Sync>;

/// Where a [`Reconnecting`] link is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LinkState {
    /// Connected.
    Up,
    /// Lost, for `reason`; `attempts` dials have failed since.
    Down {
        /// Why the last connection ended.
        reason: CloseReason,
        /// Dials that failed since.
        attempts: u32,
    },
    /// [`close`](Reconnecting::close)d: no more dialling.
    Closed,
}

enum Link {
    Up { conn: Connection, root: std::result::Result<RemoteObject, Error>, serving: Option<BgServingThread> },
    Down { reason: CloseReason, attempts: u32, lost_told: bool },
    Closed,
}

struct Inner {
    dial: Dial,
    link: Mutex<Link>,
    cond: Condvar,
    min: Duration,
    max: Duration,
    serve: bool,
    on_lost: Vec<LostHook>,
    on_back: Vec<BackHook>,
    /// Counts connections made, so that the close hook of an old one
    /// cannot mark a newer one lost.
    generation: AtomicU64,
}

/// How a [`Reconnecting`] link dials and tells: see
/// [`Reconnecting::builder`].
pub struct ReconnectBuilder {
    dial: Dial,
    min: Duration,
    max: Duration,
    serve: bool,
    on_lost: Vec<LostHook>,
    on_back: Vec<BackHook>,
}

impl ReconnectBuilder {
    /// The first and the longest wait between dials (default 100 ms and
    /// 10 s): each failed dial doubles the wait up to `max`, and each wait
    /// is drawn between half of it and all of it, so that many clients of
    /// one restarted server do not dial in step.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min = min.max(Duration::from_millis(1));
        self.max = max.max(self.min);
        self
    }

    /// Whether each connection is served by a [`BgServingThread`] of the
    /// link's (default: yes), which also notices a loss at once. Without
    /// one, serve the connection yourself (attach it to your loop in
    /// [`on_back`](Self::on_back)); a loss is then noticed when something
    /// reads it.
    pub fn serve_in_background(mut self, serve: bool) -> Self {
        self.serve = serve;
        self
    }

    /// Runs `f` with the reason each time the connection is lost.
    pub fn on_lost(mut self, f: impl Fn(&CloseReason) + Send + Sync + 'static) -> Self {
        self.on_lost.push(Box::new(f));
        self
    }

    /// Runs `f` with the new connection each time it is back (not for the
    /// first one, which [`start`](Self::start) returns with).
    pub fn on_back(mut self, f: impl Fn(&Connection) + Send + Sync + 'static) -> Self {
        self.on_back.push(Box::new(f));
        self
    }

    /// Dials the first connection (its error is returned: nothing is
    /// retried until a connection has been made once) and starts the
    /// supervising thread.
    pub fn start(self) -> Result<Reconnecting> {
        let first = (self.dial)()?;
        let inner = Arc::new(Inner {
            dial: self.dial,
            // Until `up` below: never seen by anyone.
            link: Mutex::new(Link::Down { reason: CloseReason::ByThisSide, attempts: 0, lost_told: true }),
            cond: Condvar::new(),
            min: self.min,
            max: self.max,
            serve: self.serve,
            on_lost: self.on_lost,
            on_back: self.on_back,
            generation: AtomicU64::new(0),
        });
        inner.up(first);
        let supervisor = inner.clone();
        thread::Builder::new()
            .name("netref-reconnect".into())
            .spawn(move || supervisor.supervise())
            .expect("spawning a thread");
        Ok(Reconnecting { inner })
    }
}

/// A client connection that dials again when it is lost, with bounded
/// exponential backoff and jitter, and fetches the new root.
///
/// Proxies belong to the connection they came from: once it is lost they
/// are dead (their calls fail with [`Error::Closed`]), and the new
/// connection's objects are reached from [`root`](Self::root) again. While
/// the link is down, [`root`](Self::root) and
/// [`connection`](Self::connection) fail at once with the reason the last
/// connection ended.
///
/// ```no_run
/// use std::time::Duration;
///
/// let link = netref::Reconnecting::builder(|| netref::connect("127.0.0.1:18861"))
///     .backoff(Duration::from_millis(100), Duration::from_secs(5))
///     .on_lost(|why| eprintln!("lost: {why}"))
///     .on_back(|_| eprintln!("back"))
///     .start()?;
/// let sum: i64 = link.root()?.call_method("add", (1, 2))?;
/// # let _ = sum;
/// # Ok::<(), netref::Error>(())
/// ```
pub struct Reconnecting {
    inner: Arc<Inner>,
}

impl Reconnecting {
    /// A link whose connections `dial` makes.
    pub fn builder(dial: impl Fn() -> Result<Connection> + Send + Sync + 'static) -> ReconnectBuilder {
        ReconnectBuilder {
            dial: Box::new(dial),
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
            serve: true,
            on_lost: Vec::new(),
            on_back: Vec::new(),
        }
    }

    /// The current connection's root object.
    pub fn root(&self) -> Result<RemoteObject> {
        match &*self.inner.lock() {
            Link::Up { root, .. } => root.clone(),
            other => Err(down(other)),
        }
    }

    /// The current connection.
    pub fn connection(&self) -> Result<Connection> {
        match &*self.inner.lock() {
            Link::Up { conn, .. } => Ok(conn.clone()),
            other => Err(down(other)),
        }
    }

    /// Where the link is.
    pub fn state(&self) -> LinkState {
        match &*self.inner.lock() {
            Link::Up { .. } => LinkState::Up,
            Link::Down { reason, attempts, .. } => {
                LinkState::Down { reason: reason.clone(), attempts: *attempts }
            }
            Link::Closed => LinkState::Closed,
        }
    }

    /// Closes the current connection and stops dialling.
    pub fn close(&self) {
        let old = std::mem::replace(&mut *self.inner.lock(), Link::Closed);
        self.inner.cond.notify_all();
        if let Link::Up { conn, serving, .. } = old {
            conn.close();
            drop(serving);
        }
    }
}

impl Drop for Reconnecting {
    fn drop(&mut self) {
        self.close();
    }
}

/// The error of a call made while the link is not up.
fn down(link: &Link) -> Error {
    match link {
        Link::Down { reason, .. } => Error::Closed(reason.clone()),
        _ => Error::Closed(CloseReason::ByThisSide),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `conn` the link's connection, watched for its loss.
    fn up(self: &Arc<Self>, conn: Connection) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let root = conn.root();
        let serving = self.serve.then(|| BgServingThread::new(&conn));
        {
            let mut link = self.lock();
            if matches!(*link, Link::Closed) {
                // Closed while dialling: this connection is not wanted.
                drop(link);
                conn.close();
                return;
            }
            *link = Link::Up { conn: conn.clone(), root, serving };
        }
        let me = Arc::downgrade(self);
        conn.on_close(move |reason| {
            let Some(me) = me.upgrade() else { return };
            if me.generation.load(Ordering::Acquire) != generation {
                return;
            }
            let mut link = me.lock();
            if matches!(*link, Link::Up { .. }) {
                // The serving thread and the connection are dropped by the
                // supervisor, not here: this may run on that very thread.
                let old = std::mem::replace(
                    &mut *link,
                    Link::Down { reason: reason.clone(), attempts: 0, lost_told: false },
                );
                me.cond.notify_all();
                drop(link);
                me.retire(old);
            }
        });
    }

    /// Lets an old connection's serving thread end on a thread of its own
    /// (it may be the thread that runs this, inside the close).
    fn retire(&self, old: Link) {
        if let Link::Up { serving: Some(serving), .. } = old {
            thread::spawn(move || drop(serving));
        }
    }

    /// The supervising thread: waits for a loss, tells, backs off, dials.
    fn supervise(self: Arc<Self>) {
        let mut wait = self.min;
        loop {
            let mut link = self.lock();
            loop {
                match &mut *link {
                    Link::Closed => return,
                    Link::Down { .. } => break,
                    Link::Up { .. } => {
                        wait = self.min;
                        link = self.cond.wait(link).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
            let Link::Down { reason, lost_told, .. } = &mut *link else { unreachable!("checked") };
            let tell = !std::mem::replace(lost_told, true);
            let reason = reason.clone();
            drop(link);
            if tell {
                log::info!("netref: connection lost ({reason}); dialling again");
                self.on_lost.iter().for_each(|f| f(&reason));
            }
            // A wait drawn between half of it and all of it, interrupted
            // only by a close.
            let pause = jittered(wait);
            let link = self.lock();
            let (link, _) = self
                .cond
                .wait_timeout_while(link, pause, |l| !matches!(l, Link::Closed))
                .unwrap_or_else(|e| e.into_inner());
            if matches!(*link, Link::Closed) {
                return;
            }
            drop(link);
            match (self.dial)() {
                Ok(conn) => {
                    self.up(conn.clone());
                    if matches!(*self.lock(), Link::Up { .. }) {
                        log::info!("netref: connection back");
                        self.on_back.iter().for_each(|f| f(&conn));
                    }
                }
                Err(e) => {
                    log::debug!("netref: dialling again failed: {e}");
                    if let Link::Down { attempts, .. } = &mut *self.lock() {
                        *attempts += 1;
                    }
                    wait = (wait * 2).min(self.max);
                }
            }
        }
    }
}

/// `wait` scaled by a random factor in [1/2, 1) (the OS's random source;
/// the whole wait if it fails).
fn jittered(wait: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => {
            let fraction = f64::from(u32::from_ne_bytes(bytes)) / f64::from(u32::MAX);
            wait.mul_f64(0.5 + fraction / 2.0)
        }
        Err(_) => wait,
    }
}
