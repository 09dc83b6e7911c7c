//! Faults over real sockets: a peer killed mid-call (a child process
//! SIGKILLed), half-closed sockets, a peer that stops reading, a peer that
//! holds a partial frame open, and file-descriptor exhaustion at accept (a
//! child process with a lowered RLIMIT_NOFILE).
//!
//! Child processes are this test binary re-run with `NETREF_FAULTS_CHILD`
//! set, running the ignored test `child_process_entry`; they report to the
//! parent through lines on stdout.

use netref_logcap as logcap;
mod rawpeer;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use netref::error::LimitError;
use netref::wire::Cbor;
use netref::wire::{Message, TAG_SENDER_OBJECT};
use netref::{
    async_, Builder, CloseReason, Config, Connection, Error, ObjectBuilder, Service, ThreadedServer,
};
use rawpeer::RawPeer;
use rustix::process::{Resource, Rlimit};

/// Bounds a wait that would otherwise hang, so a broken build fails
/// instead of stalling: never a timing assertion. That a call failed
/// because its peer went (and not by a timeout) shows in its error.
const PATIENCE: Duration = Duration::from_secs(10);
const CHILD_ENV: &str = "NETREF_FAULTS_CHILD";

// ---- child processes -----------------------------------------------------------

/// Entry point of the child processes (ignored in normal runs).
#[test]
#[ignore = "the child-process side of the fault tests; run by them"]
fn child_process_entry() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("server") => child_server(),
        Ok("fd-server") => child_fd_server(),
        other => panic!("run by the fault tests only ({CHILD_ENV}={other:?})"),
    }
}

fn child_root() -> netref::LocalObject {
    ObjectBuilder::new("Child")
        .method("add", |a: i64, b: i64| a + b)
        .method("block", || -> () {
            println!("BLOCKED");
            loop {
                thread::park();
            }
        })
        .build()
}

/// Serves `child_root` until killed.
fn child_server() {
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(child_root())))
            .unwrap();
    println!("PORT {}", server.local_addr().unwrap().port());
    server.start();
}

/// Serves with a file-descriptor limit that leaves room for two connections,
/// echoing the server's log to stdout.
fn child_fd_server() {
    logcap::install_echo();
    let service = Service::object(child_root()).on_connect(|_| println!("CONNECTED"));
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service)).unwrap();
    let port = server.local_addr().unwrap().port();
    let accept = server.spawn();
    let open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect::<Vec<_>>()
        .into_iter()
        // Not the directory's own descriptor, closed by now: its link is
        // gone.
        .filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect();
    // New descriptors take the lowest free numbers below the limit: leave
    // exactly four free (each connection takes two: the socket and its
    // wake-up eventfd), so the third connection runs out.
    let mut free = 0;
    let mut limit = 0;
    while free < 4 {
        if !open.contains(&limit) {
            free += 1;
        }
        limit += 1;
    }
    let lim = rustix::process::getrlimit(Resource::Nofile);
    rustix::process::setrlimit(Resource::Nofile, Rlimit { current: Some(limit), ..lim }).unwrap();
    println!("PORT {port}");
    accept.join().unwrap();
}

struct ChildProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildProcess {
    fn spawn(role: &str) -> ChildProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, role)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProcess { child, lines }
    }

    /// Waits for the next line satisfying `pred`.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let give_up = Instant::now() + PATIENCE;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(e) => panic!("the child never printed {what}: {e}"),
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        // libtest may print "test child_process_entry ... " on the same line.
        let line = self.wait_line("its port", |l| l.contains("PORT "));
        let port = line[line.find("PORT ").unwrap() + 5..].trim();
        SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap()))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- peer killed mid-call ---------------------------------------------------------

