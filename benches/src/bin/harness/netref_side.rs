//! netref's servers and clients.
//!
//! Servers: `netref` (a [`ThreadedServer`](netref::ThreadedServer), a thread per connection, as
//! RPyC's), `netref-mio` and `netref-polling` (the backends' single-threaded
//! servers). Every one exposes the same root: `add(a, b)`, `echo(value)`
//! and `emit(callback, n)`, which calls `callback(i)` n times from the
//! server with at most [`WINDOW`] calls in flight.
//!
//! `netref-typed` (server and client) is the ThreadedServer serving the
//! same `add` as a typed service ([`Calc`]), called through its typed
//! proxy: what a typed call costs beside the dynamic one.
//!
//! `netref-batched` (server and client) is the ThreadedServer and client
//! with write batching on: [`Config::batch_replies`] on both ends, the
//! pipelined client's calls and the server's `emit` inside
//! [`netref::batch`]. The plain `netref` keeps the defaults: coalescing
//! ([`Config::coalesce`]).
//!
//! `netref-at-once` (server and client) writes every message as soon as
//! it is made ([`Config::coalesce`]`(None)` on both ends), as RPyC does:
//! what netref's default coalescing saves.
//!
//! `netref-tls` (server and client, TCP) is the plain ThreadedServer and
//! client over TLS: the server makes a self-signed certificate for
//! 127.0.0.1 when it starts and writes it where the client reads it
//! ([`tls_cert_path`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use netref::protocol::{Call, Event, Input, Protocol};
use netref::{
    async_, BgServingThread, Builder, Config, Connection, Dialect, ObjectBuilder, RemoteObject, Service,
    Value,
};

use crate::common::{self, Opts, WINDOW};
use crate::raw::{Addr, Listener};

/// The typed benchmark service.
#[netref::service]
pub(crate) trait Calc {
    /// `a + b`.
    fn add(&self, a: i64, b: i64) -> i64;
}

struct Adder;

impl Calc for Adder {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// The benchmark service's root object; `batched`: `emit` sends inside
/// [`netref::batch`].
fn root(batched: bool) -> netref::LocalObject {
    ObjectBuilder::new("Bench")
        .method("add", |a: i64, b: i64| a + b)
        .method("echo", |v: Value| v)
        .method(
            "emit",
            move |cb: RemoteObject, n: u64| {
                if batched {
                    netref::batch(|| emit(&cb, n))
                } else {
                    emit(&cb, n)
                }
            },
        )
        .build()
}

/// Calls `cb(i)` for i in 0..n, keeping at most [`WINDOW`] calls in flight.
fn emit(cb: &RemoteObject, n: u64) -> u64 {
    let mut pending = VecDeque::with_capacity(WINDOW);
    for i in 0..n {
        if pending.len() >= WINDOW {
            let r: netref::AsyncResult = pending.pop_front().expect("non-empty");
            let _ = r.wait();
        }
        pending.push_back(async_(cb).call((i,)));
    }
    for r in pending {
        let _ = r.wait();
    }
    n
}

fn builder(batched: bool) -> Builder {
    Builder::default()
        .service(Service::object(root(batched)))
        .config(Config::default().batch_replies(batched))
}

/// The dialect of `impl`: `netref-rpyc` speaks RPyC 6's, to and from
/// Python's rpyc (its server serves both, told by the first bytes).
fn dialect(imp: &str, server: bool) -> Dialect {
    match (imp, server) {
        ("netref-rpyc", true) => Dialect::Either,
        ("netref-rpyc", false) => Dialect::Rpyc,
        _ => Dialect::Netref,
    }
}

/// Runs one of netref's servers until killed.
pub(crate) fn server(opts: &Opts) -> io::Result<()> {
    common::raise_nofile();
    let (listener, addr) = Listener::bind(opts.str("transport"), opts.get("path"))?;
    let err = |e: netref::Error| io::Error::other(e.to_string());
    match opts.str("impl") {
        imp @ ("netref" | "netref-batched" | "netref-typed" | "netref-rpyc" | "netref-tls"
        | "netref-at-once") => {
            let batched = imp == "netref-batched";
            let tls = if imp == "netref-tls" { Some(tls_acceptor()?) } else { None };
            let builder = || match imp {
                "netref-typed" => Builder::default().service(Service::typed::<dyn Calc>(Adder)),
                "netref-rpyc" => builder(false).config(Config::default().dialect(dialect(imp, true))),
                "netref-tls" => builder(false).tls(tls.clone().expect("made above")),
                "netref-at-once" => builder(false).config(Config::default().coalesce(None)),
                _ => builder(batched),
            };
            let server = match (&listener, &addr) {
                (Listener::Tcp(_), Addr::Tcp(a)) => {
                    drop(listener);
                    netref::ThreadedServer::bind_tcp(a.as_str(), builder()).map_err(err)?
                }
                (Listener::Unix(_), Addr::Unix(p)) => {
                    drop(listener);
                    let _ = std::fs::remove_file(p);
                    netref::ThreadedServer::bind_unix(p, builder()).map_err(err)?
                }
                _ => unreachable!(),
            };
            common::ready(&addr.to_string());
            server.start();
        }
        "netref-mio" => {
            let mut server = match listener {
                Listener::Tcp(l) => netref_mio::Server::from_listener(l, builder(false))?,
                Listener::Unix(l) => netref_mio::Server::from_listener(l, builder(false))?,
            };
            common::ready(&addr.to_string());
            server.run()?;
        }
        "netref-polling" => {
            let mut server = match listener {
                Listener::Tcp(l) => netref_polling::Server::from_listener(l, builder(false))?,
                Listener::Unix(l) => netref_polling::Server::from_listener(l, builder(false))?,
            };
            common::ready(&addr.to_string());
            server.run()?;
        }
        other => panic!("no netref server {other}"),
    }
    Ok(())
}

/// Where the `netref-tls` server writes its certificate for the client.
fn tls_cert_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-run/tls-cert.pem")
}

