//! RPyC's FileMonitor as a typed service, server and client: `cargo run -p netref --example filemonitor`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::{fmt, fs, thread, time::Duration};

use netref::typed::{CallError, Callback, Event, Obj, Subscribe};
use netref::{BgServingThread, Builder, Service, ThreadedServer};
use serde::{Deserialize, Serialize};

/// A file's state, as the monitor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Its size in bytes.
    pub size: u64,
}

/// What the monitor refuses: the client gets it back as itself.
#[derive(Debug, Serialize, Deserialize)]
pub enum MonitorError {
    /// The path names no file.
    NotFound(String),
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorError::NotFound(path) => write!(f, "no such file: {path}"),
        }
    }
}

impl std::error::Error for MonitorError {}

/// Declared once: the server implements it, the client calls it through
/// the generated `FileMonitorProxy`.
#[netref::service]
pub trait FileMonitor {
    /// The file's state now.
    fn stat(&self, path: String) -> Result<Stat, MonitorError>;
    /// Calls `on_change(old, new)` on each change of the file (an event),
    /// until the watch it returns is stopped.
    fn watch(&self, path: String, on_change: Callback<(Stat, Stat)>) -> Result<Obj<dyn Watch>, MonitorError>;
    /// Each change of a watched file, for every subscriber: (path, new state).
    #[netref(event)]
    fn changed(&self) -> Event<(String, Stat)>;
}

/// One watch of one file.
#[netref::service]
pub trait Watch {
    /// Stops calling back.
    fn stop(&self);
}

#[derive(Default)]
struct Monitor {
    changed: Event<(String, Stat)>,
}

struct Polling {
    stopped: Arc<AtomicBool>,
}

impl Watch for Polling {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

fn stat(path: String) -> Result<Stat, MonitorError> {
    fs::metadata(&path).map(|m| Stat { size: m.len() }).map_err(|_| MonitorError::NotFound(path))
}

impl FileMonitor for Monitor {
    fn stat(&self, path: String) -> Result<Stat, MonitorError> {
        stat(path)
    }

    fn watch(&self, path: String, on_change: Callback<(Stat, Stat)>) -> Result<Obj<dyn Watch>, MonitorError> {
        let mut last = stat(path.clone())?; // a missing file is the caller's error
        let stopped = Arc::new(AtomicBool::new(false));
        let (stop, changed) = (stopped.clone(), self.changed.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(20));
                let Ok(now) = stat(path.clone()) else { continue };
                if now != last {
                    // Each subscriber's queue and policy take it from here.
                    let _ = changed.emit((path.clone(), now));
                    // Until the client goes away.
                    if on_change.call_async((last, now)).wait().is_err() {
                        return;
                    }
                    last = now;
                }
            }
        });
        Ok(Obj::new(Polling { stopped }))
    }

    fn changed(&self) -> Event<(String, Stat)> {
        self.changed.clone()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Server: only the trait's methods are reachable.
    let server = ThreadedServer::bind_tcp(
        "127.0.0.1:0",
        Builder::default().service(Service::typed::<dyn FileMonitor>(Monitor::default())),
    )?;
    let addr = server.local_addr().ok_or("no TCP address")?;
    server.spawn();

    // Client: the proxy checks that the server serves FileMonitor; a
    // closure passed as an argument is a callback the server can call, and
    // a BgServingThread runs it as each event arrives.
    let conn = netref::connect(addr)?;
    let _serving = BgServingThread::new(&conn);
    let monitor = FileMonitorProxy::root(&conn)?;
    match monitor.stat("/no/such/file".into()) {
        Err(CallError::App(MonitorError::NotFound(path))) => println!("as expected, no {path}"),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }

    let path = std::env::temp_dir().join(format!("netref-filemonitor-{}", std::process::id()));
    fs::write(&path, "")?;
    // The event: the latest state of each changed file, coalesced at the
    // server however slowly this side reads.
    let mut latest = monitor.changed().iter(Subscribe::coalesce(64))?;
    let (changed, changes) = mpsc::channel();
    let watch = monitor.watch(path.to_string_lossy().into_owned(), move |old: Stat, new: Stat| {
        changed.send((old.size, new.size)).unwrap()
    })?;

    fs::write(&path, "shmoop")?;
    let (old, new) = changes.recv_timeout(Duration::from_secs(10))?;
    println!("file changed: {old} -> {new} bytes");
    assert_eq!((old, new), (0, 6));
    match latest.next() {
        Some(Ok((file, stat))) => println!("event: {file} is now {} bytes", stat.size),
        other => return Err(format!("expected the change event, got {other:?}").into()),
    }
    watch.stop()?;
    fs::remove_file(&path)?;
    Ok(())
}
