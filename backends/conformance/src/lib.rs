//! One conformance suite for netref's event-loop backends, written once and
//! run against every backend (unpublished test support).
//!
//! A backend's `tests/conformance.rs` implements [`Backend`] (how to make a
//! loop, attach a connection, turn the loop once, wake it from another
//! thread, and run the backend's server on a thread of its own), then
//! expands [`conformance_tests!`] to get one `#[test]` per check:
//!
//! ```ignore
//! struct Mio;
//! impl netref_conformance::Backend for Mio { /* ... */ }
//! netref_conformance::conformance_tests!(Mio);
//! ```
//!
//! Every test drives a real loop on the test's own thread against a real
//! peer over real sockets, and synchronises through the loop itself (flags
//! set by callbacks, channels), never through sleeps. The loop is always
//! turned with long waits, so anything that happens on time (an expiry)
//! happened because the backend armed its loop's timer.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use netref::{
    AsyncResult, AuthError, Builder, Config, Connection, Error, LocalObject, Misuse, ObjectBuilder,
    RemoteObject, Service, ThreadedServer,
};

/// How long any one wait in the suite may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// One event loop under test, owned and turned by the test's thread.
pub trait TestLoop {
    /// Attaches `conn` to this loop (on this, the loop's, thread); returns a
    /// key naming the attachment.
    fn attach(&mut self, conn: &Connection) -> usize;
    /// True while the backend still holds attachment `key`: false after
    /// [`detach`](Self::detach), and once the backend let go of a connection
    /// that closed.
    fn is_attached(&self, key: usize) -> bool;
    /// Detaches attachment `key`, deregistering its fd from the loop.
    fn detach(&mut self, key: usize);
    /// Runs one iteration of the loop, sleeping at most `max_wait` when
    /// nothing is ready. The backend's own timer decides when it wakes for
    /// deadlines.
    fn turn(&mut self, max_wait: Duration);
    /// A thread-safe function that wakes the loop (a `turn` in progress
    /// returns soon), using the loop's own primitive.
    fn notifier(&self) -> Arc<dyn Fn() + Send + Sync>;
    /// Runs `fut` with the loop's own executor (glib's `spawn_local`,
    /// calloop's executor), which polls it in the loop's turns. A backend
    /// whose loop has none gives the future back, and the suite polls it
    /// between turns, woken as any executor would be.
    fn spawn_local(&mut self, fut: LocalFuture) -> Result<(), LocalFuture> {
        Err(fut)
    }
}

/// A future for [`TestLoop::spawn_local`].
pub type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

/// A backend's server running on a thread of its own.
pub trait RunningServer: Send {
    /// Connections currently served.
    fn connection_count(&self) -> usize;
    /// Stops the server and joins its thread.
    fn stop(self: Box<Self>);
}

/// What the suite needs from a backend.
pub trait Backend {
    /// The loop type under test.
    type Loop: TestLoop;
    /// A new loop, owned by the calling thread.
    fn new_loop() -> Self::Loop;
    /// Runs the backend's server on `listener` in a new thread, which is the
    /// server loop's thread: every accepted connection is served there.
    fn spawn_server(listener: TcpListener, builder: Builder) -> Box<dyn RunningServer>;
    /// Only makes the backend's server on `listener` (and drops it): what
    /// its constructor says about `builder`.
    fn make_server(listener: TcpListener, builder: Builder) -> io::Result<()>;
    /// Runs one test on the calling thread; a backend may set the thread up
    /// first (glib: a private thread-default `MainContext`, so that tests
    /// run in parallel).
    fn run_test(test: &dyn Fn()) {
        test()
    }
}

/// Expands to one `#[test]` per conformance check for `$backend`.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ty) => {
        $crate::conformance_tests!(@each $backend;
            async_calls_and_callbacks_run_on_the_loop,
            one_server_thread_serves_a_thousand_connections,
            big_payload_does_not_stall_other_connections,
            expiry_fires_on_time_with_nobody_polling,
            server_fires_expiries_set_while_serving_another_connection,
            call_from_another_thread,
            sync_call_inside_a_loop_callback,
            peer_disconnect_ends_only_that_connection,
            garbage_input_ends_only_that_connection,
            server_survives_garbage_and_disconnects,
            hello_and_eof_in_one_read_close_the_connection,
            silent_and_stalled_peers_are_disconnected,
            detach_deregisters_cleanly,
            detaching_fails_waiting_futures_as_unserved,
            no_request_stranded_after_a_sync_call_on_the_loop_thread,
            idle_loop_sleeps,
            soak_many_clients_mixed_calls,
            instant_authenticator_on_the_backend_server,
            blocking_authentication_is_refused_by_the_server,
            refused_clients_never_pause_accepting,
            batched_events_and_replies_on_the_loop,
            batched_calls_and_replies_on_the_backend_server,
            a_method_waiting_on_its_client_never_blocks_the_loop_server,
            typed_proxy_awaited_on_the_loop,
            typed_service_on_the_backend_server,
            typed_events_received_on_the_loop,
            typed_events_from_the_backend_server,
            python_filemon_events_on_the_loop,
            python_client_of_the_backend_server,
            subprocess_on_the_loop,
            subprocess_worker,
            pipes_on_the_loop,
            reconnect_on_the_loop,
            tls_server_on_the_loop,
            tls_client_on_the_loop,
        );
    };
    (@each $backend:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                <$backend as $crate::Backend>::run_test(&|| $crate::$name::<$backend>())
            }
        )*
    };
}

// ---- helpers -------------------------------------------------------------------

/// Runs `fut` on `lp` until it completes: with the loop's executor when
/// it has one, otherwise polled here between turns whenever woken.
pub fn run_future<L: TestLoop>(lp: &mut L, what: &str, fut: impl Future<Output = ()> + 'static) {
    let done = Flag::default();
    let d = done.clone();
    let fut: LocalFuture = Box::pin(async move {
        fut.await;
        d.set();
    });
    match lp.spawn_local(fut) {
        Ok(()) => run_until(lp, what, |_| done.get()),
        Err(mut fut) => {
            let woken = Flag::default();
            let waker = Waker::from(Arc::new(woken.clone()));
            let give_up = Instant::now() + PATIENCE;
            while fut.as_mut().poll(&mut Context::from_waker(&waker)).is_pending() {
                while !woken.get() {
                    let now = Instant::now();
                    assert!(now < give_up, "timed out waiting for {what}");
                    lp.turn(give_up - now);
                }
                woken.0.store(false, Ordering::Release);
            }
        }
    }
}

/// Turns `lp` until `done` holds; panics after [`PATIENCE`].
pub fn run_until<L: TestLoop>(lp: &mut L, what: &str, mut done: impl FnMut(&L) -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !done(lp) {
        let now = Instant::now();
        assert!(now < give_up, "timed out waiting for {what}");
        lp.turn(give_up - now);
    }
}

/// A flag set from any thread.
#[derive(Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    /// Sets the flag.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// True once set.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.set();
    }
}

/// A callback `x -> 10 x` that records the thread it ran on: for checks
/// that a peer's call of it ran on the loop's thread.
pub fn tenfold_recording_its_thread() -> (LocalObject, Cell<ThreadId>) {
    let called_on: Cell<ThreadId> = Cell::default();
    let c = called_on.clone();
    let tenfold = netref::callback(move |x: i64| {
        c.put(thread::current().id());
        x * 10
    });
    (tenfold, called_on)
}