/// A self-signed certificate for 127.0.0.1, written to [`tls_cert_path`].
fn tls_acceptor() -> io::Result<netref::tls::TlsAcceptor> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).map_err(io::Error::other)?;
    let cert = made.cert.pem();
    std::fs::write(tls_cert_path(), &cert)?;
    netref::tls::TlsAcceptor::new(cert.as_bytes(), made.signing_key.serialize_pem().as_bytes())
        .map_err(|e| io::Error::other(e.to_string()))
}

fn connect(addr: &Addr, imp: &str) -> netref::Result<Connection> {
    let batched = imp == "netref-batched";
    let mut config = Config::default().batch_replies(batched).dialect(dialect(imp, false));
    if imp == "netref-at-once" {
        config = config.coalesce(None);
    }
    let b = Builder::default().config(config);
    if imp == "netref-tls" {
        let Addr::Tcp(a) = addr else { panic!("netref-tls runs over TCP") };
        let (host, port) = a.rsplit_once(':').expect("HOST:PORT");
        let connector = netref::tls::TlsConnector::with_roots(&std::fs::read(tls_cert_path())?)?;
        return b.connect_tls(&connector, host, port.parse().expect("a port"));
    }
    match addr {
        Addr::Tcp(a) => b.connect_tcp(a.as_str()),
        Addr::Unix(p) => b.connect_unix(p),
    }
}

