//! Connections over real sockets: events, serving, threads, servers, and
//! RPyC's scenarios that need threads (durations scaled by `common::SCALE`).
//! Its asynchronous-operation scenarios and the sync timeouts, which need
//! no sockets, run on the in-memory pair in virtual time (`scenarios.rs`).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{secs, Point, TestServer};
use netref::{
    async_, callback, BgServingThread, Builder, Config, LocalObject, ObjectBuilder, ObjectRef, OneShotServer,
    RemoteObject, Service, ThreadedServer, Value,
};

// ---- 6: events while blocking calls run ------------------------------------------

#[test]
fn s6_callbacks_arrive_during_blocking_calls_with_bg_thread() {
    // The server's `tick_while_blocked(cb, n)` has another thread send `n`
    // events to `cb`, and returns only once the client has run all of them
    // (it waits on the client's own counter, in this process): it can only
    // return `true` if the client serves the events while its main thread
    // is blocked in the call.
    const PATIENCE: Duration = Duration::from_secs(10);
    let seen = Arc::new((Mutex::new(0usize), std::sync::Condvar::new()));
    let s = seen.clone();
    let root = ObjectBuilder::new("Ticker")
        .method("tick_while_blocked", move |cb: RemoteObject, n: usize| {
            let before = *s.0.lock().unwrap();
            thread::spawn(move || {
                for i in 0..n {
                    drop(async_(&cb).call((i,)));
                }
            });
            let (count, ran) = &*s;
            let count = count.lock().unwrap();
            let (count, _) = ran.wait_timeout_while(count, PATIENCE, |c| *c < before + n).unwrap();
            *count == before + n
        })
        .build();
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(root))).unwrap();
    let accept = server.spawn();
    let conn = netref::connect(server.local_addr().unwrap()).unwrap();
    let bg = BgServingThread::new(&conn);
    let s = seen.clone();
    let on_tick = callback(move |_n: i64| {
        *s.0.lock().unwrap() += 1;
        s.1.notify_all();
    });
    let root = conn.root().unwrap();
    for round in 1..=3 {
        let served: bool = root.call_method("tick_while_blocked", (on_tick.clone(), 5)).unwrap();
        assert!(served, "round {round}: the events were not served while the call blocked");
    }
    assert_eq!(*seen.0.lock().unwrap(), 15);
    bg.stop().unwrap();
    drop(root);
    conn.close();
    server.close();
    accept.join().unwrap();
}

// ---- 7: releases -----------------------------------------------------------------

#[test]
fn s7_dropping_proxies_frees_exactly_those_objects() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    let objs: Vec<RemoteObject> =
        ["a", "b", "c", "d"].iter().map(|n| root.call_method("make", (*n,)).unwrap()).collect();
    let mut objs = objs.into_iter();
    let (a, b, c, d) =
        (objs.next().unwrap(), objs.next().unwrap(), objs.next().unwrap(), objs.next().unwrap());
    drop(a);
    drop(b);
    conn.ping().unwrap(); // the release goes out no later than this request
    assert_eq!(srv.dropped(), ["a", "b"]);
    let c2 = c.clone();
    drop(c);
    conn.ping().unwrap();
    assert_eq!(srv.dropped(), ["a", "b"], "one clone of c still lives");
    assert_eq!(c2.call_method::<String>("name", ()).unwrap(), "c");
    drop(c2);
    conn.ping().unwrap();
    assert_eq!(srv.dropped(), ["a", "b", "c"]);
    let _ = d;
}

#[test]
fn same_remote_object_is_one_proxy_and_survives_release_races() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    let thing: RemoteObject = root.call_method("make", ("x",)).unwrap();
    // Handing it back and forth gives the same proxy identity.
    let back: Value = root.call_method("echo", (thing.clone(),)).unwrap();
    assert!(back.as_remote().unwrap().same_as(&thing));
    // Drop every proxy while the server hands it out again: the server must
    // keep the object alive for the new reference.
    for _ in 0..50 {
        let again: Value = root.call_method("echo", (thing.clone(),)).unwrap();
        drop(again);
    }
    assert_eq!(thing.call_method::<i64>("double", (21,)).unwrap(), 42);
    drop(back);
    drop(thing);
    conn.ping().unwrap();
    assert_eq!(srv.dropped(), ["x"]);
}

// ---- 8: tracebacks ------------------------------------------------------------------

