//! Typed events (`#[netref(event)]`, `Event<T>`): each policy under a slow
//! subscriber, lag and the end reported in place, closures, streams and
//! iterators, this side's own events, and bad options. On the in-memory
//! pair, and over sockets for what needs threads (a blocked emitter, a
//! slow subscriber beside a fast one on another connection).

use std::future::Future;
use std::pin::pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use netref::testing::Pair;
use netref::typed::{Ended, Event, Missed, Obj, Policy, Subscribe};
use netref::{BgServingThread, Builder, Error, Misuse, RemoteObject, Service, ThreadedServer};

/// How long a wait may take before the test fails (a bound on a hang, not
/// a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

/// One reading: (sensor, value).
type Reading = (String, u64);

/// Sensors whose readings the server emits.
#[netref::service]
pub trait Sensors {
    /// Every reading.
    #[netref(event)]
    fn readings(&self) -> Event<Reading>;
    /// How many subscribe to the readings.
    fn subscribers(&self) -> usize;
}

#[derive(Clone, Default)]
struct Station {
    readings: Event<Reading>,
}

impl Sensors for Station {
    fn readings(&self) -> Event<Reading> {
        self.readings.clone()
    }
    fn subscribers(&self) -> usize {
        self.readings.subscribers()
    }
}

fn reading(sensor: &str, value: u64) -> Reading {
    (sensor.to_owned(), value)
}

/// A pair serving `station`, and the client's proxy of it.
fn pair(station: &Station) -> (Pair, SensorsProxy) {
    let pair = Pair::new(Service::none(), Service::typed::<dyn Sensors>(station.clone()));
    let proxy = SensorsProxy::root(&pair.client).unwrap();
    (pair, proxy)
}

/// What a closure subscriber saw, shared with the test.
fn recorder() -> (Arc<Mutex<Vec<Reading>>>, impl FnMut(Reading) + Send + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    (seen, move |r| log.lock().unwrap().push(r))
}

#[test]
fn a_closure_subscriber_receives_each_event_in_order_until_dropped() {
    let station = Station::default();
    let (pair, sensors) = pair(&station);
    let (seen, f) = recorder();
    let sub = sensors.readings().subscribe(Subscribe::drop_oldest(8), f).unwrap();
    pair.settle();
    assert_eq!(sensors.subscribers().unwrap(), 1);
    for v in 1..=3 {
        station.readings.emit(reading("t", v)).unwrap();
    }
    pair.settle();
    assert_eq!(*seen.lock().unwrap(), [reading("t", 1), reading("t", 2), reading("t", 3)]);
    assert_eq!(sub.lagged(), 0);
    assert!(sub.ended().is_none());

    drop(sub);
    pair.settle();
    assert_eq!(station.readings.subscribers(), 0, "dropping the subscription ends it at the server");
    station.readings.emit(reading("t", 4)).unwrap();
    pair.settle();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn cancel_waits_until_the_server_has_ended_the_subscription() {
    let station = Station::default();
    let (pair, sensors) = pair(&station);
    let (seen, f) = recorder();
    let sub = sensors.readings().subscribe(Subscribe::block(4), f).unwrap();
    pair.settle();
    sub.cancel().unwrap();
    assert_eq!(station.readings.subscribers(), 0);
    station.readings.emit(reading("t", 1)).unwrap();
    pair.settle();
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn drop_oldest_reports_the_lag_then_the_newest_events() {
    let station = Station::default();
    let (pair, sensors) = pair(&station);
    // The slow subscriber: an iterator nobody reads yet.
    let mut slow = sensors.readings().iter(Subscribe::drop_oldest(4)).unwrap();
    // The fast one keeps up: its closure runs after each emit.
    let (fast, f) = recorder();
    let _fast = sensors.readings().subscribe(Subscribe::drop_oldest(4), f).unwrap();
    pair.settle();
    for v in 0..100 {
        station.readings.emit(reading("t", v)).unwrap();
        pair.settle();
    }
    assert_eq!(fast.lock().unwrap().len(), 100, "the slow subscriber held the fast one back");
    // The connection answers while the slow subscriber is behind.
    assert_eq!(sensors.subscribers().unwrap(), 2);

    assert!(matches!(slow.next(), Some(Err(Missed::Lagged(96)))));
    let newest: Vec<u64> = (0..4).map(|_| slow.next().unwrap().unwrap().1).collect();
    assert_eq!(newest, [96, 97, 98, 99]);
}

#[test]
fn coalesce_keeps_the_latest_of_each_key_in_first_seen_order() {
    let station = Station::default();
    let (pair, sensors) = pair(&station);
    let mut latest = sensors.readings().iter(Subscribe::coalesce(8)).unwrap();
    pair.settle();
    for (s, v) in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3), ("b", 2)] {
        station.readings.emit(reading(s, v)).unwrap();
    }
    assert!(matches!(latest.next(), Some(Err(Missed::Lagged(3)))));
    let got: Vec<Reading> = (0..3).map(|_| latest.next().unwrap().unwrap()).collect();
    assert_eq!(got, [reading("a", 3), reading("b", 2), reading("c", 1)]);

    // A new key at a full queue drops the oldest key's event.
    let mut two = sensors.readings().iter(Subscribe::coalesce(2)).unwrap();
    pair.settle();
    for s in ["x", "y", "z"] {
        station.readings.emit(reading(s, 0)).unwrap();
    }
    assert!(matches!(two.next(), Some(Err(Missed::Lagged(1)))));
    assert_eq!(two.next().unwrap().unwrap(), reading("y", 0));
    assert_eq!(two.next().unwrap().unwrap(), reading("z", 0));
}