#[test]
fn peer_killed_mid_call_fails_every_pending_call_promptly() {
    let mut server = ChildProcess::spawn("server");
    // No sync timeout: only the peer's death can end the blocked call.
    let conn = Builder::default()
        .config(Config::default().sync_request_timeout(None))
        .connect_tcp(server.addr())
        .unwrap();
    let root = conn.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);

    // One synchronous call blocked in the child, more queued behind it.
    let r = root.clone();
    let (tx, sync_failed) = mpsc::channel();
    let sync = thread::spawn(move || tx.send(r.call_method::<()>("block", ())).unwrap());
    server.wait_line("BLOCKED", |l| l.contains("BLOCKED"));
    let pending: Vec<_> = (0..5).map(|i| async_(&root).call_method("add", (i, i))).collect();
    let also_blocked = async_(&root).call_method("block", ());

    server.child.kill().unwrap();
    let outcome = sync_failed.recv_timeout(PATIENCE).expect("the blocked call returned");
    let err = outcome.unwrap_err();
    assert!(err.is_closed(), "a disconnection error, got {err}");
    for res in pending.iter().chain([&also_blocked]) {
        let err = res.value().unwrap_err();
        assert!(err.is_closed(), "a disconnection error, got {err}");
    }
    sync.join().unwrap();
    assert!(conn.is_closed());
    assert!(root.call_method::<i64>("add", (1, 1)).unwrap_err().is_closed(), "later calls fail at once");
    server.child.wait().unwrap();
}

// ---- half-closed sockets ------------------------------------------------------------

#[test]
fn peer_half_close_fails_pending_calls_and_nothing_hangs() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn = Builder::default().over_stream(ours).unwrap();
    let mut peer = RawPeer::new(theirs);
    peer.send(&rawpeer::hello()).unwrap();
    // Answer the root request, then stop writing but keep reading.
    let c = conn.clone();
    let rooted = thread::spawn(move || c.root());
    let seq = loop {
        match peer.recv() {
            Some(Message::Request { seq, .. }) => break seq,
            Some(_) => continue,
            None => panic!("the connection closed"),
        }
    };
    peer.send(&Message::Reply {
        seq,
        value: Cbor::Tag(TAG_SENDER_OBJECT, Box::new(Cbor::Integer(1.into()))),
    })
    .unwrap();
    let root = rooted.join().unwrap().unwrap();
    let pending: Vec<_> = (0..3).map(|i| async_(&root).call_method("add", (i, 1))).collect();
    let (tx, done) = mpsc::channel();
    let r = root.clone();
    let sync = thread::spawn(move || tx.send(r.call_method::<i64>("add", (5, 5))).unwrap());
    // Wait until every request reached the peer, then shut our write side.
    let mut seen = 0;
    while seen < 4 {
        match peer.recv() {
            Some(Message::Request { seq, .. }) if seq != 0 => seen += 1,
            Some(_) => {}
            None => panic!("the connection closed early"),
        }
    }
    peer.stream.shutdown(Shutdown::Write).unwrap();
    let err = done.recv_timeout(PATIENCE).expect("the sync call returned").unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::ByPeer));
    assert_eq!(err.to_string(), "connection closed by the peer");
    for res in &pending {
        assert!(res.value().unwrap_err().is_closed());
    }
    sync.join().unwrap();
    // Our side closed too: the peer reads to the end.
    let mut rest = Vec::new();
    peer.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    peer.stream.read_to_end(&mut rest).expect("our side closed the socket");
}

#[test]
fn server_sees_a_client_half_close_and_ends_the_connection() {
    let (tx, disconnected) = mpsc::channel();
    let tx = Mutex::new(tx);
    let service = Service::object(child_root()).on_disconnect(move |_| {
        let _ = tx.lock().unwrap().send(());
    });
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service)).unwrap();
    let addr = server.local_addr().unwrap();
    let accept = server.spawn();
    let mut raw = RawPeer::new(TcpStream::connect(addr).unwrap());
    raw.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.send(&rawpeer::hello()).unwrap();
    raw.send(&rawpeer::root(1)).unwrap();
    assert!(matches!(raw.answer_to(1), Message::Reply { .. }));
    raw.stream.shutdown(Shutdown::Write).unwrap();
    disconnected.recv_timeout(PATIENCE).expect("the server ended the connection");
    let mut rest = Vec::new();
    raw.stream.read_to_end(&mut rest).expect("the server closed its side");
    // It keeps serving others.
    let conn = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (2, 2)).unwrap(), 4);
    drop(conn);
    server.close();
    accept.join().unwrap();
}

// ---- a peer that stops reading ------------------------------------------------------

