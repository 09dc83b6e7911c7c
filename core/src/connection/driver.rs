//! The driver-facing side of a connection on an event loop.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use super::serve::{self, Serve};
use super::{Connection, State, SERVER_STEP};
use crate::error::{Misuse, Result};

/// The driver-facing side of a connection on an event loop. Backends
/// (netref-mio, netref-polling, netref-calloop, netref-glib) use it;
/// applications use their backend's `attach`.
///
/// # The drive loop
///
/// Every backend is this loop with a different "wait":
///
/// 1. On the loop's thread, [`attach`](Self::attach) the connection, giving
///    a `wake` that makes the loop call [`step`](Self::step) soon. From then
///    on only this thread reads, writes and serves the connection; other
///    threads' calls queue their request and call `wake`.
/// 2. Watch the driver's fd ([`AsFd`]) for readability.
/// 3. Wait on the loop until the fd is ready, `wake` was called, or the
///    last step's [`next_deadline`](Step::next_deadline) passed.
/// 4. Call [`step`](Self::step): it fires the deadlines that passed, reads
///    and serves what arrived, and flushes. A step does a bounded share of
///    work (at most 256 requests and one read of 256 KiB), so one busy peer
///    cannot starve the loop's other sources; a step that leaves work
///    reports a [`next_deadline`](Step::next_deadline) of now, and the loop
///    comes back to it after the others had their turn.
/// 5. Re-arm from the [`Step`] it returned: write interest only while
///    [`wants_write`](Step::wants_write) (a level-triggered loop would spin
///    on an idle write watch), the timer for `next_deadline`. Once
///    [`closed`](Step::closed), stop watching the fd and drop the driver.
///    Otherwise go to 3.
///
/// Dropping the driver detaches the connection: any thread may serve it
/// again. Delete the fd from the loop before that (the driver keeps the
/// connection, and so the fd, open while it lives).
///
/// The backends (netref-mio, -polling, -calloop, -glib) are this loop, each
/// with its loop's wait; a backend keeps a [`LoopConnection`] (the driver
/// and its last step) per attached connection. A server that serves many
/// connections on one loop runs the same loop for each of them, with the
/// bookkeeping of [`server::event_loop`](crate::server::event_loop)
/// (connections by key, their deadlines, the accept backoff, the doorbell).
///
/// ```
/// use std::time::Instant;
/// use rustix::event::{poll, PollFd, PollFlags, Timespec};
/// use netref::{Builder, Driver, ObjectBuilder, Service};
///
/// # fn main() -> netref::Result<()> {
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let (conn, peer) = Builder::default().pair(Builder::default().service(Service::object(calc)))?;
/// std::thread::spawn(move || peer.serve_all());
///
/// // The smallest loop: poll(2) on the driver's fd; no other thread calls,
/// // so `wake` has nothing to do.
/// let driver = Driver::attach(&conn, || {})?;
/// let root = conn.root()?; // a synchronous call on the loop's thread serves itself
/// let answer = netref::async_(&root).call_method("add", (40, 2));
/// let mut step = driver.step();
/// while !answer.ready() && !step.closed {
///     let events = if step.wants_write { PollFlags::IN | PollFlags::OUT } else { PollFlags::IN };
///     let timeout = step.next_deadline.map(|d| d.saturating_duration_since(Instant::now()));
///     let timeout = timeout.map(|t| Timespec::try_from(t).unwrap());
///     let _ = poll(&mut [PollFd::new(&driver, events)], timeout.as_ref()); // EINTR: step anyway
///     step = driver.step();
/// }
/// assert_eq!(answer.value_as::<i64>()?, 42);
/// drop(driver); // detached: any thread may serve `conn` again
/// # Ok(())
/// # }
/// ```
pub struct Driver {
    conn: Connection,
    /// Set when `wake` was called and the loop has not stepped since: the
    /// loop's own wake-up is rung once per step at most.
    rung: Arc<AtomicBool>,
}

