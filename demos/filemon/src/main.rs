//! # filemon
//!
//! The FileMonitor service of RPyC's events tutorial, as a typed service
//! ([`FileMonitorService`]). The server watches a file's metadata on a
//! thread and tells the client about each change by calling the client's
//! callback one-way: events are asynchronous callbacks.
//!
//! ```text
//! cargo run -p filemon -- server [--addr 127.0.0.1:18871] [--interval-ms 1000]
//! cargo run -p filemon -- client --addr 127.0.0.1:18871 --file /tmp/floop.bloop [--pull]
//! cargo run -p filemon -- demo [--interval-ms 100]
//! ```
//!
//! The server serves netref's clients and Python's (rpyc 6's
//! `rpyc.connect`) on one port: `demos/python/filemon_client.py` is the
//! tutorial's transcript as a script.
//!
//! The client serves its connection from a [`BgServingThread`], so changes
//! print as they happen. With `--pull` nobody serves it: as the tutorial
//! shows, the events then wait until the next interaction with the
//! connection, here a ping each time you press Enter.
//!
//! The client leaves (stopping its monitor) on Ctrl-C or SIGTERM, when the
//! server goes away, and at the end of its input: in pull mode whatever
//! stdin is, in push mode only when stdin is a terminal (Ctrl-D), so that a
//! push client started with stdin closed or redirected keeps watching.

use std::error::Error;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

use netref::typed::{Callback, Obj};
use netref::{BgServingThread, Builder, Config, Connection, Dialect, Service};
use serde::{Deserialize, Serialize};

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "\
usage:
  filemon server [--addr ADDR] [--interval-ms N]   serve FileMonitor to netref and Python RPyC clients
                                                   (default 127.0.0.1:18871, 1000 ms)
  filemon client --addr ADDR --file FILE [--pull]  watch FILE through the server
  filemon demo [--interval-ms N]                   server and client in one process
  filemon --help                                   this text

The client prints each change as the server pushes it; with --pull it
fetches them only when you press Enter, as RPyC's tutorial shows.";

/// What the monitor compares: the part of `os.stat()` that changes when a
/// file is written.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Stat {
    /// Size in bytes.
    size: u64,
    /// Modification time, nanoseconds since the epoch.
    mtime_ns: u128,
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.mtime_ns / 1_000_000_000;
        let nanos = self.mtime_ns % 1_000_000_000;
        write!(f, "(size={}, mtime={secs}.{nanos:09})", self.size)
    }
}

fn stat(path: &Path) -> io::Result<Stat> {
    let meta = fs::metadata(path)?;
    let mtime_ns = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok(Stat { size: meta.len(), mtime_ns })
}

/// Why the server could not watch a file: the client gets it back as itself.
#[derive(Serialize, Deserialize, Debug)]
struct MonitorError {
    /// The file asked for.
    path: String,
    /// What looking at it said.
    reason: String,
}

impl std::fmt::Display for MonitorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot watch {}: {}", self.path, self.reason)
    }
}

impl Error for MonitorError {}

/// RPyC's `FileMonitorService`, declared once.
#[netref::service]
trait FileMonitorService {
    /// Starts a monitor of `path` calling `callback(old, new)` on each
    /// change; the first look happens before it returns.
    fn file_monitor(
        &self,
        path: String,
        callback: Callback<(Stat, Stat)>,
    ) -> Result<Obj<dyn FileMonitor>, MonitorError>;
}

/// One monitor.
#[netref::service]
trait FileMonitor {
    /// Stops it.
    fn stop(&self);
}

/// The service of one connection.
struct Monitors {
    interval: Duration,
    /// Weak: the service must not keep its own connection open.
    conn: netref::WeakConnection,
}

impl FileMonitorService for Monitors {
    fn file_monitor(
        &self,
        path: String,
        callback: Callback<(Stat, Stat)>,
    ) -> Result<Obj<dyn FileMonitor>, MonitorError> {
        let watched = PathBuf::from(&path);
        let running = start_monitor(watched, callback, self.interval, self.conn.clone())
            .map_err(|e| MonitorError { path, reason: e.to_string() })?;
        Ok(Obj::new(Running(running)))
    }
}