const CAP: usize = 256 << 10;
const PAYLOAD: usize = 16 << 10;

fn limit_error(err: &Error) -> (usize, usize) {
    match err {
        Error::Limit(LimitError::OutputBufferFull { queued, max }) => (*queued, *max),
        other => panic!("expected OutputBufferFull, got {other}"),
    }
}

/// The connection closed because the output buffer filled.
fn closed_at_the_cap(reason: &CloseReason) {
    match reason {
        CloseReason::Limit(LimitError::OutputBufferFull { max, .. }) => assert_eq!(*max, CAP),
        other => panic!("expected a close at the output cap, got {other}"),
    }
}

#[test]
fn calls_to_a_peer_that_stops_reading_fail_at_the_output_cap() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn = Builder::default()
        .config(Config::default().max_output_buffer(CAP).sync_request_timeout(Some(PATIENCE)))
        .over_stream(ours)
        .unwrap();
    let mut peer = RawPeer::new(theirs);
    peer.send(&rawpeer::hello()).unwrap();
    let c = conn.clone();
    let rooted = thread::spawn(move || c.root());
    let seq = loop {
        if let Some(Message::Request { seq, .. }) = peer.recv() {
            break seq;
        }
    };
    peer.send(&Message::Reply {
        seq,
        value: Cbor::Tag(TAG_SENDER_OBJECT, Box::new(Cbor::Integer(1.into()))),
    })
    .unwrap();
    let root = rooted.join().unwrap().unwrap();
    // From now on the peer reads nothing.
    let payload = "x".repeat(PAYLOAD);
    let mut accepted = Vec::new();
    let err = loop {
        assert!(accepted.len() < 8192, "the output buffer never filled");
        let res = async_(&root).call_method("echo", (payload.clone(),));
        if res.ready() && res.error() {
            break res.value().unwrap_err();
        }
        accepted.push(res);
    };
    let (queued, max) = limit_error(&err);
    assert_eq!(max, CAP);
    assert!(queued <= CAP + PAYLOAD + 1024, "the buffer stayed capped: {queued} bytes");
    assert!(err.to_string().contains("the peer is not reading"), "{err}");
    // Synchronous calls fail the same way, at once, and the connection lives.
    let err = root.call_method::<String>("echo", ("small",)).unwrap_err();
    limit_error(&err);
    assert!(!conn.is_closed());
    assert!(accepted.iter().all(|r| !r.ready()), "accepted calls still wait for their replies");
    drop(peer);
}

#[test]
fn a_peer_that_asks_without_reading_replies_is_cut_off_at_the_output_cap() {
    logcap::install();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let echo = ObjectBuilder::new("Echo").method("echo", |s: String| s).build();
    let server = Builder::default()
        .config(Config::default().max_output_buffer(CAP))
        .service(Service::object(echo))
        .over_stream(ours)
        .unwrap();
    let serving = {
        let server = server.clone();
        thread::spawn(move || server.serve_all())
    };
    let mut peer = RawPeer::new(theirs);
    peer.send(&rawpeer::hello()).unwrap();
    peer.send(&rawpeer::root(1)).unwrap();
    // The root is exported as object 1; ask it to echo, never reading.
    let payload = Cbor::Text("y".repeat(PAYLOAD));
    let mut sent = 0u64;
    while peer.send(&rawpeer::call_method(2 + sent, 1, "echo", vec![payload.clone()])).is_ok() {
        sent += 1;
        assert!(sent < 100_000, "the server never stopped reading");
    }
    let ended = serving.join().unwrap().unwrap_err();
    closed_at_the_cap(ended.close_reason().expect("serve_all ends with the close"));
    closed_at_the_cap(&server.close_reason().unwrap());
    logcap::wait_for(&["ended by bad input", "max_output_buffer"], PATIENCE);
}

// ---- a peer that never says hello ------------------------------------------------------

/// A `ThreadedServer` of `child_root()` with `config`, on a free port, that
/// sends each connection's close reason down the channel returned.
fn reporting_closes(config: Config) -> (ThreadedServer, mpsc::Receiver<Option<CloseReason>>) {
    let (tx, ended) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let service = Service::object(child_root()).on_disconnect(move |c| {
        let _ = tx.lock().unwrap().send(c.close_reason());
    });
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service).config(config)).unwrap();
    (server, ended)
}

