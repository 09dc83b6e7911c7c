//! Input: every [`Input`] in (bytes, a lent buffer back, end of stream, a
//! transport error, time), frames cut and decoded, the greeting checked.

use std::sync::Arc;
use std::time::Instant;

use super::{Event, Phase, Protocol, Request};
use crate::config::Config;
use crate::error::{CloseReason, DecodeError, Error, LimitError, Misuse, ProtocolError, RemoteError, Result};
use crate::wire;
use crate::wire::{Cbor, Message};

/// One frame body as a CBOR item, within the decoding budget. The
/// decoder's depth limit leaves room for the message's own nesting; the
/// error names the configured limit.
/// `counted`: the items already counted in the body, and where that count
/// stopped (see [`Protocol::count_partial`]); `(0, 0)` for a body not
/// counted yet.
pub(super) fn decode_frame_body(
    body: &[u8],
    config: &Config,
    pool: &wire::BufferPool,
    counted: (usize, usize),
) -> Result<Cbor> {
    let max = config.max_frame_items;
    if body.len() > max {
        let (items, at) = counted;
        if items + wire::count_items_from(body, at, max - items.min(max)).0 > max {
            return Err(LimitError::TooManyItems { len: body.len(), max }.into());
        }
    }
    let max_depth = config.max_depth;
    wire::decode_cbor_in(body, max_depth + 8, Some(pool)).map_err(|e| deeper(e, max_depth))
}

/// Checks that the frame of `len` bytes whose body is `parts` holds at
/// most `max` items. Free for frames of at most `max` bytes (every item
/// takes one at least), so only large frames are counted.
pub(super) fn within_item_budget(parts: &[&[u8]], len: usize, max: usize) -> Result<()> {
    if len <= max {
        return Ok(());
    }
    let mut items = 0;
    for part in parts {
        // `items <= max` here: the count stops one past what is left.
        items += wire::count_items(part, max - items);
        if items > max {
            return Err(LimitError::TooManyItems { len, max }.into());
        }
    }
    Ok(())
}

/// Names the configured depth limit in a decoding error.
pub(super) fn deeper(e: Error, max_depth: usize) -> Error {
    match e {
        Error::Limit(LimitError::TooDeep { .. }) => LimitError::TooDeep { max: max_depth }.into(),
        other => other,
    }
}

/// The sequence number of `[1, seq, ...]` (a request) when it is not zero:
/// where to send the error for a request that cannot be read.
pub(super) fn request_seq(item: &Cbor) -> Option<u64> {
    let Cbor::Array(items) = item else { return None };
    let uint = |v: Option<&Cbor>| v.and_then(Cbor::as_integer).and_then(|i| u64::try_from(i).ok());
    (uint(items.first()) == Some(1)).then(|| uint(items.get(1))).flatten().filter(|&seq| seq != 0)
}

/// The fifth byte of a netref hello's frame: CBOR's array of four.
const NETREF_HELLO_START: u8 = 0x84;

/// The start of the peer's stream, printable.
fn preview(seen: &[u8]) -> String {
    let text: String =
        seen.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
    format!("{text:?}")
}

/// How much of the peer's stream is kept to explain a failed greeting.
pub(super) const FIRST_BYTES_KEPT: usize = 16;