#[test]
fn s8_remote_traceback_present_or_hidden() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let err = conn.root().unwrap().call_method::<i64>("int", ("foo",)).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("ParseIntError: invalid digit found in string"), "{text}");
    assert!(text.contains("========= Remote Traceback (1) ========="), "{text}");
    assert!(text.contains("TestService.int()"), "{text}");

    let quiet = TestServer::with(
        |b| b.config(Config::default().include_traceback(false)),
        |b| ThreadedServer::bind_tcp("127.0.0.1:0", b).unwrap(),
    );
    let conn = quiet.connect();
    let err = conn.root().unwrap().call_method::<i64>("int", ("foo",)).unwrap_err();
    assert!(err.as_remote().unwrap().traceback.is_empty());
    assert_eq!(err.to_string(), "ParseIntError: invalid digit found in string");
}

#[test]
fn error_in_a_callback_travels_back_through_every_hop() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    let failing = ObjectBuilder::new("ClientCallback")
        .try_callable(|x: i64| if x > 0 { Err(format!("refusing {x}")) } else { Ok(x) })
        .build();
    let err = root.call_method::<i64>("call_me", (failing, 5)).unwrap_err();
    let remote = err.as_remote().unwrap();
    assert_eq!(remote.type_name, "String");
    assert_eq!(remote.message, "refusing 5");
    assert_eq!(remote.traceback.len(), 2, "one section per hop: {err}");
    assert!(remote.traceback[0].contains("ClientCallback()"));
    assert!(remote.traceback[1].contains("TestService.call_me()"));
}

// ---- 9: hooks -------------------------------------------------------------------------

#[test]
fn s9_connect_disconnect_and_before_close_hooks() {
    let srv = TestServer::tcp();
    let conn = srv.connect_with(Builder::default().service(Service::none().before_close(|c| {
        let _: () = c.root().unwrap().call_method("note", ("goodbye",)).unwrap();
    })));
    let _root = conn.root().unwrap();
    assert_eq!(srv.connects.load(Ordering::SeqCst), 1, "on_connect ran before root() returned");
    let (tx, rx) = mpsc::channel();
    let client_disconnected = Arc::new(AtomicBool::new(false));
    let flag = client_disconnected.clone();
    let conn2 = srv.connect_with(Builder::default().service(Service::none().on_disconnect(move |_| {
        flag.store(true, Ordering::SeqCst);
        let _ = tx.send(());
    })));
    conn2.ping().unwrap();
    conn.close();
    assert_eq!(srv.notes.lock().unwrap().as_slice(), ["goodbye"], "before_close could call the peer");
    assert!(conn.root().unwrap_err().is_closed());
    conn2.close();
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(client_disconnected.load(Ordering::SeqCst));
    // The server notices both disconnects (its threads serve until EOF).
    drop(srv); // joins the server's threads after closing
}

#[test]
fn on_disconnect_can_tell_which_connection_ended() {
    let seen: Arc<Mutex<Vec<netref::WeakConnection>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let (register, gone) = (seen.clone(), seen.clone());
    let service = Service::new(move |conn| {
        register.lock().unwrap().push(conn.downgrade());
        netref::ObjectBuilder::new("Nothing").build()
    })
    .on_disconnect(move |conn| {
        let index = gone.lock().unwrap().iter().position(|w| w.is(conn));
        tx.lock().unwrap().send(index).unwrap();
    });
    let server =
        netref::ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service)).unwrap();
    let addr = server.local_addr().unwrap();
    let accepting = server.spawn();
    let first = netref::connect(addr).unwrap();
    first.root().unwrap();
    let second = netref::connect(addr).unwrap();
    second.root().unwrap();
    assert!(first.same_as(&first.clone()) && !first.same_as(&second));
    second.close();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(1), "the second client left");
    first.close();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(0), "then the first");
    server.close();
    accepting.join().unwrap();
}

#[test]
fn server_on_disconnect_runs_when_client_goes() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    conn.ping().unwrap();
    drop(conn);
    let server = srv.server.clone();
    let disconnects = srv.disconnects.clone();
    drop(srv); // close() joins every connection thread, each of which ran on_disconnect
    assert_eq!(disconnects.load(Ordering::SeqCst), 1);
    assert_eq!(server.connection_count(), 0);
}

// ---- 10-12: data, exposure, identity ---------------------------------------------------

#[test]
fn s10_data_by_value() {
    let srv = TestServer::tcp();
    let root = srv.connect().root().unwrap();
    let d: f64 = root.call_method("distance", (Point { x: 0.0, y: 0.0 }, Point { x: 3.0, y: 4.0 })).unwrap();
    assert_eq!(d, 5.0);
}