/// With the default configuration, a peer that connects and sends nothing,
/// or dribbles bytes that never make a hello, is disconnected once
/// `handshake_timeout` passes, and one that sends its hello and then part of
/// a frame once `frame_timeout` passes (both shortened here), while others
/// are served.
#[test]
fn a_peer_that_never_says_hello_is_disconnected_by_default() {
    let handshake = Duration::from_millis(300);
    assert!(Config::default().handshake_timeout.is_some(), "on by default");
    assert!(Config::default().frame_timeout.is_some(), "on by default");
    let config = Config::default().handshake_timeout(Some(handshake)).frame_timeout(Some(handshake));
    let (server, ended) = reporting_closes(config);
    let addr = server.local_addr().unwrap();
    let accept = server.spawn();

    let mut silent = TcpStream::connect(addr).unwrap();
    let mut dribbler = TcpStream::connect(addr).unwrap();
    dribbler.write_all(&rawpeer::frame(&rawpeer::hello())[..3]).unwrap();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&rawpeer::frame(&rawpeer::hello())).unwrap();
    stalled.write_all(&rawpeer::frame(&rawpeer::hello())[..3]).unwrap();
    let conn = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (1, 2)).unwrap(), 3);
    for raw in [&mut silent, &mut dribbler, &mut stalled] {
        raw.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        raw.read_to_end(&mut rest).expect("the server closed the connection that stalled");
    }
    let reasons: Vec<String> = (0..3)
        .map(|_| ended.recv_timeout(PATIENCE).expect("the server saw the connection end"))
        .map(|reason| reason.map(|r| r.to_string()).unwrap_or_default())
        .collect();
    let count = |what: &str| reasons.iter().filter(|r| r.contains(what)).count();
    assert_eq!(count("(frame_timeout): 3 bytes of it came"), 1, "{reasons:?}");
    assert_eq!(count("handshake_timeout"), 2, "{reasons:?}");
    conn.close();
    server.close();
    accept.join().unwrap();
}

// ---- more clients than max_connections ---------------------------------------------------

/// Past `max_connections`, a `ThreadedServer` refuses a client at once (its
/// socket closed before any hello, with a log line) instead of spending a
/// thread on it; a connection that closes makes room again.
#[test]
fn a_threaded_server_refuses_clients_past_max_connections() {
    logcap::install();
    let (server, ended) = reporting_closes(Config::default());
    let server = server.max_connections(2);
    let addr = server.local_addr().unwrap();
    let accept = server.spawn();
    let first = Builder::default().connect_tcp(addr).unwrap();
    let second = Builder::default().connect_tcp(addr).unwrap();
    for c in [&first, &second] {
        assert_eq!(c.root().unwrap().call_method::<i64>("add", (1, 2)).unwrap(), 3);
    }
    let mut third = TcpStream::connect(addr).unwrap();
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    third.read_to_end(&mut got).expect("the server closed the client past the limit");
    assert!(got.is_empty(), "refused before its hello: {got:?}");
    logcap::wait_for(&["2 connections open (max_connections); refusing"], PATIENCE);
    // Room again once one closes (closed before on_disconnect runs).
    first.close();
    ended.recv_timeout(PATIENCE).expect("the server saw the first connection end");
    let again = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(again.root().unwrap().call_method::<i64>("add", (2, 2)).unwrap(), 4);
    assert_eq!(server.connection_count(), 2);
    assert_eq!(netref::server::DEFAULT_MAX_CONNECTIONS, 1024);
    drop((second, again));
    server.close();
    accept.join().unwrap();
}

// ---- a peer holding a partial frame open --------------------------------------------

