//! The typed layer on every backend: a typed proxy awaited with the loop's
//! own executor, and a typed service (with an `async fn` awaiting its
//! client's callback) served by the backend's server and awaited with
//! `block_on` on a plain thread; typed events received on the loop (a
//! stream it awaits, a closure it runs) and emitted by a loop server.

use std::fmt;
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::Instant;

use netref::typed::{CallError, Callback, Event, Missed, Subscribe};
use netref::{BgServingThread, Builder, Service, ThreadedServer};
use serde::{Deserialize, Serialize};

use crate::{run_future, Backend, Cell, Flag, RunningServer, TestLoop, PATIENCE};

/// What `Tally::take` refuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Overdrawn {
    /// What was left.
    pub(crate) left: i64,
}

impl fmt::Display for Overdrawn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "only {} left", self.left)
    }
}

/// A running total.
#[netref::service]
pub(crate) trait Tally {
    /// Adds `n`; the new total.
    fn add(&self, n: i64) -> i64;
    /// Takes `n` away, unless that overdraws.
    fn take(&self, n: i64) -> Result<i64, Overdrawn>;
    /// Asks the caller's `back(n)`, asynchronously, and doubles its answer.
    async fn ask(&self, n: i64, back: Callback<(i64,), i64>) -> i64;
    /// `ask`, keeping what it awaits for in an `Rc`: a future that is not
    /// `Send`, polled on the loop's thread that started it.
    #[netref(local)]
    async fn ask_here(&self, n: i64, back: Callback<(i64,), i64>) -> i64;
    /// Each new total after an `add`: ("total", total).
    #[netref(event)]
    fn totals(&self) -> Event<(String, i64)>;
}

/// The suite's tally.
#[derive(Default)]
pub(crate) struct Total(AtomicI64, Event<(String, i64)>);

impl Tally for Total {
    fn add(&self, n: i64) -> i64 {
        let total = self.0.fetch_add(n, Ordering::SeqCst) + n;
        self.1.emit(("total".into(), total)).expect("a drop-oldest event never blocks");
        total
    }

    async fn ask_here(&self, n: i64, back: Callback<(i64,), i64>) -> i64 {
        let asked = std::rc::Rc::new(n);
        let answer = back.call_async((*asked,)).await.unwrap_or(-1);
        answer + *asked
    }

    fn totals(&self) -> Event<(String, i64)> {
        self.1.clone()
    }

    fn take(&self, n: i64) -> Result<i64, Overdrawn> {
        let left = self.0.load(Ordering::SeqCst);
        if n > left {
            return Err(Overdrawn { left });
        }
        Ok(self.0.fetch_sub(n, Ordering::SeqCst) - n)
    }

    async fn ask(&self, n: i64, back: Callback<(i64,), i64>) -> i64 {
        // Awaited, not blocked on: a loop server serves on meanwhile.
        2 * back.call_async((n,)).await.unwrap_or(-1)
    }
}

fn typed_service() -> Builder {
    Builder::default().service(Service::typed::<dyn Tally>(Total::default()))
}

/// A threaded server of the tally, and a client connection to it attached
/// to a new loop of the backend's.
fn attached_client<B: Backend>() -> (ThreadedServer, B::Loop, netref::Connection) {
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", typed_service()).unwrap();
    let addr = server.local_addr().unwrap();
    server.spawn();
    let mut lp = B::new_loop();
    let conn = netref::connect(addr).unwrap();
    lp.attach(&conn);
    (server, lp, conn)
}

/// The tally on the backend's server, and a client connection to it
/// served by a background thread.
fn served_client<B: Backend>() -> (Box<dyn RunningServer>, netref::Connection, BgServingThread) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = B::spawn_server(listener, typed_service());
    let conn = netref::connect(addr).unwrap();
    let serving = BgServingThread::new(&conn);
    (server, conn, serving)
}

/// What the awaited calls gave: the total, the refused `take`, the answer
/// of `ask` and the thread its callback ran on.
type Outcomes = (i64, Result<i64, CallError<Overdrawn>>, i64, Option<ThreadId>);

/// A typed proxy of a connection attached to the loop, awaited by the
/// loop's own executor: typed values, the method's own error, and an async
/// method calling back into a closure that runs on the loop's thread.
pub fn typed_proxy_awaited_on_the_loop<B: Backend>() {
    let (_server, mut lp, conn) = attached_client::<B>();
    let tally = TallyProxy::root(&conn).expect("the server serves Tally");
    let me = thread::current().id();

    let got: Cell<Outcomes> = Cell::default();
    let g = got.clone();
    run_future(&mut lp, "the typed calls", async move {
        let total = tally.async_().add(5).await.unwrap();
        let refused = tally.async_().take(9).await;
        let ran_on: Cell<ThreadId> = Cell::default();
        let r = ran_on.clone();
        let asked = tally
            .async_()
            .ask(4, move |n: i64| {
                r.put(thread::current().id());
                n + 1
            })
            .await
            .unwrap();
        g.put((total, refused, asked, ran_on.get()));
    });
    let (total, refused, asked, ran_on) = got.get().unwrap();
    assert_eq!(total, 5);
    assert_eq!(refused, Err(CallError::App(Overdrawn { left: 5 })));
    assert_eq!(asked, 10);
    assert_eq!(ran_on, Some(me), "the callback ran on the loop's thread");
}