/// Attaches `conn` to `lp` and checks it there: the peer's
/// `call_me(callback, 4)` calls our callback while it serves our call, on
/// the loop's thread, and answers `expected`; `echo` sends a megabyte back
/// (more than a socket or a pipe takes at once, so writes wait for the
/// loop to see the fd writable). Returns the attachment's key.
pub fn callback_and_megabyte_on_the_loop<L: TestLoop>(lp: &mut L, conn: &Connection, expected: i64) -> usize {
    let key = lp.attach(conn);
    let root = conn.root().unwrap();
    let (tenfold, called_on) = tenfold_recording_its_thread();
    let back = netref::async_(&root).call_method("call_me", (tenfold, 4));
    let big = megabyte();
    let echo = netref::async_(&root).call_method("echo", (big.clone(),));
    run_until(lp, "the replies", |_| back.ready() && echo.ready());
    assert_eq!(back.value_as::<i64>().unwrap(), expected);
    assert_eq!(called_on.get(), Some(thread::current().id()), "the peer's call ran on the loop's thread");
    assert_eq!(echo.value_as::<netref::Value>().unwrap(), big);
    key
}

/// A megabyte of bytes: more than a socket or a pipe takes at once.
pub fn megabyte() -> netref::Value {
    netref::Value::Bytes((0..1 << 20).map(|i| (i % 251) as u8).collect())
}

/// A value filled in once, from any thread.
pub struct Cell<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Cell<T> {
    fn clone(&self) -> Self {
        Cell(self.0.clone())
    }
}

impl<T> Default for Cell<T> {
    fn default() -> Self {
        Cell(Arc::new(Mutex::new(None)))
    }
}

impl<T: Clone> Cell<T> {
    /// Stores `v`.
    pub fn put(&self, v: T) {
        *self.0.lock().unwrap() = Some(v);
    }
    /// The stored value, if any.
    pub fn get(&self) -> Option<T> {
        self.0.lock().unwrap().clone()
    }
    /// True once a value is stored.
    pub fn is_set(&self) -> bool {
        self.0.lock().unwrap().is_some()
    }
}

/// Polls `res` as a future once, with a waker that sets the returned flag.
fn poll_with_flag(res: &AsyncResult) -> (Poll<netref::Result<netref::Value>>, Flag) {
    let flag = Flag::default();
    let waker = Waker::from(Arc::new(flag.clone()));
    let mut fut = res.clone();
    (Pin::new(&mut fut).poll(&mut Context::from_waker(&waker)), flag)
}

fn poll_once(res: &AsyncResult) -> Poll<netref::Result<netref::Value>> {
    let mut fut = res.clone();
    Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop()))
}

use std::future::Future;

/// Raises the soft limit on open files to at least `want` (up to the hard
/// limit), for tests that open many sockets.
pub fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // `None` is unlimited.
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_none_or(|cur| cur >= want) {
        return;
    }
    let current = Some(lim.maximum.map_or(want, |max| want.min(max)));
    let _ = setrlimit(Resource::Nofile, Rlimit { current, ..lim });
}

/// The peer side used by the suite: a service with arithmetic, a callback
/// caller, a gate that holds a serving thread, and a request counter.
#[derive(Clone)]
pub struct Peer {
    gate_tx: Arc<Mutex<mpsc::Sender<()>>>,
    gate_rx: Arc<Mutex<mpsc::Receiver<()>>>,
    entered_tx: Arc<Mutex<mpsc::Sender<()>>>,
    entered_rx: Arc<Mutex<mpsc::Receiver<()>>>,
    recorded: Arc<AtomicUsize>,
    threads: Arc<Mutex<HashSet<ThreadId>>>,
}

impl Default for Peer {
    fn default() -> Self {
        Self::new()
    }
}

impl Peer {
    /// A new peer state.
    pub fn new() -> Peer {
        let (gate_tx, gate_rx) = mpsc::channel();
        let (entered_tx, entered_rx) = mpsc::channel();
        Peer {
            gate_tx: Arc::new(Mutex::new(gate_tx)),
            gate_rx: Arc::new(Mutex::new(gate_rx)),
            entered_tx: Arc::new(Mutex::new(entered_tx)),
            entered_rx: Arc::new(Mutex::new(entered_rx)),
            recorded: Arc::new(AtomicUsize::new(0)),
            threads: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The root object.
    pub fn root(&self) -> LocalObject {
        let gate = self.gate_rx.clone();
        let entered = self.entered_tx.clone();
        let recorded = self.recorded.clone();
        let recorded2 = self.recorded.clone();
        let threads = self.threads.clone();
        ObjectBuilder::new("Peer")
            .method("add", move |a: i64, b: i64| {
                threads.lock().unwrap().insert(thread::current().id());
                a + b
            })
            .try_method("call_me", |cb: RemoteObject, x: i64| cb.call::<i64>((x,)))
            .method("len", |s: String| s.len())
            .method("poke_then_return", |cb: RemoteObject| {
                // The request to `cb` leaves just before this call's reply.
                drop(netref::async_(&cb).call((1,)));
                7
            })
            .method("block", move || {
                let _ = entered.lock().unwrap().send(());
                gate.lock().unwrap().recv_timeout(PATIENCE).is_ok()
            })
            .async_method("emit", |cb: RemoteObject, n: i64| {
                // A bulk sender: all of its calls leave in a few writes
                // (the batch's end writes what it held). Asynchronous, so
                // that a loop server serves its other connections while
                // the replies come.
                let pending: Vec<AsyncResult<i64>> =
                    netref::batch(|| (0..n).map(|i| netref::async_(&cb).call((i,)).typed()).collect());
                async move {
                    let mut total = 0;
                    for r in pending {
                        total += r.await?;
                    }
                    Ok::<_, Error>(total)
                }
            })
            .method("record", move || recorded.fetch_add(1, Ordering::AcqRel) + 1)
            .method("recorded", move || recorded2.load(Ordering::Acquire))
            .build()
    }

    /// A builder serving this peer's root.
    pub fn builder(&self) -> Builder {
        Builder::default().service(Service::object(self.root()))
    }

    /// Waits until a `block` call has started on the peer.
    pub fn wait_blocked(&self) {
        self.entered_rx.lock().unwrap().recv_timeout(PATIENCE).expect("the peer entered block()");
    }

    /// Lets one `block` call return.
    pub fn release(&self) {
        let _ = self.gate_tx.lock().unwrap().send(());
    }
}

/// A core `ThreadedServer` serving a [`Peer`] over TCP, closed on drop.
pub struct PeerServer {
    /// The peer's state.
    pub peer: Peer,
    server: ThreadedServer,
    addr: SocketAddr,
    thread: Option<thread::JoinHandle<()>>,
}

impl PeerServer {
    /// Starts one on an ephemeral port.
    pub fn start() -> PeerServer {
        let peer = Peer::new();
        let server = ThreadedServer::bind_tcp("127.0.0.1:0", peer.builder()).expect("bind");
        let addr = server.local_addr().expect("tcp address");
        let thread = Some(server.spawn());
        PeerServer { peer, server, addr, thread }
    }

    /// A new client connection to it.
    pub fn connect(&self) -> Connection {
        self.connect_with(Builder::default())
    }

    /// A new client connection to it, made by `builder`.
    pub fn connect_with(&self, builder: Builder) -> Connection {
        builder.connect_tcp(self.addr).expect("connect")
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        // Let any blocked call finish so the serving threads can end.
        for _ in 0..4 {
            self.peer.release();
        }
        self.server.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- the checks ------------------------------------------------------------------

/// Async calls complete, their callbacks run, futures are woken and the
/// peer's calls into our callbacks are served, all on the loop's thread as
/// data arrives.
pub fn async_calls_and_callbacks_run_on_the_loop<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect();
    let key = lp.attach(&conn);
    assert!(lp.is_attached(key));
    let root = conn.root().expect("root");
    let me = thread::current().id();

    let sum: Cell<(i64, ThreadId)> = Cell::default();
    let res = netref::async_(&root).call_method("add", (2, 3));
    let s = sum.clone();
    res.add_callback(move |r| s.put((r.value_as::<i64>().unwrap(), thread::current().id())));

    let fut = netref::async_(&root).call_method("add", (40, 2));
    let (first, woken) = poll_with_flag(&fut);
    assert!(first.is_pending(), "nobody has read the reply yet");

    let called_on: Cell<ThreadId> = Cell::default();
    let c = called_on.clone();
    let cb = netref::callback(move |x: i64| {
        c.put(thread::current().id());
        x * 10
    });
    let back = netref::async_(&root).call_method("call_me", (cb, 7));
    let back_value: Cell<i64> = Cell::default();
    let b = back_value.clone();
    back.add_callback(move |r| b.put(r.value_as::<i64>().unwrap()));

    run_until(&mut lp, "replies and callbacks", |_| sum.is_set() && woken.get() && back_value.is_set());
    assert_eq!(sum.get(), Some((5, me)), "the callback ran on the loop's thread");
    assert_eq!(called_on.get(), Some(me), "the peer's call ran on the loop's thread");
    assert_eq!(back_value.get(), Some(70));
    match poll_once(&fut) {
        Poll::Ready(Ok(v)) => assert_eq!(netref::from_value::<i64>(v).unwrap(), 42),
        other => panic!("the future should be ready, got {other:?}"),
    }
    lp.detach(key);
    assert!(!lp.is_attached(key));
}

/// One backend server thread accepts and serves a thousand connections.
pub fn one_server_thread_serves_a_thousand_connections<B: Backend>() {
    const N: usize = 1000;
    raise_fd_limit(8 * N as u64 + 256);
    let peer = Peer::new();
    let (tx, rx) = mpsc::channel::<()>();
    let tx = Mutex::new(tx);
    let service = Service::object(peer.root()).on_disconnect(move |_| {
        let _ = tx.lock().unwrap().send(());
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, Builder::default().service(service));

    let mut clients = Vec::with_capacity(N);
    let mut roots = Vec::with_capacity(N);
    for _ in 0..N {
        let c = Builder::default().connect_tcp(addr).expect("connect");
        roots.push(c.root().expect("root"));
        clients.push(c);
    }
    let results: Vec<AsyncResult> =
        roots.iter().enumerate().map(|(i, r)| netref::async_(r).call_method("add", (i, 1))).collect();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.value_as::<usize>().unwrap(), i + 1);
    }
    assert_eq!(server.connection_count(), N);
    let threads = peer.threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 1, "every connection was served by one thread");
    assert!(!threads.contains(&thread::current().id()));

    drop(results);
    drop(roots);
    for c in clients.drain(..) {
        c.close();
    }
    for i in 0..N {
        rx.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("the server noticed only {i} disconnects"));
    }
    server.stop();
}