/// What the loop must do after a [`Driver::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// Output is queued: watch the fd for writability (and only then).
    pub wants_write: bool,
    /// When the loop must step again even if nothing happens on the fd.
    pub next_deadline: Option<Instant>,
    /// The connection has closed: stop watching its fd and drop the driver.
    pub closed: bool,
}

impl Driver {
    /// Hands `conn` to the calling thread's loop. `wake` may be called from
    /// any thread, with locks held, and must only make the loop call
    /// [`step`](Self::step) soon (ring the loop's doorbell, ping, queue an
    /// idle source); it is called at most once between two steps.
    ///
    /// Fails with [`Error::Misuse`](crate::Error::Misuse) when the transport has no file
    /// descriptor (an in-memory pair) or the connection is already
    /// attached to a loop.
    pub fn attach(conn: &Connection, wake: impl Fn() + Send + Sync + 'static) -> Result<Driver> {
        let shared = &conn.shared;
        if shared.transport.as_fd().is_none() {
            return Err(Misuse::NoFileDescriptor.into());
        }
        let rung = Arc::new(AtomicBool::new(false));
        let flag = rung.clone();
        let wake = move || {
            if !flag.swap(true, Ordering::AcqRel) {
                wake();
            }
        };
        {
            let mut st = shared.lock();
            if st.loop_thread.is_some() {
                return Err(Misuse::AlreadyAttached.into());
            }
            // The waker first: from the moment the loop thread is set, other
            // threads rely on it to reach the loop.
            *shared.loop_waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(wake));
            st.loop_thread = Some(thread::current().id());
        }
        shared.transport.set_loop_driven(true);
        shared.standing_server_started();
        Ok(Driver { conn: conn.clone(), rung })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// One non-blocking step, on the loop's thread: fires the deadlines that
    /// passed, reads and serves what is ready, flushes; then reports what
    /// the loop must do next. Errors of the connection end it and show up
    /// as [`Step::closed`] (with the reason in
    /// [`Connection::close_reason`]).
    pub fn step(&self) -> Step {
        // Cleared first: a wake-up from now on asks for another step.
        self.rung.store(false, Ordering::Release);
        crate::connection::loop_thread::drop_orphans();
        let shared = &self.conn.shared;
        // Serving fires passed deadlines before it reads. One step serves
        // a bounded share, so the loop's other connections get their turn.
        let more = {
            let _server = ServerStep::enter(shared.loop_served.load(Ordering::Relaxed));
            shared.serve_until(&|_| false, None, Serve::Step).unwrap_or(false)
        };
        let mut after = Vec::new();
        {
            let mut st = shared.lock();
            shared.flush_locked(&mut st, &mut after);
        }
        shared.finish(after);
        // Input the transport holds (TLS plaintext) raises no fd event.
        let more = more || shared.transport.has_buffered_input();
        let now = more.then(|| shared.clock.now());
        Step::of(shared, &shared.lock(), now)
    }
}

/// Marks the thread as stepping a connection of an event-loop server, for
/// as long as it lives (restoring what it found, however the step ends).
struct ServerStep(bool);

impl ServerStep {
    fn enter(server: bool) -> ServerStep {
        ServerStep(SERVER_STEP.with(|s| s.replace(server)))
    }
}

impl Drop for ServerStep {
    fn drop(&mut self) {
        // `try_with`: the thread's locals may be going away.
        let _ = SERVER_STEP.try_with(|s| s.set(self.0));
    }
}

/// Fails when this thread is stepping a connection of an event-loop
/// server: a wait for a reply would stop the loop serving the others.
pub(crate) fn check_may_wait() -> Result<()> {
    if SERVER_STEP.with(|s| s.get()) {
        return Err(Misuse::BlocksLoopServer.into());
    }
    Ok(())
}

impl Step {
    /// The step after serving, which left work for the next one at `again`
    /// (`None`: it left none).
    fn of(shared: &super::Shared, st: &State, again: Option<Instant>) -> Step {
        let closed = st.closed.is_some();
        Step {
            wants_write: !closed && shared.wants_write(st),
            next_deadline: if closed { None } else { serve::earliest(again, st.proto.poll_timeout()) },
            closed,
        }
    }
}

