//! A proxy relayed across connections, as RPyC allows: A exports `x` to B,
//! B passes its proxy `p` to C, and C reaches `x` through B (B exports a
//! relay of `p`). Handed back, the object is itself again: C's proxy comes
//! home to B as `p`, and `p` comes home to A as `x`. When every holder
//! drops, each connection's tables are empty.
//!
//! Two in-memory pairs share this thread: `ab` (B is its client, A its
//! server) and `bc` (C is its client, B its server). A call waiting on one
//! side serves the other, so C's call on the relay runs B's relay, whose
//! call on `p` runs `x` at A, all in order on one thread; nothing sleeps.

use std::sync::{Arc, Mutex};

use netref::testing::Pair;
use netref::{
    async_, callback, Error, LocalObject, ObjectBuilder, ObjectRef, RemoteError, RemoteObject, Service,
};

/// A's object: plain calls, an error, a callback, a fresh object per call
/// and an attribute.
fn x_object() -> LocalObject {
    ObjectBuilder::new("X")
        .method("add", |a: i64, b: i64| a + b)
        .try_method("fail", || -> Result<i64, RemoteError> {
            Err(RemoteError::new("ValueError", "x refuses"))
        })
        .try_method("apply", |f: RemoteObject, v: i64| f.call::<i64>((v,)))
        .method("child", || ObjectBuilder::new("Child").method("hello", || "hi from a child of x").build())
        .attr("name", "x")
        .build()
}

struct World {
    /// B's connection to A (client) and A (server).
    ab: Pair,
    /// C (client) and B's connection to C (server).
    bc: Pair,
    /// B's proxy of A's root.
    root_a: RemoteObject,
    /// B's proxy of `x` (taken by the test that drops it).
    p: Option<RemoteObject>,
    /// What B's root hands C: `p`, until the test takes it back.
    offered: Arc<Mutex<Option<RemoteObject>>>,
    /// What C handed B through B's `keep`.
    kept: Arc<Mutex<Vec<ObjectRef>>>,
    /// C's proxy of B's root.
    root_b: RemoteObject,
}

fn world() -> World {
    let x = x_object();
    let home = x.clone();
    let a_root = ObjectBuilder::new("A")
        .method("get_x", move || home.clone())
        .method("is_x", {
            let x = x.clone();
            move |o: ObjectRef| matches!(o, ObjectRef::Local(l) if l.same_as(&x))
        })
        .build();
    let ab = Pair::new(Service::none(), Service::object(a_root));
    let root_a = ab.client.root().unwrap();
    let p: RemoteObject = root_a.call_method("get_x", ()).unwrap();

    let offered = Arc::new(Mutex::new(Some(p.clone())));
    let kept = Arc::new(Mutex::new(Vec::new()));
    let b_root = ObjectBuilder::new("B")
        .try_method("get_p", {
            let offered = offered.clone();
            move || offered.lock().unwrap().clone().ok_or_else(|| RemoteError::new("LookupError", "no proxy"))
        })
        .method("keep", {
            let kept = kept.clone();
            move |o: ObjectRef| kept.lock().unwrap().push(o)
        })
        .build();
    let bc = Pair::new(Service::none(), Service::object(b_root));
    let root_b = bc.client.root().unwrap();
    World { ab, bc, root_a, p: Some(p), offered, kept, root_b }
}

impl World {
    /// C's proxy of B's relay of `p`.
    fn relayed(&self) -> RemoteObject {
        self.root_b.call_method("get_p", ()).unwrap()
    }

    /// Serves both pairs until neither has anything to do: releases a drop
    /// queued on one connection may queue another on the next.
    fn settle(&self) {
        self.bc.settle();
        self.ab.settle();
        self.bc.settle();
    }

    /// (exported, imported) of each of the four connections, in the order
    /// A, B towards A, B towards C, C.
    fn tables(&self) -> [(usize, usize); 4] {
        let counts = |c: &netref::Connection| (c.exported_count(), c.imported_count());
        [counts(&self.ab.server), counts(&self.ab.client), counts(&self.bc.server), counts(&self.bc.client)]
    }
}

#[test]
fn calls_through_the_relay_reach_the_original() {
    let w = world();
    let r = w.relayed();
    assert_eq!(r.call_method::<i64>("add", (2, 3)).unwrap(), 5);
    assert_eq!(r.getattr::<String>("name").unwrap(), "x");
    assert_eq!(r.dir().unwrap(), ["add", "apply", "child", "fail", "name"]);
    // One relay for one proxy: passed again, it is the same proxy at C.
    assert!(w.relayed().same_as(&r));
    // A's object in a relayed result is relayed too.
    let child: RemoteObject = r.call_method("child", ()).unwrap();
    assert_eq!(child.call_method::<String>("hello", ()).unwrap(), "hi from a child of x");
    // B exports its root and two relays to C; A exports its root, x and the child to B.
    assert_eq!(w.bc.server.exported_count(), 3);
    assert_eq!(w.ab.server.exported_count(), 3);
}

