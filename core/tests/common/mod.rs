//! A test service in the spirit of RPyC's own test suite, and helpers to
//! serve it over real sockets.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use netref::{Builder, Connection, LocalObject, ObjectBuilder, RemoteObject, Service, ThreadedServer, Value};
use serde::{Deserialize, Serialize};

/// One common factor for the durations of RPyC's scenarios: its seconds are
/// our fifths of a second (a 4 s expiry must land within 3.5..4.5 s: 100 ms
/// of slack for a loaded machine).
pub(crate) const SCALE: Duration = Duration::from_millis(200);

pub(crate) fn secs(n: f64) -> Duration {
    SCALE.mul_f64(n)
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub(crate) x: f64,
    pub(crate) y: f64,
}

/// Counts drops of the objects the service hands out.
#[derive(Default)]
pub(crate) struct DropCounter {
    pub(crate) dropped: Mutex<Vec<String>>,
}

struct Tracked {
    name: String,
    counter: Arc<DropCounter>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.counter.dropped.lock().unwrap().push(self.name.clone());
    }
}

/// The root object of the test service.
/// Counts finished `burst` calls, for tests to wait on.
pub(crate) type Bursts = Arc<(Mutex<usize>, Condvar)>;

/// Holds every `hold()` call until opened (the server opens it when it
/// goes away): a call that only a close or an expiry can end.
pub(crate) type Gate = Arc<(Mutex<bool>, Condvar)>;

/// Bounds a `hold()` that nobody opens, so a failing test cannot hang.
const HOLD_PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn test_root(
    drops: Arc<DropCounter>,
    notes: Arc<Mutex<Vec<String>>>,
    bursts: Bursts,
    gate: Gate,
) -> LocalObject {
    ObjectBuilder::new("TestService")
        .method("add", |a: i64, b: i64| a + b)
        .method("sleep", |units: f64| thread::sleep(secs(units)))
        .try_method("int", |s: String| s.parse::<i64>())
        .method("distance", |a: Point, b: Point| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt())
        .method("echo", |v: Value| v)
        .method("note", move |s: String| notes.lock().unwrap().push(s))
        .method("make", move |name: String| {
            let tracked = Tracked { name: name.clone(), counter: drops.clone() };
            ObjectBuilder::new("Thing")
                .method("name", move || tracked.name.clone())
                .method("double", |x: i64| x * 2)
                .build()
        })
        .try_method("call_me", |cb: RemoteObject, x: i64| cb.call::<i64>((x,)))
        .try_method("bounce", |n: i64, cb: RemoteObject| -> netref::Result<i64> {
            if n == 0 {
                Ok(0)
            } else {
                Ok(cb.call::<i64>((n - 1,))? + 1)
            }
        })
        .method("ticker", |cb: RemoteObject, period_units: f64| {
            // Calls `cb` asynchronously from its own thread until the client
            // drops its handle (the callback then fails and the thread ends).
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            thread::spawn(move || {
                let mut n = 0i64;
                while !flag.load(Ordering::Acquire) {
                    thread::sleep(secs(period_units));
                    n += 1;
                    drop(netref::async_(&cb).call((n,)));
                }
            });
            ObjectBuilder::new("Ticker").method("stop", move || stop.store(true, Ordering::Release)).build()
        })
        .method("burst", move |cb: RemoteObject, n: i64| {
            // Sends `n` events without waiting for them, then tells the test
            // (in-process) that they are on their way.
            for i in 1..=n {
                drop(netref::async_(&cb).call((i,)));
            }
            let (lock, cvar) = &*bursts;
            *lock.lock().unwrap() += 1;
            cvar.notify_all();
        })
        .method("hold", move || {
            let (open, opened) = &*gate;
            let open = open.lock().unwrap();
            let _ = opened.wait_timeout_while(open, HOLD_PATIENCE, |open| !*open).unwrap();
        })
        .attr("version", "1.0")
        .getter("answer", || 42)
        .build()
}

pub(crate) struct TestServer {
    pub(crate) server: ThreadedServer,
    pub(crate) drops: Arc<DropCounter>,
    pub(crate) notes: Arc<Mutex<Vec<String>>>,
    pub(crate) connects: Arc<AtomicUsize>,
    pub(crate) disconnects: Arc<AtomicUsize>,
    pub(crate) bursts: Bursts,
    gate: Gate,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    pub(crate) fn tcp() -> TestServer {
        Self::with(|b| b, |s| ThreadedServer::bind_tcp("127.0.0.1:0", s).unwrap())
    }

    pub(crate) fn with(
        tweak: impl FnOnce(Builder) -> Builder,
        bind: impl FnOnce(Builder) -> ThreadedServer,
    ) -> TestServer {
        let drops = Arc::new(DropCounter::default());
        let notes = Arc::new(Mutex::new(Vec::new()));
        let connects = Arc::new(AtomicUsize::new(0));
        let disconnects = Arc::new(AtomicUsize::new(0));
        let bursts = Bursts::default();
        let gate = Gate::default();
        let (d, n, c, dc, b, g) = (
            drops.clone(),
            notes.clone(),
            connects.clone(),
            disconnects.clone(),
            bursts.clone(),
            gate.clone(),
        );
        let service = Service::new(move |_| test_root(d.clone(), n.clone(), b.clone(), g.clone()))
            .on_connect(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            })
            .on_disconnect(move |_| {
                dc.fetch_add(1, Ordering::SeqCst);
            });
        let server = bind(tweak(Builder::default().service(service)));
        let thread = Some(server.spawn());
        TestServer { server, drops, notes, connects, disconnects, bursts, gate, thread }
    }

    pub(crate) fn connect(&self) -> Connection {
        netref::connect(self.server.local_addr().unwrap()).unwrap()
    }

    pub(crate) fn connect_with(&self, b: Builder) -> Connection {
        b.connect_tcp(self.server.local_addr().unwrap()).unwrap()
    }

    /// Blocks until `count` calls of `burst` have finished on the server.
    pub(crate) fn wait_bursts(&self, count: usize) {
        let (lock, cvar) = &*self.bursts;
        let mut done = lock.lock().unwrap();
        while *done < count {
            done = cvar.wait(done).unwrap();
        }
    }

    pub(crate) fn dropped(&self) -> Vec<String> {
        let mut v = self.drops.dropped.lock().unwrap().clone();
        v.sort();
        v
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
        self.server.close();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}
