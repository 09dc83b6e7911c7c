//! RPyC's asynchronous-operation scenarios (its docs' `sleep`, `timed` and
//! `int` examples) and the sync timeouts, on the in-memory [`Pair`] in
//! virtual time: no sockets, no threads, no sleeps.
//!
//! Work that takes time (the server's `sleep(n)`, a slow callback) moves
//! the pair's [`VirtualClock`] forward one second at a time, and lets the
//! other side run after each second, as it would run meanwhile on its own
//! thread: so the waiting side notices its deadline when it passes, not
//! only once the work is done. Every timing here is exact and the whole
//! file runs in milliseconds. (The scenarios that need threads or real
//! sockets are in `connection.rs`.)

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use netref::clock::VirtualClock;
use netref::testing::Pair;
use netref::{
    async_, timed, Builder, Config, Error, ObjectBuilder, RemoteObject, Service, Value, WeakConnection,
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Work that takes virtual time on one side of a pair: filled in once the
/// pair exists (its clock, and the other side to let run meanwhile).
#[derive(Clone, Default)]
struct Work {
    clock: Arc<OnceLock<Arc<VirtualClock>>>,
    other_side: Arc<OnceLock<WeakConnection>>,
}

impl Work {
    /// Takes `n` seconds of virtual time, letting the other side serve what
    /// it has (fire its deadlines, read what arrived) after each second.
    fn take(&self, n: u64) {
        let clock = self.clock.get().expect("the pair's clock");
        for _ in 0..n {
            clock.advance(secs(1));
            if let Some(other) = self.other_side.get().and_then(WeakConnection::upgrade) {
                let _ = other.poll_all();
            }
        }
    }

    fn bind(&self, clock: &Arc<VirtualClock>, other_side: WeakConnection) {
        let _ = self.clock.set(clock.clone());
        let _ = self.other_side.set(other_side);
    }
}

fn service(work: &Work) -> Service {
    let w = work.clone();
    Service::object(
        ObjectBuilder::new("TestService")
            .method("sleep", {
                let w = w.clone();
                move |n: u64| w.take(n)
            })
            .method("stall", {
                let w = w.clone();
                // Takes its time in one go: the client runs only once it is done.
                move |n: u64| w.clock.get().expect("the pair's clock").advance(secs(n))
            })
            .try_method("int", |s: String| s.parse::<i64>())
            .method("add", |a: i64, b: i64| a + b)
            .build(),
    )
}

/// A pair whose server is the test service, with the given client builder
/// and server builder (before its service is set).
fn pair_with(client: Builder, server: Builder) -> Pair {
    let work = Work::default();
    let pair = Pair::with_builders(client, server.service(service(&work)));
    work.bind(&pair.clock, pair.client.downgrade());
    pair
}

fn pair() -> Pair {
    pair_with(Builder::default(), Builder::default())
}

// ---- 1-5: AsyncResult ---------------------------------------------------------

#[test]
fn s1_async_sleep_not_ready_then_ready_after_wait() {
    let pair = pair();
    let root = pair.client.root().unwrap();
    let start = pair.clock.elapsed();
    let res = async_(&root).call_method("sleep", (2,));
    assert!(!res.ready(), "nobody has served the server yet");
    res.wait().unwrap();
    assert!(res.ready());
    assert!(!res.expired());
    assert!(!res.error());
    assert_eq!(res.value().unwrap(), Value::Null);
    assert_eq!(pair.clock.elapsed() - start, secs(2), "the remote sleep took its two seconds");
}

#[test]
fn s2_set_expiry_makes_wait_fail_with_timeout_and_drops_the_late_reply() {
    let pair = pair();
    let root = pair.client.root().unwrap();
    let start = pair.clock.elapsed();
    let res = async_(&root).call_method("sleep", (5,));
    res.set_expiry(secs(4));
    let err = res.wait().unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == secs(4)), "{err}");
    // The reply came at 5 s, after the expiry at 4 s: dropped, not delivered.
    assert_eq!(pair.clock.elapsed() - start, secs(5));
    assert!(res.expired());
    assert!(!res.ready());
    assert!(res.value().unwrap_err().is_timeout());
    assert_eq!(pair.client.pending_count(), 0, "nothing left waiting for the late reply");
    // The same call within its expiry succeeds.
    let res = async_(&root).call_method("sleep", (3,));
    res.set_expiry(secs(4));
    assert_eq!(res.value().unwrap(), Value::Null);
}