#[test]
fn partial_frame_held_open_does_not_stall_others_and_idle_timeout_closes_it() {
    let idle = Duration::from_millis(300);
    let (server, ended) = reporting_closes(Config::default().idle_timeout(Some(idle)));
    let addr = server.local_addr().unwrap();
    let accept = server.spawn();

    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(&rawpeer::frame(&rawpeer::hello())).unwrap();
    let partial = rawpeer::frame(&rawpeer::root(1));
    raw.write_all(&partial[..3]).unwrap(); // half a header, then nothing

    // Everyone else is served meanwhile.
    let conn = Builder::default().connect_tcp(addr).unwrap();
    let root = conn.root().unwrap();
    for i in 0..50 {
        assert_eq!(root.call_method::<i64>("add", (i, 1)).unwrap(), i + 1);
    }
    // The idle timeout closes the stalled one.
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).expect("the server closed the stalled connection");
    assert!(!rest.is_empty(), "the server sent its hello");
    // The server says which deadline ended it (the exact timing is the
    // protocol's, tested in virtual time in errors.rs).
    let reason = ended.recv_timeout(PATIENCE).expect("the server saw the stalled connection end");
    assert_eq!(reason, Some(CloseReason::IdleTimeout(idle)));
    drop(root);
    conn.close();
    server.close();
    accept.join().unwrap();
}

#[test]
fn idle_timeout_closes_a_silent_client_connection_with_a_clear_reason() {
    let idle = Duration::from_millis(200);
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn =
        Builder::default().config(Config::default().idle_timeout(Some(idle))).over_stream(ours).unwrap();
    let (tx, closed) = mpsc::channel();
    let c = conn.clone();
    // Serving notices the deadline by itself; nobody needs to call.
    let serving = thread::spawn(move || tx.send(c.serve_all()).unwrap());
    let outcome = closed.recv_timeout(PATIENCE).expect("the idle connection closed");
    assert!(outcome.is_ok(), "an idle close is orderly: {outcome:?}");
    let reason = conn.close_reason().unwrap();
    assert!(reason.to_string().contains("idle_timeout"), "{reason}");
    assert!(conn.ping().unwrap_err().to_string().contains("idle_timeout"));
    serving.join().unwrap();
    drop(theirs);
}

// ---- file-descriptor exhaustion ---------------------------------------------------------

#[test]
fn fd_exhaustion_at_accept_is_logged_backed_off_and_recovered() {
    let child = ChildProcess::spawn("fd-server");
    let addr = child.addr();
    let patient = || Builder::default().config(Config::default().sync_request_timeout(Some(PATIENCE)));
    let failure = |l: &str| l.contains("accept failed") || l.contains("could not set up a connection");
    // With exactly four descriptors free, two connections fit and the third
    // accept() itself fails with EMFILE.
    let mut held: Vec<(Connection, netref::RemoteObject)> = Vec::new();
    let mut refused = None;
    for _ in 0..16 {
        let conn = patient().connect_tcp(addr).unwrap();
        let line = child.wait_line("a connect or a failure", |l| l.contains("CONNECTED") || failure(l));
        if line.contains("CONNECTED") {
            let root = conn.root().unwrap();
            held.push((conn, root));
        } else {
            assert!(line.contains("LOG WARN"), "{line}");
            assert!(line.contains("accept failed") && line.contains("os error 24"), "{line}");
            assert!(line.contains("retrying"), "the server backs off: {line}");
            eprintln!("after {} connections the server logged: {line}", held.len());
            refused = Some(conn);
            break;
        }
    }
    assert!(refused.is_some(), "the server never ran out of descriptors");
    assert!(!held.is_empty(), "the limit left room for at least one connection");
    // The server keeps serving the connections it has.
    for (i, (_, root)) in held.iter().enumerate() {
        assert_eq!(root.call_method::<i64>("add", (i as i64, 1)).unwrap(), i as i64 + 1);
    }
    // Free descriptors; the server serves again.
    for (conn, root) in held.drain(..) {
        drop(root);
        conn.close();
    }
    drop(refused);
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts <= 100, "the server never recovered");
        let conn = patient().connect_tcp(addr).unwrap();
        match conn.root().and_then(|r| r.call_method::<i64>("add", (20, 22))) {
            Ok(v) => {
                assert_eq!(v, 42);
                break;
            }
            // Set up while the old connections' descriptors were still open:
            // dropped, and the server backed off. Try again.
            Err(e) if e.is_closed() => continue,
            Err(e) => panic!("{e}"),
        }
    }
}