fn filemon_service(interval: Duration) -> Service {
    Service::new(move |conn: &Connection| {
        netref::typed::export::<dyn FileMonitorService>(Monitors { interval, conn: conn.downgrade() })
    })
}

/// One monitor: a thread that polls `path` and calls `callback(old, new)`
/// on each change, until stopped, released, or the client goes away. The
/// flag it returns keeps it running.
fn start_monitor(
    path: PathBuf,
    callback: Callback<(Stat, Stat)>,
    interval: Duration,
    conn: netref::WeakConnection,
) -> io::Result<Arc<AtomicBool>> {
    // The tutorial says "wait a little for the filemon to have a look at the
    // original file". Looking before returning makes every change after
    // `file_monitor(...)` returns count, with no waiting.
    let mut last = stat(&path)?;
    println!(
        "[server] monitoring {} for {}",
        path.display(),
        conn.upgrade().map_or_else(String::new, |c| c.peer().to_string())
    );
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    thread::spawn(move || {
        let client_gone = || conn.upgrade().is_none_or(|c| c.is_closed());
        while flag.load(Ordering::Acquire) && !client_gone() {
            thread::sleep(interval);
            // A file that vanishes for a moment (being rewritten) is not a change.
            let Ok(now) = stat(&path) else { continue };
            if now != last {
                // One-way, as in the tutorial: the monitor does not wait
                // for the client to handle the event.
                callback.notify((last, now));
                println!("[server] notified: {} {last} -> {now}", path.display());
                last = now;
            }
        }
        println!("[server] stopped monitoring {}", path.display());
    });
    Ok(running)
}

/// A monitor's running flag, as the object the client holds: `stop()`
/// clears it, and so does a client that drops its proxy without calling it.
struct Running(Arc<AtomicBool>);

impl FileMonitor for Running {
    fn stop(&self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Prints one event the way the tutorial does.
fn print_change(old: Stat, new: Stat) {
    // One write, so that lines of two events never interleave.
    let text = format!("file changed\n    old stat: {old}\n    new stat: {new}\n");
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn server(addr: &str, interval: Duration) -> Res<()> {
    // Python's `rpyc.connect` is served on the same port as netref's
    // clients (demos/python/filemon_client.py).
    let both = Config::default().dialect(Dialect::Either);
    let builder = Builder::default().service(filemon_service(interval)).config(both);
    let server = netref::ThreadedServer::bind_tcp(addr, builder)?;
    let addr = server.local_addr().ok_or("no TCP address")?;
    println!("listening on {addr}");
    server.start();
    Ok(())
}

/// What the client's main thread waits for.
enum Input {
    /// A line on stdin (Enter).
    Line,
    /// End of input on stdin, Ctrl-C or SIGTERM: time to leave.
    Stop,
    /// The server closed the connection (or it was lost), and why.
    Closed(String),
}

fn client(addr: &str, file: &Path, pull: bool) -> Res<()> {
    let path = fs::canonicalize(file).map_err(|e| {
        let hint =
            if e.kind() == io::ErrorKind::NotFound { " (create it first, e.g. with touch)" } else { "" };
        format!("cannot watch {}: {e}{hint}", file.display())
    })?;
    let conn = netref::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let on_file_changed = move |old: Stat, new: Stat| {
        print_change(old, new);
        count.fetch_add(1, Ordering::AcqRel);
    };
    // Without --pull, a background thread serves the connection, so events
    // print as they come while this thread waits for a reason to stop.
    let bgsrv = (!pull).then(|| BgServingThread::new(&conn));
    let mon =
        FileMonitorServiceProxy::root(&conn)?.file_monitor(path.display().to_string(), on_file_changed)?;

    let (tx, inputs) = mpsc::channel();
    let on_signal = tx.clone();
    ctrlc::set_handler(move || drop(on_signal.send(Input::Stop)))?;
    let on_closed = tx.clone();
    conn.on_close(move |why| drop(on_closed.send(Input::Closed(why.to_string()))));
    // Pull mode is driven by stdin: each line pulls, the end of input stops.
    // Push mode reads stdin only from a terminal (Ctrl-D stops); run with
    // stdin closed or redirected, it watches until Ctrl-C, SIGTERM or the
    // server going away.
    let interactive = io::stdin().is_terminal();
    if pull || interactive {
        thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                if line.is_err() || tx.send(Input::Line).is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::Stop);
        });
    }
    let how = match (pull, interactive) {
        (true, _) => "pull: press Enter to fetch events, Ctrl-D to stop",
        (false, true) => "push: Ctrl-D or Ctrl-C to stop",
        (false, false) => "push: Ctrl-C or SIGTERM to stop",
    };
    println!("monitoring {} ({how})", path.display());
    for input in inputs {
        match input {
            Input::Line if pull => {
                // The interaction that pulls the events in (the tutorial's `print mon`).
                let before = seen.load(Ordering::Acquire);
                conn.ping()?;
                // Requests read along with the ping's reply wait in the inbox: serve them too.
                conn.poll_all()?;
                if seen.load(Ordering::Acquire) == before {
                    println!("(nothing new)");
                }
            }
            Input::Line => {}
            Input::Stop => break,
            Input::Closed(why) => return Err(format!("the server went away: {why}").into()),
        }
    }
    mon.stop()?;
    if let Some(bg) = bgsrv {
        bg.stop()?;
    }
    conn.close();
    println!("bye");
    Ok(())
}