#[test]
fn s2_an_expiry_that_nobody_waits_on_fires_at_its_deadline() {
    // Nothing serves the server while the clock moves: the call expires
    // exactly at its deadline, not a moment before.
    let pair = pair();
    let root = pair.client.root().unwrap();
    let res = async_(&root).call_method("add", (1, 2));
    res.set_expiry(secs(4));
    // `ready()` serves the client without waiting (the server stays unserved).
    pair.clock.advance(secs(4) - Duration::from_nanos(1));
    assert!(!res.ready());
    assert!(!res.expired(), "expired before its deadline");
    pair.clock.advance(Duration::from_nanos(1));
    assert!(!res.ready());
    assert!(res.expired(), "not expired at its deadline");
    assert!(res.value().unwrap_err().is_timeout());
}

#[test]
fn a_reply_read_after_its_deadline_passed_is_dropped() {
    // RPyC drops a reply that arrives once its result has expired (judged
    // when the reply is read). Here the reply and the passed deadline are
    // seen in the same step: the server took 5 s in one go, without the
    // client running meanwhile, and its reply is read at 5 s, after the
    // 4 s expiry. On a loaded machine a real client can wake up just as
    // late.
    let pair = pair();
    let root = pair.client.root().unwrap();
    let res = async_(&root).call_method("stall", (5,));
    res.set_expiry(secs(4));
    let err = res.wait().unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == secs(4)), "{err}");
    assert!(res.expired());
    // A sync call past its timeout fails the same way.
    let err = timed(&root, secs(1)).call_method("stall", (2,)).value().unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[test]
fn s3_two_callbacks_added_before_completion_both_run() {
    let pair = pair();
    let root = pair.client.root().unwrap();
    let res = async_(&root).call_method("sleep", (1,));
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    res.add_callback(move |r| tx.send(("first", r.ready(), r.error())).unwrap());
    res.add_callback(move |r| tx2.send(("second", r.ready(), r.error())).unwrap());
    assert!(rx.try_recv().is_err(), "no callback before the reply");
    res.wait().unwrap();
    assert_eq!(rx.try_recv().unwrap(), ("first", true, false));
    assert_eq!(rx.try_recv().unwrap(), ("second", true, false));
    // Added after completion: runs at once.
    let (tx, rx) = mpsc::channel();
    res.add_callback(move |_| tx.send(()).unwrap());
    rx.try_recv().expect("a callback added to a ready result runs at once");
}

#[test]
fn s4_timed_succeeds_under_and_fails_over_its_limit() {
    let pair = pair();
    let root = pair.client.root().unwrap();
    let timed_sleep = timed(&root, secs(5));
    timed_sleep.call_method("sleep", (3,)).value().unwrap();
    let err = timed_sleep.call_method("sleep", (7,)).value().unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == secs(5)), "{err}");
    assert!(err.to_string().contains("AsyncResultTimeout"));
}

#[test]
fn s5_async_int_parse_error_is_remote_error() {
    let pair = pair();
    let root = pair.client.root().unwrap();
    let aint = async_(&root);
    let x = aint.call_method("int", ("8",));
    assert_eq!(x.value_as::<i64>().unwrap(), 8);
    assert!(!x.error());
    let x = aint.call_method("int", ("this is not a valid number",));
    x.wait().unwrap();
    assert!(x.ready());
    assert!(x.error());
    let err = x.value().unwrap_err();
    let remote = err.as_remote().expect("a remote error");
    assert_eq!(remote.type_name, "ParseIntError");
    assert_eq!(remote.message, "invalid digit found in string");
}

// ---- sync timeouts --------------------------------------------------------------

#[test]
fn sync_timeout_per_connection_and_per_call() {
    let pair = pair_with(
        Builder::default().config(Config::default().sync_request_timeout(Some(secs(1)))),
        Builder::default(),
    );
    let root = pair.client.root().unwrap();
    let err = root.call_method::<()>("sleep", (3,)).unwrap_err();
    assert_eq!(err, Error::Timeout(secs(1)));
    // Per call: a longer limit lets the same call through.
    root.call_method_timeout::<()>("sleep", (2,), Some(secs(6))).unwrap();
    // The connection is still usable after a timeout; the late reply was dropped.
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);
    assert_eq!(pair.client.pending_count(), 0);
}

#[test]
fn sync_timeout_in_the_callback_direction() {
    // RPyC #573: the server's call into a slow client callback times out by
    // the server connection's limit, and the client sees the server's error.
    let server = Service::object(
        ObjectBuilder::new("S").try_method("call_me", |cb: RemoteObject| cb.call::<()>(())).build(),
    );
    let pair = Pair::with_builders(
        Builder::default(),
        Builder::default().config(Config::default().sync_request_timeout(Some(secs(1)))).service(server),
    );
    let work = Work::default();
    work.bind(&pair.clock, pair.server.downgrade());
    let slow = netref::callback(move || work.take(3));
    let err = pair.client.root().unwrap().call_method::<()>("call_me", (slow,)).unwrap_err();
    let r = err.as_remote().expect("the server's timeout comes back as its error");
    assert_eq!(r.type_name, "AsyncResultTimeout", "{err}");
}
