//! Typed services (`#[netref::service]`): typed arguments, results and
//! errors, objects passed typed and handed back, callbacks three levels
//! deep, `async fn`, the `async_()` and `timed()` views, the check that
//! the peer serves the trait, and version skew. On the in-memory pair
//! with its virtual clock, and end to end over a socket.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use netref::testing::Pair;
use netref::typed::{CallError, Callback, Obj};
use netref::{BgServingThread, Builder, Error, Misuse, ObjectBuilder, Service, ThreadedServer};
use serde::{Deserialize, Serialize};

/// How long a wait may take before the test fails (a bound on a hang, not
/// a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

/// A file's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Its size in bytes.
    pub size: u64,
}

/// What the monitor refuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum MonitorError {
    /// The path names no file.
    #[error("no such file: {0}")]
    NotFound(String),
}

/// Watches files (in memory: `write` changes them).
#[netref::service]
pub trait FileMonitor {
    /// The file's state.
    fn stat(&self, path: String) -> Result<Stat, MonitorError>;
    /// Calls `on_change(old, new)` on each change of `path`, until stopped.
    fn watch(&self, path: String, on_change: Callback<(Stat, Stat)>) -> Obj<dyn Watch>;
    /// Stops `watch`, which must be one this monitor made.
    fn unwatch(&self, watch: Obj<dyn Watch>) -> bool;
    /// Writes `size` bytes to `path`, calling its watchers before it returns.
    fn write(&self, path: String, size: u64);
    /// A sum of the path's bytes, computed by a future.
    async fn checksum(&self, path: String) -> u64;
    /// Never answers.
    async fn hang(&self);
    /// Calls `back(depth)` and adds one, down to depth 0: nested callbacks.
    fn bounce(&self, depth: u32, back: Callback<(u32,), u32>) -> u32;
    /// The watch it is given, handed back.
    fn echo(&self, watch: Obj<dyn Watch>) -> Obj<dyn Watch>;
}

/// One watch of one file.
#[netref::service]
pub trait Watch {
    /// Stops calling back.
    fn stop(&self);
    /// The watched path.
    fn path(&self) -> String;
}

/// A watch as the monitor keeps it: the object the client holds, and its state.
type Watching = (Obj<dyn Watch>, Arc<OneWatch>);

#[derive(Default)]
struct Monitor {
    files: Mutex<Vec<(String, u64)>>,
    watches: Mutex<Vec<Watching>>,
}

struct OneWatch {
    path: String,
    on_change: Callback<(Stat, Stat)>,
    stopped: AtomicBool,
}

/// A watch shared between the monitor's list and the object it serves.
struct SharedWatch(Arc<OneWatch>);

impl Watch for SharedWatch {
    fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
    }
    fn path(&self) -> String {
        self.0.path.clone()
    }
}

impl Monitor {
    fn size(&self, path: &str) -> Option<u64> {
        self.files.lock().unwrap().iter().find(|(p, _)| p == path).map(|(_, s)| *s)
    }
}

impl FileMonitor for Monitor {
    fn stat(&self, path: String) -> Result<Stat, MonitorError> {
        self.size(&path).map(|size| Stat { size }).ok_or(MonitorError::NotFound(path))
    }

    fn watch(&self, path: String, on_change: Callback<(Stat, Stat)>) -> Obj<dyn Watch> {
        let watch = Arc::new(OneWatch { path, on_change, stopped: AtomicBool::new(false) });
        let obj: Obj<dyn Watch> = Obj::new(SharedWatch(watch.clone()));
        self.watches.lock().unwrap().push((obj.clone(), watch));
        obj
    }

    fn unwatch(&self, watch: Obj<dyn Watch>) -> bool {
        let mut watches = self.watches.lock().unwrap();
        let before = watches.len();
        watches.retain(|(w, _)| !w.same_as(&watch));
        before != watches.len()
    }

    fn write(&self, path: String, size: u64) {
        let old = Stat { size: self.size(&path).unwrap_or(0) };
        {
            let mut files = self.files.lock().unwrap();
            files.retain(|(p, _)| *p != path);
            files.push((path.clone(), size));
        }
        let watchers: Vec<Arc<OneWatch>> =
            self.watches.lock().unwrap().iter().map(|(_, w)| w.clone()).collect();
        for w in watchers.iter().filter(|w| w.path == path && !w.stopped.load(Ordering::SeqCst)) {
            // Blocking: the client's callback runs (and may call back in)
            // before `write` returns.
            w.on_change.call((old.clone(), Stat { size })).expect("the watcher's callback");
        }
    }

