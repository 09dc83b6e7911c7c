//! RPyC 6's dialect against the real thing, rpyc 6.0.2 from PyPI: a Python
//! client of a netref service, and a netref client of a Python service,
//! over TCP and Unix sockets.

#[path = "common/python.rs"]
mod python;

use std::sync::mpsc;

use netref::{
    Builder, Config, Dialect, ObjectBuilder, RemoteError, RemoteObject, Service, ThreadedServer, Value,
};

/// The service Python's client uses.
fn calc() -> Service {
    Service::new(|conn| {
        let weak = conn.downgrade();
        ObjectBuilder::new("Calc")
            // How many objects the Python side holds references to.
            .method("held", move || weak.upgrade().map_or(0, |c| c.exported_count()))
            .method("add", |a: i64, b: i64| a + b)
            .method("greet", |name: String| format!("hello {name}"))
            .parameters("greet", &["name"])
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
print("greet", r.greet("py"), r.greet(name="kw"))
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
            "greet hello py hello kw",
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
    let dir = std::env::temp_dir().join(format!(
        "netref-rpyc-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
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

/// A Python RPyC service, served by rpyc's own ThreadedServer; it prints
/// its port once it listens.
const PYTHON_SERVICE: &str = r#"
import sys, rpyc
from rpyc.utils.server import ThreadedServer

class Thing:
    def exposed_name(self):
        return "thing"

class CalcService(rpyc.Service):
    exposed_version = "6.0.2"
    def on_connect(self, conn):
        self._conn = conn
    def exposed_held(self):
        # How many of its objects the netref side holds references to.
        return len(self._conn._local_objects._dict)
    def exposed_add(self, a, b):
        return a + b
    def exposed_greet(self, name):
        return "hello " + name
    def exposed_fail(self):
        raise ValueError("bad", 42)
    def exposed_broken(self):
        return 1 / 0
    def exposed_call_me(self, cb, x):
        return cb(x) + 1
    def exposed_numbers(self):
        return [1, 2, 3]
    def exposed_point(self):
        return (1.5, b"raw", None, True, frozenset([7]))
    def exposed_make(self):
        return Thing()
    def exposed_identity(self, obj):
        return obj

if sys.argv[1] == "unix":
    server = ThreadedServer(CalcService, socket_path=sys.argv[2])
else:
    server = ThreadedServer(CalcService, hostname="127.0.0.1", port=0)
# Listening before saying so (start() would listen, then block); start()
# sees it listens already.
server._listen()
print(server.port, flush=True)
server.start()
"#;

/// Runs [`PYTHON_SERVICE`]; the child and where it listens.
fn python_service(python: &str, unix: Option<&std::path::Path>) -> (python::Running, String) {
    let args = match unix {
        Some(path) => vec!["unix", path.to_str().unwrap()],
        None => vec!["tcp"],
    };
    let mut argv = vec!["-c", PYTHON_SERVICE];
    argv.extend(args);
    let mut child = python::Running::start(python, &argv);
    let port = child.first_line();
    (child, port)
}

fn netref_client_of_a_python_service(unix: bool) {
    let Some(python) = python::python("the netref client of a Python service") else { return };
    let dir = tempdir();
    let path = dir.join("py.sock");
    let _ = std::fs::remove_file(&path);
    let (python_server, port) = python_service(&python, unix.then_some(path.as_path()));
    let builder = Builder::default().config(Config::default().dialect(Dialect::Rpyc));
    let conn = if unix {
        builder.connect_unix(&path).unwrap()
    } else {
        builder.connect_tcp(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap()
    };
    let root = conn.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);
    assert_eq!(root.call_method::<String>("greet", ("rust",)).unwrap(), "hello rust");
    assert_eq!(root.getattr::<String>("version").unwrap(), "6.0.2");
    assert!(root.dir().unwrap().contains(&"exposed_add".to_string()));
    // repr and str are Python's safe attributes, called by name.
    let repr: String = root.call_method("__repr__", ()).unwrap();
    assert!(repr.starts_with("<__main__.CalcService object at 0x"), "{repr}");
    assert_eq!(root.call_method::<String>("__str__", ()).unwrap(), repr);

    // Python's exceptions arrive with their type, arguments and traceback.
    let netref::Error::Remote(e) = root.call_method::<()>("fail", ()).unwrap_err() else { panic!() };
    assert_eq!((e.type_name.as_str(), e.message.as_str()), ("ValueError", "(\"bad\", 42)"));
    assert!(e.traceback[0].contains("in exposed_fail\nValueError"), "{:?}", e.traceback);
    let netref::Error::Remote(e) = root.call_method::<()>("broken", ()).unwrap_err() else { panic!() };
    assert_eq!((e.type_name.as_str(), e.message.as_str()), ("ZeroDivisionError", "division by zero"));
    let netref::Error::Remote(e) = root.getattr::<i64>("secret").unwrap_err() else { panic!() };
    assert_eq!(e.type_name, "AttributeError");

    // A Rust closure is a callback Python calls while serving our call
    // (it asks what the closure is first: INSPECT, answered here).
    let doubled = netref::callback(|x: i64| x * 2);
    assert_eq!(root.call_method::<i64>("call_me", (doubled, 5)).unwrap(), 11);

    // Values brine carries arrive by value; a list by reference, read
    // through its safe attributes.
    let point: Vec<Value> = root.call_method("point", ()).unwrap();
    let expected = [
        Value::Float(1.5),
        Value::Bytes(b"raw".to_vec()),
        Value::Null,
        Value::Bool(true),
        Value::Array(vec![Value::Integer(7)]),
    ];
    assert!(point.iter().zip(&expected).all(|(a, b)| format!("{a:?}") == format!("{b:?}")), "{point:?}");
    let numbers: RemoteObject = root.call_method("numbers", ()).unwrap();
    assert_eq!(numbers.call_method::<i64>("__len__", ()).unwrap(), 3);
    assert_eq!(numbers.call_method::<i64>("__getitem__", (1,)).unwrap(), 2);
    let thing: RemoteObject = root.call_method("make", ()).unwrap();
    assert_eq!(thing.call_method::<String>("name", ()).unwrap(), "thing");
    // Handed back, a proxy is Python's object again.
    let same: RemoteObject = root.call_method("identity", (&thing,)).unwrap();
    assert!(same.same_as(&thing));
    assert_eq!(conn.imported_count(), 3);
    drop((numbers, thing, same));
    // The DELs leave before this call, and Python's acknowledgements of
    // them are taken in step.
    assert_eq!(root.call_method::<i64>("add", (40, 2)).unwrap(), 42);
    assert_eq!(conn.imported_count(), 1, "each dropped proxy is released; the root is left");
    assert_eq!(root.call_method::<i64>("held", ()).unwrap(), 1, "Python freed what was released");

    // async_ and timed.
    let res = netref::async_(&root).call_method("add", (5, 6));
    res.wait().unwrap();
    assert!(res.ready());
    assert_eq!(res.value_as::<i64>().unwrap(), 11);
    let res = netref::timed(&root, std::time::Duration::from_secs(5)).call_method("add", (2, 2));
    assert_eq!(res.value_as::<i64>().unwrap(), 4);

    // Python never answers a close; it closes the socket, and that is
    // the answer.
    conn.close();
    assert!(conn.is_closed());
    drop(python_server);
}

#[test]
fn netref_client_of_a_python_service_over_tcp() {
    netref_client_of_a_python_service(false);
}

#[test]
fn netref_client_of_a_python_service_over_unix() {
    netref_client_of_a_python_service(true);
}

/// One port, both dialects: a netref client and Python's, told apart by
/// their first bytes; a peer speaking neither is refused and the others
/// are not disturbed.
#[test]
fn one_port_serves_netref_and_python_clients() {
    use std::io::{Read, Write};
    let Some(python) = python::python("the server of both dialects") else { return };
    let builder = Builder::default().service(calc()).config(Config::default().dialect(Dialect::Either));
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", builder).unwrap();
    let accepting = server.spawn();
    let addr = server.local_addr().unwrap();

    let ours = netref::connect(addr).unwrap();
    let root = ours.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);

    let mut stranger = std::net::TcpStream::connect(addr).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    stranger.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "a peer speaking neither is closed without a word");

    let script = "import sys, rpyc\nc = rpyc.connect('127.0.0.1', int(sys.argv[1]))\nprint(c.root.add(20, 22))\nc.close()";
    assert_eq!(python::run(&python, script, &[&addr.port().to_string()], ""), ["42"]);
    assert_eq!(root.call_method::<i64>("add", (2, 3)).unwrap(), 5);
    ours.close();
    server.close();
    accepting.join().unwrap();
}

/// A typed service, as Python's client sees it: its methods take keyword
/// arguments by their Rust names; a wrong name is a TypeError naming it.
#[netref::service]
trait Greeter {
    fn greet(&self, name: String, punctuation: String) -> String;
}

struct Polite;

impl Greeter for Polite {
    fn greet(&self, name: String, punctuation: String) -> String {
        format!("hello {name}{punctuation}")
    }
}

#[test]
fn python_client_of_a_typed_service_with_keyword_arguments() {
    let Some(python) = python::python("the Python client of a typed service") else { return };
    let builder = Builder::default()
        .service(Service::typed::<dyn Greeter>(Polite))
        .config(Config::default().dialect(Dialect::Rpyc));
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", builder).unwrap();
    let accepting = server.spawn();
    let script = r#"
import sys, rpyc
c = rpyc.connect("127.0.0.1", int(sys.argv[1]))
g = c.root.greet
print(g("a", "!"), g("b", punctuation="?"), g(punctuation=".", name="c"))
for bad in [dict(nom="x", punctuation="!"), dict(punctuation="!")]:
    try:
        g(**bad)
    except TypeError as e:
        print(str(e).splitlines()[0])
try:
    g("d", name="e")
except TypeError as e:
    print(str(e).splitlines()[0])
c.close()
"#;
    let port = server.local_addr().unwrap().port().to_string();
    assert_eq!(
        python::run(&python, script, &[&port], ""),
        [
            "hello a! hello b? hello c.",
            "`Greeter.greet` got an unexpected keyword argument 'nom'",
            "`Greeter.greet` is missing argument 'name'",
            "`Greeter.greet` got multiple values for argument 'name'",
        ]
    );
    server.close();
    accepting.join().unwrap();
}
