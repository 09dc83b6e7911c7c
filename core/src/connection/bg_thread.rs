//! [`BgServingThread`]: a thread that serves a connection in the background, as
//! RPyC's does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use super::serve::Serve;
use super::state::State;
use super::{Connection, Shared};
use crate::error::{Error, Misuse, Result};

/// One standing server, for as long as it lives (see
/// [`Shared::standing_server_started`]).
pub(super) struct Standing(Arc<Shared>);

impl Standing {
    pub(super) fn new(shared: &Arc<Shared>) -> Standing {
        shared.standing_server_started();
        Standing(shared.clone())
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        self.0.standing_server_stopped();
    }
}

/// Serves a connection from a background thread (RPyC's `BgServingThread`),
/// so events from the peer run while the caller's thread does other things.
///
/// Each event is served as it arrives; there is no polling interval.
/// [`stop`](Self::stop) returns promptly: it wakes the thread rather than
/// waiting for a timeout.
pub struct BgServingThread {
    pub(super) conn: Connection,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<thread::JoinHandle<Result<()>>>,
}

impl BgServingThread {
    /// Starts serving `conn` in a new thread.
    pub fn new(conn: &Connection) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = conn.clone();
        let flag = stop.clone();
        // Counted from now, not from when the thread runs: a future awaited
        // right after `new` returns waits for it.
        let standing = Standing::new(&conn.shared);
        let thread = thread::Builder::new()
            .name("netref-bg-serving".into())
            .spawn(move || {
                let _standing = standing;
                let stopped = |_: &State| flag.load(Ordering::Acquire);
                match worker.shared.serve_until(&stopped, None, Serve::Blocking).map(drop) {
                    Err(Error::Closed(why)) if why.is_orderly() => Ok(()),
                    other => other,
                }
            })
            .expect("spawning a thread");
        BgServingThread { conn: conn.clone(), stop, thread: Some(thread) }
    }

    /// Stops the thread and waits for it; returns how it ended: `Ok` when
    /// stopped or after an [orderly](crate::CloseReason::is_orderly) close, the
    /// error otherwise.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    pub(super) fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        {
            let _st = self.conn.shared.lock();
            self.conn.shared.cond.notify_all();
        }
        self.conn.shared.transport.wake();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(Misuse::ServingThreadPanicked.into())),
            None => Ok(()),
        }
    }
}

impl Drop for BgServingThread {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