#[test]
fn async_calls_through_the_relay() {
    let w = world();
    let r = w.relayed();
    let sum = async_(&r).call_method("add", (20, 22)).typed::<i64>();
    assert_eq!(sum.value().unwrap(), 42);
    let err = async_(&r).call_method("fail", ()).value().unwrap_err();
    let Error::Remote(e) = err else { panic!("expected x's error, got {err:?}") };
    assert_eq!((e.type_name.as_str(), e.message.as_str()), ("ValueError", "x refuses"));
}

#[test]
fn an_error_raised_by_the_original_reaches_the_third_party() {
    let w = world();
    let r = w.relayed();
    let err = r.call_method::<i64>("fail", ()).unwrap_err();
    let Error::Remote(e) = err else { panic!("expected x's error, got {err:?}") };
    assert_eq!(e.type_name, "ValueError");
    assert_eq!(e.message, "x refuses");
    // The traceback names every hop: X at A, then the relay at B.
    assert_eq!(e.traceback.len(), 2, "{:?}", e.traceback);
    assert!(e.traceback[0].contains("X.fail()"), "{}", e.traceback[0]);
    assert!(e.traceback[1].contains("relay of remote object"), "{}", e.traceback[1]);
}

#[test]
fn a_callback_from_the_third_party_travels_through_the_relay_both_ways() {
    let w = world();
    let r = w.relayed();
    // C's closure goes to B as a proxy, B relays it to A, and A's call on it
    // runs at C through B.
    let tenfold = callback(|v: i64| v * 10);
    assert_eq!(r.call_method::<i64>("apply", (tenfold.clone(), 4)).unwrap(), 40);
    w.settle();
    // The callback's proxies and B's relay of it are gone again.
    assert_eq!(w.ab.client.exported_count(), 0);
    assert_eq!(w.bc.server.imported_count(), 0);
    assert_eq!(w.bc.client.exported_count(), 0);
}

#[test]
fn handed_back_the_object_is_itself_at_every_home() {
    let w = world();
    let r = w.relayed();
    // C hands its proxy back to B: B gets `p` itself, not a relay of a relay.
    w.root_b.call_method::<()>("keep", (r.clone(),)).unwrap();
    let back = w.kept.lock().unwrap().pop().expect("B kept what C handed it");
    let ObjectRef::Remote(back) = back else { panic!("B got a local object: {back:?}") };
    assert!(back.same_as(w.p.as_ref().unwrap()));
    // B hands it to A: A gets `x` itself.
    assert!(w.root_a.call_method::<bool>("is_x", (back.clone(),)).unwrap());
    // Nothing was exported on the way home: B exports nothing to A, and C
    // exports nothing to B.
    assert_eq!(w.ab.client.exported_count(), 0);
    assert_eq!(w.bc.client.exported_count(), 0);
}

#[test]
fn everything_is_released_end_to_end_when_every_holder_drops() {
    let w = world();
    let r = w.relayed();
    w.root_b.call_method::<()>("keep", (r.clone(),)).unwrap();
    assert_eq!(r.call_method::<i64>("add", (1, 1)).unwrap(), 2);
    // A: root and x; B towards A: their proxies; B towards C: root and the
    // relay; C: their proxies.
    assert_eq!(w.tables(), [(2, 0), (0, 2), (2, 0), (0, 2)]);

    // C drops its proxy of the relay. B still holds `p` (offered, kept), so
    // only the relay goes; A's export of x stays.
    drop(r);
    w.settle();
    assert_eq!(w.tables(), [(2, 0), (0, 2), (1, 0), (0, 1)]);

    // B's last holders of `p` drop: A's export of x goes.
    let World { ab, bc, root_a, p, offered, kept, root_b } = w;
    let w = World { ab, bc, root_a, p: None, offered, kept, root_b };
    drop(p);
    w.offered.lock().unwrap().take();
    w.kept.lock().unwrap().clear();
    w.settle();
    assert_eq!(w.tables(), [(1, 0), (0, 1), (1, 0), (0, 1)]);

    // And the roots: nothing is left anywhere.
    let World { ab, bc, root_a, root_b, .. } = w;
    drop((root_a, root_b));
    let (c_ab, c_bc) = (ab, bc);
    c_bc.settle();
    c_ab.settle();
    for c in [&c_ab.server, &c_ab.client, &c_bc.server, &c_bc.client] {
        assert_eq!((c.exported_count(), c.imported_count()), (0, 0), "{c:?}");
    }
}