    async fn checksum(&self, path: String) -> u64 {
        path.bytes().map(u64::from).sum()
    }

    async fn hang(&self) {
        std::future::pending::<()>().await
    }

    fn bounce(&self, depth: u32, back: Callback<(u32,), u32>) -> u32 {
        if depth == 0 {
            return 0;
        }
        back.call((depth,)).expect("the caller's callback") + 1
    }

    fn echo(&self, watch: Obj<dyn Watch>) -> Obj<dyn Watch> {
        watch
    }
}

fn pair() -> Pair {
    Pair::new(Service::none(), Service::typed::<dyn FileMonitor>(Monitor::default()))
}

#[test]
fn typed_results_and_the_methods_own_errors() {
    let pair = pair();
    let mon = FileMonitorProxy::root(&pair.client).unwrap();
    mon.write("/a".into(), 6).unwrap();
    assert_eq!(mon.stat("/a".into()).unwrap(), Stat { size: 6 });
    match mon.stat("/b".into()) {
        Err(CallError::App(MonitorError::NotFound(p))) => assert_eq!(p, "/b"),
        other => panic!("expected the method's own error, got {other:?}"),
    }
    assert_eq!(mon.checksum("ab".into()).unwrap(), 97 + 98);
}

#[test]
fn a_callback_runs_on_the_client_while_the_call_blocks() {
    let pair = pair();
    let mon = FileMonitorProxy::root(&pair.client).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let watch = mon
        .watch("/a".into(), move |old: Stat, new: Stat| log.lock().unwrap().push((old.size, new.size)))
        .unwrap();
    assert_eq!(watch.path().unwrap(), "/a");
    mon.write("/a".into(), 3).unwrap();
    mon.write("/a".into(), 5).unwrap();
    assert_eq!(*seen.lock().unwrap(), [(0, 3), (3, 5)]);
    watch.stop().unwrap();
    mon.write("/a".into(), 9).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2, "a stopped watch calls back no more");
}

#[test]
fn an_object_handed_back_is_the_original() {
    let pair = pair();
    let mon = FileMonitorProxy::root(&pair.client).unwrap();
    let watch = mon.watch("/a".into(), |_: Stat, _: Stat| ()).unwrap();
    assert!(watch.local().is_none() && watch.remote().is_some(), "the server's object is a proxy here");
    // The server finds its own object again: `unwatch` matches it.
    assert!(mon.unwatch(watch.clone()).unwrap());
    assert!(!mon.unwatch(watch).unwrap(), "already removed");

    // This side's object, sent and returned, is this side's again.
    struct Mine;
    impl Watch for Mine {
        fn stop(&self) {}
        fn path(&self) -> String {
            "mine".into()
        }
    }
    let mine: Obj<dyn Watch> = Obj::new(Mine);
    let back = mon.echo(mine.clone()).unwrap();
    assert!(back.same_as(&mine));
    assert!(Arc::ptr_eq(back.local().unwrap(), mine.local().unwrap()));
    assert!(back.downcast::<Mine>().is_some());
    // Called through its proxy, it runs in place.
    assert_eq!(back.path().unwrap(), "mine");
}

/// The client's side of `bounce`: each level calls the server again from
/// inside the server's callback, until `depth` runs out.
fn bounce_back(mon: FileMonitorProxy, levels: Arc<AtomicU64>) -> Callback<(u32,), u32> {
    Callback::from(move |depth: u32| {
        levels.fetch_max(u64::from(depth), Ordering::SeqCst);
        mon.bounce(depth - 1, bounce_back(mon.clone(), levels.clone())).expect("the nested call") + 1
    })
}

#[test]
fn callbacks_nest_three_levels_deep() {
    let pair = pair();
    let mon = FileMonitorProxy::root(&pair.client).unwrap();
    let levels = Arc::new(AtomicU64::new(0));
    // client -> server -> client -> server -> client -> server -> client ...
    assert_eq!(mon.bounce(3, bounce_back(mon.clone(), levels.clone())).unwrap(), 6);
    assert_eq!(levels.load(Ordering::SeqCst), 3);
}

