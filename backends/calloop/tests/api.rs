//! netref-calloop by name: `attach`, `Attached`, `Server` and its `attach`,
//! and `callback` reaching the loop's data, over real sockets and a real
//! loop.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use calloop::EventLoop;
use netref::{BgServingThread, Builder, Connection};
use netref_calloop::Server;
use netref_conformance::{Peer, PeerServer, PATIENCE};

/// The loop's shared data.
#[derive(Default)]
struct Data {
    seen: Vec<i64>,
    errors: Vec<String>,
    awaited: Option<netref::Result<i64>>,
}

/// Dispatches `lp` until `done`; fails after `PATIENCE`.
fn run_until(lp: &mut EventLoop<'_, Data>, data: &mut Data, what: &str, done: impl Fn(&Data) -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !done(data) {
        let now = Instant::now();
        assert!(now < give_up, "timed out waiting for {what}");
        lp.dispatch(Some(give_up - now), data).unwrap();
    }
}

#[test]
fn attach_and_attached_by_name() {
    let (client, peer) = Builder::default().pair(Peer::new().builder()).unwrap();
    let peer_thread = thread::spawn(move || peer.serve_all());
    let mut lp: EventLoop<'static, Data> = EventLoop::try_new().unwrap();
    let attached = netref_calloop::attach(&lp.handle(), &client).unwrap();
    assert!(attached.is_attached());
    assert!(attached.connection().same_as(&client));
    let _token = attached.token();
    let root = client.root().unwrap();
    let mut data = Data::default();

    let res = netref::async_(&root).call_method("add", (40, 2));
    run_until(&mut lp, &mut data, "the reply", |_| res.ready());
    assert_eq!(res.value_as::<i64>().unwrap(), 42);

    attached.detach();
    // Detached: this thread serves it again without the loop.
    assert_eq!(root.call_method::<i64>("add", (2, 3)).unwrap(), 5);
    drop(root);
    client.close();
    peer_thread.join().unwrap().unwrap();
}

#[test]
fn a_closed_connection_removes_its_source() {
    let (client, peer) = Builder::default().pair(Builder::default()).unwrap();
    let mut lp: EventLoop<'static, Data> = EventLoop::try_new().unwrap();
    let attached = netref_calloop::attach(&lp.handle(), &client).unwrap();
    peer.close();
    let mut data = Data::default();
    let give_up = Instant::now() + PATIENCE;
    while attached.is_attached() {
        assert!(Instant::now() < give_up, "timed out waiting for the close");
        lp.dispatch(Some(PATIENCE), &mut data).unwrap();
    }
    assert!(client.is_closed());
    drop(attached); // the source is gone already: nothing to remove
}

#[test]
fn callback_with_not_send_captures_reaches_the_loop_data() {
    let server = PeerServer::start();
    let conn = server.connect();
    let mut lp: EventLoop<'static, Data> = EventLoop::try_new().unwrap();
    let attached = netref_calloop::attach(&lp.handle(), &conn).unwrap();
    let root = conn.root().unwrap();
    let factor = Rc::new(3); // !Send
    let cb = netref_calloop::callback(move |data: &mut Data, x: i64| {
        data.seen.push(x * *factor);
        x + 1
    });
    let mut data = Data::default();
    let res = netref::async_(&root).call_method("call_me", (cb, 7));
    run_until(&mut lp, &mut data, "the peer's call through the callback", |_| res.ready());
    assert_eq!(res.value_as::<i64>().unwrap(), 8);
    assert_eq!(data.seen, [21], "the callback changed the loop's data");
    drop(attached);
}

#[test]
fn a_nested_loop_data_callback_gets_a_clear_error_not_a_second_borrow() {
    let server = PeerServer::start();
    let conn = server.connect();
    let mut lp: EventLoop<'static, Data> = EventLoop::try_new().unwrap();
    let attached = netref_calloop::attach(&lp.handle(), &conn).unwrap();
    let root = conn.root().unwrap();
    let inner = netref_calloop::callback(|data: &mut Data, x: i64| {
        data.seen.push(x);
        x
    });
    let r = root.clone();
    // While it runs (holding the data), a synchronous call makes the peer
    // call `inner`.
    let outer = netref_calloop::callback(move |data: &mut Data, x: i64| {
        match r.call_method::<i64>("call_me", (inner.clone(), x)) {
            Ok(v) => v,
            Err(e) => {
                data.errors.push(e.to_string());
                -1
            }
        }
    });
    let mut data = Data::default();
    let res = netref::async_(&root).call_method("call_me", (outer, 5));
    run_until(&mut lp, &mut data, "the outer callback's reply", |_| res.ready());
    assert_eq!(res.value_as::<i64>().unwrap(), -1);
    assert!(data.seen.is_empty(), "the inner callback never ran");
    assert_eq!(data.errors.len(), 1);
    assert!(data.errors[0].contains("RuntimeError"), "{}", data.errors[0]);
    assert!(data.errors[0].contains("while another one runs"), "{}", data.errors[0]);
    drop(attached);
    conn.close(); // `outer` holds a proxy from this connection
}

