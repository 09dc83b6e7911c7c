//! `AsyncResult` as a future: every clone is woken, a typed await, awaiting
//! a connection that nobody serves fails at once instead of hanging, and a
//! remote error nobody reads is logged.
//!
//! Each test polls with its own small executor (std's `Wake`), so what it
//! checks is the future itself: no runtime in between.

use netref_logcap as logcap;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use netref::testing::Pair;
use netref::{
    async_, BgServingThread, Builder, Connection, Error, Misuse, ObjectBuilder, RemoteError, Service,
};

/// How long a wait may take before the test fails (a bound on a hang, not
/// a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

/// Wakes the blocked thread and records that it did.
struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls `fut` to completion on this thread, parking between polls until
/// woken. `pending` runs after the first poll that returns `Pending` (the
/// tests use it to learn that the waker is in). Panics after [`PATIENCE`]
/// without a wake: the future would hang.
fn block_on<F: Future>(fut: F, mut pending: impl FnMut()) -> F::Output {
    let unpark = Arc::new(Unpark { thread: thread::current(), woken: AtomicBool::new(false) });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let give_up = Instant::now() + PATIENCE;
    let mut first = true;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        if std::mem::take(&mut first) {
            pending();
        }
        while !unpark.woken.swap(false, Ordering::AcqRel) {
            let now = Instant::now();
            assert!(now < give_up, "the future was never woken: awaiting it would hang");
            thread::park_timeout(give_up - now);
        }
    }
}

/// Polls `fut` without ever blocking: panics when it returns `Pending`
/// twice without being woken in between (awaiting it would hang).
fn poll_unblocked<F: Future>(fut: F) -> F::Output {
    let unpark = Arc::new(Unpark { thread: thread::current(), woken: AtomicBool::new(false) });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let mut unwoken = 0;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        if unpark.woken.swap(false, Ordering::AcqRel) {
            unwoken = 0;
        } else {
            unwoken += 1;
            assert!(unwoken < 2, "Pending twice without a wake: awaiting it would hang");
        }
    }
}

/// Polls a clone of `res` once with a waker that sets the returned flag.
fn poll_with_flag<T: serde::de::DeserializeOwned>(
    res: &netref::AsyncResult<T>,
) -> (Poll<netref::Result<T>>, Arc<Unpark>) {
    let flag = Arc::new(Unpark { thread: thread::current(), woken: AtomicBool::new(false) });
    let waker = Waker::from(flag.clone());
    let mut fut = res.clone();
    (Pin::new(&mut fut).poll(&mut Context::from_waker(&waker)), flag)
}