/// Runs one of netref's client scenarios and prints its RESULT line.
pub(crate) fn client(opts: &Opts) -> netref::Result<()> {
    let addr = Addr::parse(opts.str("addr"));
    if opts.str("scenario") == "scale" {
        return scale(opts, &addr);
    }
    let batched = opts.str("impl") == "netref-batched";
    let conn = connect(&addr, opts.str("impl"))?;
    if opts.str("impl") == "netref-typed" {
        let calc = CalcProxy::root(&conn)?;
        common::measure_latency(opts, || {
            let sum = calc.add(1, 2).expect("add");
            debug_assert_eq!(sum, 3);
        });
        conn.close();
        return Ok(());
    }
    let root = conn.root()?;
    match opts.str("scenario") {
        "latency" => common::measure_latency(opts, || {
            let sum: i64 = root.call_method("add", (1i64, 2i64)).expect("add");
            debug_assert_eq!(sum, 3);
        }),
        "pipelined" => pipelined(opts, &root, batched)?,
        "inflight" => inflight(opts, &root)?,
        "events" => events(opts, &conn, &root)?,
        "payload" => {
            let size: usize = opts.num("size", 1 << 20);
            let mut data = Value::Bytes((0..size).map(|i| i as u8).collect());
            crate::raw::payload_loop(opts, size, || {
                // The echo comes back as the next call's argument: no copies
                // beyond what netref itself makes.
                data = root.call_method("echo", vec![std::mem::take(&mut data)]).expect("echo");
            });
            assert!(matches!(&data, Value::Bytes(b) if b.len() == size));
        }
        other => panic!("netref: no scenario {other}"),
    }
    conn.close();
    Ok(())
}

/// Keeps [`WINDOW`] calls in flight; `batched`: each hundred new calls
/// inside one [`netref::batch`] (waiting for a result writes what it holds).
fn pipelined(opts: &Opts, root: &RemoteObject, batched: bool) -> netref::Result<()> {
    let secs = opts.secs();
    let call = || async_(root).call_method("add", (1i64, 1i64));
    let mut pending: VecDeque<_> = (0..WINDOW).map(|_| call()).collect();
    for _ in 0..WINDOW {
        pending.pop_front().expect("non-empty").wait()?;
        pending.push_back(call());
    }
    let start = Instant::now();
    let mut done = 0u64;
    let mut hundred = || -> netref::Result<()> {
        for _ in 0..100 {
            let _: i64 = pending.pop_front().expect("non-empty").value_as()?;
            pending.push_back(call());
        }
        Ok(())
    };
    while start.elapsed() < secs {
        if batched {
            netref::batch(&mut hundred)?;
        } else {
            hundred()?;
        }
        done += 100;
    }
    for r in pending {
        let _: i64 = r.value_as()?;
        done += 1;
    }
    common::result(&[("calls_per_s", done as f64 / start.elapsed().as_secs_f64())]);
    Ok(())
}