/// A 64 MiB call sent from inside a loop callback does not block the loop:
/// small calls on another connection keep completing while it is pending.
pub fn big_payload_does_not_stall_other_connections<B: Backend>() {
    const BIG: usize = 64 << 20;
    const SMALL: usize = 100;
    let config = Config::default().max_frame_len(96 << 20);
    let peer = Peer::new();
    let (a, a_peer) =
        Builder::default().config(config.clone()).pair(peer.builder().config(config.clone())).expect("pair");
    let a_thread = thread::spawn(move || {
        let _ = a_peer.serve_all();
    });
    let server = PeerServer::start();
    let b = server.connect();

    let mut lp = B::new_loop();
    let ka = lp.attach(&a);
    let kb = lp.attach(&b);
    let a_root = a.root().unwrap();
    let b_root = b.root().unwrap();

    // Hold A's peer inside a call so it stops reading: A's 64 MiB cannot
    // leave until B has made progress.
    let gate = netref::async_(&a_root).call_method("block", ());
    peer.wait_blocked();

    let done_small = Arc::new(AtomicUsize::new(0));
    let big_len: Cell<usize> = Cell::default();
    let pending_when_released = Flag::default();
    let ctx = Arc::new(Chain {
        b_root: b_root.clone(),
        a_root: a_root.clone(),
        a: a.clone(),
        count: done_small.clone(),
        big_len: big_len.clone(),
        peer: peer.clone(),
        pending_when_released: pending_when_released.clone(),
    });
    Chain::next(ctx);

    run_until(&mut lp, "the big call and the small calls", |_| {
        big_len.is_set() && done_small.load(Ordering::Acquire) >= SMALL
    });
    assert_eq!(big_len.get(), Some(BIG));
    assert!(pending_when_released.get(), "A still had output queued while B completed its calls");
    assert!(gate.value_as::<bool>().unwrap());
    assert_eq!(a.pending_output_len(), 0, "A's output all left");

    struct Chain {
        b_root: RemoteObject,
        a_root: RemoteObject,
        a: Connection,
        count: Arc<AtomicUsize>,
        big_len: Cell<usize>,
        peer: Peer,
        pending_when_released: Flag,
    }
    impl Chain {
        fn next(this: Arc<Chain>) {
            let r = netref::async_(&this.b_root).call_method("add", (1, 1));
            r.add_callback(move |r| {
                assert_eq!(r.value_as::<i64>().unwrap(), 2);
                let n = this.count.fetch_add(1, Ordering::AcqRel) + 1;
                if n == 1 {
                    // From inside a loop callback: queue 64 MiB on A.
                    let big = "x".repeat(BIG);
                    let res = netref::async_(&this.a_root).call_method("len", (big,));
                    let out = this.big_len.clone();
                    res.add_callback(move |r| out.put(r.value_as::<usize>().unwrap()));
                }
                if n == SMALL {
                    if this.a.pending_output_len() > 0 {
                        this.pending_when_released.set();
                    }
                    this.peer.release();
                } else {
                    Chain::next(this);
                }
            });
        }
    }

    lp.detach(ka);
    lp.detach(kb);
    a.close();
    a_thread.join().unwrap();
}

/// An expiring result fires at its deadline although nobody polls it: its
/// callbacks are dropped, a waiting future resolves with the timeout error,
/// and the peer gets a cancel (the queued request never runs).
pub fn expiry_fires_on_time_with_nobody_polling<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect();
    let key = lp.attach(&conn);
    let root = conn.root().unwrap();

    // Occupy the peer's serving thread so the next request stays queued there.
    let blocker = netref::async_(&root).call_method("block", ());
    server.peer.wait_blocked();

    let expiry = Duration::from_millis(50);
    let started = Instant::now();
    let res = netref::async_(&root).call_method("record", ());
    res.set_expiry(expiry);
    let ran = Flag::default();
    let r = ran.clone();
    res.add_callback(move |_| r.set());
    let (first, woken) = poll_with_flag(&res);
    assert!(first.is_pending());

    run_until(&mut lp, "the expiry", |_| woken.get());
    assert!(started.elapsed() >= expiry, "fired no earlier than the deadline");
    assert!(res.expired());
    assert!(!ran.get(), "an expired result's callbacks never run");
    match poll_once(&res) {
        Poll::Ready(Err(Error::Timeout(d))) => assert_eq!(d, expiry),
        other => panic!("expected the timeout error, got {other:?}"),
    }

    // The cancel is on the wire before the peer reads again.
    server.peer.release();
    assert!(blocker.value_as::<bool>().unwrap());
    assert_eq!(root.call_method::<usize>("recorded", ()).unwrap(), 0, "the cancelled request never ran");
    assert!(lp.is_attached(key));
    lp.detach(key);
}

