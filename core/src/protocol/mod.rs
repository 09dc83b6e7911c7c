//! The sans-IO protocol state machine: bytes in, events out.
//!
//! [`Protocol`] owns everything one side of a connection knows: the handshake
//! state, sequence numbers, the table of requests awaiting replies (with
//! deadlines), the objects exported to the peer and the proxies imported from
//! it. It never touches a socket, a thread or a clock: bytes and the current
//! time are arguments, and output accumulates in a buffer the caller drains.
//!
//! # One I/O surface
//!
//! The protocol's I/O follows one model, str0m's: everything that reaches it
//! goes in through [`handle_input`](Protocol::handle_input) as an
//! [`Input`], and the driver takes what comes out by polling. After creating
//! a protocol, and after *every* input:
//!
//! 1. Hand it what happened: bytes received ([`Input::Receive`], any split),
//!    the end of the stream ([`Input::Eof`]), a transport error
//!    ([`Input::Failed`]), or, when the clock passes
//!    [`poll_timeout`](Protocol::poll_timeout), [`Input::Timeout`].
//! 2. Take every [`Event`] from [`poll_event`](Protocol::poll_event); answer
//!    each [`Event::Request`] with [`send_reply`](Protocol::send_reply) (now
//!    or later, in any order). Every kind of request is the driver's to
//!    answer, the root request and pings included.
//! 3. Write the output with [`write_to`](Protocol::write_to) (vectored; a
//!    stream's output is bytes, not str0m's datagrams) while
//!    [`wants_write`](Protocol::wants_write).
//!
//! Calls ([`send_request`](Protocol::send_request)) may be made at any time;
//! they only add output. To receive a large byte string with no copy, a
//! driver may read into the buffer [`input_buffer`](Protocol::input_buffer)
//! lends and hand it back as [`Input::Filled`].
//!
//! The protocol knows objects by id: [`Call`]s name their targets by id,
//! and the proxies it makes are handles (an id and the connection behind
//! them) whose calls belong to the connection layer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use rustc_hash::FxBuildHasher;

use crate::config::{Config, Dialect};
use crate::error::{CloseReason, Error, LimitError, RemoteError, Result};
use crate::value::object::LocalObject;
use crate::value::remote::{ProxyOwner, ReleaseQueue};
use crate::value::Value;
use crate::wire::{self, Message, WireRequest};

// One concern a file; the `Protocol` type and its commands stay here, and
// each step is an `impl Protocol` block of its own.
mod deadline_queue; // the requests' deadlines, earliest first, O(1) in the common case
mod deadlines; // the earliest deadline, and what fires when one passes
mod events; // Event, Request, Call, Phase
mod input; // bytes in, frames decoded, the greeting checked
mod messages; // one decoded message handled
mod objects; // export and import tables; values carrying object references
mod output; // the frames queued for the peer
mod queue; // the events waiting for the driver
mod rpyc; // the second dialect: RPyC 6's frames and messages mapped onto ours

#[cfg(test)]
mod deadline_tests;

pub use events::{Call, Event, Phase, Request};
pub use input::Input;
use objects::{Export, Import};

static NEXT_PROTOCOL_ID: AtomicU64 = AtomicU64::new(1);

/// One side of a netref connection, without I/O: str0m's model, one
/// [`Input`] in through [`handle_input`](Self::handle_input), events,
/// timeouts and bytes polled out. See the module docs for the call order.
pub struct Protocol {
    id: u64,
    /// Shared with the connection (and the builder's other connections).
    config: Arc<Config>,
    phase: Phase,
    decoder: wire::FrameDecoder,
    /// A frame with a large byte string being received, instead of
    /// `decoder` (which is then empty).
    /// Boxed: rare, and every connection would carry its size.
    large: Option<Box<wire::LargeString>>,
    /// `large`'s buffer is lent out (see [`Protocol::input_buffer`]).
    lent: bool,
    /// The start of the peer's stream, kept until its hello, to explain a
    /// peer that is not a netref peer.
    first_bytes: Vec<u8>,
    out: wire::Output,
    /// Spare buffers for large byte strings, shared with the connections
    /// of the same builder.
    pool: wire::BufferPool,
    next_seq: u64,
    /// Keyed by this side's own sequence numbers, which the peer can look
    /// up but never choose: they need no defence against collisions, and
    /// SipHash (a few percent of a synchronous call's user-space time)
    /// buys nothing. Likewise `expired` and `Connection`'s result slots.
    pending: HashMap<u64, Option<Instant>, FxBuildHasher>,
    deadlines: deadline_queue::DeadlineQueue,
    /// Deadline entries looked at while taking answered requests off
    /// `deadlines` (the tests check that a reply costs no scan).
    #[cfg(test)]
    deadline_visits: u64,
    expired: HashSet<u64, FxBuildHasher>,
    /// Keyed by ids this side hands out (and `export_ids` by addresses):
    /// the peer only looks them up, never chooses a key, so like `pending`
    /// they need no defence against collisions. `imports` is keyed by the
    /// peer's ids and keeps std's SipHash.
    exports: HashMap<u64, Export, FxBuildHasher>,
    /// Export ids by [`Export::key`].
    export_ids: HashMap<usize, u64, FxBuildHasher>,
    next_export: u64,
    imports: HashMap<u64, Import>,
    releases: Arc<ReleaseQueue>,
    events: queue::EventQueue,
    /// The connection the proxies it makes report to, if one drives it.
    owner: Option<Weak<dyn ProxyOwner>>,
    /// Objects no longer exported, kept until the driver takes them so that
    /// user code in their `Drop` never runs inside the driver's lock.
    released: Vec<LocalObject>,
    last_input: Instant,
    /// When the first bytes of the frame still partial arrived: the whole
    /// frame is due `frame_timeout` later, so a peer that dribbles a frame
    /// cannot hold the connection open by seeming busy.
    frame_started: Option<Instant>,
    /// The items counted so far in the frame still partial in `decoder`,
    /// and where its count resumes (see [`Protocol::count_partial`]).
    partial_items: (usize, usize),
    /// When the protocol was made: the handshake's deadline counts from it.
    opened: Instant,
    /// Why it ended, once it has.
    closed: Option<CloseReason>,
    /// What this side speaks: netref's dialect, RPyC's (these tables), or,
    /// until the peer's first bytes tell, either.
    rpyc: Option<Box<rpyc::RpycTables>>,
    undecided: bool,
}

