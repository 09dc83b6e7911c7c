//! The server side: RPyC's `FileMonitorService` from the events tutorial.
//!
//! Its root object has two methods:
//!
//! - `FileMonitor(path, callback, interval_ms)` takes a first look at the
//!   file, then polls its metadata on a thread of its own and calls
//!   `callback(old, new)` *asynchronously* (fire and forget, like
//!   `rpyc.async_(callback)`) whenever it changed. It returns a monitor object
//!   whose `stop()` ends the polling.
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

use netref::{Builder, LocalObject, ObjectBuilder, RemoteObject, Service, ThreadedServer};
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

/// The FileMonitor service. `checksum_delay` runs at the start of every
/// `checksum` call, on the server's thread for that connection: the demo
/// sleeps there, a test can hold the reply back until it chooses to.
pub fn service(checksum_delay: impl Fn() + Send + Sync + 'static) -> Service {
    let delay = Arc::new(checksum_delay);
    let root = ObjectBuilder::new("FileMonitorService")
        .method("FileMonitor", file_monitor)
        .try_method("checksum", move |path: String| -> io::Result<Checksum> {
            let start = Instant::now();
            delay();
            let data = fs::read(&path)?;
            Ok(Checksum {
                bytes: data.len() as u64,
                fnv1a: format!("{:016x}", fnv1a64(&data)),
                millis: start.elapsed().as_millis() as u64,
            })
        })
        .build();
    Service::object(root)
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

/// `FileMonitor(path, callback, interval_ms)`: the first look happens here,
/// before the call returns, so any change the client makes afterwards is
/// reported.
fn file_monitor(path: String, callback: RemoteObject, interval_ms: u64) -> LocalObject {
    let interval = Duration::from_millis(interval_ms.max(1));
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let mut last = Stat::of(&path).ok();
    // Set when notifying failed because the client is gone.
    let gone = Arc::new(AtomicBool::new(false));
    let spawned = thread::Builder::new().name("filemon-poll".into()).spawn(move || {
        let notify = netref::async_(&callback);
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
            // Fire and forget: the poller never waits for the client. The
            // callback only watches for a closed connection (it runs on the
            // thread serving the connection, or here if the call failed).
            let reply = notify.call((last, now));
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
    let stop_tx = Mutex::new(Some(stop_tx));
    ObjectBuilder::new("FileMonitor")
        .method("stop", move || {
            stop_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        })
        .build()
}
