//! netref-mio by name: `attach`, `Attached`, the server's constructors, and
//! `callback` (bound to the loop's thread), over real sockets.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::TcpListener;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{self, Context, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use netref::{BgServingThread, Builder, Connection};
use netref_conformance::{Peer, PeerServer, PATIENCE};
use netref_mio::{Attached, Doorbell, Server};

const DOORBELL: Token = Token(0);
const CONN: Token = Token(1);

/// A poll with one attached connection.
struct Loop {
    poll: Poll,
    events: Events,
    doorbell: Arc<Doorbell>,
}

impl Loop {
    fn new() -> Loop {
        let poll = Poll::new().unwrap();
        let doorbell = Doorbell::new(poll.registry(), DOORBELL).unwrap();
        Loop { poll, events: Events::with_capacity(16), doorbell }
    }

    fn attach(&self, conn: &Connection) -> Attached {
        netref_mio::attach(conn, self.poll.registry(), CONN, &self.doorbell).unwrap()
    }

    /// Polls and drives `attached` until `done`; fails after `PATIENCE`.
    fn run_until(&mut self, attached: &mut Attached, what: &str, done: impl Fn(&Attached) -> bool) {
        let give_up = Instant::now() + PATIENCE;
        while !done(attached) {
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            let wait = netref_mio::timeout(attached.next_deadline()).unwrap_or(PATIENCE).min(PATIENCE);
            self.poll.poll(&mut self.events, Some(wait)).unwrap();
            let ready = self.events.iter().any(|e| e.token() == CONN) || self.doorbell.take().contains(&CONN);
            if ready || attached.is_due() {
                attached.drive(self.poll.registry()).unwrap();
            }
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
    let mut lp = Loop::new();
    let mut attached = lp.attach(&conn);
    assert!(attached.is_attached());
    assert_eq!(attached.token(), CONN);
    assert!(attached.connection().same_as(&conn));
    let root = conn.root().unwrap();

    let res = netref::async_(&root).call_method("add", (40, 2));
    lp.run_until(&mut attached, "the reply", |_| res.ready());
    assert_eq!(res.value_as::<i64>().unwrap(), 42);

    // An expiry is a deadline the loop learns from the drive.
    let blocker = netref::async_(&root).call_method("block", ());
    server.peer.wait_blocked();
    let expiring = netref::async_(&root).call_method("add", (1, 1));
    expiring.set_expiry(Duration::from_millis(20));
    lp.run_until(&mut attached, "the expiry", |a| a.next_deadline().is_none() && expiring.expired());
    server.peer.release();
    lp.run_until(&mut attached, "the blocked call", |_| blocker.ready());

    attached.detach(lp.poll.registry()).unwrap();
    // Detached: this thread serves it again without any loop.
    assert_eq!(root.call_method::<i64>("add", (2, 3)).unwrap(), 5);
}

#[test]
fn drive_reports_a_closed_connection_and_deregisters() {
    let (client, peer) = Builder::default().pair(Builder::default()).unwrap();
    let mut lp = Loop::new();
    let mut attached = lp.attach(&client);
    peer.close();
    lp.run_until(&mut attached, "the close", |a| !a.is_attached());
    assert!(client.is_closed());
    assert!(!attached.drive(lp.poll.registry()).unwrap(), "closed: false, and deregistered");
    assert_eq!(attached.next_deadline(), None);
}

/// Runs `server` on a thread; returns a client's answer from it.
fn serve_one_call(server: Server, connect: impl FnOnce() -> Connection) -> i64 {
    let handle = server.handle();
    let mut server = server;
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

    let path = std::env::temp_dir().join(format!("netref-mio-api-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = Server::bind_unix(&path, peer.builder()).unwrap();
    assert_eq!(serve_one_call(server, || Builder::default().connect_unix(&path).unwrap()), 42);
    std::fs::remove_file(&path).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener, peer.builder()).unwrap();
    assert_eq!(serve_one_call(server, || Builder::default().connect_tcp(addr).unwrap()), 42);
}

/// Something a loop-thread callback captures: `!Send`, and it records its
/// drop (which must happen on its own thread).
struct Widget {
    dropped: Rc<Cell<bool>>,
}

impl Drop for Widget {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

#[test]
fn callback_runs_on_the_loop_thread_with_not_send_captures() {
    let server = PeerServer::start();
    let conn = server.connect();
    let mut lp = Loop::new();
    let mut attached = lp.attach(&conn);
    let root = conn.root().unwrap();
    let seen: Rc<RefCell<Vec<i64>>> = Rc::default();
    let s = seen.clone();
    let cb = netref_mio::callback(move |x: i64| {
        s.borrow_mut().push(x);
        x * 2
    });
    let res = netref::async_(&root).call_method("call_me", (cb, 21));
    lp.run_until(&mut attached, "the peer's call through the callback", |_| res.ready());
    assert_eq!(res.value_as::<i64>().unwrap(), 42);
    assert_eq!(*seen.borrow(), [21]);
    attached.detach(lp.poll.registry()).unwrap();
}

#[test]
fn callback_called_off_its_thread_is_refused_and_its_captures_die_on_its_thread() {
    let server = PeerServer::start();
    let conn = server.connect();
    // Not attached: a background thread serves the peer's calls.
    let bg = BgServingThread::new(&conn);
    let root = conn.root().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let widget = Widget { dropped: dropped.clone() };
    let cb = netref_mio::callback(move |x: i64| {
        let _ = &widget;
        x
    });
    // From another thread, so that neither the caller nor the background
    // thread, whichever serves the callback, is its thread.
    let err = thread::scope(|s| {
        s.spawn(|| root.call_method::<i64>("call_me", (cb, 1)).unwrap_err()).join().unwrap()
    });
    let remote = err.as_remote().expect("a remote error");
    assert_eq!(remote.type_name, "RuntimeError", "{err}");
    assert!(remote.message.contains("called from another thread"), "{err}");
    assert!(remote.message.contains("attach the connection"), "{err}");

    // The peer released the callback; another thread processed that.
    conn.ping().unwrap();
    assert_eq!(conn.exported_count(), 0, "the peer released the callback");
    assert!(!dropped.get(), "its captures were not dropped off their thread");
    bg.stop().unwrap();
    // This thread's next drive step drops them, here.
    let lp = Loop::new();
    let attached = lp.attach(&conn); // attach drives once
    assert!(dropped.get(), "dropped at this thread's next step");
    attached.detach(lp.poll.registry()).unwrap();
}

#[test]
fn awaiting_a_typed_result_from_another_thread() {
    let server = PeerServer::start();
    let conn = server.connect();
    let mut lp = Loop::new();
    let mut attached = lp.attach(&conn);
    let bell = lp.doorbell.clone();
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
    lp.run_until(&mut attached, "the awaited reply", |_| done.load(Ordering::Acquire));
    assert_eq!(worker.join().unwrap().unwrap(), 42);
    attached.detach(lp.poll.registry()).unwrap();
}
