//! A deterministic in-memory pair of connections on a virtual clock, for
//! testing services without sockets, threads or sleeps.
//!
//! Both connections run on the calling thread. When one side waits, it serves
//! the other side instead of blocking; when neither has anything to do, the
//! shared [`VirtualClock`] jumps to the waiting side's deadline. So a call
//! with a 30 s timeout against a peer that never answers fails at once, in
//! 30 s of virtual time, and a wait that could never end fails with
//! [`Misuse::WaitsForever`](crate::Misuse::WaitsForever) instead of hanging.
//!
//! ```
//! use netref::testing::Pair;
//! use netref::{ObjectBuilder, Service};
//!
//! let server = Service::object(ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build());
//! let pair = Pair::new(Service::none(), server);
//! let sum: i64 = pair.client.root()?.call_method("add", (2, 3))?;
//! assert_eq!(sum, 5);
//! # Ok::<(), netref::Error>(())
//! ```
//!
//! The pair is meant for one thread: a [`BgServingThread`](crate::BgServingThread)
//! on it would spin through virtual time.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::clock::{Clock, VirtualClock};
use crate::connection::{Builder, Connection, Service, WeakConnection};
use crate::transport::Transport;

#[derive(Default)]
struct Pipe {
    bytes: Mutex<VecDeque<u8>>,
    closed: AtomicBool,
}

impl Pipe {
    fn has_input(&self) -> bool {
        self.closed.load(Ordering::Acquire)
            || !self.bytes.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

struct MemoryTransport {
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    peer: OnceLock<WeakConnection>,
    clock: Arc<VirtualClock>,
    name: &'static str,
}

impl Transport for MemoryTransport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.rx.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            return if self.rx.closed.load(Ordering::Acquire) {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(q.len());
        for (dst, src) in buf.iter_mut().zip(q.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if self.tx.closed.load(Ordering::Acquire) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.tx.bytes.lock().unwrap_or_else(|e| e.into_inner()).extend(buf);
        Ok(buf.len())
    }

    // Takes every slice, as a socket with room does: the connection writes
    // a large byte string beside its frame's head, and the pair must carry
    // that path, not the one-slice fallback.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.tx.closed.load(Ordering::Acquire) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut q = self.tx.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for b in bufs {
            q.extend(b.iter());
            n += b.len();
        }
        Ok(n)
    }

    fn wait(&self, _want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        if self.rx.has_input() {
            return Ok(());
        }
        // Let the other side run: it may answer.
        if let Some(peer) = self.peer.get().and_then(WeakConnection::upgrade) {
            let _ = peer.poll_all();
        }
        if self.rx.has_input() {
            return Ok(());
        }
        match timeout {
            Some(d) => {
                self.clock.advance(d);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "in-memory pair: the {} waits forever and neither side has anything to do",
                    self.name
                ),
            )),
        }
    }

    fn wake(&self) {}

    fn shutdown(&self) {
        self.rx.closed.store(true, Ordering::Release);
        self.tx.closed.store(true, Ordering::Release);
    }

    fn describe(&self) -> String {
        format!("in-memory {}", self.name)
    }
}

/// Two connected connections in memory sharing a virtual clock.
pub struct Pair {
    /// The first side (conventionally the client).
    pub client: Connection,
    /// The second side (conventionally the server).
    pub server: Connection,
    /// The clock both sides read.
    pub clock: Arc<VirtualClock>,
}

impl Pair {
    /// A pair where each side exposes the given service, with default limits.
    pub fn new(client: Service, server: Service) -> Pair {
        Pair::with_builders(Builder::default().service(client), Builder::default().service(server))
    }

    /// A pair from two builders (their clocks are replaced by the shared
    /// virtual clock).
    pub fn with_builders(client: Builder, server: Builder) -> Pair {
        let clock = Arc::new(VirtualClock::new());
        let a_to_b = Arc::new(Pipe::default());
        let b_to_a = Arc::new(Pipe::default());
        let ta = MemoryTransport {
            rx: b_to_a.clone(),
            tx: a_to_b.clone(),
            peer: OnceLock::new(),
            clock: clock.clone(),
            name: "client",
        };
        let tb = MemoryTransport {
            rx: a_to_b,
            tx: b_to_a,
            peer: OnceLock::new(),
            clock: clock.clone(),
            name: "server",
        };
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        // The transports need each other's connection; hand it over once both exist.
        let ta = Arc::new(ta);
        let tb = Arc::new(tb);
        let client = client.clock(dyn_clock.clone()).over_transport(Shared(ta.clone()));
        let server = server.clock(dyn_clock).over_transport(Shared(tb.clone()));
        let _ = ta.peer.set(server.downgrade());
        let _ = tb.peer.set(client.downgrade());
        Pair { client, server, clock }
    }

    /// Serves both sides until neither has anything left to do.
    pub fn settle(&self) {
        loop {
            let a = self.client.poll_all().unwrap_or(false);
            let b = self.server.poll_all().unwrap_or(false);
            if !a && !b {
                return;
            }
        }
    }

    /// Moves the virtual clock forward, fires due deadlines on both sides and
    /// settles.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.client.handle_timeout();
        self.server.handle_timeout();
        self.settle();
    }
}

struct Shared(Arc<MemoryTransport>);

impl Transport for Shared {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn wait(&self, want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        self.0.wait(want_write, timeout)
    }
    fn wake(&self) {}
    fn shutdown(&self) {
        self.0.shutdown()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}
