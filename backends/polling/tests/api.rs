//! netref-polling by name: `attach`, `Attached`, the server's constructors
//! and `callback`, over real sockets.

use std::cell::RefCell;
use std::future::Future;
use std::net::TcpListener;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{self, Context, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use netref::{Builder, Connection};
use netref_conformance::{Peer, PeerServer, PATIENCE};
use netref_polling::{Attached, Doorbell, Server};
use polling::{Events, Poller};

const CONN: usize = 7;

/// Waits on the poller and drives `attached` until `done`; fails after
/// `PATIENCE`.
fn run_until(doorbell: &Doorbell, attached: &mut Attached, what: &str, done: impl Fn(&Attached) -> bool) {
    let give_up = Instant::now() + PATIENCE;
    let mut events = Events::new();
    while !done(attached) {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        events.clear();
        let wait = netref_polling::timeout(attached.next_deadline()).unwrap_or(PATIENCE).min(PATIENCE);
        doorbell.poller().wait(&mut events, Some(wait)).unwrap();
        let ready = events.iter().any(|e| e.key == CONN) || doorbell.take().contains(&CONN);
        if ready || attached.is_due() {
            attached.drive().unwrap();
        }
    }
}

/// A minimal executor for one future, on std alone: polls it on this
/// thread, parking between wake-ups; fails after `PATIENCE`.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let give_up = Instant::now() + PATIENCE;
    loop {
        if let task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let now = Instant::now();
        assert!(now < give_up, "timed out waiting for the future to be woken");
        thread::park_timeout(give_up - now); // a spurious return just polls again
    }
}

#[test]
fn attach_drive_and_detach_by_name() {
    let server = PeerServer::start();
    let conn = server.connect();
    let doorbell = Doorbell::new(Arc::new(Poller::new().unwrap()));
    let mut attached = netref_polling::attach(&conn, &doorbell, CONN).unwrap();
    assert!(attached.is_attached());
    assert_eq!(attached.key(), CONN);
    assert!(attached.connection().same_as(&conn));
    let root = conn.root().unwrap();

    // A loop-thread callback: not Send, called by the peer on this thread.
    let seen: Rc<RefCell<Vec<i64>>> = Rc::default();
    let s = seen.clone();
    let cb = netref_polling::callback(move |x: i64| {
        s.borrow_mut().push(x);
        x + 1
    });
    let res = netref::async_(&root).call_method("call_me", (cb, 41));
    run_until(&doorbell, &mut attached, "the reply", |_| res.ready());
    assert_eq!(res.value_as::<i64>().unwrap(), 42);
    assert_eq!(*seen.borrow(), [41]);

    // An expiry set after the call: the loop learns the deadline from a drive.
    let blocker = netref::async_(&root).call_method("block", ());
    server.peer.wait_blocked();
    let expiring = netref::async_(&root).call_method("add", (1, 1));
    expiring.set_expiry(Duration::from_millis(20));
    run_until(&doorbell, &mut attached, "the expiry", |a| a.next_deadline().is_none() && expiring.expired());
    server.peer.release();
    run_until(&doorbell, &mut attached, "the blocked call", |_| blocker.ready());

    attached.detach();
    // Detached: this thread serves it again without any loop.
    assert_eq!(root.call_method::<i64>("add", (2, 3)).unwrap(), 5);
}

#[test]
fn drive_reports_a_closed_connection_and_deletes_its_fd() {
    let (client, peer) = Builder::default().pair(Builder::default()).unwrap();
    let doorbell = Doorbell::new(Arc::new(Poller::new().unwrap()));
    let mut attached = netref_polling::attach(&client, &doorbell, CONN).unwrap();
    peer.close();
    run_until(&doorbell, &mut attached, "the close", |a| !a.is_attached());
    assert!(client.is_closed());
    assert!(!attached.drive().unwrap(), "closed: false, and the fd deleted");
    assert_eq!(attached.next_deadline(), None);
}

/// Runs `server` on a thread; returns a client's answer from it.
fn serve_one_call(mut server: Server, connect: impl FnOnce() -> Connection) -> i64 {
    let handle = server.handle();
    let thread = thread::spawn(move || server.run().unwrap());
    let conn = connect();
    let sum = conn.root().unwrap().call_method::<i64>("add", (20, 22)).unwrap();
    assert_eq!(handle.connection_count(), 1);
    conn.close();
    handle.close();
    thread.join().unwrap();
    sum
}

#[test]
fn server_constructors_by_name() {
    let peer = Peer::new();

    let server = Server::bind_tcp("127.0.0.1:0", peer.builder()).unwrap();
    let addr = server.local_addr().unwrap();
    assert_eq!(serve_one_call(server, || Builder::default().connect_tcp(addr).unwrap()), 42);

    let path = std::env::temp_dir().join(format!("netref-polling-api-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = Server::bind_unix(&path, peer.builder()).unwrap();
    assert_eq!(serve_one_call(server, || Builder::default().connect_unix(&path).unwrap()), 42);
    std::fs::remove_file(&path).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener, peer.builder()).unwrap();
    assert_eq!(serve_one_call(server, || Builder::default().connect_tcp(addr).unwrap()), 42);
}

#[test]
fn awaiting_a_typed_result_from_another_thread() {
    let server = PeerServer::start();
    let conn = server.connect();
    let doorbell = Doorbell::new(Arc::new(Poller::new().unwrap()));
    let mut attached = netref_polling::attach(&conn, &doorbell, CONN).unwrap();
    let bell = doorbell.clone();
    let root = conn.root().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    // No executor in the loop: a worker thread awaits, and this thread,
    // which drives the connection, reads the reply and wakes the future.
    let worker = thread::spawn(move || {
        block_on(async move {
            let sum = netref::async_(&root).call_method("add", (40, 2)).typed::<i64>().await;
            flag.store(true, Ordering::Release);
            bell.wake(); // the loop below sees the flag
            sum
        })
    });
    run_until(&doorbell, &mut attached, "the awaited reply", |_| done.load(Ordering::Acquire));
    assert_eq!(worker.join().unwrap().unwrap(), 42);
    attached.detach();
}
