//! Asynchronous methods (`ObjectBuilder::async_method`): the connection
//! polls their futures and replies when they are ready, serving meanwhile;
//! a cancel or the end of the connection drops them; `max_async_calls`
//! bounds how many run. On the in-memory pair with its virtual clock, and
//! once over a socket for a future woken from another thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use netref::testing::Pair;
use netref::wire::{Cbor, Message};
use netref::{Builder, Config, Error, ObjectBuilder, RemoteObject, Service, ThreadedServer};

mod rawpeer;

/// How long a wait may take before the test fails (a bound on a hang, not
/// a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

/// Sets its flag when dropped: tells whether a future was let go.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A future that never completes, holding `flag` until it is dropped.
async fn forever(flag: DropFlag) -> Result<i64, String> {
    let _flag = flag;
    std::future::pending().await
}

fn asker(dropped: Arc<AtomicBool>) -> Service {
    let root = ObjectBuilder::new("Asker")
        .async_method("ask", |cb: RemoteObject, x: i64| async move {
            let answer: i64 = netref::async_(&cb).call((x,)).typed().await?;
            Ok::<_, Error>(answer * 2)
        })
        .async_method("fail", |why: String| async move { Err::<i64, _>(why) })
        .async_method("explode", || async move {
            if true {
                panic!("the future blew up");
            }
            Ok::<i64, String>(0)
        })
        .async_method("forever", move || forever(DropFlag(dropped.clone())))
        .build();
    Service::object(root)
}

#[test]
fn an_async_method_awaits_the_callers_callback() {
    let pair = Pair::new(Service::none(), asker(Arc::default()));
    let root = pair.client.root().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let cb = netref::callback(move |x: i64| {
        seen.fetch_add(1, Ordering::AcqRel);
        x + 1
    });
    // Synchronously: the client serves the callback while it waits.
    assert_eq!(root.call_method::<i64>("ask", (cb.clone(), 20)).unwrap(), 42);
    // Asynchronously: answered once both sides are served.
    let res = netref::async_(&root).call_method("ask", (cb, 1));
    pair.settle();
    assert_eq!(res.value_as::<i64>().unwrap(), 4);
    assert_eq!(calls.load(Ordering::Acquire), 2);
}

#[test]
fn errors_panics_and_bad_arguments_of_async_methods_reach_the_caller() {
    let pair = Pair::new(Service::none(), asker(Arc::default()));
    let root = pair.client.root().unwrap();
    let remote = |e: Error| match e {
        Error::Remote(r) => r,
        other => panic!("expected a remote error, got {other:?}"),
    };

    let e = remote(root.call_method::<i64>("fail", ("no luck",)).unwrap_err());
    assert_eq!(e.message, "no luck");
    assert!(e.traceback.iter().any(|t| t.contains("Asker.fail()")), "{:?}", e.traceback);

    let e = remote(root.call_method::<i64>("explode", ()).unwrap_err());
    assert_eq!((e.type_name.as_str(), e.message.as_str()), ("Panic", "the future blew up"));

    let e = remote(root.call_method::<i64>("ask", (1,)).unwrap_err());
    assert_eq!(e.type_name, "TypeError");
    assert!(e.message.contains("`Asker.ask` takes 2 arguments but 1 was given"), "{}", e.message);

    // The connection goes on.
    pair.client.ping().unwrap();
}

#[test]
fn a_cancelled_async_call_drops_its_future() {
    let dropped = Arc::new(AtomicBool::new(false));
    let pair = Pair::new(Service::none(), asker(dropped.clone()));
    let root = pair.client.root().unwrap();
    let res = netref::timed(&root, Duration::from_secs(1)).call_method("forever", ());
    pair.settle();
    assert!(!res.ready() && !dropped.load(Ordering::Acquire), "running, its future kept");
    // The caller gives up: its cancel ends the call on the server.
    pair.advance(Duration::from_secs(2));
    assert!(res.expired());
    assert!(dropped.load(Ordering::Acquire), "the server dropped the cancelled call's future");
    pair.client.ping().unwrap();
}

#[test]
fn the_end_of_the_connection_drops_running_async_calls() {
    let dropped = Arc::new(AtomicBool::new(false));
    let pair = Pair::new(Service::none(), asker(dropped.clone()));
    let root = pair.client.root().unwrap();
    let res = netref::async_(&root).call_method("forever", ());
    pair.settle();
    assert!(!dropped.load(Ordering::Acquire));
    pair.client.close();
    pair.settle();
    assert!(dropped.load(Ordering::Acquire), "closing dropped the running call's future");
    assert!(matches!(res.value(), Err(Error::Closed(_))));
}

