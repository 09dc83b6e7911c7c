//! The sans-IO protocol state machine: bytes in, events out.
//!
//! [`Protocol`] owns everything one side of a connection knows: the handshake
//! state, sequence numbers, the table of requests awaiting replies (with
//! deadlines), the objects exported to the peer and the proxies imported from
//! it. It never touches a socket, a thread or a clock: bytes and the current
//! time are arguments, and output accumulates in a buffer the caller drains.
//!
//! # Call order
//!
//! After creating a protocol, and after *every* input, drain the outputs:
//!
//! 1. Feed received bytes with [`handle_bytes`](Protocol::handle_bytes) (any
//!    split, one byte at a time included) or the end of the stream with
//!    [`handle_eof`](Protocol::handle_eof).
//! 2. When the clock passes [`poll_timeout`](Protocol::poll_timeout), call
//!    [`handle_timeout`](Protocol::handle_timeout).
//! 3. Take every [`Event`] from [`poll_event`](Protocol::poll_event); answer
//!    each [`Event::Request`] with [`send_reply`](Protocol::send_reply) (now
//!    or later, in any order).
//! 4. Write [`pending_output`](Protocol::pending_output) to the peer and
//!    report what was written with [`consume_output`](Protocol::consume_output).
//!
//! Calls ([`send_request`](Protocol::send_request)) may be made at any time;
//! they only add output.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use rustc_hash::FxBuildHasher;

use crate::config::Config;
use crate::connection::remote::{relay, ProxyInner, ReleaseQueue, RemoteObject, Session};
use crate::error::{
    CloseReason, DecodeError, Error, LimitError, Misuse, Place, ProtocolError, RemoteError, Result,
};
use crate::value::object::LocalObject;
use crate::value::{ObjectRef, Value};
use crate::wire::{self, Cbor, Message, WireRequest, TAG_RECEIVER_OBJECT, TAG_SENDER_OBJECT};

#[cfg(test)]
mod deadline_tests;

static NEXT_PROTOCOL_ID: AtomicU64 = AtomicU64::new(1);

/// What a protocol reports to its driver.
#[derive(Debug)]
pub enum Event {
    /// The peer asks something of a local object; answer with
    /// [`Protocol::send_reply`] using `seq`.
    Request {
        /// Sequence number to reply to.
        seq: u64,
        /// What is asked.
        request: Request,
    },
    /// The reply to one of our requests.
    Reply {
        /// Our request's sequence number.
        seq: u64,
        /// The value, or the error the peer raised.
        result: Result<Value, RemoteError>,
    },
    /// Our request `seq` passed its deadline: the reply will be dropped and
    /// the peer was sent a cancel.
    Expired {
        /// Our request's sequence number.
        seq: u64,
    },
    /// The peer no longer wants the reply to its request `seq` (it expired
    /// there). A reply is still owed; one that has not started may be answered
    /// with an error at once.
    Cancelled {
        /// The peer's request's sequence number.
        seq: u64,
    },
    /// The connection ended; every request awaiting a reply has failed
    /// (a driver fails them with [`Error::Closed`] and this reason).
    Closed {
        /// Why it ended.
        reason: CloseReason,
    },
}

