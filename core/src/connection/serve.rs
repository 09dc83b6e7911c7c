//! Serving: the loop every synchronous call, `serve`, `poll_all` and the
//! serving threads run.

use std::io;
use std::thread::{self, ThreadId};
use std::time::Instant;

use super::batch::in_batch;
use super::read::READ_PASS_MAX;
use super::state::{After, AfterBuf, State, StateGuard};
use super::Shared;
use crate::error::{Error, Misuse, Result};
use crate::protocol::Input;

/// How far one call of [`Shared::serve_until`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Serve {
    /// Until `done` holds, the deadline passes or the connection closes,
    /// waiting on the transport meanwhile.
    Blocking,
    /// Everything ready now, without waiting: every queued request and
    /// every byte the transport has (`poll_all`).
    Ready,
    /// One event-loop step's share, without waiting: at most
    /// [`STEP_REQUESTS`] requests and one read of at most
    /// [`STEP_READ_MAX`] bytes, so one busy connection cannot starve the
    /// others on its loop. It returns whether work is left, for the loop
    /// to come back to once the others had their turn.
    Step,
}

/// Most requests one event-loop step serves. Each costs at least a
/// dispatch and a reply; 256 keep a step around a millisecond for small
/// calls, and the loop's own cost per step (one wait and re-arm) small
/// beside them.
pub(super) const STEP_REQUESTS: usize = 256;

/// Most bytes one event-loop step reads. Decoding them all happens at
/// once, before anything is served: 256 KiB of the smallest requests
/// decode in a few milliseconds, where the 4 MiB a thread reads at a time
/// took tens.
pub(super) const STEP_READ_MAX: usize = 256 << 10;

/// What one call of [`Shared::serve_loop`] keeps from turn to turn.
struct Pass {
    me: ThreadId,
    how: Serve,
    /// Requests this step may still serve (`usize::MAX` when unbounded).
    budget: usize,
    /// Work was left for the next step (a request queued, bytes unread).
    more: bool,
    /// A non-blocking serve drove the transport and read all there was.
    drove_once: bool,
    /// The protocol offered its buffer for the next read.
    lend_next: bool,
    /// Requests still to run once what the loop waited for has happened
    /// (see [`Shared::serve_leftover`]).
    leftovers: Option<usize>,
    /// Work to run with the lock released.
    after: AfterBuf,
}

pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Shared {
    /// Writes output until the transport would block; a write error ends the
    /// connection.
    pub(super) fn flush_locked(&self, st: &mut State, after: &mut Vec<After>) {
        self.write_pending(st);
        self.process_events(st, after);
        self.charge(st, after);
    }

    /// Fires the deadlines that passed by `now`.
    pub(super) fn timeouts_locked(&self, st: &mut State, after: &mut Vec<After>, now: Instant) {
        if st.proto.poll_timeout().is_some_and(|t| t <= now) {
            let _ = st.proto.handle_input(now, Input::Timeout);
            self.process_events(st, after);
        }
    }

    /// The serving loop behind every wait: dispatch queued requests, drive the
    /// transport when nobody else does, otherwise sleep until woken. Returns
    /// when `done` holds, the deadline passes, or (when not
    /// [`Serve::Blocking`]) nothing more is ready, or (with [`Serve::Step`])
    /// its share is spent.
    /// `Ok(true)`: a step left work for the next one.
    ///
    /// Output this thread held back leaves before it waits, and when it
    /// returns (unless it is inside a [`batch`]). Serving a run of requests
    /// writes the held replies itself when it takes the last one; the
    /// write on return is for a run that ends otherwise (another thread
    /// queued more requests behind the last one this thread took).
    pub(super) fn serve_until(
        &self,
        done: &dyn Fn(&State) -> bool,
        deadline: Option<Instant>,
        how: Serve,
    ) -> Result<bool> {
        if Self::thread_holds() {
            Self::write_held();
        }
        let result = self.serve_loop(done, deadline, how);
        if Self::thread_holds() && !in_batch() {
            Self::write_held();
        }
        result
    }

    /// The loop of [`serve_until`](Self::serve_until), one turn at a time:
    ///
    /// 1. `done` holds: run the requests that arrived with it, then return
    ///    ([`serve_leftover`](Self::serve_leftover));
    /// 2. poll an asynchronous call that woke, or run a queued request,
    ///    when this thread may;
    /// 3. return on close or past the deadline;
    /// 4. fire due timeouts ([`fire_timeouts`](Self::fire_timeouts));
    /// 5. write output this thread held back before sleeping on anything;
    /// 6. drive the transport ([`drive`](Self::drive): wait on it without
    ///    the lock, read, feed the protocol, dispatch what arrived, flush),
    ///    or, when another thread drives it, sleep until woken.
    pub(super) fn serve_loop(
        &self,
        done: &dyn Fn(&State) -> bool,
        deadline: Option<Instant>,
        how: Serve,
    ) -> Result<bool> {
        let block = how == Serve::Blocking;
        let mut pass = Pass {
            me: thread::current().id(),
            how,
            budget: if how == Serve::Step { STEP_REQUESTS } else { usize::MAX },
            more: false,
            drove_once: false,
            lend_next: false,
            leftovers: None,
            after: AfterBuf::take(),
        };
        let mut st = self.lock();
        loop {
            if done(&st) {
                match self.serve_leftover(st, &mut pass) {
                    Some(again) => {
                        st = again;
                        continue;
                    }
                    None => return Ok(false),
                }
            }
            let may_serve = Self::may_serve(&st, pass.me);
            if may_serve {
                if pass.budget == 0 {
                    // A step's share is spent: the rest waits for the next
                    // step, and nothing more is read meanwhile. Bytes a
                    // cut-short read left in the socket count as work too,
                    // and so does a socket this step never read: the loop
                    // stepped it for an edge this step consumed, and an
                    // edge-triggered loop gets no other for those bytes.
                    pass.more |= !st.inbox.is_empty() || self.woken.any() || !pass.drove_once;
                    let now = self.clock.now();
                    let _ = self.fire_timeouts(st, &mut pass.after, now);
                    return Ok(pass.more);
                }
                // Asynchronous calls that woke first: they came before
                // anything still in the inbox.
                let mut served;
                (st, served) = self.serve_woken(st);
                if !served {
                    (st, served) = self.serve_next(st);
                }
                if served {
                    pass.budget -= 1;
                    continue;
                }
            }
            if let Some(why) = &st.closed {
                return Err(Error::Closed(why.clone()));
            }
            let now = self.clock.now();
            if deadline.is_some_and(|d| now >= d) {
                self.hand_leftovers_to_loop(&st);
                return Ok(false);
            }
            let fired;
            (st, fired) = self.fire_timeouts(st, &mut pass.after, now);
            if fired {
                continue;
            }
            if !block && pass.drove_once {
                return Ok(pass.more);
            }
            if block && Self::thread_holds() {
                // Never sleep on output held back: the peer may need it to
                // answer what this thread waits for.
                drop(st);
                Self::write_held();
                st = self.lock();
                continue;
            }
            let can_drive = may_serve && st.driver.is_none_or(|(t, _)| t == pass.me);
            if !can_drive {
                if !block {
                    return Ok(false);
                }
                let wait =
                    earliest(deadline, st.proto.poll_timeout()).map(|t| t.saturating_duration_since(now));
                st = st.wait(wait);
                continue;
            }
            let waited;
            (st, waited) = self.drive(st, &mut pass, block.then_some((deadline, now)));
            if let Err(e) = waited {
                if e.kind() == io::ErrorKind::WouldBlock {
                    // An in-memory pair found nothing that could ever progress.
                    return Err(Misuse::WaitsForever { detail: e.to_string() }.into());
                }
            }
        }
    }

    /// Step 1 of [`serve_loop`](Self::serve_loop): what it waited for has
    /// happened. Requests read along with it run before it returns, as they
    /// would if messages were handled one by one: a reply must not overtake
    /// a callback the peer sent before it. Only those queued now, so a
    /// steady stream of new requests cannot keep the caller from returning.
    /// `Some`: one ran, turn again; `None`: return.
    fn serve_leftover<'a>(&'a self, st: StateGuard<'a>, pass: &mut Pass) -> Option<StateGuard<'a>> {
        let budget = pass.leftovers.get_or_insert(st.inbox.len());
        if *budget > 0 && Self::may_serve(&st, pass.me) {
            let (st, served) = self.serve_next(st);
            if served {
                *budget -= 1;
                return Some(st);
            }
            self.hand_leftovers_to_loop(&st);
            return None;
        }
        self.hand_leftovers_to_loop(&st);
        None
    }

    /// Step 4: fires the deadlines that passed by `now` and runs what that
    /// completed, with the lock released; whether it completed anything.
    fn fire_timeouts<'a>(
        &'a self,
        mut st: StateGuard<'a>,
        after: &mut Vec<After>,
        now: Instant,
    ) -> (StateGuard<'a>, bool) {
        self.timeouts_locked(&mut st, after, now);
        let fired = !after.is_empty();
        (self.run_after(st, after), fired)
    }

    /// Step 6: this thread drives the transport. Flushes, waits on the
    /// transport without the lock (when `blocking`, until its deadline,
    /// the protocol's next one, or something happens), reads what
    /// arrived and feeds it to the protocol, then dispatches it and
    /// flushes the replies that made.
    fn drive<'a>(
        &'a self,
        mut st: StateGuard<'a>,
        pass: &mut Pass,
        blocking: Option<(Option<Instant>, Instant)>,
    ) -> (StateGuard<'a>, io::Result<()>) {
        st.driver = Some(match st.driver {
            Some((t, depth)) => (t, depth + 1),
            None => (pass.me, 1),
        });
        self.flush_locked(&mut st, &mut pass.after);
        let want_write = self.wants_write(&st);
        let wait = blocking.map(|(deadline, now)| {
            earliest(deadline, st.proto.poll_timeout()).map(|t| t.saturating_duration_since(now))
        });
        drop(st);
        self.finish_all(&mut pass.after);
        let waited = match wait {
            Some(timeout) => self.transport.wait(want_write, timeout),
            None => Ok(()),
        };
        let read_max = if pass.how == Serve::Step { STEP_READ_MAX } else { READ_PASS_MAX };
        let (mut st, more) = self.read_and_feed(pass.lend_next, read_max);
        pass.lend_next = st.proto.lends_input_buffer();
        st.driver = match st.driver {
            Some((t, depth)) if depth > 1 => Some((t, depth - 1)),
            _ => None,
        };
        // A pass cut short left data in the socket, and an edge-triggered
        // loop gets no new edge for it: `poll_all` reads again at once; a
        // loop's step reads once and says so, so the loop steps it again
        // after the other connections had their turn.
        if pass.how == Serve::Step {
            pass.drove_once = true;
            pass.more |= more;
        } else {
            pass.drove_once = !more;
        }
        // Objects the peer released die before anything else leaves: the
        // connection answers pings at once, and a reply overtaking the drop
        // would let the peer observe a released object still alive.
        self.process_events(&mut st, &mut pass.after);
        self.notify(&st);
        st = self.run_after(st, &mut pass.after);
        self.flush_locked(&mut st, &mut pass.after);
        (self.run_after(st, &mut pass.after), waited)
    }

    /// Reads what the transport has (at most `max` bytes), with no lock
    /// held, into the buffer
    /// the protocol lends for a large byte string (when `lend`, checked when
    /// the last read was fed, to spare small messages a lock round trip) or
    /// into the thread's buffer, and feeds it to the protocol. Returns the
    /// lock, and whether more may be waiting (the read was cut short).
    fn read_and_feed(&self, lend: bool, max: usize) -> (StateGuard<'_>, bool) {
        let mut more = false;
        let lent = if lend { self.lock().proto.input_buffer() } else { None };
        let st = match lent {
            Some(input) => self.read_lent(input, max, &mut more),
            None => self.read_available(max, |read| {
                let mut st = self.lock();
                match read {
                    Ok((bytes, eof, cut_short)) => {
                        more = cut_short;
                        if !bytes.is_empty() {
                            let _ = st.proto.handle_input(self.clock.now(), Input::Receive(bytes));
                        }
                        if eof {
                            // The end of the stream does not depend on the time.
                            let _ = st.proto.handle_input(self.clock.now(), Input::Eof);
                        }
                    }
                    Err(e) => {
                        let _ = st.proto.handle_input(self.clock.now(), Input::Failed(e));
                    }
                }
                st
            }),
        };
        (st, more)
    }

    /// Runs the work the last step queued (callbacks, completions, released
    /// objects' drops) with the lock released, and takes the lock again.
    fn run_after<'a>(&'a self, st: StateGuard<'a>, after: &mut Vec<After>) -> StateGuard<'a> {
        if after.is_empty() {
            return st;
        }
        drop(st);
        self.finish_all(after);
        self.lock()
    }

    /// Serves the next queued request, if there is one: takes it, runs it
    /// with the lock released, and returns the lock again with whether it
    /// served one.
    pub(super) fn serve_next<'a>(&'a self, mut st: StateGuard<'a>) -> (StateGuard<'a>, bool) {
        let Some((seq, request)) = st.inbox.pop() else {
            return (st, false);
        };
        let hold = self.hold_reply(&st);
        drop(st);
        self.dispatch(seq, request, hold);
        (self.lock(), true)
    }

    /// Whether the reply to the request just taken from the inbox may be
    /// held back: in a [`batch`], or under [`Config::batch_replies`] or
    /// [`Config::coalesce`] while requests that arrived with it wait behind
    /// it (the reply to the last of them writes them all; with `coalesce`,
    /// the flusher bounds the wait).
    pub(super) fn hold_reply(&self, st: &State) -> bool {
        in_batch() || ((self.config.batch_replies || self.config.coalesce.is_some()) && !st.inbox.is_empty())
    }
}
