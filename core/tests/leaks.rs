//! Exported objects are freed when the peer's proxies drop and when the
//! connection closes, whichever side closes it: objects a server hands out,
//! and callbacks a client passes in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use netref::{callback, Builder, Connection, ObjectBuilder, RemoteObject, Service, ThreadedServer};

const PATIENCE: Duration = Duration::from_secs(10);

/// Counts drops of whatever holds one.
#[derive(Clone, Default)]
struct Drops(Arc<AtomicUsize>);

struct Tracked(Drops);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0 .0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drops {
    fn tracked(&self) -> Tracked {
        Tracked(self.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct Fixture {
    server: ThreadedServer,
    thread: Option<thread::JoinHandle<()>>,
    /// Drops of objects the server made.
    made: Drops,
    /// One message per server-side disconnect, with the server's
    /// exported count at that moment.
    disconnects: mpsc::Receiver<usize>,
}

impl Fixture {
    fn start() -> Fixture {
        let made = Drops::default();
        let m = made.clone();
        let (tx, disconnects) = mpsc::channel();
        let tx = Mutex::new(tx);
        let service = Service::new(move |_| {
            let m = m.clone();
            let held: Arc<Mutex<Vec<RemoteObject>>> = Arc::default();
            let (h1, h2, h3) = (held.clone(), held.clone(), held);
            ObjectBuilder::new("Factory")
                .method("make", move |n: i64| {
                    let t = m.tracked();
                    ObjectBuilder::new("Thing").method("n", move || (n, &t).0).build()
                })
                .method("subscribe", move |cb: RemoteObject| h1.lock().unwrap().push(cb))
                .method("unsubscribe_all", move || h2.lock().unwrap().clear())
                .try_method("fire", move |x: i64| -> netref::Result<i64> {
                    let cbs = h3.lock().unwrap().clone();
                    cbs.iter().map(|cb| cb.call::<i64>((x,))).sum()
                })
                .build()
        })
        .on_disconnect(move |conn| {
            let _ = tx.lock().unwrap().send(conn.exported_count());
        });
        let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service)).unwrap();
        let thread = Some(server.spawn());
        Fixture { server, thread, made, disconnects }
    }

    fn connect(&self) -> Connection {
        Builder::default().connect_tcp(self.server.local_addr().unwrap()).unwrap()
    }

    fn wait_disconnect(&self) -> usize {
        self.disconnects.recv_timeout(PATIENCE).expect("the server saw the disconnect")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.close();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn objects_handed_out_are_freed_when_the_client_closes() {
    let fx = Fixture::start();
    let conn = fx.connect();
    let root = conn.root().unwrap();
    let things: Vec<RemoteObject> = (0..5).map(|i| root.call_method("make", (i,)).unwrap()).collect();
    assert_eq!(things[3].call_method::<i64>("n", ()).unwrap(), 3);
    assert_eq!(fx.made.count(), 0);
    conn.close(); // proxies still held: the close alone frees them
    assert_eq!(fx.wait_disconnect(), 0, "nothing exported after the close");
    assert_eq!(fx.made.count(), 5, "every object was dropped before on_disconnect ran");
    drop(things);
}

#[test]
fn objects_handed_out_are_freed_when_the_client_vanishes() {
    let fx = Fixture::start();
    {
        let conn = fx.connect();
        let root = conn.root().unwrap();
        let _things: Vec<RemoteObject> = (0..3).map(|i| root.call_method("make", (i,)).unwrap()).collect();
        // Everything dropped at once, without close().
    }
    fx.wait_disconnect();
    assert_eq!(fx.made.count(), 3);
}

#[test]
fn objects_handed_out_are_freed_when_the_server_closes() {
    let fx = Fixture::start();
    let conn = fx.connect();
    let root = conn.root().unwrap();
    let things: Vec<RemoteObject> = (0..4).map(|i| root.call_method("make", (i,)).unwrap()).collect();
    fx.server.close();
    fx.wait_disconnect();
    assert_eq!(fx.made.count(), 4);
    assert!(things[0].call_method::<i64>("n", ()).unwrap_err().is_closed());
}

#[test]
fn callbacks_are_freed_when_the_server_drops_its_proxies() {
    let fx = Fixture::start();
    let conn = fx.connect();
    let root = conn.root().unwrap();
    let drops = Drops::default();
    for k in 1..=3 {
        let t = drops.tracked();
        let _: () = root.call_method("subscribe", (callback(move |x: i64| (x * k, &t).0),)).unwrap();
    }
    assert_eq!(conn.exported_count(), 3, "the server holds three callbacks");
    assert_eq!(root.call_method::<i64>("fire", (10,)).unwrap(), 60);
    assert_eq!(drops.count(), 0, "only the server's proxies keep them alive");
    let _: () = root.call_method("unsubscribe_all", ()).unwrap();
    // The release left the server before its reply.
    assert_eq!(conn.exported_count(), 0);
    assert_eq!(drops.count(), 3);
}

#[test]
fn callbacks_are_freed_when_the_connection_closes_either_way() {
    let fx = Fixture::start();
    // Client closes while the server still holds its callback.
    let conn = fx.connect();
    let root = conn.root().unwrap();
    let drops = Drops::default();
    let t = drops.tracked();
    let _: () = root.call_method("subscribe", (callback(move |x: i64| (x, &t).0),)).unwrap();
    assert_eq!(conn.exported_count(), 1);
    conn.close();
    assert_eq!(drops.count(), 1, "freed by the close itself");
    fx.wait_disconnect();

    // The server goes away while holding one.
    let (tx, client_down) = mpsc::channel();
    let tx = Mutex::new(tx);
    let conn = Builder::default()
        .service(Service::none().on_disconnect(move |c| {
            let _ = tx.lock().unwrap().send(c.exported_count());
        }))
        .connect_tcp(fx.server.local_addr().unwrap())
        .unwrap();
    let root = conn.root().unwrap();
    let drops = Drops::default();
    let t = drops.tracked();
    let _: () = root.call_method("subscribe", (callback(move |x: i64| (x, &t).0),)).unwrap();
    let bg = netref::BgServingThread::new(&conn);
    fx.server.close();
    assert_eq!(client_down.recv_timeout(PATIENCE).unwrap(), 0);
    assert_eq!(drops.count(), 1, "freed before on_disconnect ran");
    let _ = bg.stop();
}
