//! RPyC 6's dialect against the real thing, rpyc 6.0.2 from PyPI: a Python
//! client of a netref service, and a netref client of a Python service,
//! over TCP and Unix sockets.

#[path = "common/python.rs"]
mod python;

use std::sync::mpsc;

use netref::{Builder, Config, Dialect, ObjectBuilder, RemoteError, RemoteObject, Service, ThreadedServer};

/// The service Python's client uses.
fn calc() -> Service {
    Service::new(|conn| {
        let weak = conn.downgrade();
        ObjectBuilder::new("Calc")
            // How many objects the Python side holds references to.
            .method("held", move || weak.upgrade().map_or(0, |c| c.exported_count()))
            .method("add", |a: i64, b: i64| a + b)
            .method("greet", |name: String| format!("hello {name}"))
            .method("pair", || (1, "two"))
            .method("nothing", || ())
            .attr("version", "1.0")
            .try_method("parse", |s: String| s.parse::<i64>())
            .try_method("need", |key: String| Err::<i64, _>(RemoteError::new("KeyError", key)))
            .try_method("call_me", |cb: RemoteObject, x: i64| cb.call::<i64>((x,)))
            .method("make", |name: String| {
                ObjectBuilder::new("Thing").method("name", move || name.clone()).build()
            })
            .build()
    })
}

/// A Python client following RPyC's tutorial: what it prints, line by line.
const PYTHON_CLIENT: &str = r#"
import gc, sys, rpyc
if sys.argv[1] == "unix":
    c = rpyc.utils.factory.unix_connect(sys.argv[2])
else:
    c = rpyc.connect("127.0.0.1", int(sys.argv[2]))
r = c.root
print("add", r.add(1, 2))
print("greet", r.greet("py"))
print("pair", r.pair())
print("nothing", r.nothing())
print("version", r.version)
try:
    r.parse("x")
except RuntimeError as e:
    print("parse", type(e).__name__, str(e).splitlines()[0])
try:
    r.need("k")
except KeyError as e:
    print("need", type(e).__name__, e.args)
try:
    r.nope
except AttributeError as e:
    print("nope", type(e).__name__)
try:
    r.__class__.__init__
except AttributeError as e:
    print("class", type(e).__name__)
try:
    r.add(1, b=2)
except TypeError as e:
    print("kwargs", type(e).__name__)
print("call_me", r.call_me(lambda x: x * 10, 4))
t = r.make("bolt")
print("thing", t.name(), repr(t).startswith("<netref.Thing object"), t == t, t != r, hash(t) == hash(t))
print("dir", sorted(dir(r)))
res = rpyc.async_(r.add)(5, 6)
res.wait()
print("async", res.ready, res.value)
print("timed", rpyc.timed(r.add, 5)(2, 2).value)
del t
# Each exception above holds the method's proxy in a cycle through its
# traceback until Python's collector runs.
gc.collect()
print("held", r.held())
c.close()
print("closed")
"#;

fn python_client_of_a_netref_service(unix: bool) {
    let Some(python) = python::python("the Python client of a netref service") else { return };
    let (closed_tx, closed_rx) = mpsc::channel();
    let service = calc().on_connect(move |conn| {
        let closed = closed_tx.clone();
        conn.on_close(move |reason| closed.send(reason.to_string()).unwrap());
    });
    let builder = Builder::default().service(service).config(Config::default().dialect(Dialect::Rpyc));
    let dir = tempdir();
    let path = dir.join("calc.sock");
    let server = if unix {
        ThreadedServer::bind_unix(&path, builder).unwrap()
    } else {
        ThreadedServer::bind_tcp("127.0.0.1:0", builder).unwrap()
    };
    let accepting = server.spawn();
    let port = server.local_addr().map(|a| a.port().to_string()).unwrap_or_default();
    let (kind, address) = if unix { ("unix", path.to_str().unwrap()) } else { ("tcp", port.as_str()) };
    let lines = python::run(&python, PYTHON_CLIENT, &[kind, address], "");
    assert_eq!(
        lines,
        [
            "add 3",
            "greet hello py",
            "pair (1, 'two')",
            "nothing None",
            "version 1.0",
            "parse RuntimeError ParseIntError: invalid digit found in string",
            "need KeyError ('k',)",
            "nope AttributeError",
            "class AttributeError",
            "kwargs TypeError",
            "call_me 40",
            "thing bolt True True True True",
            "dir ['add', 'call_me', 'greet', 'held', 'make', 'need', 'nothing', 'pair', 'parse', 'version']",
            "async True 11",
            "timed 4",
            "held 2",
            "closed",
        ]
    );
    // Python's close ended the connection on this side too.
    assert_eq!(closed_rx.recv().unwrap(), "connection closed by the peer");
    server.close();
    accepting.join().unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netref-rpyc-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn python_client_of_a_netref_service_over_tcp() {
    python_client_of_a_netref_service(false);
}

#[test]
fn python_client_of_a_netref_service_over_unix() {
    python_client_of_a_netref_service(true);
}