/// One input to a [`Protocol`], handed to [`Protocol::handle_input`]: every
/// way the outside world reaches it (str0m's `Input`).
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes received from the peer, in any split (one byte at a time
    /// included).
    Receive(&'a [u8]),
    /// The buffer lent by [`Protocol::input_buffer`], with what was read
    /// into it (possibly nothing). It must come back before anything else
    /// is received.
    Filled(wire::InputBuffer),
    /// The peer closed its end of the stream: [`CloseReason::ByPeer`] after
    /// its hello, a handshake failure before it, a decoding error in the
    /// middle of a frame.
    Eof,
    /// The transport failed: the connection ends ([`CloseReason::Lost`]).
    Failed(std::io::Error),
    /// The clock reached [`Protocol::poll_timeout`]: expire the requests due
    /// (queuing [`Event::Expired`] and a cancel to
    /// the peer), and close an idle connection.
    Timeout,
}

impl Protocol {
    /// Handles one input at `now`. An error ends the connection: it is
    /// [`Error::Closed`] with the [`CloseReason`] that an
    /// [`Event::Closed`] queued too reports; later
    /// input is ignored. After every input, take the events
    /// ([`poll_event`](Self::poll_event)) and write the output
    /// ([`write_to`](Self::write_to)).
    #[inline(always)] // each call site names one variant: the match folds away
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<()> {
        match input {
            Input::Receive(bytes) => self.receive(bytes, now),
            Input::Filled(buffer) => self.filled(buffer, now),
            Input::Eof => {
                self.eof();
                Ok(())
            }
            Input::Failed(error) => {
                if self.phase != Phase::Closed {
                    self.fail(CloseReason::Lost(Arc::new(error)));
                }
                Ok(())
            }
            Input::Timeout => {
                self.timeout(now);
                Ok(())
            }
        }
    }

    fn receive(&mut self, bytes: &[u8], now: Instant) -> Result<()> {
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
        self.feed(bytes, now)
    }

    /// Lends the buffer that the next bytes from the peer belong in, when
    /// a large byte string is being received: reading into it
    /// ([`InputBuffer::unfilled`](wire::InputBuffer::unfilled), then
    /// [`advance`](wire::InputBuffer::advance)) puts the string in its
    /// final place with no copy, where [`Input::Receive`] copies it from
    /// the caller's buffer. `None` when there is no such string: read into
    /// any buffer and hand the bytes in with [`Input::Receive`].
    ///
    /// The buffer must come back as [`Input::Filled`], even with nothing
    /// read; until then no other bytes may be received. This is the one
    /// step str0m's model has no counterpart for: it lets a driver read a
    /// large string with no lock held and no copy.
    pub fn input_buffer(&mut self) -> Option<wire::InputBuffer> {
        if self.phase == Phase::Closed || self.lent {
            return None;
        }
        let input = self.large.as_mut()?.lend(&self.pool)?;
        self.lent = true;
        Some(input)
    }

    /// True when [`input_buffer`](Self::input_buffer) would lend a buffer:
    /// a driver can check this while it holds the protocol anyway, and
    /// take the buffer only then.
    pub fn lends_input_buffer(&self) -> bool {
        self.phase != Phase::Closed && !self.lent && self.large.as_ref().is_some_and(|l| l.lends(&self.pool))
    }

    /// Takes back the buffer from [`input_buffer`](Self::input_buffer)
    /// with what was read into it, and handles those bytes as
    /// [`Input::Receive`] would.
    fn filled(&mut self, input: wire::InputBuffer, now: Instant) -> Result<()> {
        self.lent = false;
        let Some(large) = self.large.as_mut() else {
            // Closed meanwhile: the bytes no longer matter.
            return Ok(());
        };
        let before = large.received();
        let past = large.give_back(input);
        if large.received() > before || !past.is_empty() {
            // As in `receive`: a deadline that passed before these bytes
            // were read fires before a reply in them is taken.
            self.expire_due(now);
            self.last_input = now;
        }
        self.feed(&past, now)
    }

    /// Cuts and handles the frames in `bytes` (received at `now`), and
    /// notes when a frame left partial began to arrive: it must be whole
    /// within `frame_timeout` of that.
    fn feed(&mut self, bytes: &[u8], now: Instant) -> Result<()> {
        let result = if self.undecided {
            self.tell_dialect(bytes)
        } else if self.rpyc.is_some() {
            self.cut_rpyc_frames(bytes)
        } else {
            self.cut_frames(bytes)
        };
        if self.partial_frame_len().is_none() {
            self.frame_started = None;
        } else if self.frame_started.is_none() {
            self.frame_started = Some(now);
        }
        result
    }

    /// How much of a frame not yet whole has arrived, if one has begun.
    pub(super) fn partial_frame_len(&self) -> Option<usize> {
        match &self.large {
            Some(large) => Some(large.received()),
            None => Some(self.decoder.buffered()).filter(|&n| n > 0),
        }
    }

    fn cut_frames(&mut self, mut bytes: &[u8]) -> Result<()> {
        let max = self.config.max_frame_len;
        loop {
            if self.phase == Phase::Closed {
                return Ok(());
            }
            if let Some(large) = &mut self.large {
                match large.feed(bytes) {
                    Ok(used) => bytes = &bytes[used..],
                    // Out of memory: this connection ends.
                    Err(e) => return self.handle_item(Err(e)),
                }
                if !large.is_complete() {
                    return Ok(());
                }
                let large = self.large.take().expect("checked");
                let max_depth = self.config.max_depth;
                let (before, after) = large.skeleton_parts();
                let item =
                    within_item_budget(&[before, after], large.received(), self.config.max_frame_items)
                        .and_then(|()| {
                            (*large).decode(max_depth + 8, &self.pool).map_err(|e| deeper(e, max_depth))
                        });
                self.handle_item(item)?;
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
                    self.handle_item(decode_frame_body(body, &self.config, &self.pool, (0, 0)))?;
                }
                Ok(None) => {
                    // A large byte string goes straight to its own buffer.
                    let started = match wire::LargeString::start(bytes, &self.pool) {
                        Ok(Some(large)) => {
                            self.large = Some(Box::new(large));
                            Ok(())
                        }
                        Ok(None) => self.decoder.push(bytes),
                        Err(e) => Err(e),
                    };
                    return match started {
                        Ok(()) => Ok(()),
                        // Out of memory: this connection ends.
                        Err(e) => self.handle_item(Err(e)),
                    };
                }
                Err(e) => return self.handle_item(Err(e)),
            }
        }
        if let Err(e) = self.decoder.push(bytes) {
            return self.handle_item(Err(e));
        }
        loop {
            // Only the first frame out of the decoder was partial, and
            // counted as it arrived.
            let counted = std::mem::take(&mut self.partial_items);
            let item = match self.decoder.next_frame(max) {
                Ok(None) => {
                    self.partial_items = counted;
                    break;
                }
                Ok(Some(body)) => decode_frame_body(body, &self.config, &self.pool, counted),
                Err(e) => Err(e),
            };
            self.handle_item(item)?;
        }
        // The partial frame left may show a large byte string only now
        // that more of it is here.
        if self.phase != Phase::Closed {
            match wire::LargeString::start(self.decoder.partial(), &self.pool) {
                Ok(Some(large)) => {
                    self.decoder.discard_partial();
                    self.partial_items = (0, 0);
                    self.large = Some(Box::new(large));
                }
                Ok(None) => return self.count_partial(),
                Err(e) => return self.handle_item(Err(e)),
            }
        }
        Ok(())
    }

    /// Counts the items of the frame still arriving, from where the last
    /// count stopped, and ends the connection as soon as it holds more than
    /// `max_frame_items`: a frame of small integers is refused after its
    /// first megabyte, not read whole and then counted in one go on the
    /// loop's thread (16 MiB of them cost 13 ms at once). Frames announcing
    /// no more bytes than the limit are free (every item takes a byte).
    fn count_partial(&mut self) -> Result<()> {
        let max = self.config.max_frame_items;
        let partial = self.decoder.partial();
        let Some(header) = partial.first_chunk::<{ wire::HEADER_LEN }>() else { return Ok(()) };
        let len = u32::from_be_bytes(*header) as usize;
        if len <= max {
            return Ok(());
        }
        let (items, at) = self.partial_items;
        let (more, next) = wire::count_items_from(&partial[wire::HEADER_LEN..], at, max - items.min(max));
        self.partial_items = (items + more, next);
        if items + more > max {
            return self.handle_item(Err(LimitError::TooManyItems { len, max }.into()));
        }
        Ok(())
    }

    /// Handles one decoded frame (or the error reading it): an error ends
    /// the connection and is returned.
    pub(super) fn handle_item(&mut self, item: Result<Cbor>) -> Result<()> {
        // A frame ended here: the next one's clock starts with its bytes.
        self.frame_started = None;
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
        match result {
            Err(e) => self.refuse(e),
            Ok(()) => Ok(()),
        }
    }

    /// With [`Dialect::Either`](crate::Dialect::Either): holds the peer's
    /// first bytes until its first frame's fifth byte tells a netref
    /// hello (a CBOR array of four) from an RPyC frame (its compressed
    /// flag), then speaks that dialect and hands it all the bytes.
    fn tell_dialect(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.decoder.push(bytes) {
            return self.refuse(e);
        }
        let held = self.decoder.partial();
        let Some(&fifth) = held.get(wire::HEADER_LEN) else { return Ok(()) };
        let held = held.to_vec();
        self.decoder.discard_partial();
        self.undecided = false;
        match fifth {
            NETREF_HELLO_START => {
                self.queue_hello();
                self.cut_frames(&held)
            }
            0 | 1 => {
                self.speak_rpyc();
                self.cut_rpyc_frames(&held)
            }
            _ => self.refuse(
                ProtocolError::Handshake(format!(
                    "the peer speaks neither netref nor RPyC: its first bytes are {}",
                    preview(&self.first_bytes)
                ))
                .into(),
            ),
        }
    }

    /// Before the hello, garbage usually means the peer is not a netref
    /// peer at all (or wants authentication first): say that, not "frame
    /// too large".
    pub(super) fn explain_bad_greeting(&self, e: Error) -> Error {
        if self.phase != Phase::ExpectHello || matches!(e, Error::Protocol(ProtocolError::Handshake(_))) {
            return e;
        }
        let seen = &self.first_bytes;
        let message = if seen.starts_with(b"netref-auth") {
            "the peer asks for authentication first (a shared-secret challenge): \
             configure the secret with Builder::shared_secret"
                .to_string()
        } else if is_tls_record(seen) {
            "the peer speaks TLS: connect with Builder::connect_tls (feature \"tls\")".to_string()
        } else {
            format!("the peer does not speak netref: its first bytes are {} ({e})", preview(seen))
        };
        ProtocolError::Handshake(message).into()
    }

    /// See [`Input::Eof`].
    fn eof(&mut self) {
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
                    "the peer closed the connection before its hello (did it refuse this side? \
                     a Python RPyC server closes on netref's hello: connect with Dialect::Rpyc)"
                        .into(),
                )))
            }
            Ok(()) => {
                let reason = self.rpyc_eof_reason().unwrap_or(CloseReason::ByPeer);
                self.fail(reason)
            }
        }
    }
}

/// True when `bytes` start like a TLS record (a handshake or an alert, TLS
/// 1.0 to 1.3's record version 3.x): what a TLS server answers a plaintext
/// hello with.
fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}