#[test]
fn s11_exposed_members_only() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    assert_eq!(root.getattr::<String>("version").unwrap(), "1.0");
    assert_eq!(root.getattr::<i64>("answer").unwrap(), 42);
    let names = root.dir().unwrap();
    assert!(names.contains(&"add".to_string()) && names.contains(&"version".to_string()));
    for hidden in ["secret", "__class__", "_private", "drop"] {
        let err = root.call_method::<Value>(hidden, ()).unwrap_err();
        let r = err.as_remote().unwrap();
        assert_eq!(r.type_name, "AttributeError");
        assert!(r.message.contains(hidden), "{r}");
        assert!(
            root.getattr::<Value>(hidden).unwrap_err().as_remote().unwrap().type_name == "AttributeError"
        );
    }
    let wrong_arity = root.call_method::<i64>("add", (1,)).unwrap_err();
    assert_eq!(wrong_arity.as_remote().unwrap().type_name, "TypeError");
    let wrong_type = root.call_method::<i64>("add", ("one", 2)).unwrap_err();
    assert_eq!(wrong_type.as_remote().unwrap().type_name, "TypeError");
    // An exposed object created remotely.
    let thing: RemoteObject = root.call_method("make", ("t",)).unwrap();
    assert_eq!(thing.call_method::<i64>("double", (4,)).unwrap(), 8);
    // A method read as an attribute is callable (a bound method).
    let add: RemoteObject = root.getattr("add").unwrap();
    assert_eq!(add.call::<i64>((2, 2)).unwrap(), 4);
    // The connection is unaffected by all of the above.
    assert_eq!(root.call_method::<i64>("add", (1, 1)).unwrap(), 2);
}

#[test]
fn s12_object_handed_back_is_the_same_local_object() {
    let srv = TestServer::tcp();
    let root = srv.connect().root().unwrap();
    let mine = ObjectBuilder::new("Mine").build();
    let back: Value = root.call_method("echo", (mine.clone(),)).unwrap();
    match back {
        Value::Object(ObjectRef::Local(l)) => assert!(l.same_as(&mine)),
        other => panic!("expected my own object back, got {other}"),
    }
    let typed: LocalObject = root.call_method("echo", (mine.clone(),)).unwrap();
    assert!(typed.same_as(&mine));
}

// ---- 13: servers -------------------------------------------------------------------------

fn concurrent_clients(server: ThreadedServer, connect: impl Fn() -> netref::Connection + Sync) {
    // Each call blocks in the server until all three clients are inside it:
    // only a server that serves them at once lets this finish.
    let accept = server.spawn();
    thread::scope(|s| {
        for i in 0..3 {
            let conn = connect();
            s.spawn(move || {
                let got: i64 = conn.root().unwrap().call_method("meet", (i,)).unwrap();
                assert_eq!(got, i);
            });
        }
    });
    server.close();
    accept.join().unwrap();
}

fn meeting_service() -> Builder {
    let barrier = Arc::new(Barrier::new(3));
    Builder::default().service(Service::object(
        ObjectBuilder::new("Meeting")
            .method("meet", move |i: i64| {
                barrier.wait();
                i
            })
            .build(),
    ))
}

#[test]
fn s13_threaded_server_tcp_and_unix_serve_clients_at_once() {
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", meeting_service()).unwrap();
    let addr = server.local_addr().unwrap();
    concurrent_clients(server, || netref::connect(addr).unwrap());

    let dir = std::env::temp_dir().join(format!("netref-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s13.sock");
    let _ = std::fs::remove_file(&path);
    let server = ThreadedServer::bind_unix(&path, meeting_service()).unwrap();
    concurrent_clients(server, || Builder::default().connect_unix(&path).unwrap());
}

#[test]
fn s13_one_shot_server_serves_one_client_then_stops_listening() {
    let calc = ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build();
    let server =
        OneShotServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(calc))).unwrap();
    let addr = server.local_addr().unwrap();
    let t = thread::spawn(move || server.start());
    let conn = netref::connect(addr).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (2, 3)).unwrap(), 5);
    // The listener closed once the first client was accepted.
    assert!(std::net::TcpStream::connect(addr).is_err());
    conn.close();
    t.join().unwrap().unwrap();
}

// ---- nesting, timeouts, serving ------------------------------------------------------------