impl Protocol {
    /// A protocol enforcing `config`. Queues the hello. Its spare buffers
    /// for large byte strings are its own, placed the default way (see
    /// [`with_pool`](Self::with_pool)).
    pub fn new(config: Config, now: Instant) -> Self {
        Self::with_pool(config, now, wire::BufferPool::new())
    }

    /// Like [`new`](Self::new), with spare buffers from `pool` and its
    /// [`Placement`](wire::Placement): with [`Placement::InPlace`](wire::Placement::InPlace)
    /// the protocol is deterministic (the same bytes and times in give the
    /// same bytes, events and lending out).
    pub fn with_pool(config: Config, now: Instant, pool: wire::BufferPool) -> Self {
        Self::with_owner(Arc::new(config), now, None, pool)
    }

    /// Like [`with_pool`](Self::with_pool), with the connection that the
    /// proxies this protocol makes belong to (their calls go through it).
    pub(crate) fn with_owner(
        config: Arc<Config>,
        now: Instant,
        owner: Option<Weak<dyn ProxyOwner>>,
        pool: wire::BufferPool,
    ) -> Self {
        let mut p = Protocol {
            id: NEXT_PROTOCOL_ID.fetch_add(1, Ordering::Relaxed),
            config,
            phase: Phase::ExpectHello,
            decoder: wire::FrameDecoder::new(),
            large: None,
            lent: false,
            first_bytes: Vec::new(),
            out: wire::Output::new(pool.clone()),
            pool,
            next_seq: 1,
            pending: HashMap::default(),
            deadlines: deadline_queue::DeadlineQueue::default(),
            #[cfg(test)]
            deadline_visits: 0,
            expired: HashSet::default(),
            exports: HashMap::default(),
            export_ids: HashMap::default(),
            next_export: 1,
            imports: HashMap::new(),
            releases: Arc::new(ReleaseQueue::default()),
            events: queue::EventQueue::default(),
            owner,
            released: Vec::new(),
            last_input: now,
            frame_started: None,
            partial_items: (0, 0),
            opened: now,
            closed: None,
            rpyc: None,
            undecided: false,
        };
        match p.config.dialect {
            Dialect::Netref => p.queue_hello(),
            Dialect::Rpyc => p.speak_rpyc(),
            // Nothing is said until the peer's first bytes tell which.
            Dialect::Either => p.undecided = true,
        }
        p
    }

    fn queue_hello(&mut self) {
        let hello = Message::Hello { version: wire::VERSION, features: wire::FEATURES };
        self.out.push_frame(hello.into_cbor(), usize::MAX).expect("hello encodes");
    }

    /// RPyC has no greeting: the connection is open at once.
    fn speak_rpyc(&mut self) {
        self.rpyc = Some(Box::default());
        self.decoder = wire::rpyc::frame_decoder();
        self.phase = Phase::Open;
    }

    /// The connection's lifecycle phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// The limits this protocol enforces.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Requests awaiting replies.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Local objects the peer holds references to.
    pub fn exported_count(&self) -> usize {
        self.exports.len()
    }

    /// Peer objects this side holds proxies for (including ones whose release
    /// is not yet sent).
    pub fn imported_count(&self) -> usize {
        self.imports.len()
    }

    // ---- input -------------------------------------------------------------