/// The backend's server fires an expiry at its deadline with nobody polling,
/// also when it belongs to another connection than the one being served.
/// Client A asks the server to call client B's callback with an expiry; B
/// never answers (nothing serves it after it handed the callback over), so
/// B's deadline is set on the server's loop thread while it dispatches A's
/// request. Three ways: the expiry given with the call (`timed`), set just
/// after it (`set_expiry`), and set later by this, another, thread. Once A
/// has its reply nothing arrives on any connection, so only the server's own
/// timer can fire them; each must fire on the server's thread, no earlier
/// than its deadline.
pub fn server_fires_expiries_set_while_serving_another_connection<B: Backend>() {
    const EXPIRY: Duration = Duration::from_millis(50);

    /// Wakes with the server's result number `n`: sends it, the time and the thread.
    struct Fired {
        n: usize,
        tx: Mutex<mpsc::Sender<(usize, Instant, ThreadId)>>,
    }
    impl Wake for Fired {
        fn wake(self: Arc<Self>) {
            let _ = self.tx.lock().unwrap().send((self.n, Instant::now(), thread::current().id()));
        }
    }

    // The server's calls to B's callback, each with when it was armed.
    let results: Arc<Mutex<Vec<(AsyncResult, Instant)>>> = Arc::default();
    let (fired_tx, fired) = mpsc::channel();
    let server_thread: Cell<ThreadId> = Cell::default();
    let root = {
        let callback: Cell<RemoteObject> = Cell::default();
        let registered = callback.clone();
        let results = results.clone();
        let server_thread = server_thread.clone();
        let fired_tx = Mutex::new(fired_tx);
        ObjectBuilder::new("Arm")
            .method("register", move |cb: RemoteObject| registered.put(cb))
            .method("arm", move |how: String| {
                server_thread.put(thread::current().id());
                let cb = callback.get().expect("B registered its callback");
                let armed = Instant::now();
                let res = match how.as_str() {
                    "timed" => netref::timed(&cb, EXPIRY).call((1,)),
                    "set_expiry" => {
                        let res = netref::async_(&cb).call((2,));
                        res.set_expiry(EXPIRY);
                        res
                    }
                    _ => netref::async_(&cb).call((3,)),
                };
                let mut all = results.lock().unwrap();
                let n = all.len();
                let tx = Mutex::new(fired_tx.lock().unwrap().clone());
                let waker = Waker::from(Arc::new(Fired { n, tx }));
                let pending = Pin::new(&mut res.clone()).poll(&mut Context::from_waker(&waker)).is_pending();
                all.push((res, armed));
                (n, pending)
            })
            .build()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, Builder::default().service(Service::object(root)));

    let b = Builder::default().connect_tcp(addr).unwrap();
    b.root().unwrap().call_method::<()>("register", (netref::callback(|x: i64| x),)).unwrap();
    let a = Builder::default().connect_tcp(addr).unwrap();
    let a_root = a.root().unwrap();
    for (n, how) in ["timed", "set_expiry", "later"].into_iter().enumerate() {
        assert_eq!(
            a_root.call_method::<(usize, bool)>("arm", (how,)).unwrap(),
            (n, true),
            "{how}: armed, pending"
        );
        let (res, mut armed) = results.lock().unwrap()[n].clone();
        if how == "later" {
            armed = Instant::now();
            res.set_expiry(EXPIRY);
        }
        let (which, at, on) = fired
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("the server never fired the {how} expiry"));
        assert_eq!(which, n, "{how}");
        assert_eq!(Some(on), server_thread.get(), "{how}: fired by the server's loop");
        assert!(at.duration_since(armed) >= EXPIRY, "{how}: fired no earlier than the deadline");
        assert!(res.expired(), "{how}");
        match poll_once(&res) {
            Poll::Ready(Err(Error::Timeout(d))) => assert_eq!(d, EXPIRY, "{how}"),
            other => panic!("{how}: expected the timeout error, got {other:?}"),
        }
    }
    a.close();
    b.close();
    server.stop();
}

/// A call made from another thread on an attached connection is flushed by
/// the loop and its reply delivered to that thread.
pub fn call_from_another_thread<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect();
    let key = lp.attach(&conn);
    let notify = lp.notifier();
    let out: Cell<(i64, i64)> = Cell::default();
    let o = out.clone();
    let c = conn.clone();
    let worker = thread::spawn(move || {
        let root = c.root().expect("root from another thread");
        let a = root.call_method::<i64>("add", (2, 3)).unwrap();
        let b = netref::async_(&root).call_method("add", (4, 5)).value_as::<i64>().unwrap();
        o.put((a, b));
        notify();
    });
    run_until(&mut lp, "the other thread's calls", |_| out.is_set());
    worker.join().unwrap();
    assert_eq!(out.get(), Some((5, 9)));
    lp.detach(key);
}

/// A synchronous call made from inside a loop callback completes: it waits
/// on the connection's own fd without re-entering the loop. Also nested: the
/// peer calls our callback, which calls the peer synchronously.
pub fn sync_call_inside_a_loop_callback<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect();
    let key = lp.attach(&conn);
    let root = conn.root().unwrap();

    let inner: Cell<i64> = Cell::default();
    let i = inner.clone();
    let root2 = root.clone();
    netref::async_(&root).call_method("add", (1, 2)).add_callback(move |r| {
        let x: i64 = r.value_as().unwrap();
        i.put(root2.call_method::<i64>("add", (x, 10)).unwrap());
    });

    let root3 = root.clone();
    let cb = netref::callback(move |x: i64| root3.call_method::<i64>("add", (x, 100)).unwrap_or(-1));
    let nested: Cell<i64> = Cell::default();
    let n = nested.clone();
    netref::async_(&root).call_method("call_me", (cb, 1)).add_callback(move |r| n.put(r.value_as().unwrap()));

    run_until(&mut lp, "the callbacks' sync calls", |_| inner.is_set() && nested.is_set());
    assert_eq!(inner.get(), Some(13));
    assert_eq!(nested.get(), Some(101));
    lp.detach(key);
    conn.close();
}

/// Write batching on an attached connection: the peer emits events inside
/// `netref::batch`, and the loop's connection (with
/// `Config::batch_replies`) answers each read's worth of them in one write.
/// Every event runs on the loop's thread and every reply arrives.
pub fn batched_events_and_replies_on_the_loop<B: Backend>() {
    const N: i64 = 3000;
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect_with(Builder::default().config(Config::default().batch_replies(true)));
    let key = lp.attach(&conn);
    let root = conn.root().unwrap();
    let me = thread::current().id();
    let seen = Arc::new(AtomicUsize::new(0));
    let on_loop = Arc::new(AtomicBool::new(true));
    let (s, l) = (seen.clone(), on_loop.clone());
    let cb = netref::callback(move |i: i64| {
        s.fetch_add(1, Ordering::AcqRel);
        if thread::current().id() != me {
            l.store(false, Ordering::Release);
        }
        i
    });
    let total: Cell<i64> = Cell::default();
    let t = total.clone();
    netref::async_(&root).call_method("emit", (cb, N)).add_callback(move |r| t.put(r.value_as().unwrap()));
    run_until(&mut lp, "3000 batched events and the emit's reply", |_| total.is_set());
    assert_eq!(total.get(), Some(N * (N - 1) / 2), "every event's reply reached the peer");
    assert_eq!(seen.load(Ordering::Acquire), N as usize);
    assert!(on_loop.load(Ordering::Acquire), "every event ran on the loop's thread");
    lp.detach(key);
    conn.close();
}

