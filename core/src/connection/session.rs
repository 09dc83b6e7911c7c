//! The connection as its proxies and `AsyncResult`s see it: the owner of
//! their handles, submitting calls, and serving while one waits for its reply.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::in_batch;
use super::remote::relay;
use super::serve::Serve;
use super::Shared;
use crate::connection::async_result::{AsyncResult, ReplySource, Slot};
use crate::error::{Error, Result};
use crate::protocol::Call;
use crate::value::object::LocalObject;
use crate::value::remote::{ProxyOwner, RemoteObject};

impl ProxyOwner for Shared {
    fn retain_handle(&self) {
        self.retain();
    }
    fn release_handle(&self) {
        self.release();
    }
    fn release_queued(&self) {
        if !self.ring_loop() {
            // Wakes a driver blocked in `wait`; with none, the release leaves
            // with the next output.
            self.transport.wake();
        }
    }
    fn relay(&self, proxy: &RemoteObject) -> LocalObject {
        relay(proxy)
    }
}

impl ReplySource for Shared {
    fn poll(&self) {
        // An attached connection is the loop's to serve: serving it here,
        // outside the loop's dispatch, would run the peer's requests where
        // loop-bound callbacks cannot reach what they need (calloop's data).
        if self.lock().loop_thread.is_some() {
            return;
        }
        let _ = self.serve_until(&|_| false, None, Serve::Ready);
    }

    fn wait_for(&self, slot: &Arc<Slot>) -> Result<()> {
        if !slot.is_settled() {
            super::driver::check_may_wait()?;
        }
        match self.serve_until(&|_| slot.is_settled(), None, Serve::Blocking).map(drop) {
            // A closed connection has already settled the slot with the error.
            Err(Error::Closed(_) | Error::Io(..)) if slot.is_settled() => Ok(()),
            Err(e) if slot.is_settled() => {
                let _ = e;
                Ok(())
            }
            other => other,
        }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn is_served(&self) -> bool {
        self.standing.load(Ordering::SeqCst) > 0 || super::tasks::polling_call_of(self)
    }

    fn set_deadline(&self, seq: u64, deadline: Instant) {
        let st = &mut *self.lock();
        st.proto.set_deadline(seq, Some(deadline));
        self.wake_driver(st);
        self.notify(st);
    }
}

impl Shared {
    /// Sends `call` (expiring after `timeout`): `coalesce` for an
    /// asynchronous call, which may wait to leave with the ones made after
    /// it ([`Config::coalesce`](crate::Config::coalesce)); a synchronous
    /// one leaves at once.
    pub(super) fn submit(&self, call: Call, timeout: Option<Duration>, coalesce: bool) -> AsyncResult {
        let now = self.clock.now();
        let expiry = timeout.map(|d| (now + d, d));
        let mut after = Vec::new();
        let slot = {
            let mut st = self.lock();
            if let Some(why) = &st.closed {
                return AsyncResult::failed(Error::Closed(why.clone()));
            }
            let place = call.result_place();
            let seq = match st.proto.send_request(call, expiry.map(|e| e.0)) {
                Ok(seq) => seq,
                Err(e) => return AsyncResult::failed(e),
            };
            let slot = Slot::new(seq, expiry, place);
            st.slots.insert(seq, slot.clone());
            let hold = in_batch() || (coalesce && self.config.coalesce.is_some());
            let held = self.send_or_hold(&mut st, &mut after, hold);
            // A driver asleep in the transport's wait must learn of a new
            // deadline even when the request itself is held back.
            if (!held && self.wants_write(&st)) || expiry.is_some() {
                self.wake_driver(&st);
            }
            self.charge(&st, &mut after);
            slot
        };
        self.finish(after);
        AsyncResult::new(slot, self.arc())
    }
}
