//! The server side: RPyC's `FileMonitorService` from the events tutorial.
//!
//! A typed service ([`FileMonitorService`]) with two methods:
//!
//! - `file_monitor(path, callback, interval_ms)` takes a first look at the
//!   file, then polls its metadata on a thread of its own and calls
//!   `callback(old, new)` *asynchronously* (fire and forget, like
//!   `rpyc.async_(callback)`) whenever it changed. It returns a
//!   [`FileMonitor`] whose `stop()` ends the polling.
//! - `checksum(path)` is deliberately slow (it runs a delay hook first, a
//!   sleep in the demo) so that the client has a call worth making
//!   asynchronously.

use std::fs;
use std::io;
use std::net::ToSocketAddrs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use netref::typed::{Callback, Obj};
use netref::{Builder, Service, ThreadedServer};
use serde::{Deserialize, Serialize};

/// What the monitor compares between two looks at the file (the parts of
/// `os.stat` that matter here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode number: it changes when the file is replaced.
    pub inode: u64,
    /// File type and permission bits.
    pub mode: u32,
}

impl Stat {
    /// The file's current metadata.
    pub fn of(path: impl AsRef<Path>) -> io::Result<Stat> {
        let md = fs::metadata(path)?;
        Ok(Stat {
            size: md.size(),
            mtime_ns: md.mtime().saturating_mul(1_000_000_000).saturating_add(md.mtime_nsec()),
            inode: md.ino(),
            mode: md.mode(),
        })
    }
}

/// The reply of `checksum`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// Bytes read.
    pub bytes: u64,
    /// FNV-1a (64 bit) of the contents, as 16 hex digits.
    pub fnv1a: String,
    /// How long the server took, delay included.
    pub millis: u64,
}

/// FNV-1a, 64 bit: a checksum simple enough to recompute in a test.
pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Why `checksum` failed: the client gets it back as itself
/// (`CallError::App`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumError {
    /// The file asked for.
    pub path: String,
    /// What reading it said.
    pub reason: String,
}

impl std::fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read {}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ChecksumError {}

/// RPyC's `FileMonitorService`, declared once: the server implements it,
/// the window calls it through `FileMonitorServiceProxy`.
#[netref::service]
pub trait FileMonitorService {
    /// Takes a first look at `path` (before returning, so that any change
    /// made afterwards is reported), then polls it every `interval_ms` and
    /// calls `callback(old, new)` asynchronously whenever it changed, until
    /// the returned monitor is stopped.
    fn file_monitor(
        &self,
        path: String,
        callback: Callback<(Option<Stat>, Option<Stat>)>,
        interval_ms: u64,
    ) -> Obj<dyn FileMonitor>;
    /// The file's checksum: deliberately slow, so that the client has a
    /// call worth making asynchronously.
    fn checksum(&self, path: String) -> Result<Checksum, ChecksumError>;
}

/// One monitored file.
#[netref::service]
pub trait FileMonitor {
    /// Stops polling.
    fn stop(&self);
}

/// The service. `checksum_delay` runs at the start of every `checksum`
/// call, on the server's thread for that connection: the demo sleeps there,
/// a test can hold the reply back until it chooses to.
struct Monitors {
    checksum_delay: Box<dyn Fn() + Send + Sync>,
}

impl FileMonitorService for Monitors {
    fn file_monitor(
        &self,
        path: String,
        callback: Callback<(Option<Stat>, Option<Stat>)>,
        interval_ms: u64,
    ) -> Obj<dyn FileMonitor> {
        Obj::new(Polling::start(path, callback, Duration::from_millis(interval_ms.max(1))))
    }

    fn checksum(&self, path: String) -> Result<Checksum, ChecksumError> {
        let start = Instant::now();
        (self.checksum_delay)();
        let data = fs::read(&path).map_err(|e| ChecksumError { path, reason: e.to_string() })?;
        Ok(Checksum {
            bytes: data.len() as u64,
            fnv1a: format!("{:016x}", fnv1a64(&data)),
            millis: start.elapsed().as_millis() as u64,
        })
    }
}

/// The FileMonitor service, with `checksum_delay` run at the start of
/// every `checksum`.
pub fn service(checksum_delay: impl Fn() + Send + Sync + 'static) -> Service {
    Service::typed::<dyn FileMonitorService>(Monitors { checksum_delay: Box::new(checksum_delay) })
}

/// Binds a [`ThreadedServer`] for the service (port 0 picks a free port)
/// and starts accepting on a thread of its own; `close()` the server to stop.
pub fn spawn_server(
    addr: impl ToSocketAddrs,
    checksum_delay: impl Fn() + Send + Sync + 'static,
) -> netref::Result<(ThreadedServer, thread::JoinHandle<()>)> {
    let server = ThreadedServer::bind_tcp(addr, Builder::default().service(service(checksum_delay)))?;
    let accepting = server.spawn();
    Ok((server, accepting))
}

/// A file being polled on a thread of its own.
struct Polling {
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl FileMonitor for Polling {
    fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Polling {
    fn start(path: String, callback: Callback<(Option<Stat>, Option<Stat>)>, interval: Duration) -> Polling {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let mut last = Stat::of(&path).ok();
        // Set when notifying failed because the client is gone.
        let gone = Arc::new(AtomicBool::new(false));
        let spawned = thread::Builder::new().name("filemon-poll".into()).spawn(move || {
            // The wait doubles as the stop signal: `stop()`, or the monitor
            // object being freed (the sender drops), ends it at once.
            while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                if gone.load(Ordering::Acquire) {
                    break;
                }
                let now = Stat::of(&path).ok();
                if now == last {
                    continue;
                }
                // Fire and forget: the poller never waits for the client.
                // The callback only watches for a closed connection (it runs
                // on the thread serving the connection, or here if the call
                // failed).
                let reply = callback.call_async((last, now));
                let gone = gone.clone();
                reply.add_callback(move |r| {
                    if let Err(netref::Error::Closed(_)) = r.value() {
                        gone.store(true, Ordering::Release);
                    }
                });
                last = now;
            }
        });
        if let Err(e) = spawned {
            eprintln!("filemon: could not start polling: {e}");
        }
        Polling { stop: Mutex::new(Some(stop_tx)) }
    }
}
