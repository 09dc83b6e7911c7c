//! Every limit of `Config` is in its documentation table and is enforced
//! end to end over a real socket pair. (The output buffer and the idle
//! timeout are exercised in `faults.rs`; the sans-IO details of each limit
//! in `protocol.rs`.)

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use netref::error::LimitError;
use netref::{
    async_, callback, Builder, Config, Connection, Error, ObjectBuilder, RemoteObject, Service, Value,
};

const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn the_limits_table_names_every_field_with_its_default() {
    let source = include_str!("../src/config.rs");
    let table: Vec<&str> = source.lines().filter(|l| l.starts_with("/// | `")).collect();
    let debug = format!("{:?}", Config::default());
    // `Config { a: .., b: .. }` -> field names.
    let fields: Vec<&str> = debug
        .trim_start_matches("Config {")
        .split(", ")
        .filter_map(|f| f.trim().split(':').next())
        .filter(|f| !f.is_empty() && !f.contains('}'))
        .collect();
    assert!(fields.len() >= 9, "{fields:?}");
    for field in fields {
        let row = table
            .iter()
            .find(|r| r.starts_with(&format!("/// | `{field}` |")))
            .unwrap_or_else(|| panic!("the limits table in config.rs has no row for `{field}`"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert!(cells.len() >= 4 && !cells[2].is_empty() && !cells[3].is_empty(), "incomplete row: {row}");
    }
}

/// A server on a socket pair: a gate that holds its serving thread, an
/// object factory, and an echo.
struct Peer {
    client: Connection,
    gate: mpsc::Sender<()>,
    entered: mpsc::Receiver<()>,
    serving: Option<thread::JoinHandle<()>>,
}

impl Peer {
    fn new(client: Config, server: Config) -> Peer {
        let (gate, gate_rx) = mpsc::channel::<()>();
        let (entered_tx, entered) = mpsc::channel();
        let gate_rx = Arc::new(Mutex::new(gate_rx));
        let entered_tx = Mutex::new(entered_tx);
        let root = ObjectBuilder::new("Peer")
            .method("block", move || {
                let _ = entered_tx.lock().unwrap().send(());
                let _ = gate_rx.lock().unwrap().recv_timeout(PATIENCE);
            })
            .method("two_things", || (ObjectBuilder::new("A").build(), ObjectBuilder::new("B").build()))
            .method("echo", |v: Value| v)
            .method("call", |cb: RemoteObject| cb.call::<i64>(()).unwrap_or(-1))
            .build();
        let (c, s) = Builder::default()
            .config(client)
            .pair(Builder::default().config(server).service(Service::object(root)))
            .unwrap();
        let serving = Some(thread::spawn(move || {
            let _ = s.serve_all();
        }));
        Peer { client: c, gate, entered, serving }
    }

    fn root(&self) -> RemoteObject {
        self.client.root().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for _ in 0..4 {
            let _ = self.gate.send(());
        }
        self.client.close();
        if let Some(t) = self.serving.take() {
            t.join().unwrap();
        }
    }
}

fn limit(err: Error) -> LimitError {
    match err {
        Error::Limit(l) => l,
        other => panic!("expected a limit error, got {other}"),
    }
}

#[test]
fn max_frame_len_outgoing_fails_the_call_incoming_ends_the_connection() {
    let peer = Peer::new(Config::default().max_frame_len(4096), Config::default());
    let root = peer.root();
    let err = root.call_method::<Value>("echo", ("x".repeat(8192),)).unwrap_err();
    assert!(matches!(limit(err), LimitError::FrameTooLarge { max: 4096, .. }));
    assert_eq!(root.call_method::<String>("echo", ("small",)).unwrap(), "small", "only that call failed");

    let peer = Peer::new(Config::default(), Config::default().max_frame_len(4096));
    let root = peer.root();
    let err = root.call_method::<Value>("echo", ("y".repeat(8192),)).unwrap_err();
    assert!(err.is_closed(), "the server ended the connection: {err}");
}

#[test]
fn max_depth_outgoing_fails_the_call_incoming_ends_the_connection() {
    let deep = |n: usize| (0..n).fold(Value::Null, |v, _| Value::Array(vec![v]));
    let peer = Peer::new(Config::default().max_depth(8), Config::default());
    let root = peer.root();
    let err = root.call_method::<Value>("echo", (deep(20),)).unwrap_err();
    assert!(matches!(limit(err), LimitError::TooDeep { max: 8 }));
    assert_eq!(root.call_method::<Value>("echo", (deep(4),)).unwrap(), deep(4));

    let peer = Peer::new(Config::default(), Config::default().max_depth(8));
    let err = peer.root().call_method::<Value>("echo", (deep(40),)).unwrap_err();
    assert!(err.is_closed(), "the server ended the connection: {err}");
}

#[test]
fn max_pending_refuses_new_calls() {
    let peer = Peer::new(Config::default().max_pending(3), Config::default());
    let root = peer.root();
    let blocked = async_(&root).call_method("block", ());
    peer.entered.recv_timeout(PATIENCE).unwrap();
    let queued: Vec<_> = (0..2).map(|_| async_(&root).call_method("echo", (1,))).collect();
    let err = async_(&root).call_method("echo", (1,)).value().unwrap_err();
    assert!(matches!(limit(err), LimitError::TooManyPending { max: 3 }));
    peer.gate.send(()).unwrap();
    blocked.value().unwrap();
    for q in queued {
        assert_eq!(q.value_as::<i64>().unwrap(), 1);
    }
    assert_eq!(root.call_method::<i64>("echo", (2,)).unwrap(), 2, "room again");
}

#[test]
fn max_exported_fails_the_call_that_would_export_one_more() {
    let peer = Peer::new(Config::default().max_exported(2), Config::default());
    let root = peer.root();
    // The server holds none of these after the call: three in a row fit.
    for i in 0..3 {
        assert_eq!(root.call_method::<i64>("call", (callback(move || i),)).unwrap(), i);
    }
    let three: Vec<_> = (0..3).map(|i| callback(move || i)).collect();
    let err = root.call_method::<Value>("echo", (three,)).unwrap_err();
    assert!(matches!(limit(err), LimitError::TooManyExported { max: 2 }));
    assert_eq!(peer.client.exported_count(), 0, "nothing half-exported");
}

#[test]
fn max_imported_refuses_the_reply() {
    let peer = Peer::new(Config::default().max_imported(2), Config::default());
    let root = peer.root(); // the root is one import
    let err = root.call_method::<Value>("two_things", ()).unwrap_err();
    let remote = err.as_remote().expect("the reply was refused");
    assert!(remote.message.contains("max_imported (2)"), "{remote}");
    assert_eq!(root.call_method::<i64>("echo", (3,)).unwrap(), 3, "the connection goes on");
}

#[test]
fn sync_request_timeout_fails_a_blocked_call() {
    let peer = Peer::new(
        Config::default().sync_request_timeout(Some(Duration::from_millis(100))),
        Config::default(),
    );
    let root = peer.root();
    let err = root.call_method::<()>("block", ()).unwrap_err();
    assert_eq!(err, Error::Timeout(Duration::from_millis(100)));
    peer.entered.recv_timeout(PATIENCE).unwrap();
    peer.gate.send(()).unwrap();
    assert_eq!(root.call_method::<i64>("echo", (5,)).unwrap(), 5);
}
