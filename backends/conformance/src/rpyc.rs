//! RPyC 6's dialect on every loop, against the real rpyc 6.0.2 from PyPI:
//! the tutorial's FileMonitor service in Python with a netref client on
//! the loop receiving its events, and Python's client of the backend's
//! server.
//!
//! `scripts/test.sh` makes a venv with rpyc 6.0.2 and names its python in
//! `NETREF_RPYC_PYTHON`; without it these checks print that they skipped.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use netref::{Builder, Config, Dialect, ObjectBuilder, RemoteObject, Service, Value};

use crate::{run_until, Backend, TestLoop};

#[path = "../../../core/tests/common/python.rs"]
mod python;

pub use python::{python as rpyc_python, run as run_python, Running as PythonProcess};

/// `demos/python/filemon_service.py`, the tutorial's FileMonitor service.
pub fn filemon_service_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../demos/python/filemon_service.py")
}

/// Runs the tutorial's FileMonitor service; it and its port.
pub fn python_filemon_service(python: &str) -> (PythonProcess, u16) {
    let script = filemon_service_script();
    let mut service = PythonProcess::start(python, &[script.to_str().unwrap(), "--port", "0"]);
    let port = service.first_line().parse().expect("the service prints its port");
    (service, port)
}

/// A file to watch, removed with its directory when dropped.
pub struct Watched(PathBuf);

impl Watched {
    /// A new empty file named after `tag`.
    pub fn new(tag: &str) -> Watched {
        let dir = std::env::temp_dir().join(format!(
            "netref-{tag}-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("floop.bloop");
        std::fs::write(&path, "").unwrap();
        Watched(path)
    }
    /// Its path.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
    /// The tutorial's changes, in order: `f.write("shmoop")`,
    /// `f.write("groop")`, then reopening it for writing; and the size
    /// each leaves. The tutorial's monitor polls `os.stat` and can report
    /// one of them as two changes, one of which changes no size: the
    /// kernel makes a write's new size and its new modification time
    /// visible at different moments, and a look between them sees one
    /// without the other. The checks allow such an extra event.
    pub fn changes(&self) -> [(Box<dyn Fn() + '_>, i64); 3] {
        let append = |text: &'static str| -> Box<dyn Fn() + '_> {
            Box::new(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(&self.0).unwrap();
                f.write_all(text.as_bytes()).unwrap();
            })
        };
        [(append("shmoop"), 6), (append("groop"), 11), (Box::new(|| std::fs::write(&self.0, "").unwrap()), 0)]
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The connection to the tutorial's service, and the monitor of `file`
/// made on it with `callback`, once the monitor has had its first look at
/// the file (the tutorial's "wait a little": here, ask until it has).
pub fn start_python_monitor(
    conn: &netref::Connection,
    file: &Watched,
    callback: netref::LocalObject,
) -> RemoteObject {
    let root = conn.root().unwrap();
    let mon: RemoteObject = root.call_method("FileMonitor", (file.path(), callback, 0.01)).unwrap();
    while matches!(mon.getattr::<Value>("last_stat").unwrap(), Value::Null) {}
    mon
}

/// The tutorial's FileMonitor in Python, a netref client on the loop: each
/// change arrives as an event (Python's async callback with the two
/// `os.stat` results, by reference), on the loop's thread, and the new size
/// is read from the stat result asynchronously from inside the callback.
pub fn python_filemon_events_on_the_loop<B: Backend>() {
    let Some(python) = rpyc_python("the Python FileMonitor's events on the loop") else { return };
    let (_service, port) = python_filemon_service(&python);
    let file = Watched::new("filemon-loop");
    let mut lp = B::new_loop();
    let builder = Builder::default().config(Config::default().dialect(Dialect::Rpyc));
    let conn = builder.connect_tcp(("127.0.0.1", port)).unwrap();
    let key = lp.attach(&conn);
    let me = thread::current().id();
    let seen: Arc<Mutex<Vec<(i64, ThreadId)>>> = Arc::default();
    let s = seen.clone();
    let on_file_changed = netref::callback(move |_old: RemoteObject, new: RemoteObject| {
        let s = s.clone();
        let on = thread::current().id();
        netref::async_(&new)
            .call_method("__getitem__", (6,))
            .add_callback(move |size| s.lock().unwrap().push((size.value_as::<i64>().unwrap(), on)));
    });
    let mon = start_python_monitor(&conn, &file, on_file_changed);
    let (mut before, mut checked) = (0, 0);
    for (change, size) in file.changes() {
        change();
        let done = |_: &B::Loop| seen.lock().unwrap().last().is_some_and(|&(s, _)| s == size);
        run_until(&mut lp, "the file's change", done);
        let seen = seen.lock().unwrap();
        for &(s, on) in &seen[checked..] {
            assert!(s == before || s == size, "{before} -> {size}: an event left size {s}");
            assert_eq!(on, me, "the event on the loop's thread");
        }
        (before, checked) = (size, seen.len());
    }
    mon.call_method::<()>("stop", ()).unwrap();
    lp.detach(key);
    conn.close();
}

/// Python's own client, following RPyC's tutorial, of the backend's
/// server serving both dialects on one port: calls, a Python callback
/// called back from the loop, errors as Python's builtins.
pub fn python_client_of_the_backend_server<B: Backend>() {
    let Some(python) = rpyc_python("Python's client of the backend's server") else { return };
    let root = ObjectBuilder::new("Calc")
        .method("add", |a: i64, b: i64| a + b)
        .async_method("call_me", |cb: RemoteObject, x: i64| async move {
            netref::async_(&cb).call((x,)).typed::<i64>().await.map(|v| v + 1)
        })
        .try_method("parse", |s: String| s.parse::<i64>())
        .build();
    let builder =
        Builder::default().service(Service::object(root)).config(Config::default().dialect(Dialect::Either));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = B::spawn_server(listener, builder);
    let script = "\
import sys, rpyc
c = rpyc.connect('127.0.0.1', int(sys.argv[1]))
print(c.root.add(1, 2))
print(c.root.call_me(lambda x: x * 10, 4))
try:
    c.root.parse('x')
except RuntimeError as e:
    print(type(e).__name__)
c.close()
";
    let lines = run_python(&python, script, &[&port], "");
    assert_eq!(lines, ["3", "41", "RuntimeError"]);
    // And a netref client on the same port.
    let conn = netref::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (2, 2)).unwrap(), 4);
    conn.close();
    server.stop();
}