#[test]
fn async_and_timed_views_return_typed_results() {
    let pair = pair();
    let mon = FileMonitorProxy::root(&pair.client).unwrap();
    mon.write("/a".into(), 2).unwrap();

    let stat = mon.async_().stat("/a".into());
    let missing = mon.async_().stat("/zz".into());
    pair.settle();
    assert!(stat.ready() && !stat.error());
    assert_eq!(stat.value().unwrap(), Stat { size: 2 });
    assert!(missing.error());
    assert_eq!(missing.value(), Err(CallError::App(MonitorError::NotFound("/zz".into()))));

    let sum = mon.async_().checksum("a".into());
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    sum.add_callback(move |r| *s.lock().unwrap() = Some(r.value().unwrap()));
    pair.settle();
    assert_eq!(*seen.lock().unwrap(), Some(97));

    // `timed`: the server never answers, so the result expires on time.
    let hung = mon.timed(Duration::from_secs(5)).hang();
    pair.advance(Duration::from_secs(4));
    assert!(!hung.ready() && !hung.expired());
    pair.advance(Duration::from_secs(2));
    assert!(hung.expired());
    assert!(hung.value().unwrap_err().is_timeout());
}

#[test]
fn the_peer_must_serve_the_trait() {
    let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
    let pair = Pair::new(Service::none(), Service::object(calc));
    let err = FileMonitorProxy::root(&pair.client).unwrap_err();
    match &err {
        Error::Misuse(Misuse::WrongInterface { interface, missing, exposed, .. }) => {
            assert_eq!(*interface, "FileMonitor");
            assert!(missing.contains(&"stat".to_string()) && missing.contains(&"watch".to_string()));
            assert_eq!(exposed, &["add"]);
        }
        other => panic!("expected WrongInterface, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("does not serve `FileMonitor`") && text.contains("it exposes `add`"), "{text}");
}

#[test]
fn a_typed_proxy_calls_a_dynamic_server_with_the_same_methods() {
    let root =
        ObjectBuilder::new("Watch").method("stop", || ()).method("path", || "/dyn".to_string()).build();
    let pair = Pair::new(Service::none(), Service::object(root));
    let watch = WatchProxy::root(&pair.client).unwrap();
    assert_eq!(watch.path().unwrap(), "/dyn");
}

/// A client's view of a server built with `ObjectBuilder`.
#[netref::proxy]
pub trait Shelf {
    /// The titles on the shelf.
    fn titles(&self) -> Vec<String>;
    /// Puts a title on the shelf; refused when it is there already.
    fn put(&self, title: String) -> Result<usize, String>;
    /// A book, as an object of its own.
    fn book(&self, title: String) -> Obj<dyn Book>;
}

/// One book, seen from the client.
#[netref::proxy]
pub trait Book {
    /// How many pages it has.
    async fn pages(&self) -> u32;
}

#[test]
fn a_proxy_alone_calls_a_dynamic_server() {
    let titles = Arc::new(Mutex::new(vec!["Dune".to_string()]));
    let (t1, t2) = (titles.clone(), titles.clone());
    let shelf = ObjectBuilder::new("Shelf")
        .method("titles", move || t1.lock().unwrap().clone())
        .try_method("put", move |title: String| {
            let mut titles = t2.lock().unwrap();
            if titles.contains(&title) {
                return Err(format!("{title} is there already"));
            }
            titles.push(title);
            Ok(titles.len())
        })
        .method("book", |title: String| {
            ObjectBuilder::new("Book").method("pages", move || title.len() as u32 * 100).build()
        })
        .build();
    let pair = Pair::new(Service::none(), Service::object(shelf));
    let shelf = ShelfProxy::root(&pair.client).unwrap();
    assert_eq!(shelf.put("Emma".into()).unwrap(), 2);
    assert_eq!(shelf.titles().unwrap(), ["Dune", "Emma"]);
    // A dynamic method's error carries no typed value: a failed call, with
    // the server's message.
    let err = shelf.put("Emma".into()).unwrap_err();
    assert!(err.remote().is_some_and(|r| r.message == "Emma is there already"), "{err:?}");
    let book = shelf.book("Emma".into()).unwrap();
    assert_eq!(book.pages().unwrap(), 400);
    let pages = book.async_().pages();
    pair.settle();
    assert_eq!(pages.value().unwrap(), 400);
}

#[test]
fn a_wrong_argument_from_a_dynamic_caller_is_a_type_error_naming_the_method() {
    let pair = pair();
    let root = pair.client.root().unwrap();
    let err = root.call_method::<netref::Value>("stat", (1,)).unwrap_err();
    let remote = err.as_remote().expect("a remote error");
    assert_eq!(remote.type_name, "TypeError");
    assert!(remote.message.starts_with("argument 1 of `FileMonitor.stat`: expected"), "{}", remote.message);
    let err = root.call_method::<netref::Value>("stat", ("/a", 2)).unwrap_err();
    assert!(err.to_string().contains("`FileMonitor.stat` takes 1 argument but 2 were given"), "{err}");
    // Only the trait's methods are reachable.
    assert!(root.call_method::<netref::Value>("size", ("/a",)).is_err());
    assert_eq!(root.dir().unwrap().len(), 8);
}

/// The first version of a service.
mod v1 {
    /// Counts.
    #[netref::service]
    pub(crate) trait Counter {
        /// Adds `n`, returning the total.
        fn add(&self, n: u64) -> u64;
    }
}

/// The next version: `add` gained a defaulted argument, and a method came.
mod v2 {
    /// Counts, with labels.
    #[netref::service]
    pub(crate) trait Counter {
        /// Adds `n`, `times` times (older callers pass no `times`: once).
        fn add(&self, n: u64, #[netref(default)] times: Option<u64>) -> u64;
        /// Starts again from zero.
        fn reset(&self);
    }
}

#[derive(Default)]
struct CounterV2(AtomicU64);

impl v2::Counter for CounterV2 {
    fn add(&self, n: u64, times: Option<u64>) -> u64 {
        self.0.fetch_add(n * times.unwrap_or(1), Ordering::SeqCst) + n * times.unwrap_or(1)
    }
    fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

#[test]
fn an_older_client_calls_a_newer_server() {
    let pair = Pair::new(Service::none(), Service::typed::<dyn v2::Counter>(CounterV2::default()));
    let old = v1::CounterProxy::root(&pair.client).unwrap();
    assert_eq!(old.add(5).unwrap(), 5);
    let new = v2::CounterProxy::root(&pair.client).unwrap();
    assert_eq!(new.add(1, Some(3)).unwrap(), 8);
    new.reset().unwrap();
    assert_eq!(old.add(2).unwrap(), 2);
}

#[test]
fn a_newer_client_is_told_what_an_older_server_lacks() {
    struct CounterV1;
    impl v1::Counter for CounterV1 {
        fn add(&self, n: u64) -> u64 {
            n
        }
    }
    let pair = Pair::new(Service::none(), Service::typed::<dyn v1::Counter>(CounterV1));
    let err = v2::CounterProxy::root(&pair.client).unwrap_err();
    assert!(err.to_string().contains("has no `reset`"), "{err}");
    // Unchecked, the old method works and the new one is an ordinary
    // remote error; the connection goes on.
    let unchecked: v2::CounterProxy = netref::typed::Proxy::from_handle(pair.client.root().unwrap().into());
    assert!(unchecked.reset().unwrap_err().as_remote().is_some_and(|r| r.type_name == "AttributeError"));
    assert!(unchecked.add(4, None).unwrap_err().to_string().contains("takes 1 argument but 2 were given"));
    assert_eq!(v1::CounterProxy::root(&pair.client).unwrap().add(4).unwrap(), 4);
}

#[test]
fn end_to_end_over_a_socket_with_callbacks_three_levels_deep() {
    let server = ThreadedServer::bind_tcp(
        "127.0.0.1:0",
        Builder::default().service(Service::typed::<dyn FileMonitor>(Monitor::default())),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    server.spawn();
    let conn = netref::connect(addr).unwrap();
    let mon = FileMonitorProxy::root(&conn).unwrap();

    // A callback that makes a blocking call of its own, inside the
    // server's blocking call of it, inside this side's blocking `write`.
    let (tx, rx) = mpsc::channel();
    let inner = mon.clone();
    let _watch = mon
        .watch("/s".into(), move |old: Stat, new: Stat| {
            let now = inner.stat("/s".into()).expect("a blocking call from inside a callback");
            tx.send((old.size, new.size, now.size)).unwrap();
        })
        .unwrap();
    mon.write("/s".into(), 4).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (0, 4, 4));

    let levels = Arc::new(AtomicU64::new(0));
    assert_eq!(mon.bounce(3, bounce_back(mon.clone(), levels.clone())).unwrap(), 6);
    assert_eq!(levels.load(Ordering::SeqCst), 3);

    // The typed result is a future too, served by a background thread.
    let _serving = BgServingThread::new(&conn);
    let sum = block_on(mon.async_().checksum("ab".into()));
    assert_eq!(sum.unwrap(), 97 + 98);
    let missing = block_on(mon.async_().stat("/none".into()));
    assert_eq!(missing, Err(CallError::App(MonitorError::NotFound("/none".into()))));
}

/// Polls `fut` to completion on this thread, parking until woken.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let give_up = std::time::Instant::now() + PATIENCE;
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(std::time::Instant::now() < give_up, "the future was never woken");
        std::thread::park_timeout(PATIENCE);
    }
}

/// A generic service: netref bounds `V` by serde (and `Send + Sync +
/// 'static`) itself.
#[netref::service]
pub trait Store<V> {
    /// Stores `value` under `key`, returning what was there.
    fn put(&self, key: String, value: V) -> Option<V>;
    /// What is stored under `key`.
    fn get(&self, key: String) -> Option<V>;
}

/// A store of any `V`.
struct Drawer<V>(Mutex<std::collections::HashMap<String, V>>);

impl<V> Store<V> for Drawer<V>
where
    V: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn put(&self, key: String, value: V) -> Option<V> {
        self.0.lock().unwrap().insert(key, value)
    }
    fn get(&self, key: String) -> Option<V> {
        self.0.lock().unwrap().get(&key).cloned()
    }
}

#[test]
fn a_generic_service_serves_and_is_called_at_each_type() {
    let words = Pair::new(Service::none(), Service::typed::<dyn Store<String>>(Drawer(Mutex::default())));
    let store = StoreProxy::<String>::root(&words.client).unwrap();
    assert_eq!(store.put("a".into(), "x".into()).unwrap(), None);
    assert_eq!(store.put("a".into(), "y".into()).unwrap(), Some("x".to_string()));
    assert_eq!(store.get("a".into()).unwrap(), Some("y".to_string()));

    let counts = Pair::new(Service::none(), Service::typed::<dyn Store<Stat>>(Drawer(Mutex::default())));
    let store: StoreProxy<Stat> = StoreProxy::root(&counts.client).unwrap();
    store.put("f".into(), Stat { size: 3 }).unwrap();
    let got = store.async_().get("f".into());
    counts.settle();
    assert_eq!(got.value().unwrap(), Some(Stat { size: 3 }));
    // The same server read at the wrong type fails as a conversion, naming the method.
    let wrong = StoreProxy::<u64>::root(&counts.client).unwrap();
    let err = wrong.get("f".into()).unwrap_err();
    assert!(err.to_string().contains("the result of `get`"), "{err}");
}

/// An `async fn` whose future holds what is not `Send`.
#[netref::service]
pub trait Rounds {
    /// Sums `back(i)` for `i` in `0..n`, awaiting each, with the running
    /// sum in an `Rc` across the awaits.
    #[netref(local)]
    async fn rounds(&self, n: u32, back: Callback<(u32,), u32>) -> u32;
    /// A plain method beside it, on the same wire.
    fn ping(&self) -> String;
}

struct Summing;

impl Rounds for Summing {
    async fn rounds(&self, n: u32, back: Callback<(u32,), u32>) -> u32 {
        let total = std::rc::Rc::new(std::cell::Cell::new(0));
        for i in 0..n {
            total.set(total.get() + back.call_async((i,)).await.expect("the caller's callback"));
        }
        total.get()
    }

    fn ping(&self) -> String {
        "pong".into()
    }
}

#[test]
fn a_local_async_fn_holds_what_is_not_send_across_its_awaits() {
    let pair = Pair::new(Service::none(), Service::typed::<dyn Rounds>(Summing));
    let rounds = RoundsProxy::root(&pair.client).unwrap();
    assert_eq!(rounds.rounds(3, |i: u32| i + 1).unwrap(), 1 + 2 + 3);
    assert_eq!(rounds.ping().unwrap(), "pong");

    // Over a socket: the server's connection thread starts and polls it.
    let server = ThreadedServer::bind_tcp(
        "127.0.0.1:0",
        Builder::default().service(Service::typed::<dyn Rounds>(Summing)),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    server.spawn();
    let conn = netref::connect(addr).unwrap();
    let rounds = RoundsProxy::root(&conn).unwrap();
    let started = rounds.async_().rounds(4, |i: u32| i * 10);
    assert_eq!(rounds.ping().unwrap(), "pong", "the wire is shared while it runs");
    assert_eq!(started.value().unwrap(), 10 + 20 + 30);
}