/// Write batching against the backend's server: a client sends 3000 calls
/// in one `netref::batch`, the server (with `Config::batch_replies`)
/// answers them, and a method on the server's loop thread emits 3000
/// events to the client inside a batch of its own.
pub fn batched_calls_and_replies_on_the_backend_server<B: Backend>() {
    const N: i64 = 3000;
    let peer = Peer::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let builder = peer.builder().config(Config::default().batch_replies(true));
    let server = B::spawn_server(listener, builder);
    let conn = Builder::default().connect_tcp(addr).expect("connect");
    let root = conn.root().expect("root");

    let results: Vec<AsyncResult> =
        netref::batch(|| (0..N).map(|i| netref::async_(&root).call_method("add", (i, 1))).collect());
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.value_as::<i64>().unwrap(), i as i64 + 1);
    }
    // The client's thread serves the events while it waits for the reply.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let cb = netref::callback(move |i: i64| {
        s.fetch_add(1, Ordering::AcqRel);
        i
    });
    let total: i64 = root.call_method("emit", (cb, N)).expect("emit");
    assert_eq!(total, N * (N - 1) / 2);
    assert_eq!(seen.load(Ordering::Acquire), N as usize);
    conn.close();
    server.stop();
}

/// A method of the backend's server that waits on its client never stops
/// the loop: an asynchronous one (awaiting the client's callback) leaves
/// the loop serving other clients until the callback answers, and a
/// synchronous wait from a method fails at once with an error naming the
/// asynchronous way, instead of holding the loop for
/// `sync_request_timeout` (30 s: a second client's connect and `root()`
/// used to wait that long).
pub fn a_method_waiting_on_its_client_never_blocks_the_loop_server<B: Backend>() {
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let root = ObjectBuilder::new("Asker")
        .async_method("ask", move |cb: RemoteObject, x: i64| {
            let _ = started_tx.lock().unwrap().send(());
            async move {
                let answer: i64 = netref::async_(&cb).call((x,)).typed().await?;
                Ok::<_, Error>(answer * 2)
            }
        })
        .try_method("ask_blocking", |cb: RemoteObject, x: i64| cb.call::<i64>((x,)))
        .method("add", |a: i64, b: i64| a + b)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, Builder::default().service(Service::object(root)));

    // Client A is asked through its callback, and does not serve its
    // connection: the server's call waits on it.
    let a = Builder::default().connect_tcp(addr).expect("connect A");
    let a_root = a.root().expect("A's root");
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let cb = netref::callback(move |x: i64| {
        counter.fetch_add(1, Ordering::AcqRel);
        x
    });
    let answer = netref::async_(&a_root).call_method("ask", (cb.clone(), 21));
    started.recv_timeout(PATIENCE).expect("the server started `ask`");

    // Meanwhile the loop serves a new client at once.
    let b = Builder::default().connect_tcp(addr).expect("connect B");
    assert_eq!(b.root().expect("B's root").call_method::<i64>("add", (2, 3)).unwrap(), 5);
    assert_eq!(asked.load(Ordering::Acquire), 0, "A has not served its callback yet");

    // A serves its connection now: its callback answers, and so does `ask`.
    assert_eq!(answer.value_as::<i64>().unwrap(), 42);
    assert_eq!(asked.load(Ordering::Acquire), 1);

    // Waiting synchronously from a method fails at once, naming the way out.
    let err = a_root.call_method::<i64>("ask_blocking", (cb, 1)).unwrap_err();
    match &err {
        Error::Remote(e) => {
            assert_eq!(e.type_name, "MisuseError", "{err}");
            assert!(e.message.contains("async_method"), "{err}");
        }
        other => panic!("expected the server's refusal, got {other:?}"),
    }
    assert_eq!(asked.load(Ordering::Acquire), 1, "the refused wait sent nothing");
    assert_eq!(b.root().unwrap().call_method::<i64>("add", (1, 1)).unwrap(), 2);
    a.close();
    b.close();
    server.stop();
}

/// A peer that closes ends that connection only (pending calls fail, the
/// backend lets go of it); the loop keeps serving the others.
pub fn peer_disconnect_ends_only_that_connection<B: Backend>() {
    let server = PeerServer::start();
    let peer = Peer::new();
    let (a, a_peer) = Builder::default().pair(peer.builder()).unwrap();
    let bg = netref::BgServingThread::new(&a_peer);
    let b = server.connect();
    let mut lp = B::new_loop();
    let ka = lp.attach(&a);
    let kb = lp.attach(&b);
    let a_root = a.root().unwrap();
    let b_root = b.root().unwrap();

    let pending = netref::async_(&a_root).call_method("block", ());
    peer.wait_blocked();
    let failed: Cell<String> = Cell::default();
    let f = failed.clone();
    pending.add_callback(move |r| f.put(r.value().map(|_| String::new()).unwrap_or_else(|e| e.to_string())));

    a_peer.close();
    run_until(&mut lp, "the loop to notice the peer closed", |lp| a.is_closed() && !lp.is_attached(ka));
    assert!(failed.get().is_some_and(|e| !e.is_empty()), "the pending call failed: {:?}", failed.get());

    let after: Cell<i64> = Cell::default();
    let o = after.clone();
    netref::async_(&b_root).call_method("add", (20, 22)).add_callback(move |r| o.put(r.value_as().unwrap()));
    run_until(&mut lp, "the other connection", |_| after.is_set());
    assert_eq!(after.get(), Some(42));
    assert!(lp.is_attached(kb));

    peer.release();
    drop(bg);
    lp.detach(kb);
}

/// Garbage from a peer ends that connection only; the loop keeps serving the
/// others.
pub fn garbage_input_ends_only_that_connection<B: Backend>() {
    let server = PeerServer::start();
    let (mut raw, sock) = UnixStream::pair().unwrap();
    let a = Builder::default().over_stream(sock).unwrap();
    let b = server.connect();
    let mut lp = B::new_loop();
    let ka = lp.attach(&a);
    let kb = lp.attach(&b);
    let b_root = b.root().unwrap();

    raw.write_all(b"\x00\x00\x00\x08\xff\xfe\xfd garbage that is not a netref frame").unwrap();
    run_until(&mut lp, "the garbage to end the connection", |lp| a.is_closed() && !lp.is_attached(ka));
    assert!(a.close_reason().is_some());

    let after: Cell<i64> = Cell::default();
    let o = after.clone();
    netref::async_(&b_root).call_method("add", (1, 1)).add_callback(move |r| o.put(r.value_as().unwrap()));
    run_until(&mut lp, "the other connection", |_| after.is_set());
    assert_eq!(after.get(), Some(2));
    lp.detach(kb);
}

/// The backend's server ends a connection that sends garbage and notices one
/// that goes away, and keeps serving the rest.
pub fn server_survives_garbage_and_disconnects<B: Backend>() {
    let peer = Peer::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, peer.builder());

    let good = Builder::default().connect_tcp(addr).unwrap();
    let root = good.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);

    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(b"\xff\xff\xff\xff definitely not a frame").unwrap();
    let mut sink = Vec::new();
    // The server answers (its hello, maybe a close) and then closes.
    raw.read_to_end(&mut sink).expect("the server closed the garbage connection");

    let quitter = Builder::default().connect_tcp(addr).unwrap();
    quitter.root().unwrap();
    drop(quitter);

    assert_eq!(root.call_method::<i64>("add", (2, 2)).unwrap(), 4);
    let again = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(again.root().unwrap().call_method::<i64>("add", (3, 3)).unwrap(), 6);
    server.stop();
}

