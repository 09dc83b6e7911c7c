//! Write batching: coalescing by default (`Config::coalesce`),
//! `netref::batch` and `Config::batch_replies`, over a real Unix socket pair
//! whose writes are counted.

use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use netref::{
    async_, batch, callback, AsyncResult, BgServingThread, Builder, Config, Connection, ObjectBuilder,
    RemoteObject, Service, SocketTransport, Transport,
};

/// Long enough that a hang fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(10);

/// A socket transport that counts the writes that reach the socket: plain
/// and vectored, both forwarded, so the connection takes the same path
/// (one `sendmsg` of a frame's head and its payload) as over a bare
/// `SocketTransport`.
struct Counting {
    inner: SocketTransport,
    writes: Arc<AtomicUsize>,
}

impl Transport for Counting {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(buf)
    }
    fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write_vectored(bufs)
    }
    fn wait(&self, want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.wait(want_write, timeout)
    }
    fn wake(&self) {
        self.inner.wake()
    }
    fn shutdown(&self) {
        self.inner.shutdown()
    }
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.as_fd()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// One side of a socket pair, with its write counter.
fn counted(builder: Builder, stream: UnixStream) -> (Connection, Arc<AtomicUsize>) {
    let writes = Arc::new(AtomicUsize::new(0));
    let transport = Counting { inner: SocketTransport::new(stream).expect("socket"), writes: writes.clone() };
    (builder.over_transport(transport), writes)
}

struct Setup {
    _client: Connection,
    client_writes: Arc<AtomicUsize>,
    server_writes: Arc<AtomicUsize>,
    root: RemoteObject,
    /// Serves the server side until the test ends.
    _server: BgServingThread,
    /// What the server's `signal` method sends.
    signals: mpsc::Receiver<i64>,
    /// Lets the server's `slow` method return.
    let_go: mpsc::Sender<()>,
}

/// Both sides with `config` (the client's synchronous calls give up after
/// [`PATIENCE`]).
fn setup(config: Config) -> Setup {
    let (a, b) = UnixStream::pair().expect("socket pair");
    let (tx, signals) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let (let_go, release) = mpsc::channel::<()>();
    let release = std::sync::Mutex::new(release);
    let root = ObjectBuilder::new("Batching")
        .method("add", |a: i64, b: i64| a + b)
        .method("echo", |v: netref::Value| v)
        .method("signal", move |i: i64| {
            let _ = tx.lock().unwrap().send(i);
            i
        })
        .try_method("call_back", |f: RemoteObject| f.call::<i64>(()))
        .method("slow", move || {
            // Runs until the test lets it go.
            let _ = release.lock().unwrap().recv_timeout(PATIENCE);
            0i64
        })
        .build();
    let server_builder = Builder::default().service(Service::object(root)).config(config.clone());
    let (server, server_writes) = counted(server_builder, b);
    let client_builder = Builder::default().config(config.sync_request_timeout(Some(PATIENCE)));
    let (client, client_writes) = counted(client_builder, a);
    let server_thread = BgServingThread::new(&server);
    let root = client.root().expect("root");
    Setup { _client: client, client_writes, server_writes, root, _server: server_thread, signals, let_go }
}

fn add_calls(root: &RemoteObject, n: i64) -> Vec<AsyncResult> {
    (0..n).map(|i| async_(root).call_method("add", (i, 1i64))).collect()
}

fn check_sums(results: &[AsyncResult]) {
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.value_as::<i64>().expect("add"), i as i64 + 1);
    }
}

/// Every message leaving as soon as it is made: RPyC's way.
fn at_once() -> Config {
    Config::default().coalesce(None)
}

#[test]
fn each_async_call_is_one_write_without_coalescing() {
    // The control for the tests below: it shows the counter sees each write.
    let s = setup(at_once());
    let before = s.client_writes.load(Ordering::SeqCst);
    let results = add_calls(&s.root, 100);
    assert_eq!(s.client_writes.load(Ordering::SeqCst) - before, 100);
    check_sums(&results);
}

#[test]
fn a_batch_writes_its_calls_together_when_it_ends() {
    let s = setup(Config::default());
    let before = s.client_writes.load(Ordering::SeqCst);
    let results = batch(|| {
        let results = add_calls(&s.root, 100);
        assert_eq!(s.client_writes.load(Ordering::SeqCst), before, "nothing leaves inside the batch");
        results
    });
    let writes = s.client_writes.load(Ordering::SeqCst) - before;
    // One write, or a few if the socket took it in pieces.
    assert!((1..=3).contains(&writes), "{writes} writes for a batch of 100 calls");
    check_sums(&results);
}