#[test]
fn disconnect_ends_a_subscriber_a_full_queue_behind_and_no_other() {
    let station = Station::default();
    let (pair, sensors) = pair(&station);
    let mut slow = sensors.readings().iter(Subscribe::disconnect(3)).unwrap();
    let (fast, f) = recorder();
    let _fast = sensors.readings().subscribe(Subscribe::disconnect(3), f).unwrap();
    pair.settle();
    for v in 0..5 {
        station.readings.emit(reading("t", v)).unwrap();
        pair.settle();
    }
    assert_eq!(station.readings.subscribers(), 1, "only the slow one is cut off");
    assert_eq!(fast.lock().unwrap().len(), 5);
    // What was queued still arrives, then the end, then nothing.
    let queued: Vec<u64> = (0..3).map(|_| slow.next().unwrap().unwrap().1).collect();
    assert_eq!(queued, [0, 1, 2]);
    assert!(matches!(slow.next(), Some(Err(Missed::Ended(Ended::Overflowed)))));
    assert!(slow.next().is_none());
}

#[test]
fn block_holds_the_emitter_until_the_subscriber_takes_some() {
    let station = Station::default();
    let (pair, sensors) = pair(&station);
    let mut slow = sensors.readings().iter(Subscribe::block(2)).unwrap();
    pair.settle();
    station.readings.emit(reading("t", 1)).unwrap();
    station.readings.emit(reading("t", 2)).unwrap();

    let mut third = pin!(station.readings.emit_async(reading("t", 3)));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(third.as_mut().poll(&mut cx).is_pending(), "the queue is full: the emitter waits");
    // The connection is not held up meanwhile.
    assert_eq!(sensors.subscribers().unwrap(), 1);

    assert_eq!(slow.next().unwrap().unwrap().1, 1);
    assert!(matches!(third.as_mut().poll(&mut cx), Poll::Ready(Ok(()))), "a pull made room");
    assert_eq!(slow.next().unwrap().unwrap().1, 2);
    assert_eq!(slow.next().unwrap().unwrap().1, 3);
}