#[test]
fn a_loop_data_callback_outside_the_dispatch_gets_a_clear_error() {
    let server = PeerServer::start();
    let conn = server.connect();
    let lp: EventLoop<'static, Data> = EventLoop::try_new().unwrap();
    let attached = netref_calloop::attach(&lp.handle(), &conn).unwrap();
    let root = conn.root().unwrap();
    let cb = netref_calloop::callback(|data: &mut Data, x: i64| {
        data.seen.push(x);
        x
    });
    // A synchronous call on the loop's thread, but not inside its dispatch:
    // it serves the peer's call to `cb` itself, with no data to lend.
    let err = root.call_method::<i64>("call_me", (cb, 1)).unwrap_err();
    let remote = err.as_remote().expect("a remote error");
    assert_eq!(remote.type_name, "RuntimeError", "{err}");
    assert!(remote.message.contains("outside calloop's dispatch"), "{err}");
    drop(attached);
}

#[test]
fn a_loop_data_callback_called_from_another_thread_gets_a_clear_error() {
    let server = PeerServer::start();
    let conn = server.connect();
    let bg = BgServingThread::new(&conn); // not attached: served elsewhere
    let root = conn.root().unwrap();
    let mark = Rc::new(()); // !Send
    let cb = netref_calloop::callback(move |data: &mut Data, x: i64| {
        let _ = &mark;
        data.seen.push(x);
        x
    });
    let err = thread::scope(|s| {
        s.spawn(|| root.call_method::<i64>("call_me", (cb, 1)).unwrap_err()).join().unwrap()
    });
    let remote = err.as_remote().expect("a remote error");
    assert_eq!(remote.type_name, "RuntimeError", "{err}");
    assert!(remote.message.contains("called from another thread"), "{err}");
    bg.stop().unwrap();
}

#[test]
fn awaiting_a_typed_result_on_the_loop() {
    let server = PeerServer::start();
    let conn = server.connect();
    let mut lp: EventLoop<'static, Data> = EventLoop::try_new().unwrap();
    let attached = netref_calloop::attach(&lp.handle(), &conn).unwrap();
    // calloop's executor, in the same loop: the connection's source reads
    // the reply and wakes the task, the executor's source polls it again.
    let (executor, scheduler) = calloop::futures::executor::<netref::Result<i64>>().unwrap();
    lp.handle().insert_source(executor, |sum, _, data: &mut Data| data.awaited = Some(sum)).unwrap();
    let root = conn.root().unwrap();
    scheduler
        .schedule(async move { netref::async_(&root).call_method("add", (40, 2)).typed::<i64>().await })
        .unwrap();
    let mut data = Data::default();
    run_until(&mut lp, &mut data, "the awaited reply", |d| d.awaited.is_some());
    assert_eq!(data.awaited.take().unwrap().unwrap(), 42);
    drop(attached);
}

/// Runs the server `make` makes on a loop thread of its own (a calloop
/// source is not `Send`), started with `server.attach`; returns a client's
/// answer from it (`connect` gets the server's TCP address, if any).
fn serve_one_call(
    make: impl FnOnce() -> Server + Send + 'static,
    connect: impl FnOnce(Option<SocketAddr>) -> Connection,
) -> i64 {
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut lp: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
        let server = make();
        let addr = server.local_addr();
        server.attach(&lp.handle()).unwrap();
        tx.send((lp.get_signal(), addr)).unwrap();
        lp.run(None, &mut (), |_| {}).unwrap();
    });
    let (signal, addr) = rx.recv_timeout(PATIENCE).unwrap();
    let conn = connect(addr);
    let sum = conn.root().unwrap().call_method::<i64>("add", (20, 22)).unwrap();
    conn.close();
    signal.stop();
    signal.wakeup();
    thread.join().unwrap();
    sum
}

#[test]
fn server_constructors_and_attach_by_name() {
    let tcp = |addr: Option<SocketAddr>| Builder::default().connect_tcp(addr.unwrap()).unwrap();
    let builder = Peer::new().builder();

    let b = builder.clone();
    assert_eq!(serve_one_call(move || Server::bind_tcp("127.0.0.1:0", b).unwrap(), tcp), 42);

    let path = std::env::temp_dir().join(format!("netref-calloop-api-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (p, b) = (path.clone(), builder.clone());
    let sum = serve_one_call(
        move || Server::bind_unix(p, b).unwrap(),
        |_| Builder::default().connect_unix(&path).unwrap(),
    );
    assert_eq!(sum, 42);
    std::fs::remove_file(&path).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(serve_one_call(move || Server::from_listener(listener, builder).unwrap(), tcp), 42);
}