/// Server and client in one process, changing a scratch file three times.
fn demo(interval: Duration) -> Res<()> {
    let server = netref::ThreadedServer::bind_tcp(
        "127.0.0.1:0",
        Builder::default().service(filemon_service(interval)),
    )?;
    let addr = server.local_addr().ok_or("no TCP address")?;
    let accept = server.spawn();
    println!("server listening on {addr}");

    let path = std::env::temp_dir().join(format!("floop-{}.bloop", std::process::id()));
    let mut f = fs::File::create(&path)?;
    let conn = netref::connect(addr)?;
    let bgsrv = BgServingThread::new(&conn);
    let (tx, changes) = mpsc::channel();
    let on_file_changed = move |old: Stat, new: Stat| {
        print_change(old, new);
        let _ = tx.send(());
    };
    let mon =
        FileMonitorServiceProxy::root(&conn)?.file_monitor(path.display().to_string(), on_file_changed)?;
    // Each change waits for its event, so that the monitor sees them one by one.
    let wait = || changes.recv_timeout(Duration::from_secs(10));
    println!(">>> f.write(\"shmoop\")");
    f.write_all(b"shmoop")?;
    f.flush()?;
    wait()?;
    println!(">>> f.write(\"groop\")");
    f.write_all(b"groop")?;
    f.flush()?;
    wait()?;
    println!(">>> f = open(filename, \"w\")  # truncates");
    drop(OpenOptions::new().write(true).truncate(true).open(&path)?);
    wait()?;
    println!(">>> mon.stop(); bgsrv.stop(); conn.close()");
    mon.stop()?;
    bgsrv.stop()?;
    conn.close();
    server.close();
    let _ = accept.join();
    let _ = fs::remove_file(&path);
    Ok(())
}

/// A mistake in the command line: printed with the usage, exit status 2.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Usage {}

/// The value following `--name`, if given.
fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn interval(args: &[String], default_ms: u64) -> Res<Duration> {
    let ms = match opt(args, "--interval-ms") {
        Some(s) => s.parse::<u64>().map_err(|e| Usage(format!("--interval-ms {s}: {e}")))?,
        None => default_ms,
    };
    Ok(Duration::from_millis(ms))
}

fn run(args: &[String]) -> Res<()> {
    let addr = opt(args, "--addr");
    match args.first().map(String::as_str) {
        // The tutorial's port, and its one-second interval.
        Some("server") => server(addr.as_deref().unwrap_or("127.0.0.1:18871"), interval(args, 1000)?),
        Some("client") => {
            let (Some(addr), Some(file)) = (addr, opt(args, "--file")) else {
                return Err(Usage("client needs --addr and --file".into()).into());
            };
            client(&addr, Path::new(&file), args.iter().any(|a| a == "--pull"))
        }
        Some("demo") => demo(interval(args, 100)?),
        Some(other) => Err(Usage(format!("unknown command {other:?}")).into()),
        None => Err(Usage("no command given".into()).into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") || args.first().is_some_and(|a| a == "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Usage>() => {
            eprintln!("filemon: {e}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("filemon: {e}");
            ExitCode::FAILURE
        }
    }
}