#[test]
fn nested_callbacks_at_depth() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    // client -> server.bounce(n, cb) -> client cb(n-1) -> server.bounce(n-1, cb) -> ...
    let weak_root = Arc::new(Mutex::new(None::<RemoteObject>));
    let r = weak_root.clone();
    let cb = ObjectBuilder::new("Bouncer")
        .try_callable(move |n: i64| -> netref::Result<i64> {
            let root = r.lock().unwrap().clone().unwrap();
            let me = SELF.with(|s| s.borrow().clone()).unwrap();
            root.call_method("bounce", (n, me))
        })
        .build();
    thread_local!(static SELF: std::cell::RefCell<Option<LocalObject>> = const { std::cell::RefCell::new(None) });
    SELF.with(|s| *s.borrow_mut() = Some(cb.clone()));
    *weak_root.lock().unwrap() = Some(root.clone());
    let depth: i64 = root.call_method("bounce", (10, cb)).unwrap();
    assert_eq!(depth, 10);
    weak_root.lock().unwrap().take();
    SELF.with(|s| s.borrow_mut().take());
}

#[test]
fn pull_model_events_processed_on_next_interaction() {
    // The seed's `print mon`: nobody serves the client, so the server's events
    // wait in the socket until the next interaction pulls them in.
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    let (tx, rx) = mpsc::channel();
    let cb = callback(move |n: i64| tx.send(n).unwrap());
    // Sent without waiting; the server signals (in-process) once its three
    // events are on their way.
    let burst = async_(&root).call_method("burst", (cb, 3));
    srv.wait_bursts(1);
    assert!(rx.try_recv().is_err(), "nothing is processed while nobody serves");
    // The interaction: everything that arrived before the ping's reply is served.
    conn.ping().unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3], "events were processed by the next interaction");
    assert!(burst.ready());
}

#[test]
fn serve_and_poll_all() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    // Only the reply to root() has been seen so far: nothing to serve.
    assert!(!conn.poll_all().unwrap());
    let (tx, rx) = mpsc::channel();
    let ticker: RemoteObject =
        root.call_method("ticker", (callback(move |n: i64| tx.send(n).unwrap()), 0.1)).unwrap();
    // serve() waits for something to arrive and serves it.
    let mut got = Vec::new();
    while got.len() < 3 {
        conn.serve(Duration::from_secs(10)).unwrap();
        got.extend(rx.try_iter());
    }
    assert_eq!(&got[..3], &[1, 2, 3]);
    let _: () = ticker.call_method("stop", ()).unwrap();
    // serve() with nothing arriving returns false after its timeout.
    while conn.serve(Duration::ZERO).unwrap() {}
}

#[test]
fn bg_serving_thread_delivers_events_as_they_arrive_and_stops_promptly() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let bg = BgServingThread::new(&conn);
    let root = conn.root().unwrap();
    let (tx, rx) = mpsc::channel();
    let ticker: RemoteObject =
        root.call_method("ticker", (callback(move |n: i64| tx.send(n).unwrap()), 0.025)).unwrap();
    // 40 events, one per 5 ms, each handed over in order as it arrives
    // while the main thread only waits on its channel.
    for expected in 1..=40 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), expected);
    }
    let _: () = ticker.call_method("stop", ()).unwrap();
    bg.stop().unwrap();
    // After stop(), events are no longer served in the background.
    assert!(!conn.is_closed());
}

// ---- threads --------------------------------------------------------------------------------

#[test]
fn many_threads_share_one_connection_every_reply_once() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let bg = BgServingThread::new(&conn);
    let root = conn.root().unwrap();
    thread::scope(|s| {
        for t in 0..8i64 {
            let root = root.clone();
            s.spawn(move || {
                for i in 0..200i64 {
                    let v = t * 1000 + i;
                    if i % 2 == 0 {
                        assert_eq!(root.call_method::<i64>("add", (v, 1)).unwrap(), v + 1);
                    } else {
                        let r = async_(&root).call_method("echo", (v,));
                        assert_eq!(r.value_as::<i64>().unwrap(), v);
                    }
                }
            });
        }
    });
    bg.stop().unwrap();
    // Same without a background thread: the callers serve for each other.
    thread::scope(|s| {
        for t in 0..4i64 {
            let root = root.clone();
            s.spawn(move || {
                for i in 0..200i64 {
                    assert_eq!(root.call_method::<i64>("add", (t, i)).unwrap(), t + i);
                }
            });
        }
    });
    assert_eq!(conn.pending_count(), 0);
}