#[test]
fn a_stream_yields_the_events_and_ends_with_its_connection() {
    let station = Station::default();
    let server = serve(&station);
    let conn = netref::connect(server.local_addr().unwrap()).unwrap();
    let serving = BgServingThread::new(&conn);
    let sensors = SensorsProxy::root(&conn).unwrap();
    let mut stream = sensors.readings().stream(Subscribe::drop_oldest(8)).unwrap();
    station.readings.emit(reading("t", 1)).unwrap();
    station.readings.emit(reading("t", 2)).unwrap();
    assert_eq!(block_on(next(&mut stream)).unwrap().unwrap(), reading("t", 1));
    assert_eq!(block_on(next(&mut stream)).unwrap().unwrap(), reading("t", 2));

    // Awaited where nothing serves the connection, it ends saying so.
    drop(serving);
    match block_on(next(&mut stream)) {
        Some(Err(Missed::Ended(Ended::Failed(Error::Misuse(Misuse::Unserved))))) => {}
        other => panic!("expected the end for want of a server, got {other:?}"),
    }
    assert!(block_on(next(&mut stream)).is_none());

    let _serving = BgServingThread::new(&conn);
    let mut stream = sensors.readings().stream(Subscribe::drop_oldest(8)).unwrap();
    conn.close();
    match block_on(next(&mut stream)) {
        Some(Err(Missed::Ended(Ended::Failed(Error::Closed(_))))) => {}
        other => panic!("expected the end with the connection, got {other:?}"),
    }
}

/// A threaded server of `station` on a free port, serving.
fn serve(station: &Station) -> ThreadedServer {
    let server = ThreadedServer::bind_tcp(
        "127.0.0.1:0",
        Builder::default().service(Service::typed::<dyn Sensors>(station.clone())),
    )
    .unwrap();
    server.spawn();
    server
}

/// The stream's next item, as a future.
fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> impl Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *stream).poll_next(cx))
}

/// Polls `fut` to completion on this thread, parking until woken.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let give_up = std::time::Instant::now() + PATIENCE;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        assert!(std::time::Instant::now() < give_up, "a future hung");
        std::thread::park_timeout(PATIENCE);
    }
}

#[test]
fn dropping_the_event_ends_its_subscriptions() {
    let readings: Event<Reading> = Event::new();
    let mut it = readings.iter(Subscribe::drop_oldest(8)).unwrap();
    readings.emit(reading("t", 1)).unwrap();
    drop(readings);
    assert_eq!(it.next().unwrap().unwrap(), reading("t", 1), "what was queued still arrives");
    assert!(matches!(it.next(), Some(Err(Missed::Ended(Ended::Dropped)))));
    assert!(it.next().is_none());
}

#[test]
fn an_event_of_this_sides_own_object_runs_in_place() {
    let station = Station::default();
    let obj: Obj<dyn Sensors> = Obj::new(station.clone());
    let (seen, f) = recorder();
    let sub = obj.readings().subscribe(Subscribe::drop_oldest(8), f).unwrap();
    assert_eq!(station.readings.subscribers(), 1);
    station.readings.emit(reading("t", 1)).unwrap();
    // Run on the emitting thread: seen before `emit` returns.
    assert_eq!(*seen.lock().unwrap(), [reading("t", 1)]);

    let mut it = station.readings.iter(Subscribe::drop_oldest(2)).unwrap();
    for v in 0..3 {
        station.readings.emit(reading("t", v)).unwrap();
    }
    assert!(matches!(it.next(), Some(Err(Missed::Lagged(1)))));
    assert_eq!(it.next().unwrap().unwrap().1, 1);
    drop((sub, it));
    assert_eq!(station.readings.subscribers(), 0);
}

#[test]
fn emitting_the_peers_event_is_refused() {
    let station = Station::default();
    let (_pair, sensors) = pair(&station);
    let err = sensors.readings().emit(reading("t", 1)).unwrap_err();
    assert!(matches!(err, Error::Misuse(Misuse::EmitsPeerEvent { .. })), "{err}");
    assert!(err.to_string().contains("`readings` is the peer's event"), "{err}");
}

#[test]
fn bad_options_are_refused_in_the_subscribers_terms() {
    let station = Station::default();
    let (pair, _sensors) = pair(&station);
    let root = pair.client.root().unwrap();
    let err = root.call_method::<RemoteObject>("readings", (Subscribe::new(Policy::Block, 0),)).unwrap_err();
    assert!(
        err.to_string().contains("`Sensors.readings`: a subscription holds from 1 to 4096 events, not 0"),
        "{err}"
    );
    let err = root.call_method::<RemoteObject>("readings", ("fast",)).unwrap_err();
    assert!(err.to_string().contains("argument 1 of `Sensors.readings`"), "{err}");

    // A dynamic client sending no options gets the default, and pulls.
    let sub = root.call_method::<RemoteObject>("readings", ()).unwrap();
    let pull = netref::async_(&sub).call_method("pull", ());
    station.readings.emit(reading("d", 7)).unwrap();
    pair.settle();
    let (items, lagged, ended): (Vec<Reading>, u64, Option<String>) =
        netref::from_value(pull.value().unwrap()).unwrap();
    assert_eq!((items, lagged, ended), (vec![reading("d", 7)], 0, None));
    assert_eq!(station.readings.subscribers(), 1);
}