/// A [`Driver`] and what its last [`Step`] said: what a backend keeps for
/// a connection it attached to its loop (its `Attached` derefs to one).
///
/// Step it with [`step`](Self::step) whenever the loop says so, then re-arm
/// from the step returned; once a step says [`closed`](Step::closed), or the
/// backend takes the fd off its loop, [`detach`](Self::detach) it.
#[derive(Debug)]
pub struct LoopConnection {
    driver: Driver,
    last: Step,
    attached: bool,
}

impl LoopConnection {
    /// [Attaches](Driver::attach) `conn` to the calling thread's loop, with
    /// the misuse as an `io::Error` of kind `Unsupported`, as a loop's API
    /// reports it: a connection without an fd, or one already attached.
    pub fn attach(
        conn: &Connection,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<LoopConnection> {
        let driver = Driver::attach(conn, wake)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::Unsupported, e))?;
        let last = Step { wants_write: false, next_deadline: None, closed: false };
        Ok(LoopConnection { driver, last, attached: true })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        self.driver.connection()
    }

    /// The driver, whose fd the loop watches.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Steps the driver ([`Driver::step`]) and keeps the step; `None` once
    /// detached (or closed and detached), when there is nothing to serve.
    pub fn step(&mut self) -> Option<Step> {
        if !self.attached {
            return None;
        }
        self.last = self.driver.step();
        Some(self.last)
    }

    /// When the loop must step this connection even if nothing happens on
    /// its fd (as of its last step); `None` once detached.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.last.next_deadline.filter(|_| self.attached)
    }

    /// True when the last step had output queued: watch the fd for
    /// writability (and only then).
    pub fn wants_write(&self) -> bool {
        self.attached && self.last.wants_write
    }

    /// True once [`next_deadline`](Self::next_deadline) has passed.
    pub fn is_due(&self) -> bool {
        self.next_deadline().is_some_and(|d| d <= Instant::now())
    }

    /// True until the connection closed or was detached.
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// Marks the connection as off the loop (it closed, or the backend
    /// detaches it). True the first time only: the caller then takes the fd
    /// out of its loop, once. The connection itself is detached from the
    /// thread when this is dropped.
    pub fn detach(&mut self) -> bool {
        std::mem::replace(&mut self.attached, false)
    }
}

impl AsFd for LoopConnection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.driver.as_fd()
    }
}

impl AsFd for Driver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // The transport lives as long as the connection `self` holds, and
        // closing only shuts the socket down: the fd stays open.
        self.conn.shared.transport.as_fd().expect("attach checked that the transport has an fd")
    }
}

impl Drop for Driver {
    /// Detaches: any thread may serve the connection again.
    fn drop(&mut self) {
        let shared = &self.conn.shared;
        let waker = {
            let mut st = shared.lock();
            st.loop_thread = None;
            shared.loop_waker.lock().unwrap_or_else(|e| e.into_inner()).take()
        };
        shared.transport.set_loop_driven(false);
        // Dropped without the lock: its captures are the backend's.
        drop(waker);
        shared.standing_server_stopped();
        // Threads asleep waiting for the loop to deliver may drive now.
        shared.cond.notify_all();
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("conn", &self.conn).field("fd", &self.as_fd()).finish()
    }
}

impl Connection {
    /// Marks the connection as one of an event-loop server's, whose loop
    /// serves many: its methods may not wait for replies
    /// ([`Misuse::BlocksLoopServer`]).
    pub(crate) fn mark_loop_served(&self) {
        self.shared.loop_served.store(true, Ordering::Relaxed);
    }

    /// Fires every deadline that has passed and flushes (the in-memory
    /// [`Pair`](crate::testing::Pair) advancing its virtual clock).
    pub(crate) fn handle_timeout(&self) {
        let mut after = Vec::new();
        {
            let mut st = self.shared.lock();
            self.shared.timeouts_locked(&mut st, &mut after, self.shared.clock.now());
            self.shared.flush_locked(&mut st, &mut after);
        }
        self.shared.finish(after);
    }
}