#[test]
fn requests_served_from_one_thread_run_in_arrival_order() {
    // The server serves each connection from one thread: 300 asynchronous
    // notes, sent without waiting, are recorded in the order they were sent.
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    let results: Vec<_> = (0..300).map(|i| async_(&root).call_method("note", (format!("{i}"),))).collect();
    for r in &results {
        r.wait().unwrap();
    }
    let expected: Vec<String> = (0..300).map(|i| format!("{i}")).collect();
    assert_eq!(*srv.notes.lock().unwrap(), expected);
    // And the client side: events pushed by the server run in the order sent.
    let (tx, rx) = mpsc::channel();
    let cb = callback(move |n: i64| tx.send(n).unwrap());
    let _: () = root.call_method("burst", (cb, 100)).unwrap();
    conn.ping().unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), (1..=100).collect::<Vec<i64>>());
}

#[test]
fn a_reply_never_overtakes_a_callback_sent_before_it() {
    // `burst` sends an event and then returns: with nobody else serving, the
    // event has run by the time the synchronous call returns, every time.
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let cb = callback(move |_: i64| {
        s.fetch_add(1, Ordering::SeqCst);
    });
    for i in 1..=300 {
        let _: () = root.call_method("burst", (cb.clone(), 1)).unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), i, "call {i} returned before its event ran");
    }
}

#[test]
fn into_value_moves_the_value_out_only_when_nobody_else_can_see_it() {
    let srv = TestServer::tcp();
    let root = srv.connect().root().unwrap();
    let payload = Value::Bytes(vec![7; 1 << 16]);
    // With a clone alive, the clone still has the value afterwards.
    let res = async_(&root).call_method("echo", (payload.clone(),));
    let other = res.clone();
    assert_eq!(res.into_value().unwrap(), payload);
    assert_eq!(other.value().unwrap(), payload);
    // Alone, it moves out; a remote error still comes back as `Err`.
    assert_eq!(async_(&root).call_method("echo", (payload.clone(),)).into_value().unwrap(), payload);
    let err = async_(&root).call_method("int", ("x",)).into_value().unwrap_err();
    assert!(err.as_remote().is_some(), "{err}");
}

#[test]
fn async_result_is_a_future() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let bg = BgServingThread::new(&conn);
    let root = conn.root().unwrap();
    let fut = async_(&root).call_method("add", (20, 22));
    assert_eq!(block_on(fut).unwrap(), Value::Integer(42));
    // Only the expiry can end this call: the server holds it.
    let expiring = async_(&root).call_method("hold", ());
    expiring.set_expiry(secs(1.0));
    assert!(block_on(expiring).unwrap_err().is_timeout());
    bg.stop().unwrap();
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

// ---- closing and peer death ----------------------------------------------------------------

#[test]
fn close_fails_pending_calls_at_once() {
    let srv = TestServer::tcp();
    let conn = srv.connect();
    let root = conn.root().unwrap();
    // Only the close can end this call: the server holds it until it goes away.
    let pending = async_(&root).call_method("hold", ());
    conn.close();
    let err = pending.value().unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert!(root.call_method::<i64>("add", (1, 2)).unwrap_err().is_closed());
}

#[test]
fn peer_vanishing_mid_call_fails_the_call_promptly() {
    // The "server" is a raw socket that reads the request and then dies.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let conn = Builder::default().over_stream(ours).unwrap();
    let killer = thread::spawn(move || {
        use std::io::{Read, Write};
        let mut theirs = theirs;
        // Answer the hello so the client gets as far as sending its request.
        let mut hello = Vec::new();
        netref::wire::encode_frame(
            &netref::wire::Message::Hello { version: netref::wire::VERSION, features: 0 }.to_cbor(),
            &mut hello,
            1 << 20,
        )
        .unwrap();
        theirs.write_all(&hello).unwrap();
        let mut buf = [0u8; 256];
        let _ = theirs.read(&mut buf).unwrap();
        drop(theirs);
    });
    let err = conn.root().unwrap_err();
    assert!(err.is_closed(), "{err}");
    killer.join().unwrap();
    assert!(conn.is_closed());
}

#[test]
fn wrong_protocol_peer_gets_a_clear_error() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let conn = Builder::default().over_stream(ours).unwrap();
    use std::io::Write;
    let mut theirs = theirs;
    // Something that is not netref (an HTTP request) where the hello should be.
    theirs.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let err = conn.root().unwrap_err();
    assert!(
        err.to_string().contains(r#"the peer does not speak netref: its first bytes are "GET / HTTP/1.1..""#),
        "{err}"
    );
}
