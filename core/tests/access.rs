//! Access control: only what a service exposes is reachable. Unexposed and
//! private-looking names, wrong arity, wrong types and forged object
//! references each get a clear remote error, and the server keeps serving
//! (a follow-up call on the same connection succeeds).

mod rawpeer;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use netref::wire::Cbor;
use netref::wire::{Message, WireRequest, TAG_RECEIVER_OBJECT};
use netref::{Builder, Connection, ObjectBuilder, RemoteError, RemoteObject, Service, ThreadedServer};
use rawpeer::RawPeer;

const PATIENCE: Duration = Duration::from_secs(10);

fn service() -> Service {
    Service::new(|_| {
        ObjectBuilder::new("Vault")
            .method("add", |a: i64, b: i64| a + b)
            .method("greet", |name: String| format!("hello {name}"))
            .method("make", || ObjectBuilder::new("Thing").method("ping", || "pong").build())
            .attr("version", "1.0")
            .build()
    })
}

struct Server {
    server: ThreadedServer,
    addr: SocketAddr,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service())).unwrap();
        let addr = server.local_addr().unwrap();
        let thread = Some(server.spawn());
        Server { server, addr, thread }
    }

    fn connect(&self) -> (Connection, RemoteObject) {
        let conn = Builder::default().connect_tcp(self.addr).unwrap();
        let root = conn.root().unwrap();
        (conn, root)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.close();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn remote(err: netref::Error) -> RemoteError {
    err.as_remote().unwrap_or_else(|| panic!("expected a remote error, got {err}")).clone()
}

fn still_serves(root: &RemoteObject) {
    assert_eq!(root.call_method::<i64>("add", (40, 2)).unwrap(), 42, "the follow-up call succeeds");
}

#[test]
fn unexposed_and_private_names_are_attribute_errors() {
    let srv = Server::start();
    let (_conn, root) = srv.connect();
    let names = [
        "missing",
        "_private",
        "__class__",
        "__dict__",
        "__init__",
        "__getattribute__",
        "__reduce__",
        "_Vault__secret",
        "ADD",
        "add ",
        "",
    ];
    for name in names {
        let e = remote(root.call_method::<netref::Value>(name, ()).unwrap_err());
        assert_eq!(e.type_name, "AttributeError", "method {name:?}: {e}");
        assert!(e.message.contains(&format!("'{name}'")), "the error names {name:?}: {e}");
        let e = remote(root.getattr::<netref::Value>(name).unwrap_err());
        assert_eq!(e.type_name, "AttributeError", "attribute {name:?}: {e}");
        still_serves(&root);
    }
    // A method is not an attribute and an attribute is not a method.
    // Reading a method gives a bound method (as in Python), nothing more.
    let bound: RemoteObject = root.getattr("add").unwrap();
    assert_eq!(bound.call::<i64>((1, 2)).unwrap(), 3);
    assert_eq!(remote(bound.getattr::<netref::Value>("__self__").unwrap_err()).type_name, "AttributeError");
    assert_eq!(
        remote(root.call_method::<netref::Value>("version", ()).unwrap_err()).type_name,
        "AttributeError"
    );
    // The root is not callable.
    let e = remote(root.call::<netref::Value>(()).unwrap_err());
    assert_eq!(e.type_name, "TypeError");
    assert!(e.message.contains("not callable"), "{e}");
    // dir() lists exactly what is exposed.
    let mut names = root.dir().unwrap();
    names.sort();
    assert_eq!(names, ["add", "greet", "make", "version"]);
    still_serves(&root);
}

#[test]
fn wrong_arity_and_wrong_types_are_type_errors() {
    let srv = Server::start();
    let (_conn, root) = srv.connect();
    for n in [0usize, 1, 3, 7] {
        let args = vec![netref::to_value(&1).unwrap(); n];
        let e = remote(root.call_method::<i64>("add", args).unwrap_err());
        assert_eq!(e.type_name, "TypeError", "{n} arguments: {e}");
        let given = if n == 1 { "1 was given".to_string() } else { format!("{n} were given") };
        assert_eq!(e.message, format!("`Vault.add` takes 2 arguments but {given}"));
        still_serves(&root);
    }
    let e = remote(root.call_method::<i64>("add", ("one", 2)).unwrap_err());
    assert_eq!(e.type_name, "TypeError");
    assert_eq!(e.message, "argument 1 of `Vault.add`: expected an integer, got the string \"one\"");
    let e = remote(root.call_method::<i64>("add", (1, 2.5)).unwrap_err());
    assert_eq!(e.message, "argument 2 of `Vault.add`: expected an integer, got the number 2.5");
    let e = remote(root.call_method::<String>("greet", (vec![1, 2],)).unwrap_err());
    assert_eq!(e.type_name, "TypeError");
    // A proxy where data is expected.
    let thing: RemoteObject = root.call_method("make", ()).unwrap();
    let e = remote(root.call_method::<i64>("add", (thing.clone(), 1)).unwrap_err());
    assert_eq!(e.type_name, "TypeError", "{e}");
    still_serves(&root);
    assert_eq!(thing.call_method::<String>("ping", ()).unwrap(), "pong");
}

/// A raw client: hello, then the root (exported as object 1).
fn raw_client(addr: SocketAddr) -> RawPeer<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut peer = RawPeer::new(stream);
    peer.send(&rawpeer::hello()).unwrap();
    peer.send(&rawpeer::root(1)).unwrap();
    assert!(matches!(peer.answer_to(1), Message::Reply { .. }));
    peer
}

