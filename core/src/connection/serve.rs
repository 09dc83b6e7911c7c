//! Serving: the loop every synchronous call, `serve`, `poll_all` and the
//! serving threads run.

use std::time::Instant;
use std::{io, thread};

use super::batch::in_batch;
use super::state::{After, AfterBuf, State, StateGuard};
use super::Shared;
use crate::error::{Error, Misuse, Result};

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
    }

    /// Fires the deadlines that passed by `now`.
    pub(super) fn timeouts_locked(&self, st: &mut State, after: &mut Vec<After>, now: Instant) {
        if st.proto.poll_timeout().is_some_and(|t| t <= now) {
            st.proto.handle_timeout(now);
            self.process_events(st, after);
        }
    }

    /// The serving loop behind every wait: dispatch queued requests, drive the
    /// transport when nobody else does, otherwise sleep until woken. Returns
    /// when `done` holds, the deadline passes, or (when `block` is false)
    /// nothing more is ready.
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
        block: bool,
    ) -> Result<()> {
        if Self::thread_holds() {
            Self::write_held();
        }
        let result = self.serve_loop(done, deadline, block);
        if Self::thread_holds() && !in_batch() {
            Self::write_held();
        }
        result
    }

    /// The loop of [`serve_until`](Self::serve_until).
    pub(super) fn serve_loop(
        &self,
        done: &dyn Fn(&State) -> bool,
        deadline: Option<Instant>,
        block: bool,
    ) -> Result<()> {
        let me = thread::current().id();
        let mut drove_once = false;
        let mut lend_next = false;
        let mut leftovers: Option<usize> = None;
        let mut after = AfterBuf::take();
        let mut st = self.lock();
        loop {
            if done(&st) {
                // Requests read along with what we waited for run before we
                // return, as they would if messages were handled one by one:
                // a reply must not overtake a callback the peer sent before
                // it. Only those queued now, so a steady stream of new
                // requests cannot keep the caller from returning.
                let budget = leftovers.get_or_insert(st.inbox.len());
                if *budget > 0 && Self::may_serve(&st, me) {
                    let served;
                    (st, served) = self.serve_next(st);
                    if served {
                        *budget -= 1;
                        continue;
                    }
                }
                self.hand_leftovers_to_loop(&st);
                return Ok(());
            }
            let may_serve = Self::may_serve(&st, me);
            if may_serve {
                let served;
                (st, served) = self.serve_next(st);
                if served {
                    continue;
                }
            }
            if let Some(why) = &st.closed {
                return Err(Error::Closed(why.clone()));
            }
            let now = self.clock.now();
            if deadline.is_some_and(|d| now >= d) {
                self.hand_leftovers_to_loop(&st);
                return Ok(());
            }
            self.timeouts_locked(&mut st, &mut after, now);
            if !after.is_empty() {
                drop(st);
                self.finish_all(&mut after);
                st = self.lock();
                continue;
            }
            if !block && drove_once {
                return Ok(());
            }
            if block && Self::thread_holds() {
                // Never sleep on output held back: the peer may need it to
                // answer what this thread waits for.
                drop(st);
                Self::write_held();
                st = self.lock();
                continue;
            }
            let can_drive = may_serve && st.driver.is_none_or(|(t, _)| t == me);
            if !can_drive {
                if !block {
                    return Ok(());
                }
                let wait =
                    earliest(deadline, st.proto.poll_timeout()).map(|t| t.saturating_duration_since(now));
                st = match wait {
                    Some(d) => st.wait(Some(d)),
                    None => st.wait(None),
                };
                continue;
            }
            // Drive: wait on the transport without the lock, then read.
            st.driver = Some(match st.driver {
                Some((t, depth)) => (t, depth + 1),
                None => (me, 1),
            });
            self.flush_locked(&mut st, &mut after);
            let want_write = st.proto.wants_write();
            let wait = if block {
                Some(earliest(deadline, st.proto.poll_timeout()).map(|t| t.saturating_duration_since(now)))
            } else {
                None
            };
            drop(st);
            self.finish_all(&mut after);
            let waited = match wait {
                Some(timeout) => self.transport.wait(want_write, timeout),
                None => Ok(()),
            };
            // Read without the lock, then lock and feed what arrived.
            let mut more = false;
            // Checked when the last read was fed, to spare small messages
            // a lock round trip.
            let lent = if lend_next { self.lock().proto.take_input_buffer() } else { None };
            st = match lent {
                // A large byte string arriving: straight into its buffer.
                Some(input) => self.read_lent(input, &mut more),
                None => self.read_available(|read| {
                    let mut st = self.lock();
                    match read {
                        Ok((bytes, eof, cut_short)) => {
                            more = cut_short;
                            if !bytes.is_empty() {
                                let _ = st.proto.handle_bytes(bytes, self.clock.now());
                            }
                            if eof {
                                st.proto.handle_eof();
                            }
                        }
                        Err(e) => st.proto.handle_transport_error(e),
                    }
                    st
                }),
            };
            lend_next = st.proto.lends_input_buffer();

            st.driver = match st.driver {
                Some((t, depth)) if depth > 1 => Some((t, depth - 1)),
                _ => None,
            };
            // A pass cut short at READ_PASS_MAX left data in the socket: a
            // non-blocking poll reads again (an edge-triggered loop would
            // get no new edge for it).
            drove_once = !more;
            // Objects the peer released die before anything else leaves:
            // the protocol answers pings inline, and a reply overtaking the
            // drop would let the peer observe a released object still alive.
            self.process_events(&mut st, &mut after);
            self.notify(&st);
            if !after.is_empty() {
                drop(st);
                self.finish_all(&mut after);
                st = self.lock();
            }
            self.flush_locked(&mut st, &mut after);
            if !after.is_empty() {
                drop(st);
                self.finish_all(&mut after);
                st = self.lock();
            }
            if let Err(e) = waited {
                if e.kind() == io::ErrorKind::WouldBlock {
                    // An in-memory pair found nothing that could ever progress.
                    return Err(Misuse::WaitsForever { detail: e.to_string() }.into());
                }
            }
        }
    }

    /// Serves the next queued request, if there is one: takes it, runs it
    /// with the lock released, and returns the lock again with whether it
    /// served one.
    pub(super) fn serve_next<'a>(&'a self, mut st: StateGuard<'a>) -> (StateGuard<'a>, bool) {
        let Some((seq, request)) = st.inbox.pop_front() else {
            return (st, false);
        };
        let hold = self.hold_reply(&st);
        drop(st);
        self.dispatch(seq, request, hold);
        (self.lock(), true)
    }

    /// Whether the reply to the request just taken from the inbox may be
    /// held back: in a [`batch`], or under [`Config::batch_replies`] while
    /// requests that arrived with it wait behind it (the reply to the last
    /// of them writes them all).
    pub(super) fn hold_reply(&self, st: &State) -> bool {
        in_batch() || (self.config.batch_replies && !st.inbox.is_empty())
    }
}
