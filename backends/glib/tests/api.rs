//! netref-glib by name: `attach`, `Attached`, `Server`'s constructors and
//! `attach`, over real sockets. Each test runs under its own private
//! thread-default `MainContext`.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use glib::MainContext;
use netref::{Builder, Connection};
use netref_conformance::{Peer, PeerServer, PATIENCE};
use netref_glib::Server;

/// Iterates `ctx` until `done`; fails after `PATIENCE`.
fn run_until(ctx: &MainContext, what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        let tick =
            glib::timeout_source_new(Duration::from_millis(100), None, glib::Priority::DEFAULT, || {
                glib::ControlFlow::Break
            });
        tick.attach(Some(ctx));
        ctx.iteration(true);
        tick.destroy();
    }
}

fn with_context(test: impl FnOnce(&MainContext)) {
    let ctx = MainContext::new();
    ctx.with_thread_default(|| test(&ctx)).expect("acquire the context");
}

#[test]
fn attach_and_attached_by_name() {
    with_context(|ctx| {
        let server = PeerServer::start();
        let conn = server.connect();
        let attached = netref_glib::attach(&conn, ctx).unwrap();
        assert!(attached.is_attached());
        assert!(attached.connection().same_as(&conn));
        let again = netref_glib::attach(&conn, ctx).err().expect("attached twice");
        assert!(again.to_string().contains("already attached"), "{again}");
        let root = conn.root().unwrap();
        let res = netref::async_(&root).call_method("add", (40, 2));
        run_until(ctx, "the reply", || res.ready());
        assert_eq!(res.value_as::<i64>().unwrap(), 42);
        attached.detach();
        // Detached: this thread serves it again without the context.
        assert_eq!(root.call_method::<i64>("add", (2, 3)).unwrap(), 5);
    });
}

#[test]
fn awaiting_a_typed_result_on_the_loop() {
    with_context(|ctx| {
        let server = PeerServer::start();
        let conn = server.connect();
        let attached = netref_glib::attach(&conn, ctx).unwrap();
        let root = conn.root().unwrap();
        // Set by the future, on the context's thread, once its `.await` is
        // over: the context's fd watch read the reply and woke the task.
        let got: Rc<RefCell<Option<netref::Result<i64>>>> = Rc::default();
        let g = got.clone();
        // `spawn_future_local` spawns on the thread-default context: `ctx`.
        glib::spawn_future_local(async move {
            let sum = netref::async_(&root).call_method("add", (40, 2)).typed::<i64>().await;
            *g.borrow_mut() = Some(sum);
        });
        run_until(ctx, "the awaited reply", || got.borrow().is_some());
        assert_eq!(got.borrow_mut().take().unwrap().unwrap(), 42);
        drop(attached);
    });
}

/// Runs `make`'s server on a context thread of its own (`server.attach`);
/// returns a client's answer from it.
fn serve_one_call(
    make: impl FnOnce() -> Server + Send + 'static,
    connect: impl FnOnce(Option<SocketAddr>) -> Connection,
) -> i64 {
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        let ctx = MainContext::new();
        ctx.with_thread_default(|| {
            let server = make();
            server.attach(&ctx).unwrap();
            let again = server.attach(&ctx).unwrap_err();
            assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
            tx.send((server.clone(), ctx.clone())).unwrap();
            while stop_rx.try_recv().is_err() {
                ctx.iteration(true);
            }
            server.close();
        })
        .unwrap();
    });
    let (server, ctx) = rx.recv_timeout(PATIENCE).unwrap();
    let conn = connect(server.local_addr());
    let sum = conn.root().unwrap().call_method::<i64>("add", (20, 22)).unwrap();
    assert_eq!(server.connection_count(), 1);
    stop_tx.send(()).unwrap();
    ctx.wakeup();
    thread.join().unwrap();
    assert!(conn.serve(PATIENCE).is_err() || conn.is_closed(), "the server's close reached the client");
    sum
}

#[test]
fn server_constructors_and_attach_by_name() {
    let tcp = |addr: Option<SocketAddr>| Builder::default().connect_tcp(addr.unwrap()).unwrap();
    let builder = Peer::new().builder();

    let b = builder.clone();
    assert_eq!(serve_one_call(move || Server::bind_tcp("127.0.0.1:0", b).unwrap(), tcp), 42);

    let path = std::env::temp_dir().join(format!("netref-glib-api-{}.sock", std::process::id()));
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