/// Holds the serving thread inside `gate()` until the test opens it.
#[derive(Clone)]
struct Gate {
    entered: Arc<Mutex<mpsc::Sender<()>>>,
    entered_rx: Arc<Mutex<mpsc::Receiver<()>>>,
    open: Arc<Mutex<mpsc::Sender<()>>>,
    open_rx: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Gate {
    fn new() -> Gate {
        let (entered, entered_rx) = mpsc::channel();
        let (open, open_rx) = mpsc::channel();
        fn m<T>(x: T) -> Arc<Mutex<T>> {
            Arc::new(Mutex::new(x))
        }
        Gate { entered: m(entered), entered_rx: m(entered_rx), open: m(open), open_rx: m(open_rx) }
    }
    /// Waits until the peer is inside `gate()`.
    fn wait_entered(&self) {
        self.entered_rx.lock().unwrap().recv_timeout(PATIENCE).expect("the peer entered gate()");
    }
    /// Lets one `gate()` return.
    fn open(&self) {
        let _ = self.open.lock().unwrap().send(());
    }
}

fn service(gate: &Gate) -> Service {
    let g = gate.clone();
    Service::object(
        ObjectBuilder::new("Calc")
            .method("add", |a: i64, b: i64| a + b)
            .try_method("fail", |why: String| -> Result<i64, RemoteError> {
                Err(RemoteError::value_error(why))
            })
            .method("gate", move || {
                let _ = g.entered.lock().unwrap().send(());
                g.open_rx.lock().unwrap().recv_timeout(PATIENCE).is_ok()
            })
            .build(),
    )
}

/// A socket pair: the client, and the server served by a `BgServingThread`.
fn served_pair(gate: &Gate) -> (Connection, Connection, BgServingThread) {
    let (client, server) = Builder::default().pair(Builder::default().service(service(gate))).unwrap();
    let serving = BgServingThread::new(&server);
    (client, server, serving)
}

#[test]
fn two_clones_awaited_from_two_threads_both_complete() {
    let gate = Gate::new();
    let (client, _server, _serving) = served_pair(&gate);
    let _client_serving = BgServingThread::new(&client);
    let root = client.root().unwrap();

    // The reply cannot arrive before both tasks wait: the peer holds it.
    let res = async_(&root).call_method("gate", ()).typed::<bool>();
    gate.wait_entered();
    let (waiting_tx, waiting) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let tasks: Vec<_> = [res.clone(), res]
        .into_iter()
        .enumerate()
        .map(|(i, fut)| {
            let (waiting_tx, done_tx) = (waiting_tx.clone(), done_tx.clone());
            thread::spawn(move || {
                let v = block_on(fut, || waiting_tx.send(i).unwrap());
                done_tx.send((i, v)).unwrap();
            })
        })
        .collect();
    for _ in 0..2 {
        waiting.recv_timeout(PATIENCE).expect("both tasks wait");
    }
    gate.open();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (i, v) = done.recv_timeout(PATIENCE).expect("both tasks complete");
        assert!(v.unwrap(), "task {i} got the value");
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, [0, 1]);
    tasks.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn awaiting_an_unserved_connection_fails_at_once_and_names_the_fix() {
    let gate = Gate::new();
    let pair = Pair::new(Service::none(), service(&gate));
    let root = pair.client.root().unwrap();
    let res = async_(&root).call_method("add", (1, 2));

    let err = poll_unblocked(res.clone()).unwrap_err();
    assert!(matches!(err, Error::Misuse(Misuse::Unserved)), "{err:?}");
    let text = err.to_string();
    for fix in ["nobody serves", "attach the connection to an event loop", "BgServingThread", "value()"] {
        assert!(text.contains(fix), "{fix:?} missing from: {text}");
    }
    // `value()` serves the connection from this thread, as in RPyC; once
    // settled, the result is returned whatever serves the connection.
    assert_eq!(res.value_as::<i64>().unwrap(), 3);
    assert_eq!(netref::from_value::<i64>(poll_unblocked(res).unwrap()).unwrap(), 3);
}

#[test]
fn a_pending_future_fails_with_unserved_when_the_last_server_stops() {
    let gate = Gate::new();
    let (client, _server, _serving) = served_pair(&gate);
    let first = BgServingThread::new(&client);
    let second = BgServingThread::new(&client);
    let root = client.root().unwrap();
    let res = async_(&root).call_method("gate", ());
    gate.wait_entered();

    let (poll, flag) = poll_with_flag(&res);
    assert!(poll.is_pending(), "served: the future waits for the reply");
    first.stop().unwrap();
    let (poll, flag2) = poll_with_flag(&res);
    assert!(poll.is_pending(), "still served by the second thread");
    assert!(!flag.woken.load(Ordering::Acquire) && !flag2.woken.load(Ordering::Acquire));

    // A task already blocked on it wakes when the last server stops.
    let (waiting_tx, waiting) = mpsc::channel();
    let blocked = {
        let res = res.clone();
        thread::spawn(move || block_on(res, || waiting_tx.send(()).unwrap()))
    };
    waiting.recv_timeout(PATIENCE).expect("the task waits");
    second.stop().unwrap();
    assert!(flag.woken.load(Ordering::Acquire), "stopping the last server woke the waiting future");
    let err = blocked.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Misuse(Misuse::Unserved)), "{err:?}");

    // The call itself is still pending: `value()` serves it to the end.
    gate.open();
    assert!(res.value_as::<bool>().unwrap());
}