#[test]
fn async_calls_past_max_async_calls_are_refused() {
    let server =
        Builder::default().service(asker(Arc::default())).config(Config::default().max_async_calls(2));
    let pair = Pair::with_builders(Builder::default(), server);
    let root = pair.client.root().unwrap();
    let running: Vec<_> =
        (0..2).map(|_| netref::timed(&root, Duration::from_secs(1)).call_method("forever", ())).collect();
    let refused = netref::async_(&root).call_method("forever", ());
    pair.settle();
    match refused.value() {
        Err(Error::Remote(e)) => {
            assert_eq!(e.type_name, "LimitError");
            assert!(e.message.contains("max_async_calls"), "{}", e.message);
        }
        other => panic!("expected the limit's refusal, got {other:?}"),
    }
    assert!(running.iter().all(|r| !r.ready()), "the first two still run");
    // The connection goes on, and a call that ends (here, cancelled) frees
    // its place.
    pair.client.ping().unwrap();
    pair.advance(Duration::from_secs(2));
    assert!(running.iter().all(|r| r.expired()));
    let again = netref::async_(&root).call_method("forever", ());
    pair.settle();
    assert!(!again.ready(), "accepted: it runs");
}

#[test]
fn calling_an_async_method_without_a_connection_is_a_type_error() {
    let object = ObjectBuilder::new("Asker").async_method("later", || async { Ok::<i64, String>(1) }).build();
    let e = object.object().call_method("later", Vec::new()).unwrap_err();
    assert_eq!(e.type_name, "TypeError");
    assert!(e.message.contains("`Asker.later` is asynchronous"), "{}", e.message);
}

/// A one-shot signal set from any thread, awaited by a future.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Signal {
    fn set(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }
}

struct Wait(Arc<Signal>);

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.state.lock().unwrap();
        if s.0 {
            return Poll::Ready(());
        }
        s.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_future_woken_from_another_thread_is_answered_by_the_serving_thread() {
    let signal = Arc::new(Signal::default());
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let s = signal.clone();
    let root = ObjectBuilder::new("Waiter")
        .async_method("wait", move || {
            let _ = started_tx.lock().unwrap().send(());
            let wait = Wait(s.clone());
            async move {
                wait.await;
                Ok::<_, String>(7)
            }
        })
        .method("add", |a: i64, b: i64| a + b)
        .build();
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(root))).unwrap();
    let addr = server.local_addr().unwrap();
    let serving = server.spawn();
    let conn = Builder::default().connect_tcp(addr).unwrap();
    let root = conn.root().unwrap();
    let res = netref::async_(&root).call_method("wait", ());
    started.recv_timeout(PATIENCE).expect("the method started");
    // The serving thread goes on serving while the call waits...
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);
    // ...and answers once another thread wakes the future.
    std::thread::spawn(move || signal.set()).join().unwrap();
    assert_eq!(res.value_as::<i64>().unwrap(), 7);
    conn.close();
    server.close();
    serving.join().unwrap();
}

/// A peer that reuses the sequence number of a call still running gets an
/// error for the new call; the running one keeps its place and its future
/// (it used to be overwritten, its future dropped under the lock and its
/// reply lost).
#[test]
fn a_reused_sequence_number_is_refused_and_the_running_call_kept() {
    /// Counts the futures alive.
    struct Live(Arc<AtomicUsize>);
    impl Drop for Live {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let live = Arc::new(AtomicUsize::new(0));
    let counter = live.clone();
    let root = ObjectBuilder::new("Asker")
        .async_method("forever", move || {
            counter.fetch_add(1, Ordering::AcqRel);
            let guard = Live(counter.clone());
            async move {
                let _guard = guard;
                std::future::pending::<Result<i64, String>>().await
            }
        })
        .method("add", |a: i64, b: i64| a + b)
        .build();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let conn = Builder::default().service(Service::object(root)).over_stream(ours).unwrap();
    let serving = std::thread::spawn(move || conn.serve_all());
    let mut raw = rawpeer::RawPeer::new(theirs);
    let root = raw.handshake();
    raw.send(&rawpeer::call_method(5, root, "forever", vec![])).unwrap();
    raw.send(&rawpeer::call_method(5, root, "forever", vec![])).unwrap();
    // A call behind them: requests run in arrival order, so its reply
    // comes after anything they got.
    raw.send(&rawpeer::call_method(6, root, "add", vec![Cbor::Integer(1), Cbor::Integer(2)])).unwrap();
    let mut refusals = Vec::new();
    loop {
        match raw.recv().expect("the server answers the ping") {
            Message::Error { seq: 5, error } => refusals.push(error),
            Message::Reply { seq: 6, .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].type_name, "ValueError");
    assert!(refusals[0].message.contains("still running"), "{}", refusals[0].message);
    assert_eq!(live.load(Ordering::Acquire), 1, "the running call keeps its future, the refused one is gone");
    drop(raw);
    let _ = serving.join().unwrap();
    assert_eq!(live.load(Ordering::Acquire), 0, "the end of the connection dropped it");
}