/// A client that sends its hello and closes its end at once: the server sees
/// both in one read, and must still close the connection (an edge-triggered
/// loop gets no second edge for the end of the stream; skipping the read
/// after a short one lost it, and the connection stayed in CLOSE_WAIT with
/// its fd leaked). The client's read of the server's end is the signal: it
/// returns once the server closes, and times out after [`PATIENCE`] if the
/// server never does.
pub fn hello_and_eof_in_one_read_close_the_connection<B: Backend>() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, Peer::new().builder());
    let mut hello = Vec::new();
    netref::protocol::Protocol::new(netref::Config::default(), Instant::now()).write_to(&mut hello).unwrap();
    for _ in 0..20 {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(PATIENCE)).unwrap();
        // Corked, the hello waits in the kernel and leaves with the FIN
        // in one segment: the server's first read sees both.
        rustix::net::sockopt::set_tcp_cork(&raw, true).unwrap();
        raw.write_all(&hello).unwrap();
        raw.shutdown(std::net::Shutdown::Write).unwrap();
        let mut sink = Vec::new();
        raw.read_to_end(&mut sink).expect("the server closed the connection after the client's end");
    }
    // And it still serves.
    let good = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(good.root().unwrap().call_method::<i64>("add", (1, 2)).unwrap(), 3);
    server.stop();
}

/// A peer that connects and says nothing, or sends its hello and then part
/// of a frame and stops, is disconnected by the backend's server once
/// `handshake_timeout` or `frame_timeout` passes (both on by default; here
/// shortened): the protocol reports the deadline and the server's loop
/// fires it. The clients' reads of the server's end are the signals.
pub fn silent_and_stalled_peers_are_disconnected<B: Backend>() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let short = Duration::from_millis(200);
    let config = netref::Config::default().handshake_timeout(Some(short)).frame_timeout(Some(short));
    let server = B::spawn_server(listener, Peer::new().builder().config(config));
    let mut hello = Vec::new();
    netref::protocol::Protocol::new(netref::Config::default(), Instant::now()).write_to(&mut hello).unwrap();
    let silent = TcpStream::connect(addr).unwrap();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&hello).unwrap();
    // The first bytes of a frame header, and nothing more.
    stalled.write_all(&[0, 0]).unwrap();
    for mut raw in [silent, stalled] {
        raw.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut sink = Vec::new();
        raw.read_to_end(&mut sink).expect("the server closed the connection");
    }
    let good = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(good.root().unwrap().call_method::<i64>("add", (1, 2)).unwrap(), 3);
    server.stop();
}

/// Detaching deregisters the fd: the connection can be attached again to the
/// same loop and is served there; once detached any thread may serve it.
pub fn detach_deregisters_cleanly<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect();
    let k1 = lp.attach(&conn);
    lp.detach(k1);
    assert!(!lp.is_attached(k1));
    let k2 = lp.attach(&conn);
    let root = conn.root().unwrap();
    let out: Cell<i64> = Cell::default();
    let o = out.clone();
    netref::async_(&root).call_method("add", (5, 5)).add_callback(move |r| o.put(r.value_as().unwrap()));
    run_until(&mut lp, "the re-attached connection", |_| out.is_set());
    assert_eq!(out.get(), Some(10));
    lp.detach(k2);
    // Detached: a plain blocking call from another thread serves itself.
    let c = conn.clone();
    let v =
        thread::spawn(move || c.root().unwrap().call_method::<i64>("add", (6, 6)).unwrap()).join().unwrap();
    assert_eq!(v, 12);
}

/// A future awaited on an attached connection waits for the loop; when the
/// loop lets go of the connection and nothing else serves it, the future is
/// woken and fails with `Misuse::Unserved` instead of hanging, while the
/// call itself stays pending (`value()` serves it from the caller's thread).
pub fn detaching_fails_waiting_futures_as_unserved<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect();
    let key = lp.attach(&conn);
    let root = conn.root().unwrap();
    let gate = netref::async_(&root).call_method("block", ());
    server.peer.wait_blocked();
    let (first, woken) = poll_with_flag(&gate);
    assert!(first.is_pending(), "the loop serves the connection: the future waits");
    lp.detach(key);
    assert!(woken.get(), "detaching woke the waiting future");
    match poll_once(&gate) {
        Poll::Ready(Err(Error::Misuse(Misuse::Unserved))) => {}
        other => panic!("expected Misuse::Unserved, got {other:?}"),
    }
    server.peer.release();
    assert!(gate.value_as::<bool>().unwrap());
}

/// A synchronous call made on the loop's thread outside any loop callback
/// (a button handler, say) may read a peer request together with its reply;
/// that request still runs promptly, although its bytes were already read
/// (an edge-triggered loop would see no new event for them).
pub fn no_request_stranded_after_a_sync_call_on_the_loop_thread<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    // No timeout on sync calls: nothing about the call itself rings the loop.
    let conn = Builder::default()
        .config(Config::default().sync_request_timeout(None))
        .connect_tcp(server.addr)
        .unwrap();
    let key = lp.attach(&conn);
    let root = conn.root().unwrap();
    for round in 0..20 {
        let poked = Flag::default();
        let p = poked.clone();
        let cb = netref::callback(move |_: i64| p.set());
        assert_eq!(root.call_method::<i64>("poke_then_return", (cb,)).unwrap(), 7);
        run_until(&mut lp, &format!("the peer's request, round {round}"), |_| poked.get());
    }
    lp.detach(key);
}

/// An idle attached connection lets the loop sleep: no write watch stays
/// armed once output is flushed (a level-triggered idle write watch would
/// wake the loop continuously), and no timer fires without a deadline.
pub fn idle_loop_sleeps<B: Backend>() {
    let server = PeerServer::start();
    let mut lp = B::new_loop();
    let conn = server.connect();
    let key = lp.attach(&conn);
    let root = conn.root().unwrap();
    let out: Cell<i64> = Cell::default();
    let o = out.clone();
    netref::async_(&root).call_method("add", (1, 1)).add_callback(move |r| o.put(r.value_as().unwrap()));
    run_until(&mut lp, "a reply", |_| out.is_set());
    assert_idle(&mut lp, &conn);
    lp.detach(key);
}

/// Checks that `lp`, with `conn` attached and nothing to do, sleeps: it
/// wakes at most 8 times in 150 ms of 50 ms turns (a loop that spins on a
/// ready fd wakes thousands of times).
pub fn assert_idle<L: TestLoop>(lp: &mut L, conn: &Connection) {
    // Let stragglers (a release, a wake-up already queued) pass.
    for _ in 0..3 {
        lp.turn(Duration::from_millis(10));
    }
    let start = Instant::now();
    let mut turns = 0;
    while start.elapsed() < Duration::from_millis(150) {
        lp.turn(Duration::from_millis(50));
        turns += 1;
    }
    assert!(turns <= 8, "the idle loop woke {turns} times in 150 ms");
    assert_eq!(conn.pending_output_len(), 0, "nothing left queued");
}

// ---- soak --------------------------------------------------------------------------

/// How big a soak run is: `NETREF_SOAK=full` in the environment gives the
/// full size (200 clients x 10,000 calls); otherwise a reduced size that
/// takes a few seconds. Run the full size in release mode, one test at a
/// time, for example:
///
/// ```text
/// NETREF_SOAK=full cargo test --release -p netref-conformance -p netref-mio \
///     -p netref-polling -p netref-calloop -p netref-glib soak -- --test-threads=1
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoakSize {
    /// Concurrent clients, each on its own thread and connection.
    pub clients: usize,
    /// Calls each client makes.
    pub calls: usize,
}

impl SoakSize {
    /// The full size.
    pub const FULL: SoakSize = SoakSize { clients: 200, calls: 10_000 };
    /// The size run by a plain `cargo test`.
    pub const REDUCED: SoakSize = SoakSize { clients: 16, calls: 1000 };

    /// [`FULL`](Self::FULL) when `NETREF_SOAK=full`, else [`REDUCED`](Self::REDUCED).
    pub fn from_env() -> SoakSize {
        match std::env::var("NETREF_SOAK").as_deref() {
            Ok("full") => SoakSize::FULL,
            _ => SoakSize::REDUCED,
        }
    }
}

