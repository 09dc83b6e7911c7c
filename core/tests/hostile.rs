//! Hostile peers on the in-memory `Pair`: what a peer can make this side
//! hold or do. (The inbox's O(1) cancel is checked beside it, in
//! `connection/inbox.rs`.)

use netref::testing::Pair;
use netref::{ObjectBuilder, RemoteObject, Service};

fn calculator() -> Service {
    Service::object(ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build())
}

/// Reading a method as an attribute again and again returns one bound
/// method: the lookups cannot fill the export table, and the proxies the
/// client holds are one proxy.
#[test]
fn repeated_method_lookups_export_one_object() {
    let pair = Pair::new(Service::none(), calculator());
    let root = pair.client.root().unwrap();
    let held: Vec<RemoteObject> = (0..1_000).map(|_| root.getattr("add").unwrap()).collect();
    assert_eq!(pair.server.exported_count(), 2, "the root and its one bound method");
    assert!(held.iter().all(|m| m.same_as(&held[0])));
    assert_eq!(held[0].call::<i64>((40, 2)).unwrap(), 42);
    drop(held);
    pair.settle();
    assert_eq!(pair.server.exported_count(), 1, "the bound method is released with its last proxy");
    // Read again after its release, it is exported again under a new id.
    let again: RemoteObject = root.getattr("add").unwrap();
    assert_eq!(again.call::<i64>((1, 2)).unwrap(), 3);
}
