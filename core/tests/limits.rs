//! Every limit of `Config` is in its documentation table and in the
//! README's, each with its default, and is enforced end to end over a real
//! socket pair. (The output buffer and the idle
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

/// `Config::default()`'s fields as `(name, value)`, read from its `Debug`
/// (`Config { a: 1, b: Some(30s), .. }`, split at the commas outside any
/// brackets), so that a field added to `Config` is checked here without
/// touching this file.
fn default_fields() -> Vec<(String, String)> {
    let debug = format!("{:?}", Config::default());
    let body = debug
        .strip_prefix("Config { ")
        .and_then(|b| b.strip_suffix(" }"))
        .unwrap_or_else(|| panic!("not the Debug of a struct: {debug}"));
    let mut fields = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in body.char_indices().chain([(body.len(), ',')]) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                let (name, value) = body[start..i].trim().split_once(": ").expect("name: value");
                fields.push((name.to_string(), value.to_string()));
                start = i + 1;
            }
            _ => {}
        }
    }
    assert!(fields.len() >= 10, "could not read Config's fields from {debug}");
    fields
}

/// A `Debug` value of a field, with `Some(..)` taken off: the tables say
/// "30 s" for `Some(30s)` and "none" for `None`.
fn debug_value(value: &str) -> String {
    value.strip_prefix("Some(").and_then(|v| v.strip_suffix(')')).unwrap_or(value).to_string()
}

/// A table's default cell, written the way `Debug` writes the field:
/// "128 MiB" -> "134217728", "100,000" -> "100000", "30 s" -> "30s",
/// "none" -> "None", "true" -> "true", "`Dialect::Netref`" -> "Netref".
fn documented_value(cell: &str) -> Result<String, String> {
    let cell = cell.trim();
    match cell {
        "none" => return Ok("None".into()),
        "true" | "false" => return Ok(cell.into()),
        _ => {}
    }
    if let Some(path) = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
        return Ok(path.rsplit("::").next().unwrap_or(path).to_string());
    }
    let (number, unit) = match cell.split_once(' ') {
        Some((n, u)) => (n, u),
        None => (cell, ""),
    };
    let n: u64 = number.replace(',', "").parse().map_err(|_| format!("not a number: {cell:?}"))?;
    Ok(match unit {
        "" => n.to_string(),
        "KiB" => (n << 10).to_string(),
        "MiB" => (n << 20).to_string(),
        "GiB" => (n << 30).to_string(),
        "µs" => format!("{:?}", Duration::from_micros(n)),
        "ms" => format!("{:?}", Duration::from_millis(n)),
        "s" => format!("{:?}", Duration::from_secs(n)),
        "min" => format!("{:?}", Duration::from_secs(n * 60)),
        _ => return Err(format!("unknown unit in {cell:?}")),
    })
}

/// Checks one limits table (`rows`: its lines, `| `name` | default | what |`)
/// against `Config::default()`: every field has a row, every row's default
/// is the field's, and every row names a field (or a `Builder::` setting).
fn check_table(what: &str, rows: &[&str]) {
    let fields = default_fields();
    let mut documented = Vec::new();
    for row in rows {
        let cells: Vec<&str> = row.trim().trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 3 && cells.iter().all(|c| !c.is_empty()), "{what}: incomplete row: {row}");
        let name = cells[0].trim_matches('`');
        if name.starts_with("Builder::") {
            continue; // not a field of Config
        }
        let Some((_, value)) = fields.iter().find(|(f, _)| f == name) else {
            panic!("{what}: the row for `{name}` names no field of Config");
        };
        let written = documented_value(cells[1]).unwrap_or_else(|e| panic!("{what}, `{name}`: {e}"));
        assert_eq!(written, debug_value(value), "{what}: the default of `{name}` is not what it says");
        documented.push(name);
    }
    for (field, _) in &fields {
        assert!(documented.contains(&field.as_str()), "{what} has no row for `{field}`");
    }
}

#[test]
fn the_config_docs_table_has_every_field_with_its_default() {
    let source = include_str!("../src/config.rs");
    let rows: Vec<&str> =
        source.lines().filter_map(|l| l.strip_prefix("/// ")).filter(|l| l.starts_with("| `")).collect();
    check_table("the table in Config's docs (core/src/config.rs)", &rows);
}

#[test]
fn the_readme_limits_table_has_every_field_with_its_default() {
    let readme = include_str!("../../README.md");
    let section = readme.split("\n## Limits\n").nth(1).expect("the README has a Limits section");
    let section = section.split("\n## ").next().unwrap();
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    check_table("the README's limits table", &rows);
}

#[test]
fn the_table_check_catches_a_wrong_default_and_a_missing_row() {
    // The check above must be able to fail: a table with one default
    // changed, and one with a row left out.
    let source = include_str!("../src/config.rs");
    let rows: Vec<String> = source
        .lines()
        .filter_map(|l| l.strip_prefix("/// "))
        .filter(|l| l.starts_with("| `"))
        .map(String::from)
        .collect();
    let wrong: Vec<&str> = rows
        .iter()
        .map(|r| if r.starts_with("| `max_depth` |") { "| `max_depth` | 65 | changed |" } else { r.as_str() })
        .collect();
    let caught = std::panic::catch_unwind(|| check_table("wrong", &wrong)).unwrap_err();
    assert!(caught.downcast_ref::<String>().unwrap().contains("`max_depth`"));
    let missing: Vec<&str> =
        rows.iter().map(String::as_str).filter(|r| !r.starts_with("| `idle_timeout` |")).collect();
    let caught = std::panic::catch_unwind(|| check_table("missing", &missing)).unwrap_err();
    assert!(caught.downcast_ref::<String>().unwrap().contains("no row for `idle_timeout`"));
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
fn max_depth_outgoing_fails_the_call_incoming_refuses_or_ends() {
    let deep = |n: usize| (0..n).fold(Value::Null, |v, _| Value::Array(vec![v]));
    let peer = Peer::new(Config::default().max_depth(8), Config::default());
    let root = peer.root();
    let err = root.call_method::<Value>("echo", (deep(20),)).unwrap_err();
    assert!(matches!(limit(err), LimitError::TooDeep { max: 8 }));
    assert_eq!(root.call_method::<Value>("echo", (deep(4),)).unwrap(), deep(4));

    // Incoming, a little deeper than the limit: that call is refused with an
    // error naming it, and the connection goes on.
    let peer = Peer::new(Config::default(), Config::default().max_depth(8));
    let root = peer.root();
    let err = root.call_method::<Value>("echo", (deep(12),)).unwrap_err();
    assert!(!err.is_closed() && err.to_string().contains("max_depth (8)"), "{err}");
    assert_eq!(root.call_method::<Value>("echo", (deep(4),)).unwrap(), deep(4));
    // Far deeper, the frame cannot be decoded: the connection ends.
    let err = root.call_method::<Value>("echo", (deep(40),)).unwrap_err();
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