#[test]
fn batches_nest_and_the_outermost_writes() {
    let s = setup(Config::default());
    let before = s.client_writes.load(Ordering::SeqCst);
    let results = batch(|| {
        let mut results = batch(|| add_calls(&s.root, 10));
        assert_eq!(s.client_writes.load(Ordering::SeqCst), before, "the inner batch's end writes nothing");
        results.extend(batch(|| add_calls(&s.root, 10)));
        results
    });
    assert!(s.client_writes.load(Ordering::SeqCst) > before);
    // Renumber: the second ten were add(i, 1) for i in 0..10 too.
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.value_as::<i64>().expect("add"), (i % 10) as i64 + 1);
    }
}

#[test]
fn waiting_inside_a_batch_writes_what_it_held_first() {
    let s = setup(Config::default());
    batch(|| {
        let early = add_calls(&s.root, 5);
        // A synchronous call waits for the peer: the held calls and this one
        // must leave, or it would wait forever.
        let sum: i64 = s.root.call_method("add", (40i64, 2i64)).expect("sync call inside a batch");
        assert_eq!(sum, 42);
        check_sums(&early);
        // Waiting on an async result held back in the batch works too.
        let late = add_calls(&s.root, 5);
        check_sums(&late);
    });
}

#[test]
fn another_threads_write_takes_held_messages_along() {
    let s = setup(Config::default());
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let root = s.root.clone();
    let batcher = thread::spawn(move || {
        batch(|| {
            let r = async_(&root).call_method("signal", (7i64,));
            held_tx.send(()).unwrap();
            // Stay inside the batch until the main thread is done.
            go_rx.recv().unwrap();
            r
        })
    });
    held_rx.recv().unwrap();
    assert!(s.signals.try_recv().is_err(), "the batched call has not left yet");
    // This call's write carries the held request ahead of it, and the server
    // serves requests in the order they arrive.
    let _: i64 = s.root.call_method("add", (1i64, 1i64)).expect("add");
    assert_eq!(s.signals.recv_timeout(PATIENCE), Ok(7));
    go_tx.send(()).unwrap();
    assert_eq!(batcher.join().unwrap().value_as::<i64>().expect("signal"), 7);
}

#[test]
fn a_batch_writes_once_it_holds_64_kib() {
    let s = setup(Config::default());
    let before = s.client_writes.load(Ordering::SeqCst);
    let payload = vec![1u8; 40 * 1024];
    let results = batch(|| {
        let results: Vec<_> = (0..3)
            .map(|_| async_(&s.root).call_method("echo", vec![netref::Value::Bytes(payload.clone())]))
            .collect();
        assert!(s.client_writes.load(Ordering::SeqCst) > before, "120 KiB were all held back");
        results
    });
    for r in results {
        assert_eq!(r.value().expect("echo"), netref::Value::Bytes(payload.clone()));
    }
}

#[test]
fn a_large_byte_string_leaves_with_its_frame_head_in_one_write() {
    // A byte string of 64 KiB or more is written from its own buffer, with
    // the frame's head in the same vectored write: a transport that counted
    // only `write` (and let `write_vectored` fall back to writing the first
    // slice) would see the head and the payload leave one write each.
    let s = setup(Config::default());
    let payload = netref::Value::Bytes(vec![7u8; 64 * 1024]);
    let before = s.client_writes.load(Ordering::SeqCst);
    let echoed = async_(&s.root).call_method("echo", (payload.clone(),));
    assert_eq!(s.client_writes.load(Ordering::SeqCst) - before, 1, "head and payload in one write");
    assert_eq!(echoed.value().expect("echo"), payload);
}

#[test]
fn a_panic_inside_a_batch_ends_it() {
    let s = setup(at_once());
    let root = s.root.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        batch(|| {
            let _r = async_(&root).call_method("add", (1i64, 1i64));
            panic!("a bug in the batch");
        })
    }));
    assert!(outcome.is_err());
    // The held call left when the batch unwound, and the thread is no
    // longer batching: the next async call is written at once.
    let before = s.client_writes.load(Ordering::SeqCst);
    let r = async_(&s.root).call_method("add", (2i64, 2i64));
    assert_eq!(s.client_writes.load(Ordering::SeqCst), before + 1);
    assert_eq!(r.value_as::<i64>().expect("add"), 4);
}

#[test]
fn replies_leave_one_write_each_without_coalescing() {
    let s = setup(at_once());
    let before = s.server_writes.load(Ordering::SeqCst);
    let results = batch(|| add_calls(&s.root, 100));
    check_sums(&results);
    assert_eq!(s.server_writes.load(Ordering::SeqCst) - before, 100);
}