/// A request from the peer, its object references resolved.
#[derive(Debug)]
pub enum Request {
    /// Call `target` itself.
    Call {
        /// The local object.
        target: LocalObject,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Call the method `name` of `target`.
    CallMethod {
        /// The local object.
        target: LocalObject,
        /// The method name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Read the attribute `name` of `target`.
    GetAttr {
        /// The local object.
        target: LocalObject,
        /// The attribute name.
        name: String,
    },
    /// List `target`'s exposed names.
    Dir {
        /// The local object.
        target: LocalObject,
    },
    /// A request that cannot be served (it names an unknown object, holds a
    /// bad reference, or is of an unknown kind); reply with this error.
    Invalid(RemoteError),
}

/// A request this side sends.
#[derive(Debug, Clone)]
pub enum Call {
    /// Get the peer's root object.
    Root,
    /// Call a remote object.
    Call {
        /// The proxy.
        target: RemoteObject,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Call a remote object's method by name.
    CallMethod {
        /// The proxy.
        target: RemoteObject,
        /// The method name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Read a remote attribute.
    GetAttr {
        /// The proxy.
        target: RemoteObject,
        /// The attribute name.
        name: String,
    },
    /// List a remote object's exposed names.
    Dir {
        /// The proxy.
        target: RemoteObject,
    },
    /// Round trip with a payload.
    Ping(Value),
}

impl Call {
    /// Where the reply's value is, for conversion errors.
    pub(crate) fn result_place(&self) -> Place {
        match self {
            Call::Root => Place::Result { method: Some("root".into()) },
            Call::Call { .. } => Place::Result { method: None },
            Call::CallMethod { name, .. } => Place::Result { method: Some(name.clone()) },
            Call::GetAttr { name, .. } => Place::Attribute { name: name.clone() },
            Call::Dir { .. } => Place::Result { method: Some("dir".into()) },
            Call::Ping(_) => Place::Result { method: Some("ping".into()) },
        }
    }
}

/// Where the connection is in its life, named for what it expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Our hello is queued; waiting for the peer's.
    ExpectHello,
    /// Handshake done; requests and replies flow.
    Open,
    /// Ended; nothing more is accepted or sent.
    Closed,
}

struct Export {
    /// What the peer's requests on this id run on: the object itself, or
    /// for a relayed proxy the relay that forwards to it.
    object: LocalObject,
    /// References handed to the peer and not yet released.
    sent: u64,
    /// For a relay, the proxy of another connection it forwards to: the
    /// peer handing this id back gets that proxy, not the relay. Weak
    /// because the relay object holds the proxy; dropping this never
    /// releases anything, so a release may happen under the driver's lock.
    relayed: Option<Weak<ProxyInner>>,
}

impl Export {
    /// The key of `export_ids`: the object's address, or the relayed
    /// proxy's, so one proxy passed twice gets one relay and one id.
    fn key(&self) -> usize {
        match &self.relayed {
            Some(proxy) => proxy.as_ptr() as usize,
            None => self.object.addr(),
        }
    }
}

struct Import {
    /// References received and not yet released.
    received: u64,
    proxy: Weak<ProxyInner>,
}

/// One side of a netref connection, without I/O. See the module docs for the
/// call order.
pub struct Protocol {
    id: u64,
    config: Config,
    phase: Phase,
    decoder: wire::FrameDecoder,
    /// A frame with a large byte string being received, instead of
    /// `decoder` (which is then empty).
    large: Option<wire::LargeString>,
    /// `large`'s buffer is lent out (see [`Protocol::take_input_buffer`]).
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
    deadlines: BTreeSet<(Instant, u64)>,
    /// Deadline entries looked at while taking answered requests off
    /// `deadlines` (the tests check that a reply costs no scan).
    #[cfg(test)]
    deadline_visits: u64,
    expired: HashSet<u64, FxBuildHasher>,
    exports: HashMap<u64, Export>,
    /// Export ids by [`Export::key`].
    export_ids: HashMap<usize, u64>,
    next_export: u64,
    imports: HashMap<u64, Import>,
    releases: Arc<ReleaseQueue>,
    events: VecDeque<Event>,
    session: Weak<dyn Session>,
    root: Option<LocalObject>,
    /// Objects no longer exported, kept until the driver takes them so that
    /// user code in their `Drop` never runs inside the driver's lock.
    released: Vec<LocalObject>,
    last_input: Instant,
    /// Why it ended, once it has.
    closed: Option<CloseReason>,
}

struct NoSession;
impl Session for NoSession {
    fn submit(&self, _: Call, _: Option<std::time::Duration>) -> crate::AsyncResult {
        crate::AsyncResult::failed(Misuse::NoConnection.into())
    }
}

impl Protocol {
    /// A protocol that serves `root` (if any) to the peer. Queues the hello.
    /// Its spare buffers for large byte strings are its own, placed the
    /// default way (see [`with_pool`](Self::with_pool)).
    pub fn new(config: Config, root: Option<LocalObject>, now: Instant) -> Self {
        Self::with_pool(config, root, now, wire::BufferPool::new())
    }

    /// Like [`new`](Self::new), with spare buffers from `pool` and its
    /// [`Placement`](wire::Placement): with [`Placement::InPlace`](wire::Placement::InPlace)
    /// the protocol is deterministic (the same bytes and times in give the
    /// same bytes, events and lending out).
    pub fn with_pool(
        config: Config,
        root: Option<LocalObject>,
        now: Instant,
        pool: wire::BufferPool,
    ) -> Self {
        Self::with_session(config, root, now, Weak::<NoSession>::new(), pool)
    }

    /// Like [`new`](Self::new), with the session that proxies created by this
    /// protocol will use for their calls.
    pub(crate) fn with_session(
        config: Config,
        root: Option<LocalObject>,
        now: Instant,
        session: Weak<dyn Session>,
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
            deadlines: BTreeSet::new(),
            #[cfg(test)]
            deadline_visits: 0,
            expired: HashSet::default(),
            exports: HashMap::new(),
            export_ids: HashMap::new(),
            next_export: 1,
            imports: HashMap::new(),
            releases: Arc::new(ReleaseQueue::default()),
            events: VecDeque::new(),
            session,
            root,
            released: Vec::new(),
            last_input: now,
            closed: None,
        };
        let hello = Message::Hello { version: wire::VERSION, features: wire::FEATURES };
        p.out.push_frame(hello.into_cbor(), usize::MAX).expect("hello encodes");
        p
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

    /// Feeds bytes received from the peer. An error ends the connection: it
    /// is [`Error::Closed`] with the [`CloseReason`] that an
    /// [`Event::Closed`] queued too reports; later input is ignored.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) -> Result<()> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        if !bytes.is_empty() {
            self.expire_due(now);
            self.last_input = now;
        }
        if self.phase == Phase::ExpectHello && self.first_bytes.len() < FIRST_BYTES_KEPT {
            let room = FIRST_BYTES_KEPT - self.first_bytes.len();
            self.first_bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        if self.lent {
            let reason = CloseReason::Misuse(Misuse::InputBufferLent);
            self.fail(reason.clone());
            return Err(Error::Closed(reason));
        }
        self.feed(bytes)
    }

    /// Lends the buffer that the next bytes from the peer belong in, when
    /// a large byte string is being received: reading into it
    /// ([`InputBuffer::unfilled`](wire::InputBuffer::unfilled), then
    /// [`advance`](wire::InputBuffer::advance)) puts the string in its
    /// final place with no copy, where [`handle_bytes`](Self::handle_bytes)
    /// copies it from the caller's buffer. `None` when there is no such
    /// string: read into any buffer and call `handle_bytes`.
    ///
    /// The buffer must come back through [`handle_input`](Self::handle_input),
    /// even with nothing read; until then no other bytes may be fed.
    pub fn take_input_buffer(&mut self) -> Option<wire::InputBuffer> {
        if self.phase == Phase::Closed || self.lent {
            return None;
        }
        let input = self.large.as_mut()?.lend(&self.pool)?;
        self.lent = true;
        Some(input)
    }

    /// True when [`take_input_buffer`](Self::take_input_buffer) would lend
    /// a buffer: a driver can check this while it holds the protocol
    /// anyway, and take the buffer only then.
    pub fn lends_input_buffer(&self) -> bool {
        self.phase != Phase::Closed && !self.lent && self.large.as_ref().is_some_and(|l| l.lends(&self.pool))
    }

    /// Takes back the buffer from [`take_input_buffer`](Self::take_input_buffer)
    /// with what was read into it, and handles those bytes as
    /// [`handle_bytes`](Self::handle_bytes) would.
    pub fn handle_input(&mut self, input: wire::InputBuffer, now: Instant) -> Result<()> {
        self.lent = false;
        let Some(large) = self.large.as_mut() else {
            // Closed meanwhile: the bytes no longer matter.
            return Ok(());
        };
        let before = large.received();
        let past = large.give_back(input);
        if large.received() > before || !past.is_empty() {
            // As in `handle_bytes`: a deadline that passed before these
            // bytes were read fires before a reply in them is taken.
            self.expire_due(now);
            self.last_input = now;
        }
        self.feed(&past)
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        let max = self.config.max_frame_len;
        loop {
            if self.phase == Phase::Closed {
                return Ok(());
            }
            if let Some(large) = &mut self.large {
                bytes = &bytes[large.feed(bytes)..];
                if !large.is_complete() {
                    return Ok(());
                }
                let large = self.large.take().expect("checked");
                let max_depth = self.config.max_depth;
                self.handle_item(large.decode(max_depth + 8, &self.pool).map_err(|e| deeper(e, max_depth)))?;
                continue;
            }
            if self.decoder.buffered() > 0 {
                break;
            }
            // Whole frames are decoded straight from the caller's bytes;
            // only a partial frame at their end is buffered (a frame is not
            // copied into the decoder just to be read back out).
            match wire::FrameDecoder::split_frame(bytes, max) {
                Ok(Some((body, rest))) => {
                    bytes = rest;
                    self.handle_item(decode_frame_body(body, self.config.max_depth, &self.pool))?;
                }
                Ok(None) => {
                    // A large byte string goes straight to its own buffer.
                    self.large = wire::LargeString::start(bytes, &self.pool);
                    if self.large.is_none() {
                        self.decoder.push(bytes);
                    }
                    return Ok(());
                }
                Err(e) => return self.handle_item(Err(e)),
            }
        }
        self.decoder.push(bytes);
        loop {
            let item = match self.decoder.next_frame(max) {
                Ok(None) => break,
                Ok(Some(body)) => decode_frame_body(body, self.config.max_depth, &self.pool),
                Err(e) => Err(e),
            };
            self.handle_item(item)?;
        }
        // The partial frame left may show a large byte string only now
        // that more of it is here.
        if self.phase != Phase::Closed {
            if let Some(large) = wire::LargeString::start(self.decoder.partial(), &self.pool) {
                self.decoder.discard_partial();
                self.large = Some(large);
            }
        }
        Ok(())
    }

    /// Handles one decoded frame (or the error reading it): an error ends
    /// the connection and is returned.
    fn handle_item(&mut self, item: Result<Cbor>) -> Result<()> {
        let result = item.and_then(|item| {
            let seq = request_seq(&item);
            match Message::from_cbor(item) {
                Ok(msg) => self.handle_message(msg),
                // A request of a kind we do not know, from a newer peer:
                // answer it with an error; the connection goes on.
                Err(DecodeError::UnknownRequest(code)) if seq.is_some() && self.phase == Phase::Open => {
                    let error = RemoteError::new(
                        "NotImplementedError",
                        format!(
                            "unknown request kind {code} (this peer speaks netref protocol version {})",
                            wire::VERSION
                        ),
                    );
                    let seq = seq.expect("checked");
                    self.events.push_back(Event::Request { seq, request: Request::Invalid(error) });
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        });
        if let Err(e) = result {
            let reason = CloseReason::from_fault(self.explain_bad_greeting(e));
            self.fail(reason.clone());
            return Err(Error::Closed(reason));
        }
        Ok(())
    }

    /// Before the hello, garbage usually means the peer is not a netref
    /// peer at all (or wants authentication first): say that, not "frame
    /// too large".
    fn explain_bad_greeting(&self, e: Error) -> Error {
        if self.phase != Phase::ExpectHello || matches!(e, Error::Protocol(ProtocolError::Handshake(_))) {
            return e;
        }
        let seen = &self.first_bytes;
        let message = if seen.starts_with(b"netref-auth") {
            "the peer asks for authentication first (a shared-secret challenge): \
             configure the secret with Builder::shared_secret"
                .to_string()
        } else {
            let preview: String = seen
                .iter()
                .map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' })
                .collect();
            format!("the peer does not speak netref: its first bytes are {preview:?} ({e})")
        };
        ProtocolError::Handshake(message).into()
    }

    /// The peer closed its end of the stream: [`CloseReason::ByPeer`] after
    /// its hello, a handshake failure before it, a decoding error in the
    /// middle of a frame.
    pub fn handle_eof(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(large) = &self.large {
            let e = large.truncated();
            self.fail(CloseReason::from_fault(e));
            return;
        }
        match self.decoder.finish() {
            Err(e) => self.fail(CloseReason::from_fault(e)),
            Ok(()) if self.phase == Phase::ExpectHello => {
                self.fail(CloseReason::Protocol(ProtocolError::Handshake(
                    "the peer closed the connection before its hello (did it refuse this side?)".into(),
                )))
            }
            Ok(()) => self.fail(CloseReason::ByPeer),
        }
    }

    /// Ends the connection because its transport failed
    /// ([`CloseReason::Lost`]).
    pub fn handle_transport_error(&mut self, error: std::io::Error) {
        if self.phase != Phase::Closed {
            self.fail(CloseReason::Lost(Arc::new(error)));
        }
    }

    /// Instant of the next deadline (a request's expiry or the idle timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let idle = self.config.idle_timeout.map(|d| self.last_input + d);
        let expiry = self.deadlines.first().map(|(t, _)| *t);
        match (idle, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires every request whose deadline is at or before `now` (queuing
    /// [`Event::Expired`] and a cancel to the peer), and closes an idle
    /// connection.
    pub fn handle_timeout(&mut self, now: Instant) {
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
    fn expire_due(&mut self, now: Instant) {
        while let Some(&(t, seq)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            self.pending.remove(&seq);
            self.expired.insert(seq);
            self.events.push_back(Event::Expired { seq });
            let _ = self.send(Message::Request { seq: 0, request: WireRequest::Cancel(seq) });
        }
    }

    // ---- commands ------------------------------------------------------------

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
            Call::Call { target, args } => WireRequest::Call {
                target: self.target_id(&target)?,
                args: self.encode_args(args, &mut exported)?,
            },
            Call::CallMethod { target, name, args } => WireRequest::CallMethod {
                target: self.target_id(&target)?,
                name,
                args: self.encode_args(args, &mut exported)?,
            },
            Call::GetAttr { target, name } => WireRequest::GetAttr { target: self.target_id(&target)?, name },
            Call::Dir { target } => WireRequest::Dir { target: self.target_id(&target)? },
            Call::Ping(v) => WireRequest::Ping(self.encode_value(v, &mut exported)?),
        };
        self.send_exporting(Message::Request { seq, request }, exported)?;
        self.next_seq += 1;
        self.pending.insert(seq, deadline);
        if let Some(t) = deadline {
            self.deadlines.insert((t, seq));
        }
        Ok(seq)
    }

    /// Changes (or removes) the deadline of a request still awaiting its reply.
    pub fn set_deadline(&mut self, seq: u64, deadline: Option<Instant>) {
        if let Some(slot) = self.pending.get_mut(&seq) {
            if let Some(old) = slot.take() {
                self.deadlines.remove(&(old, seq));
            }
            *slot = deadline;
            if let Some(t) = deadline {
                self.deadlines.insert((t, seq));
            }
        }
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

    /// Bytes waiting to be written to the peer (sends pending releases
    /// first), as one slice. Large byte strings are queued apart from the
    /// rest (see [`pending_output_slices`](Self::pending_output_slices)),
    /// so this copies them in.
    pub fn pending_output(&mut self) -> &[u8] {
        self.flush_releases();
        self.out.contiguous()
    }

    /// The bytes waiting to be written to the peer (sends pending releases
    /// first) as up to `dst.len()` slices, in order, for a vectored write;
    /// returns how many were filled (0: nothing to write). Unlike
    /// [`pending_output`](Self::pending_output), a large byte string is
    /// written from the buffer of the value sent, not copied. Report what
    /// was written with [`consume_output`](Self::consume_output).
    pub fn pending_output_slices<'a>(&'a mut self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        self.flush_releases();
        self.out.slices(dst)
    }

    /// How many bytes are waiting to be written (releases not yet made
    /// into a message aside), without gathering them into one slice.
    pub fn pending_output_len(&self) -> usize {
        self.out.len()
    }

    /// True when output is waiting (the transport wants write readiness).
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty() || !self.releases.is_empty()
    }

    /// Reports that the first `n` bytes of [`pending_output`](Self::pending_output)
    /// (or of its slices) were written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// Sets (or replaces) the root object the peer gets from its root request.
    pub fn set_root(&mut self, root: LocalObject) {
        if let Some(old) = self.root.replace(root) {
            self.released.push(old);
        }
    }

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

    fn forget_everything(&mut self) {
        self.large = None;
        self.pending.clear();
        self.deadlines.clear();
        self.expired.clear();
        self.released.extend(self.exports.drain().map(|(_, e)| e.object));
        self.released.extend(self.root.take());
        self.export_ids.clear();
        self.imports.clear();
    }

    /// Queues one message. It is taken by value so that its values move
    /// into the CBOR item rather than being copied.
    fn send(&mut self, msg: Message) -> Result<()> {
        self.out.push_message(msg, self.config.max_frame_len)
    }

    /// Sends a message whose encoding exported `exported` objects: their
    /// counts rise only if the message is actually queued.
    fn send_exporting(&mut self, msg: Message, exported: Vec<u64>) -> Result<()> {
        match self.send(msg) {
            Ok(()) => {
                for id in exported {
                    if let Some(e) = self.exports.get_mut(&id) {
                        e.sent += 1;
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.rollback_exports(&exported);
                Err(e)
            }
        }
    }

    fn rollback_exports(&mut self, exported: &[u64]) {
        for id in exported {
            if self.exports.get(id).is_some_and(|e| e.sent == 0) {
                let e = self.exports.remove(id).expect("checked");
                self.export_ids.remove(&e.key());
                self.released.push(e.object);
            }
        }
    }

    fn target_id(&self, target: &RemoteObject) -> Result<u64> {
        if target.inner.protocol_id != self.id {
            return Err(Misuse::ForeignObject { id: target.id() }.into());
        }
        Ok(target.id())
    }

    fn encode_args(&mut self, args: Vec<Value>, exported: &mut Vec<u64>) -> Result<Cbor> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            match self.encode_value(a, exported) {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.rollback_exports(exported);
                    return Err(e);
                }
            }
        }
        Ok(Cbor::Array(out))
    }

    fn encode_value(&mut self, value: Value, exported: &mut Vec<u64>) -> Result<Cbor> {
        let max_depth = self.config.max_depth;
        let result = value.into_cbor(max_depth, &mut |o| match o {
            ObjectRef::Local(l) => {
                let id = self.export(l)?;
                exported.push(id);
                Ok(Cbor::Tag(TAG_SENDER_OBJECT, Box::new(Cbor::Integer(id.into()))))
            }
            ObjectRef::Remote(r) if r.inner.protocol_id == self.id => {
                Ok(Cbor::Tag(TAG_RECEIVER_OBJECT, Box::new(Cbor::Integer(r.id().into()))))
            }
            ObjectRef::Remote(r) => {
                let id = self.export_relay(r)?;
                exported.push(id);
                Ok(Cbor::Tag(TAG_SENDER_OBJECT, Box::new(Cbor::Integer(id.into()))))
            }
        });
        if result.is_err() {
            self.rollback_exports(exported);
        }
        result
    }

    /// The id under which `object` is exported, adding it (with no references
    /// yet) if it is new. The same object always gets the same id while the
    /// peer holds it.
    fn export(&mut self, object: &LocalObject) -> Result<u64> {
        if let Some(&id) = self.export_ids.get(&object.addr()) {
            return Ok(id);
        }
        if self.exports.len() >= self.config.max_exported {
            return Err(LimitError::TooManyExported { max: self.config.max_exported }.into());
        }
        let id = self.next_export;
        self.next_export += 1;
        self.export_ids.insert(object.addr(), id);
        self.exports.insert(id, Export { object: object.clone(), sent: 0, relayed: None });
        Ok(id)
    }

    /// The id under which the proxy `proxy` of another connection is
    /// exported, as a relay that forwards the peer's requests to it, adding
    /// it if it is new (RPyC's rule: a proxy passed to a third party is an
    /// object of the middle process). The same proxy always gets the same
    /// id while the peer holds it, and the peer handing the id back gets
    /// `proxy` itself (see [`decode_value`](Self::decode_value)).
    fn export_relay(&mut self, proxy: &RemoteObject) -> Result<u64> {
        let key = Arc::as_ptr(&proxy.inner) as usize;
        if let Some(&id) = self.export_ids.get(&key) {
            return Ok(id);
        }
        if self.exports.len() >= self.config.max_exported {
            return Err(LimitError::TooManyExported { max: self.config.max_exported }.into());
        }
        let id = self.next_export;
        self.next_export += 1;
        self.export_ids.insert(key, id);
        let export = Export { object: relay(proxy), sent: 0, relayed: Some(Arc::downgrade(&proxy.inner)) };
        self.exports.insert(id, export);
        Ok(id)
    }

    /// Turns the peer's released proxies into one batched release message.
    /// A proxy re-imported after its drop was queued is alive again and is
    /// skipped; its count keeps growing until it, too, is dropped.
    fn flush_releases(&mut self) {
        let dropped = self.releases.take();
        if dropped.is_empty() || self.phase == Phase::Closed {
            return;
        }
        let mut batch = Vec::new();
        for id in dropped {
            if let Some(import) = self.imports.get(&id) {
                if import.proxy.strong_count() == 0 {
                    batch.push((id, import.received));
                    self.imports.remove(&id);
                }
            }
        }
        if !batch.is_empty() {
            let msg = Message::Request { seq: 0, request: WireRequest::Release(batch) };
            if let Err(e) = self.send(msg) {
                self.fail(CloseReason::from_fault(e));
            }
        }
    }

    fn decode_value(&mut self, cbor: Cbor) -> Result<Value> {
        let max = self.config.max_depth;
        Value::from_cbor(cbor, max, &mut |tag, inner| {
            if tag != TAG_SENDER_OBJECT && tag != TAG_RECEIVER_OBJECT {
                return Err(DecodeError::UnknownTag(tag).into());
            }
            let id = inner.as_integer().and_then(|i| u64::try_from(i).ok()).ok_or_else(|| {
                Error::Decode(DecodeError::Malformed(format!("tag {tag} must wrap an object id")))
            })?;
            match tag {
                TAG_SENDER_OBJECT => self.import(id).map(|r| Value::Object(ObjectRef::Remote(r))),
                _ => match self.exports.get(&id) {
                    // A relay handed back is the proxy it relays: home, an
                    // object is itself again, not a relay of a relay.
                    // (The upgrade cannot fail: the export's relay object
                    // holds the proxy.)
                    Some(Export { relayed: Some(proxy), .. }) => proxy
                        .upgrade()
                        .map(|inner| Value::Object(ObjectRef::Remote(RemoteObject { inner })))
                        .ok_or_else(|| ProtocolError::UnknownObject(id).into()),
                    Some(e) => Ok(Value::Object(ObjectRef::Local(e.object.clone()))),
                    None => Err(ProtocolError::UnknownObject(id).into()),
                },
            }
        })
    }

    /// Each argument may nest `max_depth` levels, as when it was encoded
    /// (the array around the arguments does not count).
    fn decode_args(&mut self, args: Cbor) -> Result<Vec<Value>> {
        match args {
            Cbor::Array(items) => items.into_iter().map(|a| self.decode_value(a)).collect(),
            _ => Err(DecodeError::Malformed("arguments must be an array".into()).into()),
        }
    }

    /// Records one more reference to the peer's object `id`; the same id maps
    /// to the same proxy while any clone of it lives.
    fn import(&mut self, id: u64) -> Result<RemoteObject> {
        if let Some(import) = self.imports.get_mut(&id) {
            import.received += 1;
            if let Some(inner) = import.proxy.upgrade() {
                return Ok(RemoteObject { inner });
            }
            let proxy = self.new_proxy(id);
            self.imports.get_mut(&id).expect("present").proxy = Arc::downgrade(&proxy.inner);
            return Ok(proxy);
        }
        if self.imports.len() >= self.config.max_imported {
            return Err(LimitError::TooManyImported { max: self.config.max_imported }.into());
        }
        let proxy = self.new_proxy(id);
        self.imports.insert(id, Import { received: 1, proxy: Arc::downgrade(&proxy.inner) });
        Ok(proxy)
    }

    fn new_proxy(&self, id: u64) -> RemoteObject {
        RemoteObject {
            inner: Arc::new(ProxyInner::new(
                id,
                self.id,
                self.session.upgrade(),
                Arc::downgrade(&self.releases),
            )),
        }
    }

    fn local_target(&self, id: u64) -> std::result::Result<LocalObject, RemoteError> {
        self.exports.get(&id).map(|e| e.object.clone()).ok_or_else(|| {
            RemoteError::new(
                "ReferenceError",
                format!(
                    "no object with id {id} was handed to this peer (never exported, or already released)"
                ),
            )
        })
    }

    fn handle_message(&mut self, msg: Message) -> Result<()> {
        if self.phase == Phase::ExpectHello {
            return match msg {
                Message::Hello { version, features } => {
                    if version != wire::VERSION {
                        return Err(ProtocolError::Handshake(format!(
                            "peer speaks netref protocol version {version}, this side speaks {}",
                            wire::VERSION
                        ))
                        .into());
                    }
                    let _shared_features = features & wire::FEATURES;
                    self.phase = Phase::Open;
                    Ok(())
                }
                other => Err(ProtocolError::Handshake(format!(
                    "expected the peer's hello first, got {}",
                    describe(&other)
                ))
                .into()),
            };
        }
        match msg {
            Message::Hello { .. } => Err(ProtocolError::Unexpected("a second hello".into()).into()),
            Message::Request { seq, request } => self.handle_request(seq, request),
            Message::Reply { seq, value } => {
                let result = self.decode_value(value).map_err(|e| {
                    RemoteError::new("InvalidReply", format!("the peer's reply could not be decoded: {e}"))
                });
                self.handle_answer(seq, result)
            }
            Message::Error { seq, error } => self.handle_answer(seq, Err(error)),
        }
    }

    fn handle_answer(&mut self, seq: u64, result: Result<Value, RemoteError>) -> Result<()> {
        if let Some(deadline) = self.pending.remove(&seq) {
            // The pending table knows the request's deadline: its entry
            // leaves the index by key, in O(log n). (A scan of the index
            // per reply made 20,000 expiring calls in flight ten times
            // slower than plain ones.)
            if let Some(t) = deadline {
                #[cfg(test)]
                {
                    self.deadline_visits += 1;
                }
                self.deadlines.remove(&(t, seq));
            }
            self.events.push_back(Event::Reply { seq, result });
            Ok(())
        } else if self.expired.remove(&seq) {
            // Too late: the caller gave up. Any proxies in `result` drop here
            // and are released.
            Ok(())
        } else {
            Err(ProtocolError::UnknownSequence(seq).into())
        }
    }

    fn handle_request(&mut self, seq: u64, request: WireRequest) -> Result<()> {
        let resolved = match request {
            WireRequest::Root => {
                let reply = match self.root.clone() {
                    Some(root) => Ok(Value::Object(ObjectRef::Local(root))),
                    None => Err(RemoteError::new("AttributeError", "the peer exposes no service")),
                };
                self.send_reply(seq, reply);
                return Ok(());
            }
            WireRequest::Ping(payload) => {
                let reply = self.decode_value(payload).map_err(|e| RemoteError::value_error(e.to_string()));
                self.send_reply(seq, reply);
                return Ok(());
            }
            WireRequest::Release(items) => {
                for (id, count) in items {
                    self.release(id, count)?;
                }
                return Ok(());
            }
            WireRequest::Cancel(cancelled) => {
                self.events.push_back(Event::Cancelled { seq: cancelled });
                return Ok(());
            }
            WireRequest::Close(reason) => {
                log::debug!("netref connection {}: peer closes ({reason})", self.id);
                self.fail(CloseReason::ByPeer);
                return Ok(());
            }
            WireRequest::Call { target, args } => self.local_target(target).and_then(|target| {
                Ok(Request::Call { target, args: self.decode_args(args).map_err(bad_args)? })
            }),
            WireRequest::CallMethod { target, name, args } => self.local_target(target).and_then(|target| {
                Ok(Request::CallMethod { target, name, args: self.decode_args(args).map_err(bad_args)? })
            }),
            WireRequest::GetAttr { target, name } => {
                self.local_target(target).map(|target| Request::GetAttr { target, name })
            }
            WireRequest::Dir { target } => self.local_target(target).map(|target| Request::Dir { target }),
        };
        let request = resolved.unwrap_or_else(Request::Invalid);
        self.events.push_back(Event::Request { seq, request });
        Ok(())
    }

    fn release(&mut self, id: u64, count: u64) -> Result<()> {
        let Some(export) = self.exports.get_mut(&id) else {
            return Err(ProtocolError::UnknownObject(id).into());
        };
        if count > export.sent || count == 0 {
            return Err(ProtocolError::OverRelease { id, released: count, held: export.sent }.into());
        }
        export.sent -= count;
        if export.sent == 0 {
            let e = self.exports.remove(&id).expect("present");
            self.export_ids.remove(&e.key());
            self.released.push(e.object);
        }
        Ok(())
    }
}

/// One frame body as a CBOR item. The decoder's limit leaves room for the
/// message's own nesting; the error names the configured limit.
fn decode_frame_body(body: &[u8], max_depth: usize, pool: &wire::BufferPool) -> Result<Cbor> {
    wire::decode_cbor_in(body, max_depth + 8, Some(pool)).map_err(|e| deeper(e, max_depth))
}

/// Names the configured depth limit in a decoding error.
fn deeper(e: Error, max_depth: usize) -> Error {
    match e {
        Error::Limit(LimitError::TooDeep { .. }) => LimitError::TooDeep { max: max_depth }.into(),
        other => other,
    }
}

/// The sequence number of `[1, seq, ...]` (a request) when it is not zero:
/// where to send the error for a request that cannot be read.
fn request_seq(item: &Cbor) -> Option<u64> {
    let Cbor::Array(items) = item else { return None };
    let uint = |v: Option<&Cbor>| v.and_then(Cbor::as_integer).and_then(|i| u64::try_from(i).ok());
    (uint(items.first()) == Some(1)).then(|| uint(items.get(1))).flatten().filter(|&seq| seq != 0)
}

fn bad_args(e: Error) -> RemoteError {
    match e {
        Error::Protocol(ProtocolError::UnknownObject(id)) => RemoteError::new(
            "ReferenceError",
            format!("argument refers to object id {id}, which was never handed to this peer or was released"),
        ),
        other => RemoteError::type_error(format!("invalid arguments: {other}")),
    }
}

fn describe(msg: &Message) -> &'static str {
    match msg {
        Message::Hello { .. } => "a hello",
        Message::Request { .. } => "a request",
        Message::Reply { .. } => "a reply",
        Message::Error { .. } => "an error",
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

/// How much of the peer's stream is kept to explain a failed greeting.
const FIRST_BYTES_KEPT: usize = 16;