/// The typed service on the backend's server: its `async fn`s (one of
/// them `#[netref(local)]`, its future not `Send`) await the client's
/// callback without blocking the loop, and a client on a plain thread
/// awaits the typed result with `block_on`.
pub fn typed_service_on_the_backend_server<B: Backend>() {
    let (server, conn, _serving) = served_client::<B>();
    let tally = TallyProxy::root(&conn).unwrap();
    assert_eq!(tally.add(3).unwrap(), 3);
    assert_eq!(block_on(tally.async_().ask(20, |n: i64| n + 1)).unwrap(), 42);
    assert_eq!(block_on(tally.async_().ask_here(20, |n: i64| n + 2)).unwrap(), 42);
    assert_eq!(block_on(tally.async_().take(4)), Err(CallError::App(Overdrawn { left: 3 })));
    drop(conn);
    server.stop();
}

/// Typed events received on the loop: a stream the loop's executor
/// awaits, and a closure subscription the loop runs, on its thread.
pub fn typed_events_received_on_the_loop<B: Backend>() {
    let (_server, mut lp, conn) = attached_client::<B>();
    let tally = TallyProxy::root(&conn).unwrap();
    let me = thread::current().id();

    let ran_on: Cell<ThreadId> = Cell::default();
    let r = ran_on.clone();
    let _closure = tally
        .totals()
        .subscribe(Subscribe::drop_oldest(8), move |_: (String, i64)| r.put(thread::current().id()))
        .unwrap();
    let mut stream = tally.totals().stream(Subscribe::block(8)).unwrap();
    let got: Cell<Vec<i64>> = Cell::default();
    let g = got.clone();
    run_future(&mut lp, "the events", async move {
        let mut seen = Vec::new();
        for n in [2, 3] {
            tally.async_().add(n).await.unwrap();
            match next(&mut stream).await {
                Some(Ok((_, total))) => seen.push(total),
                other => panic!("expected a total, got {other:?}"),
            }
        }
        g.put(seen);
    });
    assert_eq!(got.get().unwrap(), [2, 5]);
    // The closure ran on the loop's thread, once the loop served its pull.
    let (seen, root) = (ran_on.clone(), conn.root().unwrap());
    run_future(&mut lp, "the closure's event", async move {
        // Each round trip lets the loop serve the closure's pull too.
        while seen.get().is_none() {
            netref::async_(&root).call_method("add", (0,)).await.unwrap();
        }
    });
    assert_eq!(ran_on.get(), Some(me));
}

/// Typed events emitted by a service on the backend's server, received by
/// a client on a plain thread: one subscriber lagging (it reads nothing
/// until the end) costs the other nothing.
pub fn typed_events_from_the_backend_server<B: Backend>() {
    let (server, conn, _serving) = served_client::<B>();
    let tally = TallyProxy::root(&conn).unwrap();
    let mut lagging = tally.totals().iter(Subscribe::drop_oldest(2)).unwrap();
    let mut keeping_up = tally.totals().iter(Subscribe::drop_oldest(2)).unwrap();
    for n in 1..=5 {
        tally.add(n).unwrap();
        assert_eq!(keeping_up.next().unwrap().unwrap().1, n * (n + 1) / 2);
    }
    assert!(matches!(lagging.next(), Some(Err(Missed::Lagged(3)))));
    assert_eq!(lagging.next().unwrap().unwrap().1, 10);
    assert_eq!(lagging.next().unwrap().unwrap().1, 15);
    drop(conn);
    server.stop();
}

/// The stream's next item, as a future.
fn next<S: futures_core::Stream + Unpin>(
    stream: &mut S,
) -> impl std::future::Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *stream).poll_next(cx))
}

/// Polls `fut` on this thread until it completes, parked between wakes.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(thread::Thread, Flag);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.1.set();
            self.0.unpark();
        }
    }
    let unpark = Arc::new(Unpark(thread::current(), Flag::default()));
    let waker = Waker::from(unpark.clone());
    let mut fut = std::pin::pin!(fut);
    let give_up = Instant::now() + PATIENCE;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            return v;
        }
        while !unpark.1 .0.swap(false, Ordering::AcqRel) {
            let now = Instant::now();
            assert!(now < give_up, "the future was never woken");
            thread::park_timeout(give_up - now);
        }
    }
}