fn expect_error(peer: &mut RawPeer<TcpStream>, seq: u64) -> RemoteError {
    match peer.answer_to(seq) {
        Message::Error { error, .. } => error,
        other => panic!("expected an error reply to {seq}, got {other:?}"),
    }
}

fn expect_sum(peer: &mut RawPeer<TcpStream>, seq: u64) {
    peer.send(&rawpeer::call_method(seq, 1, "add", vec![Cbor::Integer(2.into()), Cbor::Integer(3.into())]))
        .unwrap();
    match peer.answer_to(seq) {
        Message::Reply { value, .. } => assert_eq!(value, Cbor::Integer(5.into())),
        other => panic!("the follow-up call failed: {other:?}"),
    }
}

fn forged(id: u64) -> Cbor {
    Cbor::Tag(TAG_RECEIVER_OBJECT, Box::new(Cbor::Integer(id.into())))
}

#[test]
fn forged_object_references_are_reference_errors() {
    let srv = Server::start();
    let mut peer = raw_client(srv.addr);
    // Calls on objects never handed out.
    for (seq, target) in [(2, 2), (3, 999), (4, u64::MAX), (5, 0)] {
        peer.send(&rawpeer::call_method(seq, target, "add", vec![])).unwrap();
        let e = expect_error(&mut peer, seq);
        assert_eq!(e.type_name, "ReferenceError", "target {target}: {e}");
        assert!(e.message.contains(&format!("no object with id {target}")), "{e}");
    }
    for (seq, request) in [
        (6, WireRequest::GetAttr { target: 77, name: "version".into() }),
        (7, WireRequest::Dir { target: 77 }),
        (8, WireRequest::Call { target: 77, args: Cbor::Array(vec![]) }),
    ] {
        peer.send(&Message::Request { seq, request }).unwrap();
        assert_eq!(expect_error(&mut peer, seq).type_name, "ReferenceError");
    }
    // A forged "your own object" reference as an argument.
    peer.send(&rawpeer::call_method(9, 1, "add", vec![forged(4242), Cbor::Integer(1.into())])).unwrap();
    let e = expect_error(&mut peer, 9);
    assert_eq!(e.type_name, "ReferenceError", "{e}");
    assert!(e.message.contains("4242"), "{e}");
    // Nested deep inside an argument.
    let nested = Cbor::Array(vec![Cbor::Map(vec![(Cbor::Text("k".into()), forged(31337))])]);
    peer.send(&rawpeer::call_method(10, 1, "greet", vec![nested])).unwrap();
    assert_eq!(expect_error(&mut peer, 10).type_name, "ReferenceError");
    // The connection still works.
    expect_sum(&mut peer, 11);
}

#[test]
fn forging_a_release_ends_only_that_connection() {
    let srv = Server::start();
    let (_conn, root) = srv.connect();
    let mut peer = raw_client(srv.addr);
    // Release an object never handed out: a protocol violation.
    peer.send(&Message::Request { seq: 0, request: WireRequest::Release(vec![(555, 1)]) }).unwrap();
    // The server closes this connection (with a close message first).
    loop {
        match peer.recv() {
            None => break,
            Some(Message::Request { request: WireRequest::Close(reason), .. }) => {
                assert!(reason.contains("555") || !reason.is_empty(), "{reason}");
            }
            Some(_) => {}
        }
    }
    // Everyone else is still served.
    still_serves(&root);
    let mut again = raw_client(srv.addr);
    expect_sum(&mut again, 2);
}