/// What a soak run measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The size run.
    pub size: SoakSize,
    /// Wall time from the first connect to the last disconnect.
    pub elapsed: Duration,
    /// Resident memory before the server started, in bytes.
    pub rss_before: u64,
    /// Resident memory at the peak (all clients connected), in bytes.
    pub rss_peak: u64,
    /// Resident memory once everything was released, in bytes.
    pub rss_after: u64,
}

/// Resident memory of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * rustix::param::page_size() as u64
}

/// Hands freed heap back to the kernel so RSS reflects live memory.
fn trim_heap() {
    // glibc's own call, which rustix (syscalls only) does not wrap.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only hands free heap
    // pages back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The soak service: arithmetic, objects that count themselves, a callback
/// caller, an echo, and a tally of every request served.
struct SoakService {
    live: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SoakService {
    fn root(&self) -> LocalObject {
        let (s1, s2, s3, s4) =
            (self.served.clone(), self.served.clone(), self.served.clone(), self.served.clone());
        let live = self.live.clone();
        ObjectBuilder::new("Soak")
            .method("add", move |a: i64, b: i64| {
                s1.fetch_add(1, Ordering::AcqRel);
                a + b
            })
            .method("make", move |n: i64| {
                s2.fetch_add(1, Ordering::AcqRel);
                live.fetch_add(1, Ordering::AcqRel);
                let guard = Live(live.clone());
                ObjectBuilder::new("Thing")
                    .method("n", move || {
                        let _ = &guard;
                        n
                    })
                    .build()
            })
            // Asynchronous: the loop servers refuse a method that waits.
            .async_method("call_me", move |cb: RemoteObject, x: i64| {
                s3.fetch_add(1, Ordering::AcqRel);
                netref::async_(&cb).call((x,))
            })
            .method("echo", move |s: String| {
                s4.fetch_add(1, Ordering::AcqRel);
                s
            })
            .build()
    }
}

/// One client's mixed workload; returns how many calls it checked.
fn soak_client(addr: SocketAddr, c: i64, calls: usize) -> usize {
    let conn = Builder::default().connect_tcp(addr).expect("connect");
    let root = conn.root().expect("root");
    let mut window: std::collections::VecDeque<(AsyncResult, i64)> = Default::default();
    let mut checked = 0;
    let check = |(res, want): (AsyncResult, i64), checked: &mut usize| {
        assert_eq!(res.value_as::<i64>().expect("async reply"), want, "client {c}");
        *checked += 1;
    };
    for i in 0..calls as i64 {
        match i % 6 {
            0 => {
                assert_eq!(root.call_method::<i64>("add", (c, i)).unwrap(), c + i);
                checked += 1;
            }
            1 => window.push_back((netref::async_(&root).call_method("add", (i, c)), i + c)),
            2 => {
                let cb = netref::callback(move |x: i64| x * 3 + c);
                assert_eq!(root.call_method::<i64>("call_me", (cb, i)).unwrap(), i * 3 + c);
                checked += 1;
            }
            3 => {
                let thing: RemoteObject = root.call_method("make", (i,)).unwrap();
                assert_eq!(thing.call_method::<i64>("n", ()).unwrap(), i);
                checked += 1; // make; `n` is an extra call on the object
            }
            4 => {
                let text = format!("{c}:{i}");
                assert_eq!(root.call_method::<String>("echo", (text.clone(),)).unwrap(), text);
                checked += 1;
            }
            _ => {
                let cb = netref::callback(move |x: i64| x - c);
                window.push_back((netref::async_(&root).call_method("call_me", (cb, i)), i - c));
            }
        }
        while window.len() > 8 {
            check(window.pop_front().unwrap(), &mut checked);
        }
    }
    while let Some(w) = window.pop_front() {
        check(w, &mut checked);
    }
    // Every callback this client passed was released by the server.
    assert_eq!(conn.exported_count(), 0, "client {c}: the server still holds callbacks");
    drop(root);
    conn.ping().unwrap(); // the root's release goes out first
    assert_eq!(conn.imported_count(), 0, "client {c}: proxies left");
    conn.close();
    checked
}

/// Runs `size` concurrent clients against the server `spawn` starts, then
/// checks that every reply arrived once with the right value, every request
/// ran once, every object was freed, and memory came back near its start.
pub fn soak_with(
    size: SoakSize,
    spawn: impl FnOnce(Builder) -> (SocketAddr, Box<dyn RunningServer>),
) -> SoakReport {
    raise_fd_limit(8 * size.clients as u64 + 256);
    trim_heap();
    let rss_before = rss_bytes();
    let live = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let soak = Arc::new(SoakService { live: live.clone(), served: served.clone() });
    let (dtx, disconnects) = mpsc::channel::<()>();
    let dtx = Mutex::new(dtx);
    let service = Service::new(move |_| soak.root()).on_disconnect(move |_| {
        let _ = dtx.lock().unwrap().send(());
    });
    let (addr, server) = spawn(Builder::default().service(service));

    // A generous deadline that scales with the work: fail, never hang.
    let patience = PATIENCE + Duration::from_millis((size.clients * size.calls) as u64 / 2);
    let started = Instant::now();
    let (tx, done) = mpsc::channel::<(usize, thread::Result<usize>)>();
    let barrier = Arc::new(std::sync::Barrier::new(size.clients + 1));
    for c in 0..size.clients {
        let tx = tx.clone();
        let barrier = barrier.clone();
        thread::Builder::new()
            .name(format!("soak-client-{c}"))
            .stack_size(256 << 10)
            .spawn(move || {
                let r = std::panic::catch_unwind(|| {
                    barrier.wait();
                    soak_client(addr, c as i64, size.calls)
                });
                let _ = tx.send((c, r));
            })
            .expect("spawning a client");
    }
    barrier.wait();
    let mut rss_peak = rss_bytes();
    for _ in 0..size.clients {
        let left = patience.saturating_sub(started.elapsed());
        let (c, r) = done.recv_timeout(left).unwrap_or_else(|_| {
            panic!("soak watchdog: clients still running after {patience:?} (deadlock?)")
        });
        rss_peak = rss_peak.max(rss_bytes());
        match r {
            Ok(n) => assert_eq!(n, size.calls, "client {c} checked {n} of {} calls", size.calls),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    for i in 0..size.clients {
        let left = patience.saturating_sub(started.elapsed()).max(PATIENCE);
        disconnects
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the server noticed only {i} of {} disconnects", size.clients));
    }
    let elapsed = started.elapsed();
    // Exactly one execution per request: each client made `calls` requests
    // on the root (the calls on made objects are not counted).
    assert_eq!(served.load(Ordering::Acquire), size.clients * size.calls, "requests served");
    assert_eq!(live.load(Ordering::Acquire), 0, "objects still alive on the server after every client left");
    server.stop();
    trim_heap();
    let rss_after = rss_bytes();
    SoakReport { size, elapsed, rss_before, rss_peak, rss_after }
}

/// Checks a soak report's memory: back near the start once everything was
/// released (a loose bound: allocator caches and thread stacks linger).
pub fn check_soak_memory(report: &SoakReport) {
    let grew = report.rss_after.saturating_sub(report.rss_before);
    let bound = 64 << 20;
    assert!(
        grew < bound,
        "resident memory grew by {} MiB over the soak (before {} MiB, peak {} MiB, after {} MiB)",
        grew >> 20,
        report.rss_before >> 20,
        report.rss_peak >> 20,
        report.rss_after >> 20
    );
}

/// Prints a soak report on one line.
pub fn print_soak(name: &str, r: &SoakReport) {
    println!(
        "soak {name}: {} clients x {} calls in {:.2?} ({:.0} calls/s); RSS before {} MiB, peak {} MiB, after {} MiB",
        r.size.clients,
        r.size.calls,
        r.elapsed,
        (r.size.clients * r.size.calls) as f64 / r.elapsed.as_secs_f64(),
        r.rss_before >> 20,
        r.rss_peak >> 20,
        r.rss_after >> 20
    );
}

/// The soak run against backend `B`'s server.
pub fn soak_many_clients_mixed_calls<B: Backend>() {
    let report = soak_with(SoakSize::from_env(), |builder| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, B::spawn_server(listener, builder))
    });
    print_soak(std::any::type_name::<B>(), &report);
    check_soak_memory(&report);
}

// ---- authentication ------------------------------------------------------------------

/// An instant authenticator (as `UnixPeerCred` is) for TCP: refuses the
/// first client, names the others.
struct RefuseFirst(AtomicUsize);

impl netref::Authenticator for RefuseFirst {
    fn authenticate(&self, _stream: &mut netref::AuthStream<'_>) -> netref::Result<netref::Credentials> {
        match self.0.fetch_add(1, Ordering::AcqRel) {
            0 => Err(Error::Auth(AuthError::Refused("the first client is refused".into()))),
            n => Ok(netref::Credentials::new("test").with_identity(format!("client-{n}"))),
        }
    }
    fn is_instant(&self) -> bool {
        true
    }
}

/// The backend's server runs an instant authenticator (such as
/// `UnixPeerCred`) on its loop at accept: a refused client is closed, the
/// others are served and their credentials are visible to the service.
pub fn instant_authenticator_on_the_backend_server<B: Backend>() {
    let service = Service::new(|conn| {
        let who = conn.credentials().and_then(|c| c.identity.clone()).unwrap_or_default();
        ObjectBuilder::new("Who").method("who", move || who.clone()).build()
    });
    let builder = Builder::default().service(service).authenticator(RefuseFirst(AtomicUsize::new(0)));
    assert!(!builder.auth_may_block());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, builder);

    let refused = Builder::default().connect_tcp(addr).unwrap();
    let err = refused.root().unwrap_err();
    assert!(err.is_closed(), "the refused client's socket was closed: {err}");
    for n in 1..=3 {
        let conn = Builder::default().connect_tcp(addr).unwrap();
        assert_eq!(conn.root().unwrap().call_method::<String>("who", ()).unwrap(), format!("client-{n}"));
    }
    server.stop();
}

/// A builder whose authentication waits for the client (a shared secret)
/// would stall the loop: the server refuses it when it is made, with an
/// error saying what to do instead; an instant one is accepted.
pub fn blocking_authentication_is_refused_by_the_server<B: Backend>() {
    let blocking = Builder::default().authenticator(netref::auth::SharedSecret::new(b"s3cret".to_vec()));
    let err = B::make_server(TcpListener::bind("127.0.0.1:0").unwrap(), blocking)
        .expect_err("a shared-secret builder is refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("ThreadedServer"), "{err}");
    let instant = Builder::default().authenticator(netref::auth::UnixPeerCred::any());
    B::make_server(TcpListener::bind("127.0.0.1:0").unwrap(), instant)
        .expect("an instant authenticator is fine");
}

/// An instant authenticator that lets every [`ALLOW_EVERY`]th client in
/// (the 6th, the 12th, ...) and refuses the rest, in the order the server
/// accepts them. It runs on the server's loop thread and notes which one,
/// so the test can read what that thread logged.
#[derive(Default)]
struct AllowEverySixth {
    seen: AtomicUsize,
    server_thread: Mutex<Option<ThreadId>>,
}

const ALLOW_EVERY: usize = 6;

impl netref::Authenticator for AllowEverySixth {
    fn authenticate(&self, _stream: &mut netref::AuthStream<'_>) -> netref::Result<netref::Credentials> {
        *self.server_thread.lock().unwrap() = Some(thread::current().id());
        let n = self.seen.fetch_add(1, Ordering::AcqRel);
        if n % ALLOW_EVERY == ALLOW_EVERY - 1 {
            Ok(netref::Credentials::new("test"))
        } else {
            Err(Error::Auth(AuthError::Refused(format!("client #{n} is not on the list"))))
        }
    }
    fn is_instant(&self) -> bool {
        true
    }
}

/// A client the authenticator refuses is that client's failure, not the
/// listener's: the server logs the refusal once and accepts the next client
/// at once. Backing off instead (as for `EMFILE`) would let a client that
/// connects and gets refused over and over stall everyone's accepts.
///
/// Sixty clients connect in one burst before any outcome is looked at, so
/// refusals (runs of five) and admissions interleave in the server's accept
/// queue. Each refused client must see its connection closed, each admitted
/// one must be served (within the calls' watchdog), and the server's thread
/// must have logged exactly one refusal per refused client and no accept
/// failure: a server that treats a refusal as a failed accept logs "accept
/// failed ... retrying" instead, and the check fails.
pub fn refused_clients_never_pause_accepting<B: Backend>() {
    const CLIENTS: usize = 60;
    const ADMITTED: usize = CLIENTS / ALLOW_EVERY;
    const REFUSED: usize = CLIENTS - ADMITTED;
    // Before the server's thread logs anything.
    netref_logcap::install();
    let auth = Arc::new(AllowEverySixth::default());
    let builder = Peer::new().builder().authenticator(auth.clone());
    assert!(!builder.auth_may_block());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, builder);

    let patient = Builder::default().config(Config::default().sync_request_timeout(Some(PATIENCE)));
    let clients: Vec<Connection> = (0..CLIENTS)
        .map(|i| patient.clone().connect_tcp(addr).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    let (mut served, mut refused) = (0, 0);
    for (i, conn) in clients.iter().enumerate() {
        match conn.root().and_then(|r| r.call_method::<i64>("add", (i as i64, 1))) {
            Ok(sum) => {
                assert_eq!(sum, i as i64 + 1);
                served += 1;
            }
            // A timeout here (not closed) means the server never got to it.
            Err(e) => {
                assert!(e.is_closed(), "client {i} was neither served nor closed: {e}");
                refused += 1;
            }
        }
    }
    assert_eq!((served, refused), (ADMITTED, REFUSED), "(served, refused)");

    // The refused socket closes just before its refusal is logged: wait for
    // the server thread's lines about the refused clients, whatever they say
    // (every backend's back-off warning says "retrying").
    let server_thread = auth.server_thread.lock().unwrap().expect("the authenticator ran");
    let about_clients = |l: &String| l.contains("refused") || l.contains("retrying");
    let lines =
        netref_logcap::wait_on_thread(server_thread, "a log line per refused client", PATIENCE, |lines| {
            lines.iter().filter(|l| about_clients(l)).count() >= REFUSED
        });
    let paused: Vec<&String> =
        lines.iter().filter(|l| l.contains("retrying") || l.contains("accept")).collect();
    assert!(paused.is_empty(), "a refused client made the server back off: {paused:#?}");
    let refusals = lines.iter().filter(|l| l.contains("netref server: refused")).count();
    assert_eq!(refusals, REFUSED, "one refusal logged per refused client: {lines:#?}");
    drop(clients);
    server.stop();
}

mod typed;
pub use typed::{
    typed_events_from_the_backend_server, typed_events_received_on_the_loop, typed_proxy_awaited_on_the_loop,
    typed_service_on_the_backend_server,
};

pub mod rpyc;
pub use rpyc::{python_client_of_the_backend_server, python_filemon_events_on_the_loop};

mod reconnect;
mod subproc;
mod tls;
pub use reconnect::reconnect_on_the_loop;
pub use subproc::{pipes_on_the_loop, subprocess_on_the_loop, subprocess_worker};
pub use tls::{tls_client_on_the_loop, tls_server_on_the_loop};