#[test]
fn closing_the_third_party_releases_the_relay_and_the_original() {
    let w = world();
    let r = w.relayed();
    assert_eq!(r.call_method::<i64>("add", (1, 2)).unwrap(), 3);
    // Only the relay at B holds `p` now.
    let World { ab, bc, root_a, p, offered, kept, root_b } = w;
    drop((p, offered.lock().unwrap().take()));
    assert_eq!((ab.server.exported_count(), ab.client.imported_count()), (2, 2));
    // C goes away without releasing anything: B's side of that connection
    // frees the relay, and the relay's proxy is released at A.
    bc.client.close();
    bc.settle();
    assert!(bc.server.is_closed());
    assert_eq!(bc.server.exported_count(), 0);
    ab.settle();
    assert_eq!((ab.server.exported_count(), ab.client.imported_count()), (1, 1));
    // A call on C's dead proxy fails in the user's terms; A's root still works.
    assert!(matches!(r.call_method::<i64>("add", (1, 2)), Err(Error::Closed(_))));
    assert!(root_a.call_method::<RemoteObject>("get_x", ()).is_ok());
    drop((root_b, kept));
}

/// When the relayed proxy's own connection is gone, the third party's calls
/// fail with that reason, `dir()` included (not an empty list).
#[test]
fn a_relay_whose_connection_closed_fails_in_the_third_partys_terms() {
    let w = world();
    let r = w.relayed();
    w.ab.client.close();
    w.ab.settle();
    for result in [r.call_method::<i64>("add", (1, 2)).map(|_| ()), r.dir().map(|_| ())] {
        let Err(Error::Remote(e)) = result else { panic!("expected a remote error, got {result:?}") };
        assert_eq!(e.type_name, "EOFError", "{e}");
    }
}

/// The same relay between three real processes' worth of threads and
/// sockets: A and B are `ThreadedServer`s, B's connection to A is served by
/// a `BgServingThread`, and C calls from the test's thread. A call through
/// the relay blocks B's thread for C while A answers; a callback from C
/// goes A -> B -> C on other threads meanwhile. (Each wait is bounded by
/// the synchronous call timeout, so a deadlock fails instead of hanging.)
#[test]
fn relayed_over_threaded_servers_and_sockets() {
    use netref::{BgServingThread, Builder, ThreadedServer};

    let x = x_object();
    let a_root = ObjectBuilder::new("A")
        .method("get_x", {
            let x = x.clone();
            move || x.clone()
        })
        .method("is_x", move |o: ObjectRef| matches!(o, ObjectRef::Local(l) if l.same_as(&x)))
        .build();
    let a =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(a_root))).unwrap();
    let a_thread = a.spawn();

    let b_to_a = Builder::default().connect_tcp(a.local_addr().unwrap()).unwrap();
    let b_serving = BgServingThread::new(&b_to_a);
    let root_a = b_to_a.root().unwrap();
    let p: RemoteObject = root_a.call_method("get_x", ()).unwrap();
    let b_root = ObjectBuilder::new("B")
        .method("get_p", {
            let p = p.clone();
            move || p.clone()
        })
        .try_method("is_p", {
            let p = p.clone();
            move |o: ObjectRef| -> Result<bool, Error> {
                let ObjectRef::Remote(o) = o else { return Ok(false) };
                // Home at B it is `p`; on to A it is `x`.
                Ok(o.same_as(&p) && root_a.call_method::<bool>("is_x", (o,))?)
            }
        })
        .build();
    let b =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(b_root))).unwrap();
    let b_thread = b.spawn();

    let c = Builder::default().connect_tcp(b.local_addr().unwrap()).unwrap();
    let root_b = c.root().unwrap();
    let r: RemoteObject = root_b.call_method("get_p", ()).unwrap();
    assert_eq!(r.call_method::<i64>("add", (40, 2)).unwrap(), 42);
    assert_eq!(async_(&r).call_method("add", (1, 2)).typed::<i64>().value().unwrap(), 3);
    let Err(Error::Remote(e)) = r.call_method::<i64>("fail", ()) else { panic!("x's error") };
    assert_eq!(e.type_name, "ValueError");
    assert_eq!(r.call_method::<i64>("apply", (callback(|v: i64| v + 1), 9)).unwrap(), 10);
    assert!(root_b.call_method::<bool>("is_p", (r.clone(),)).unwrap());

    drop((r, root_b));
    c.close();
    b.close();
    b_thread.join().unwrap();
    drop(b_serving);
    b_to_a.close();
    a.close();
    a_thread.join().unwrap();
    drop(p);
}