    /// Sends a request; the reply comes as an [`Event::Reply`] with the
    /// returned sequence number, or an [`Event::Expired`] after `deadline`.
    pub fn send_request(&mut self, call: Call, deadline: Option<Instant>) -> Result<u64> {
        if self.phase == Phase::Closed {
            return Err(Error::Closed(self.closed.clone().unwrap_or(CloseReason::ByThisSide)));
        }
        if self.pending.len() >= self.config.max_pending {
            return Err(LimitError::TooManyPending { max: self.config.max_pending }.into());
        }
        let queued = self.out.len();
        if queued > self.config.max_output_buffer {
            return Err(LimitError::OutputBufferFull { queued, max: self.config.max_output_buffer }.into());
        }
        self.flush_releases();
        let seq = self.next_seq;
        let mut exported = Vec::new();
        // The call is taken apart: its arguments move into the message.
        let request = match call {
            Call::Root => WireRequest::Root,
            Call::Call { target, args } => {
                WireRequest::Call { target, args: self.encode_args(args, &mut exported)? }
            }
            Call::CallMethod { target, name, args } => {
                WireRequest::CallMethod { target, name, args: self.encode_args(args, &mut exported)? }
            }
            Call::GetAttr { target, name } => WireRequest::GetAttr { target, name },
            Call::Dir { target } => WireRequest::Dir { target },
            Call::Ping(v) => WireRequest::Ping(self.encode_value(v, &mut exported)?),
        };
        self.send_exporting(Message::Request { seq, request }, exported)?;
        self.next_seq += 1;
        self.pending.insert(seq, deadline);
        if let Some(t) = deadline {
            let pending = &self.pending;
            self.deadlines.insert(t, seq, pending.len(), |t, s| pending.get(&s) == Some(&Some(t)));
        }
        Ok(seq)
    }

    /// Answers the peer's request `seq`. A value that cannot be sent (too
    /// large, too deep) is answered with an error naming why instead.
    ///
    /// When more than `max_output_buffer` bytes are already waiting, the peer
    /// keeps asking without reading the answers: the connection ends with
    /// [`LimitError::OutputBufferFull`] rather than buffer without bound.
    pub fn send_reply(&mut self, seq: u64, result: Result<Value, RemoteError>) {
        if self.phase == Phase::Closed {
            return;
        }
        let queued = self.out.len();
        if queued > self.config.max_output_buffer {
            self.fail(CloseReason::Limit(LimitError::OutputBufferFull {
                queued,
                max: self.config.max_output_buffer,
            }));
            return;
        }
        self.flush_releases();
        let sent = match result {
            Ok(value) => {
                let mut exported = Vec::new();
                match self.encode_value(value, &mut exported) {
                    Ok(v) => self.send_exporting(Message::Reply { seq, value: v }, exported),
                    Err(e) => Err(e),
                }
            }
            Err(mut error) => {
                if !self.config.include_traceback {
                    error.traceback.clear();
                }
                self.send(Message::Error { seq, error })
            }
        };
        if let Err(e) = sent {
            let error = RemoteError::new("ReplyError", format!("the reply could not be sent: {e}"));
            if let Err(e) = self.send(Message::Error { seq, error }) {
                self.fail(CloseReason::from_fault(e));
            }
        }
    }

    /// Sends an orderly close to the peer and ends the connection locally.
    /// Requests awaiting replies are not failed here: the caller owns them.
    pub fn close(&mut self, reason: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        self.flush_releases();
        let _ = self.send(Message::Request { seq: 0, request: WireRequest::Close(reason.into()) });
        self.phase = Phase::Closed;
        self.closed = Some(CloseReason::ByThisSide);
        self.forget_everything();
    }

    // ---- output --------------------------------------------------------------

    /// Takes the local objects the peer no longer references, so the caller
    /// can drop them where running their destructors is safe.
    pub fn take_released_objects(&mut self) -> Vec<LocalObject> {
        std::mem::take(&mut self.released)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- internals -------------------------------------------------------------

    fn fail(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            // An orderly local close already happened; report nothing new.
            return;
        }
        log::debug!("netref connection {} ends: {reason}", self.id);
        self.phase = Phase::Closed;
        self.closed = Some(reason.clone());
        self.forget_everything();
        self.events.push_back(Event::Closed { reason });
    }

    /// The bytes this side buffers: output the peer has not taken yet,
    /// and the frame arriving (what a [`MemoryBudget`](crate::MemoryBudget)
    /// counts).
    pub fn buffered_len(&self) -> usize {
        self.out.len() + self.partial_frame_len().unwrap_or(0)
    }

    /// Ends the connection for a limit that this protocol does not watch
    /// itself (a budget many connections share).
    pub(crate) fn fail_for(&mut self, error: LimitError) {
        self.fail(CloseReason::Limit(error));
    }

    fn forget_everything(&mut self) {
        self.large = None;
        self.pending.clear();
        self.deadlines.clear();
        self.expired.clear();
        self.released.extend(self.exports.drain().map(|(_, e)| e.object));
        self.export_ids.clear();
        self.imports.clear();
    }

    /// Queues one message. It is taken by value so that its values move
    /// into the CBOR item rather than being copied.
    fn send(&mut self, msg: Message) -> Result<()> {
        if self.rpyc.is_some() {
            return self.send_rpyc(msg);
        }
        self.out.push_message(msg, self.config.max_frame_len)
    }
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("id", &self.id)
            .field("phase", &self.phase)
            .field("pending", &self.pending.len())
            .field("exported", &self.exports.len())
            .field("imported", &self.imports.len())
            .finish_non_exhaustive()
    }
}