#[test]
fn batch_replies_writes_the_replies_to_requests_that_arrived_together_at_once() {
    // Alone, without coalescing's window.
    let s = setup(at_once().batch_replies(true));
    let before = s.server_writes.load(Ordering::SeqCst);
    // One write of 100 requests: the server reads them in one pass (or a
    // few) and answers each pass with one write.
    let results = batch(|| add_calls(&s.root, 100));
    check_sums(&results);
    let writes = s.server_writes.load(Ordering::SeqCst) - before;
    assert!((1..=5).contains(&writes), "{writes} writes for 100 replies");
    // A lone request is still answered at once.
    let sum: i64 = s.root.call_method("add", (2i64, 3i64)).expect("add");
    assert_eq!(sum, 5);
}

#[test]
fn batch_replies_writes_held_replies_before_the_server_waits_on_the_client() {
    // Only this thread serves the client, so the reply to `first` (and its
    // callback) is handled before the request that arrived after it.
    let s = setup(Config::default().batch_replies(true));
    let first_done = Arc::new(AtomicBool::new(false));
    let seen_first = Arc::new(AtomicBool::new(false));
    let (d, f) = (first_done.clone(), seen_first.clone());
    let cb = callback(move || {
        f.store(d.load(Ordering::SeqCst), Ordering::SeqCst);
        1i64
    });
    let (first, second) = batch(|| {
        let first = async_(&s.root).call_method("add", (1i64, 1i64));
        let d = first_done.clone();
        first.add_callback(move |_| d.store(true, Ordering::SeqCst));
        // Arrives with `first`: the server holds the reply to `first`
        // while it serves this, and this calls back into the client.
        let second = async_(&s.root).call_method("call_back", (cb,));
        (first, second)
    });
    assert_eq!(second.value_as::<i64>().expect("call_back"), 1);
    assert_eq!(first.value_as::<i64>().expect("add"), 2);
    assert!(
        seen_first.load(Ordering::SeqCst),
        "the held reply to `first` left before the server waited on the client"
    );
}

/// A window long enough that only the thread itself writes what it held.
fn patient() -> Config {
    Config::default().coalesce(Some(Duration::from_secs(60)))
}

#[test]
fn async_calls_coalesce_until_their_thread_waits() {
    let s = setup(patient());
    let before = s.client_writes.load(Ordering::SeqCst);
    let results = add_calls(&s.root, 100);
    assert_eq!(s.client_writes.load(Ordering::SeqCst), before, "held while the thread goes on");
    // Waiting for the first result writes them all.
    check_sums(&results);
    let writes = s.client_writes.load(Ordering::SeqCst) - before;
    assert!((1..=3).contains(&writes), "{writes} writes for 100 calls");
    // A synchronous call leaves at once, alone.
    let before = s.client_writes.load(Ordering::SeqCst);
    assert_eq!(s.root.call_method::<i64>("add", (1i64, 1i64)).expect("add"), 2);
    assert_eq!(s.client_writes.load(Ordering::SeqCst) - before, 1);
}

#[test]
fn a_held_call_leaves_by_itself_once_its_window_passes() {
    // The thread makes an asynchronous call and goes on with other work:
    // the flusher writes the call, and the server runs it.
    let s = setup(Config::default().coalesce(Some(Duration::from_millis(1))));
    let r = async_(&s.root).call_method("signal", (5i64,));
    assert_eq!(s.signals.recv_timeout(PATIENCE), Ok(5), "the held call reached the server");
    assert_eq!(r.value_as::<i64>().expect("signal"), 5);
}

#[test]
fn replies_coalesce_by_default() {
    let s = setup(Config::default());
    let before = s.server_writes.load(Ordering::SeqCst);
    let results = batch(|| add_calls(&s.root, 100));
    check_sums(&results);
    let writes = s.server_writes.load(Ordering::SeqCst) - before;
    assert!(writes < 100, "{writes} writes for 100 replies that arrived together");
}

#[test]
fn a_reply_does_not_wait_for_a_slow_method_past_its_window() {
    // `add` and `slow` arrive together; the reply to `add` is held while
    // `slow` waits behind it, and `slow` runs until this test lets it go.
    // The flusher writes the reply in the meantime.
    let s = setup(Config::default().coalesce(Some(Duration::from_millis(1))));
    let (fast, slow) =
        batch(|| (async_(&s.root).call_method("add", (1i64, 1i64)), async_(&s.root).call_method("slow", ())));
    assert_eq!(fast.value_as::<i64>().expect("add"), 2, "the reply left while `slow` ran");
    assert!(!slow.ready(), "`slow` is still running");
    s.let_go.send(()).unwrap();
    assert_eq!(slow.value_as::<i64>().expect("slow"), 0);
}