/// Over sockets, for each policy: a subscriber that does not read, beside
/// one that does on another connection. Neither connection waits for the
/// slow one; only a `block` subscriber holds the emitter, and only until
/// it reads.
#[test]
fn a_slow_subscriber_stalls_no_connection_and_no_other_subscriber() {
    let station = Station::default();
    let server = serve(&station);
    let addr = server.local_addr().unwrap();
    const CAPACITY: usize = 4;
    const EVENTS: u64 = 40;
    for policy in [Policy::DropOldest, Policy::Coalesce, Policy::Disconnect, Policy::Block] {
        let slow_conn = netref::connect(addr).unwrap();
        let fast_conn = netref::connect(addr).unwrap();
        let _serving = BgServingThread::new(&fast_conn);
        let slow = SensorsProxy::root(&slow_conn).unwrap();
        let fast = SensorsProxy::root(&fast_conn).unwrap();
        let mut lagging = slow.readings().iter(Subscribe::new(policy, CAPACITY)).unwrap();
        let (tx, rx) = mpsc::channel();
        let (ack, acked) = mpsc::channel();
        let _fast = fast.readings().subscribe(Subscribe::new(policy, CAPACITY), move |r: Reading| {
            tx.send(r.1).unwrap();
            ack.send(()).unwrap();
        });
        // Subscriptions of the last round's connections may linger a moment.
        assert!(slow.subscribers().unwrap() >= 2);

        // The emitter goes at the fast subscriber's pace (it emits the next
        // event once that one has the last), so the fast one never lags.
        let emitter = {
            let readings = station.readings.clone();
            std::thread::spawn(move || {
                for v in 0..EVENTS {
                    // Distinct keys, so coalescing drops as drop-oldest does.
                    readings.emit((format!("s{v}"), v)).unwrap();
                    acked.recv_timeout(PATIENCE).expect("the fast subscriber's event");
                }
            })
        };
        // Without `block`, every event reaches the fast subscriber while
        // the slow one reads nothing; with it, those up to the one that
        // found the slow queue full.
        let before_reading = if policy == Policy::Block { CAPACITY as u64 + 1 } else { EVENTS };
        for v in 0..before_reading {
            assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), v, "{policy:?}");
        }
        // The slow subscriber's connection answers meanwhile.
        assert!(slow.subscribers().unwrap() >= 1, "{policy:?}");

        let mut got = Vec::new();
        let mut lag = 0;
        let mut ended = None;
        let expected_last = EVENTS - 1;
        for item in lagging.by_ref() {
            match item {
                Ok((_, v)) => got.push(v),
                Err(Missed::Lagged(n)) => lag += n,
                Err(Missed::Ended(why)) => {
                    ended = Some(why);
                    break;
                }
                Err(other) => panic!("{other}"),
            }
            if got.last() == Some(&expected_last) {
                break;
            }
        }
        emitter.join().unwrap();
        for v in before_reading..EVENTS {
            assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), v, "{policy:?}");
        }
        match policy {
            Policy::Block => assert_eq!((got.len() as u64, lag), (EVENTS, 0), "nothing is lost"),
            Policy::Disconnect => {
                assert_eq!(got, [0, 1, 2, 3]);
                assert!(matches!(ended, Some(Ended::Overflowed)), "{ended:?}");
            }
            _ => {
                assert_eq!(got.last(), Some(&expected_last), "{policy:?}: the newest arrives");
                assert_eq!(got.len() as u64 + lag, EVENTS, "{policy:?}: each event seen or counted");
            }
        }
    }
}
