//! Closing a connection whose peer does not read: the close message gets at
//! most a linger of the connection's own clock to leave, and nobody else
//! using the connection waits for it meanwhile.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use netref::{Builder, Clock, Connection, Transport, VirtualClock, WeakConnection};

/// What a wait on the stuck transport does, with the connection it carries.
type OnWait = Box<dyn FnMut(&Connection) + Send>;

/// A transport whose peer never reads: every write would block, so a
/// closing connection always has its close message left to send. Each
/// `wait` counts itself, runs the test's hook, then moves the virtual clock
/// by `advance` (or by the whole timeout when `None`).
struct Stuck {
    waits: Arc<AtomicUsize>,
    clock: Arc<VirtualClock>,
    advance: Option<Duration>,
    conn: Arc<OnceLock<WeakConnection>>,
    on_wait: Mutex<Option<OnWait>>,
}

impl Transport for Stuck {
    fn read(&self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn write(&self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn wait(&self, _want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        self.waits.fetch_add(1, Ordering::SeqCst);
        if let Some(hook) = self.on_wait.lock().unwrap().as_mut() {
            let conn = self.conn.get().and_then(WeakConnection::upgrade).expect("the connection is open");
            hook(&conn);
        }
        self.clock.advance(self.advance.or(timeout).unwrap_or(Duration::ZERO));
        Ok(())
    }
    fn wake(&self) {}
    fn shutdown(&self) {}
    fn describe(&self) -> String {
        "a peer that never reads".into()
    }
}

/// A connection over [`Stuck`]; returns it, its clock and the wait count.
fn stuck(
    advance: Option<Duration>,
    on_wait: Option<OnWait>,
) -> (Connection, Arc<VirtualClock>, Arc<AtomicUsize>) {
    let clock = Arc::new(VirtualClock::new());
    let waits = Arc::new(AtomicUsize::new(0));
    let slot = Arc::new(OnceLock::new());
    let transport = Stuck {
        waits: waits.clone(),
        clock: clock.clone(),
        advance,
        conn: slot.clone(),
        on_wait: Mutex::new(on_wait),
    };
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let conn = Builder::default().clock(dyn_clock).over_transport(transport);
    assert!(slot.set(conn.downgrade()).is_ok(), "set once");
    (conn, clock, waits)
}

#[test]
fn close_lingers_on_the_connections_clock() {
    // Each wait takes a whole virtual second, past any linger: one wait
    // and the close is over. Timed with the wall clock, it looped for
    // 100 ms of real time, thousands of waits.
    let (conn, clock, waits) = stuck(Some(Duration::from_secs(1)), None);
    conn.close();
    assert!(conn.is_closed());
    assert_eq!(waits.load(Ordering::SeqCst), 1, "the close waited past its linger");
    assert_eq!(clock.elapsed(), Duration::from_secs(1));
}

#[test]
fn close_does_not_spin_while_virtual_time_stands_still() {
    // A wait that returns at once and moves nothing (an in-memory peer
    // with nothing to do): waiting again cannot change anything, so the
    // close ends instead of spinning for 100 ms of real time.
    let (conn, clock, waits) = stuck(Some(Duration::ZERO), None);
    conn.close();
    assert!(conn.is_closed());
    assert_eq!(waits.load(Ordering::SeqCst), 1, "the close kept waiting on a clock that does not move");
    assert_eq!(clock.elapsed(), Duration::ZERO);
}

#[test]
fn a_lingering_close_does_not_hold_the_connection() {
    // While the close waits for its message to leave, another thread (an
    // event loop's drive step, a caller) takes the connection's state:
    // it gets it at once instead of waiting out the linger.
    let (tx, rx) = mpsc::channel();
    let probe: OnWait = Box::new(move |conn: &Connection| {
        let (done_tx, done_rx) = mpsc::channel();
        let other = conn.clone();
        let t = std::thread::spawn(move || {
            // Needs the state lock.
            let queued = other.pending_output_len();
            done_tx.send(queued).unwrap();
        });
        // Only a bound for a failing run: the probe either gets the lock
        // now or stays blocked until the close returns.
        let outcome = done_rx.recv_timeout(Duration::from_secs(20));
        let _ = tx.send(outcome.is_ok());
        if outcome.is_ok() {
            t.join().unwrap();
        }
    });
    let (conn, _clock, waits) = stuck(None, Some(probe));
    conn.close();
    assert!(conn.is_closed());
    assert!(waits.load(Ordering::SeqCst) >= 1, "the close lingered");
    assert!(rx.recv().unwrap(), "another thread waited for the lingering close's lock");
}

#[test]
fn new_calls_fail_at_once_during_the_linger() {
    let (tx, rx) = mpsc::channel();
    let probe: OnWait = Box::new(move |conn: &Connection| {
        let other = conn.clone();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || done_tx.send(other.ping().unwrap_err().to_string()).unwrap());
        // A bound for a failing run only, as above.
        let _ = tx.send(done_rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| "blocked".into()));
    });
    let (conn, _clock, _waits) = stuck(None, Some(probe));
    conn.close();
    let err = rx.recv().unwrap();
    assert!(err.contains("closed"), "{err}");
}
