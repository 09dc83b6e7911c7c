//! Deadlines as data: the earliest one for the driver's timer, and what fires
//! when one passes (expiry, the handshake, a frame's arrival, the idle
//! timeout).

use std::time::Instant;

use super::{Event, Phase, Protocol};
use crate::error::{CloseReason, LimitError, ProtocolError};
use crate::wire::{Message, WireRequest};

impl Protocol {
    /// Instant of the next deadline: a request's expiry, the hello's, the
    /// end of a partial frame's, or the idle timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let idle = self.config.idle_timeout.map(|d| self.last_input + d);
        let expiry = self.deadlines.first().map(|(t, _)| t);
        let handshake = self.handshake_deadline();
        let frame = self.frame_deadline();
        [idle, expiry, handshake, frame].into_iter().flatten().min()
    }

    /// When the frame that has begun to arrive must be whole by.
    fn frame_deadline(&self) -> Option<Instant> {
        Some(self.frame_started? + self.config.frame_timeout?)
    }

    /// When the peer's hello must have arrived by, while it has not.
    fn handshake_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::ExpectHello => self.config.handshake_timeout.map(|d| self.opened + d),
            _ => None,
        }
    }

    /// See [`Input::Timeout`](super::Input::Timeout).
    pub(super) fn timeout(&mut self, now: Instant) {
        if self.handshake_deadline().is_some_and(|t| now >= t) {
            let limit = self.config.handshake_timeout.expect("a deadline");
            self.fail(CloseReason::Protocol(ProtocolError::Handshake(format!(
                "the peer's hello did not arrive within {limit:?} (handshake_timeout)"
            ))));
            return;
        }
        if self.frame_deadline().is_some_and(|t| now >= t) {
            let timeout = self.config.frame_timeout.expect("a deadline");
            let received = self.partial_frame_len().unwrap_or(0);
            self.fail(CloseReason::from_fault(LimitError::FrameTimedOut { received, timeout }.into()));
            return;
        }
        self.expire_due(now);
        if let Some(idle) = self.config.idle_timeout {
            if self.phase != Phase::Closed && now >= self.last_input + idle {
                let bye = Message::Request { seq: 0, request: WireRequest::Close("idle timeout".into()) };
                let _ = self.send(bye);
                self.fail(CloseReason::IdleTimeout(idle));
            }
        }
    }

    /// Fires the deadlines that passed by `now`. Called before input too,
    /// so a reply read after its deadline passed is dropped, as RPyC drops
    /// a reply to an expired result, instead of depending on whether the
    /// driver fired its timer before or after reading.
    pub(super) fn expire_due(&mut self, now: Instant) {
        loop {
            let pending = &self.pending;
            let Some(seq) = self.deadlines.pop_due(now, |t, s| pending.get(&s) == Some(&Some(t))) else {
                break;
            };
            self.pending.remove(&seq);
            self.expired.insert(seq);
            self.events.push_back(Event::Expired { seq });
            let _ = self.send(Message::Request { seq: 0, request: WireRequest::Cancel(seq) });
        }
    }

    // ---- commands ------------------------------------------------------------

    /// Changes (or removes) the deadline of a request still awaiting its reply.
    pub fn set_deadline(&mut self, seq: u64, deadline: Option<Instant>) {
        let Some(slot) = self.pending.get_mut(&seq) else { return };
        if *slot == deadline {
            return;
        }
        let old = std::mem::replace(slot, deadline);
        let pending = &self.pending;
        let live = |t, s| pending.get(&s) == Some(&Some(t));
        if let Some(old) = old {
            self.deadlines.remove(old, seq, live);
        }
        if let Some(t) = deadline {
            self.deadlines.insert(t, seq, pending.len(), live);
        }
    }
}