/// Keeps `--window` calls in flight (20,000 by default), each with an
/// expiry of `--expiry` seconds when given (with `netref::timed`), else
/// none: the pair of runs shows what carrying a deadline costs when many
/// are pending at once. The expiry is far beyond the run, so none fires.
fn inflight(opts: &Opts, root: &RemoteObject) -> netref::Result<()> {
    let secs = opts.secs();
    let window: usize = opts.num("window", 20_000);
    let expiry: f64 = opts.num("expiry", 0.0);
    let call = || {
        if expiry > 0.0 {
            netref::timed(root, Duration::from_secs_f64(expiry)).call_method("add", (1i64, 1i64))
        } else {
            async_(root).call_method("add", (1i64, 1i64))
        }
    };
    let mut pending: VecDeque<_> = (0..window).map(|_| call()).collect();
    // Warm up: one full window answered and replaced.
    for _ in 0..window {
        pending.pop_front().expect("non-empty").wait()?;
        pending.push_back(call());
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < secs {
        for _ in 0..100 {
            let _: i64 = pending.pop_front().expect("non-empty").value_as()?;
            pending.push_back(call());
        }
        done += 100;
    }
    for r in pending {
        let _: i64 = r.value_as()?;
        done += 1;
    }
    common::result(&[("calls_per_s", done as f64 / start.elapsed().as_secs_f64())]);
    Ok(())
}

/// Counts events and wakes whoever waits for a count.
struct Counter {
    n: AtomicU64,
    /// What `wait_for` waits for: only reaching it wakes the waiter, so the
    /// measurement is the delivery of events, not one wake-up of the
    /// counting thread per event (the RPyC side counts the same way).
    target: AtomicU64,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Default for Counter {
    fn default() -> Self {
        // Nobody waits yet: no wake-ups (the event-loop variants count on
        // the loop's own thread and never wait here).
        Counter {
            n: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }
}

impl Counter {
    fn bump(&self) {
        let n = self.n.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.target.load(Ordering::Acquire) {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cond.notify_all();
        }
    }

    fn get(&self) -> u64 {
        self.n.load(Ordering::Acquire)
    }

    fn wait_for(&self, target: u64) {
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.target.store(target, Ordering::Release);
        while self.get() < target {
            g = self.cond.wait_timeout(g, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// Server-to-client callbacks: the client asks for `batch` events at a time
/// and counts them as they arrive through the chosen delivery (`--via`).
fn events(opts: &Opts, conn: &Connection, root: &RemoteObject) -> netref::Result<()> {
    let secs = opts.secs();
    let batch: u64 = opts.num("batch", 50_000);
    let counter = Arc::new(Counter::default());
    let c = counter.clone();
    let cb = netref::callback(move |_i: u64| c.bump());
    let emit = |k: u64| async_(root).call_method("emit", (cb.clone(), k));
    // Runs one round: ask for k events, return once all arrived and the
    // request's reply is in.
    let mut round: Box<dyn FnMut(u64) -> netref::Result<()>> = match opts.str("via") {
        "bg" => {
            let bg = BgServingThread::new(conn);
            let counter = counter.clone();
            Box::new(move |k| {
                let _keep = &bg;
                let target = counter.get() + k;
                let res = emit(k);
                // Wait on our own counter, not the connection, so that only
                // the background thread serves the callbacks.
                counter.wait_for(target);
                res.wait()
            })
        }
        "mio" => Box::new(reactor_mio(conn, counter.clone(), emit)?),
        "polling" => Box::new(reactor_polling(conn, counter.clone(), emit)?),
        "calloop" => Box::new(reactor_calloop(conn, counter.clone(), emit)?),
        "glib" => Box::new(reactor_glib(conn, counter.clone(), emit)?),
        other => panic!("no event delivery {other}"),
    };
    round((batch / 10).max(1))?;
    let start = Instant::now();
    let mut total = 0;
    while start.elapsed() < secs {
        round(batch)?;
        total += batch;
    }
    let t = start.elapsed().as_secs_f64();
    drop(round);
    common::result(&[("events_per_s", total as f64 / t), ("events", total as f64)]);
    Ok(())
}

fn io_err(e: io::Error) -> netref::Error {
    netref::Error::from(e)
}

/// An event loop's own error, as the I/O error it reports.
fn loop_err(e: impl std::fmt::Display) -> netref::Error {
    netref::Error::from(io::Error::other(e.to_string()))
}

/// Fails when `conn` closed: the events still missing will never come.
fn closed(conn: &Connection) -> netref::Result<()> {
    match conn.close_reason() {
        Some(why) => Err(netref::Error::Closed(why)),
        None => Ok(()),
    }
}

fn reactor_mio(
    conn: &Connection,
    counter: Arc<Counter>,
    emit: impl Fn(u64) -> netref::AsyncResult,
) -> netref::Result<impl FnMut(u64) -> netref::Result<()>> {
    use mio::{Events, Poll, Token};
    const BELL: Token = Token(0);
    const CONN: Token = Token(1);
    let mut poll = Poll::new().map_err(io_err)?;
    let doorbell = netref_mio::Doorbell::new(poll.registry(), BELL).map_err(io_err)?;
    let mut attached = netref_mio::attach(conn, poll.registry(), CONN, &doorbell).map_err(io_err)?;
    let mut events = Events::with_capacity(64);
    let conn_ = conn.clone();
    Ok(move |k| {
        let target = counter.get() + k;
        let res = emit(k);
        while counter.get() < target || !res.ready() {
            closed(&conn_)?;
            poll.poll(&mut events, netref_mio::timeout(attached.next_deadline())).map_err(io_err)?;
            let ready = events.iter().any(|e| e.token() == CONN) || doorbell.take().contains(&CONN);
            if ready || attached.is_due() {
                attached.drive(poll.registry()).map_err(io_err)?;
            }
        }
        res.wait()
    })
}

fn reactor_polling(
    conn: &Connection,
    counter: Arc<Counter>,
    emit: impl Fn(u64) -> netref::AsyncResult,
) -> netref::Result<impl FnMut(u64) -> netref::Result<()>> {
    use polling::{Events, Poller};
    const CONN: usize = 1;
    let doorbell = netref_polling::Doorbell::new(Arc::new(Poller::new().map_err(io_err)?));
    let mut attached = netref_polling::attach(conn, &doorbell, CONN).map_err(io_err)?;
    let mut events = Events::new();
    let conn_ = conn.clone();
    Ok(move |k| {
        let target = counter.get() + k;
        let res = emit(k);
        while counter.get() < target || !res.ready() {
            closed(&conn_)?;
            events.clear();
            doorbell
                .poller()
                .wait(&mut events, netref_polling::timeout(attached.next_deadline()))
                .map_err(io_err)?;
            let ready = events.iter().any(|e| e.key == CONN) || doorbell.take().contains(&CONN);
            if ready || attached.is_due() {
                attached.drive().map_err(io_err)?;
            }
        }
        res.wait()
    })
}

fn reactor_calloop(
    conn: &Connection,
    counter: Arc<Counter>,
    emit: impl Fn(u64) -> netref::AsyncResult,
) -> netref::Result<impl FnMut(u64) -> netref::Result<()>> {
    let mut event_loop: calloop::EventLoop<'static, ()> = calloop::EventLoop::try_new().map_err(loop_err)?;
    let attached = netref_calloop::attach(&event_loop.handle(), conn).map_err(loop_err)?;
    let conn_ = conn.clone();
    Ok(move |k| {
        let _keep = &attached;
        let target = counter.get() + k;
        let res = emit(k);
        while counter.get() < target || !res.ready() {
            closed(&conn_)?;
            event_loop.dispatch(None, &mut ()).map_err(loop_err)?;
        }
        res.wait()
    })
}

fn reactor_glib(
    conn: &Connection,
    counter: Arc<Counter>,
    emit: impl Fn(u64) -> netref::AsyncResult,
) -> netref::Result<impl FnMut(u64) -> netref::Result<()>> {
    // A private context, iterated by this (the harness's main) thread.
    let ctx = glib::MainContext::new();
    let attached = netref_glib::attach(conn, &ctx).map_err(io_err)?;
    let conn_ = conn.clone();
    Ok(move |k| {
        let _keep = &attached;
        let target = counter.get() + k;
        let res = emit(k);
        while counter.get() < target || !res.ready() {
            closed(&conn_)?;
            ctx.iteration(true);
        }
        res.wait()
    })
}

/// The scale scenario against a single-threaded server: idle connections
/// (memory per connection from the server's RSS), then active clients
/// (aggregate calls/s).
fn scale(opts: &Opts, addr: &Addr) -> netref::Result<()> {
    let Addr::Tcp(tcp) = addr else { panic!("scale runs over TCP") };
    let my_limit = common::raise_nofile();
    let server: u32 = opts.num("server-pid", 0);
    let want_idle: usize = opts.num("idle", 10_000);
    let active: usize = opts.num("active", 1_000);
    let secs = opts.secs();

    // How many descriptors the server spends per connection, and its limit.
    let server_limit = nofile_limit(server).unwrap_or(1024);
    let fds0 = common::fd_count(server);
    let mut idle: Vec<TcpStream> = Vec::new();
    open_idle(tcp, 20, &mut idle)?;
    let per_conn = (common::fd_count(server).saturating_sub(fds0) as f64 / 20.0).round().max(1.0) as usize;
    let headroom = 64;
    let fits = (server_limit as usize).saturating_sub(fds0 + headroom + active * per_conn) / per_conn;
    let client_fits = (my_limit as usize).saturating_sub(64 + active * 3);
    let n_idle = want_idle.min(fits).min(client_fits);
    idle.clear();
    std::thread::sleep(Duration::from_millis(300));

    let rss0 = common::rss_kib(server);
    open_idle(tcp, n_idle, &mut idle)?;
    std::thread::sleep(Duration::from_millis(300));
    let rss1 = common::rss_kib(server);
    let per_idle_kib = (rss1.saturating_sub(rss0)) as f64 / n_idle.max(1) as f64;

    // Active clients: `active` netref connections on one polling loop in
    // this process, each making one call after another.
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let doorbell = netref_polling::Doorbell::new(Arc::new(polling::Poller::new().map_err(io_err)?));
    let mut conns = Vec::with_capacity(active);
    for key in 0..active {
        let conn = Builder::default().connect_tcp(tcp.as_str())?;
        let root = conn.root()?;
        let attached = netref_polling::attach(&conn, &doorbell, key).map_err(io_err)?;
        conns.push((attached, root));
    }
    for (_, root) in &conns {
        chain(root.clone(), calls.clone(), stop.clone());
    }
    let mut events = polling::Events::new();
    let mut turn = |events: &mut polling::Events| -> netref::Result<()> {
        events.clear();
        doorbell.poller().wait(events, Some(Duration::from_millis(100))).map_err(io_err)?;
        let mut keys: Vec<usize> = events.iter().map(|e| e.key).collect();
        keys.extend(doorbell.take());
        for k in keys {
            if let Some((c, _)) = conns.get_mut(k) {
                c.drive().map_err(io_err)?;
            }
        }
        Ok(())
    };
    let warm = Instant::now();
    while warm.elapsed() < secs / 5 {
        turn(&mut events)?;
    }
    let meter = common::CpuMeter::start(server);
    let c0 = calls.load(Ordering::Acquire);
    let start = Instant::now();
    while start.elapsed() < secs {
        turn(&mut events)?;
    }
    let done = calls.load(Ordering::Acquire) - c0;
    let t = start.elapsed().as_secs_f64();
    let (cpu_c, cpu_s) = meter.per_op(done);
    stop.store(true, Ordering::Release);
    common::result(&[
        ("idle_requested", want_idle as f64),
        ("idle", n_idle as f64),
        ("idle_kib_per_conn", per_idle_kib),
        ("server_rss_kib", rss1 as f64),
        ("server_fds_per_conn", per_conn as f64),
        ("server_nofile", server_limit as f64),
        ("active", active as f64),
        ("active_calls_per_s", done as f64 / t),
        ("client_cpu_us", cpu_c),
        ("server_cpu_us", cpu_s),
    ]);
    // Tearing down thousands of connections proves nothing: leave.
    std::process::exit(0);
}

/// One active client: a call, and from its completion the next one.
fn chain(root: RemoteObject, calls: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let r = async_(&root).call_method("add", (1i64, 2i64));
    r.add_callback(move |_| {
        calls.fetch_add(1, Ordering::AcqRel);
        if !stop.load(Ordering::Acquire) {
            chain(root, calls, stop);
        }
    });
}

/// The soft RLIMIT_NOFILE of another process, from `/proc/PID/limits`.
fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Opens `n` idle connections that completed netref's handshake and one
/// ping (so the server has set each one up), using the sans-IO protocol
/// directly: one file descriptor and no thread per connection here.
fn open_idle(addr: &str, n: usize, out: &mut Vec<TcpStream>) -> netref::Result<()> {
    let mut buf = vec![0u8; 4096];
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let mut batch = Vec::with_capacity(chunk.len());
        for _ in chunk {
            let mut s = TcpStream::connect(addr)?;
            let mut p = Protocol::new(Config::default(), Instant::now());
            let seq = p.send_request(Call::Ping(Value::Null), None)?;
            let mut out_bytes = Vec::new();
            p.write_to(&mut out_bytes)?;
            s.write_all(&out_bytes)?;
            batch.push((s, p, seq));
        }
        for (mut s, mut p, seq) in batch {
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            'wait: loop {
                let k = s.read(&mut buf)?;
                if k == 0 {
                    // The server closed an idle connection.
                    return Err(netref::Error::Closed(netref::CloseReason::ByPeer));
                }
                p.handle_input(Instant::now(), Input::Receive(&buf[..k]))?;
                while let Some(ev) = p.poll_event() {
                    if matches!(ev, Event::Reply { seq: s2, .. } if s2 == seq) {
                        break 'wait;
                    }
                }
            }
            out.push(s);
        }
    }
    Ok(())
}