#[test]
fn a_thread_inside_serve_all_is_a_standing_server() {
    let gate = Gate::new();
    let client_side = Service::object(ObjectBuilder::new("Client").method("hello", || ()).build());
    let (client, server) =
        Builder::default().service(client_side).pair(Builder::default().service(service(&gate))).unwrap();
    let _serving = BgServingThread::new(&server);
    let root = client.root().unwrap();
    let res = async_(&root).call_method("gate", ());
    gate.wait_entered();
    assert!(matches!(poll_with_flag(&res).0, Poll::Ready(Err(Error::Misuse(Misuse::Unserved)))));

    let serving = {
        let client = client.clone();
        thread::spawn(move || client.serve_all())
    };
    // Only the thread in serve_all() serves the client: once the server's
    // call into it returns, that thread is in.
    server.root().unwrap().call_method::<()>("hello", ()).unwrap();
    let (poll, flag) = poll_with_flag(&res);
    assert!(poll.is_pending(), "served by serve_all(): the future waits");
    gate.open();
    assert!(block_on(res.typed::<bool>(), || ()).unwrap());
    assert!(flag.woken.load(Ordering::Acquire), "the earlier poll's waker was woken too");
    client.close();
    serving.join().unwrap().unwrap();
}

#[test]
fn a_typed_await_gives_the_type() {
    let gate = Gate::new();
    let (client, _server, _serving) = served_pair(&gate);
    let _client_serving = BgServingThread::new(&client);
    let root = client.root().unwrap();

    let sum: i64 = block_on(async_(&root).call_method("add", (1, 2)).typed::<i64>(), || ()).unwrap();
    assert_eq!(sum, 3i64);
    // The same slot seen as another type: a conversion error, the value intact.
    let res = async_(&root).call_method("add", (2, 3));
    let as_text = res.clone().typed::<String>();
    assert!(matches!(block_on(as_text, || ()), Err(Error::Convert(_))));
    let typed = res.typed::<i64>();
    assert_eq!(typed.value().unwrap(), 5);
    assert_eq!(typed.value_as::<u8>().unwrap(), 5u8);
    // Callbacks see the typed result.
    let (tx, rx) = mpsc::channel();
    typed.add_callback(move |r| tx.send(r.value().unwrap()).unwrap());
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), 5i64);
    assert_eq!(typed.into_value().unwrap(), 5i64);
}

#[test]
fn an_unread_remote_error_is_logged_once_dropped_and_a_read_one_is_not() {
    logcap::install();
    let gate = Gate::new();
    let pair = Pair::new(Service::none(), service(&gate));
    let root = pair.client.root().unwrap();

    let unread = async_(&root).call_method("fail", ("nobody reads this one",));
    let clone = unread.clone();
    pair.settle(); // the reply (an error) is in; nobody has looked
    drop(unread);
    assert!(!logged("nobody reads this one"), "a clone still lives");
    drop(clone);
    assert!(logged("nobody reads this one"), "dropping the last handle logs it");
    assert!(logcap::logged(&["WARN", "nobody read its error", "ValueError: nobody reads this one"]));

    // Each way of reading the outcome counts as read.
    type Read = fn(&netref::AsyncResult);
    let reads: [(&str, Read); 7] = [
        ("read by value", |r| drop(r.value())),
        ("read by value_as", |r| drop(r.value_as::<i64>())),
        ("read by error", |r| assert!(r.error())),
        ("read by ready", |r| assert!(r.ready())),
        ("read by wait", |r| r.wait().unwrap()),
        ("read by a callback", |r| r.add_callback(|_| ())),
        ("read by a future", |r| assert!(poll_unblocked(r.clone()).is_err())),
    ];
    for (why, read) in reads {
        let res = async_(&root).call_method("fail", (why,));
        pair.settle();
        read(&res);
        drop(res);
        assert!(!logged(why), "{why}: logged although read");
    }
    // A callback added before the reply arrived reads it too.
    let res = async_(&root).call_method("fail", ("read by an early callback",));
    res.add_callback(|_| ());
    pair.settle();
    drop(res);
    assert!(!logged("read by an early callback"));

    // Neither a closed connection nor an expiry is a reply: not logged.
    let expiring = async_(&root).call_method("gate", ());
    expiring.set_expiry(Duration::from_secs(1));
    pair.advance(Duration::from_secs(2));
    assert!(expiring.expired());
    drop(expiring);
    let closing = async_(&root).call_method("fail", ("cut off by close",));
    pair.client.close();
    drop(closing);
    assert!(!logcap::logged(&["nobody read its error", "cut off by close"]));
    assert!(!logcap::logged(&["nobody read its error", "gate"]));
}

fn logged(needle: &str) -> bool {
    logcap::logged(&["nobody read its error", needle])
}
