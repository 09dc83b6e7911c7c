//! Zero-copy receive: a frame whose body holds a large byte string has the
//! string read straight into the buffer that becomes its value.

use super::cbor::{decode_cbor_in, Cbor};
use super::pool::{BufferPool, RECYCLE_MIN};
use super::slice_decoder::{find_large_bytes, Hole, SliceDecoder};
use super::HEADER_LEN;
use crate::error::{DecodeError, Error, LimitError, Result};

/// Byte strings at least this long are received straight into their own
/// buffer ([`LargeString`]) when their frame arrives in pieces, and sent
/// from it ([`Output`]).
pub(super) const LARGE_MIN: usize = RECYCLE_MIN;

/// How far into a frame's body the head of a large byte string is looked
/// for: a message's values start within a few dozen bytes of it.
pub(super) const LARGE_SCAN_MAX: usize = 512;

/// Room lent past the end of a large byte string's content (see
/// [`LargeString::lend`]), so that one read takes the rest of the frame,
/// and what follows it, along.
pub(super) const LEND_SLACK: usize = 64 << 10;

/// Most room lent for one read pass: a fresh buffer is zeroed before it
/// is lent, so a forged length costs no more than this at a time.
const LEND_MAX: usize = 4 << 20;

/// Most a large byte string's buffer is first reserved for: a longer
/// string's buffer grows, in doublings, as its bytes arrive ([`grow`]), so
/// a header announcing the largest frame allowed reserves this much address
/// space, not `max_frame_len` (100 connections doing so under a 4 GiB
/// address-space limit aborted the process). A 1 MiB payload still fits
/// the first reservation, and is received with no copy.
pub(super) const RESERVE_FIRST: usize = 4 << 20;

/// Makes room in `content` for `needed` bytes of a string of `len` bytes
/// (and the slack lent past it), growing to at least twice its capacity so
/// that the bytes are moved O(1) times each. Fallible: a peer cannot make
/// this side abort by announcing more than it has memory for.
fn grow(content: &mut Vec<u8>, needed: usize, len: usize) -> Result<()> {
    if needed <= content.capacity() {
        return Ok(());
    }
    let target = (len + LEND_SLACK).min(content.capacity().saturating_mul(2).max(needed)).max(needed);
    content
        .try_reserve_exact(target - content.len())
        .map_err(|_| LimitError::OutOfMemory { bytes: target }.into())
}

/// Room lent for a string's first read. Each later one may be as large as
/// what has arrived so far (up to [`LEND_MAX`]), so the memory a frame
/// holds stays within twice what its peer sent: a header announcing
/// 100 MiB followed by silence costs 64 KiB, not a zeroed 4 MiB.
const LEND_FIRST: usize = 64 << 10;

/// A frame arriving in pieces whose body holds a large byte string: the
/// string's content is copied from the received bytes straight into the
/// buffer that becomes its value, instead of into the frame decoder's
/// buffer and then out of it again (a 1 MiB payload that arrived in
/// pieces was copied twice on receipt; now once, like a whole frame's).
#[derive(Debug)]
pub(crate) struct LargeString {
    /// The frame's body without the string's content: the bytes before it,
    /// then those received after it.
    skeleton: Vec<u8>,
    /// Where in `skeleton` the content belongs.
    at: usize,
    /// Bytes of the body after the content.
    tail_len: usize,
    /// The content: initialised up to `content.len()` (a recycled buffer
    /// is overwritten, not zeroed again), received up to `filled`.
    content: Vec<u8>,
    filled: usize,
    /// The content's length.
    len: usize,
}

impl LargeString {
    /// Starts receiving `partial`, the beginning of a frame (header
    /// included, within the length limit), if its body holds a byte
    /// string of at least [`LARGE_MIN`] bytes whose head lies in the first
    /// [`LARGE_SCAN_MAX`] bytes. Takes all of `partial`.
    /// `Err` when its buffer cannot be had ([`LimitError::OutOfMemory`]).
    pub(crate) fn start(partial: &[u8], pool: &BufferPool) -> Result<Option<LargeString>> {
        let Some(header) = partial.get(..HEADER_LEN) else { return Ok(None) };
        let body_len = u32::from_be_bytes(header.try_into().expect("HEADER_LEN bytes")) as usize;
        let received = &partial[HEADER_LEN..];
        if received.len() >= body_len {
            return Ok(None); // a whole frame: nothing to wait for
        }
        let Some((at, len)) = find_large_bytes(received, body_len) else { return Ok(None) };
        let mut large = LargeString {
            skeleton: received[..at].to_vec(),
            at,
            tail_len: body_len - at - len,
            content: pool.receive_buffer(len, HEADER_LEN + at)?,
            filled: 0,
            len,
        };
        let used = large.feed(&received[at..])?;
        debug_assert_eq!(used, received.len() - at);
        Ok(Some(large))
    }

    /// Takes the frame's bytes from the start of `bytes`; returns how many.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<usize> {
        let n = (self.len - self.filled).min(bytes.len());
        let within = (self.content.len() - self.filled).min(n);
        self.content[self.filled..self.filled + within].copy_from_slice(&bytes[..within]);
        let needed = self.content.len() + (n - within);
        grow(&mut self.content, needed, self.len)?;
        self.content.extend_from_slice(&bytes[within..n]);
        self.filled += n;
        let rest = &bytes[n..];
        let t = (self.at + self.tail_len - self.skeleton.len()).min(rest.len());
        self.skeleton.extend_from_slice(&rest[..t]);
        Ok(n + t)
    }

    /// True once the whole frame is in.
    pub(crate) fn is_complete(&self) -> bool {
        self.filled == self.len && self.skeleton.len() == self.at + self.tail_len
    }

    /// The error for a stream that ends inside this frame, as
    /// [`FrameDecoder::finish`] gives it.
    pub(crate) fn truncated(&self) -> Error {
        let body = self.at + self.len + self.tail_len;
        let got = self.skeleton.len() + self.filled;
        DecodeError::Truncated { expected: HEADER_LEN + body, got: HEADER_LEN + got }.into()
    }

    /// Bytes of the frame received so far.
    pub(crate) fn received(&self) -> usize {
        HEADER_LEN + self.skeleton.len() + self.filled
    }

    /// Whether [`lend`](Self::lend) would lend the buffer.
    pub(crate) fn lends(&self, pool: &BufferPool) -> bool {
        self.filled < self.len && pool.in_place(HEADER_LEN + self.at, self.content.as_ptr() as usize)
    }

    /// Lends the rest of the content's buffer, and some room past it, for
    /// the transport to read into: the string then arrives in its final
    /// place with no copy at all. `None` once the content is complete.
    pub(crate) fn lend(&mut self, pool: &BufferPool) -> Option<InputBuffer> {
        // The kernel's copy into the buffer aliases as a send's does (see
        // `SplicingWriter`) when the buffer sits a little ahead of where
        // the string's bytes were in the peer's send (its frame started
        // one, most likely): then read into the thread's buffer and copy.
        if !self.lends(pool) {
            return None;
        }
        let end = (self.len + LEND_SLACK).min(self.filled + self.filled.clamp(LEND_FIRST, LEND_MAX));
        // Grown before it is lent (the lent slice cannot move). Without the
        // memory, lend nothing: the bytes then come through `feed`, which
        // fails the connection.
        if grow(&mut self.content, end, self.len).is_err() {
            return None;
        }
        let mut buf = std::mem::take(&mut self.content);
        if buf.len() < end {
            buf.resize(end, 0);
        }
        Some(InputBuffer { buf, filled: self.filled, end })
    }

    /// Takes back a buffer from [`lend`](Self::lend); returns the bytes read
    /// past the content (the rest of the stream), to be fed on.
    pub(crate) fn give_back(&mut self, input: InputBuffer) -> Vec<u8> {
        let InputBuffer { buf, filled, .. } = input;
        self.content = buf;
        self.filled = filled.min(self.len);
        if filled <= self.len {
            return Vec::new();
        }
        let past = self.content[self.len..filled].to_vec();
        self.content.truncate(self.len);
        past
    }

    /// The body's bytes around the string's content: up to the end of the
    /// string's head, and after the content (for counting its items).
    pub(crate) fn skeleton_parts(&self) -> (&[u8], &[u8]) {
        self.skeleton.split_at(self.at)
    }

    /// Decodes the whole frame, as [`decode_cbor`] would its contiguous
    /// body.
    pub(crate) fn decode(self, recursion_limit: usize, pool: &BufferPool) -> Result<Cbor> {
        debug_assert!(self.is_complete());
        let LargeString { skeleton, at, mut content, len, .. } = self;
        content.truncate(len);
        // A first pass with an empty stand-in tells whether the fast path
        // accepts the frame, before the content is moved into the item
        // (a rejected item would drop it; the fallback needs it).
        let stand_in = Hole { at, len, content: Vec::new() };
        if SliceDecoder::decode_with_hole(&skeleton, recursion_limit, Some(stand_in), None).is_some() {
            let hole = Hole { at, len, content };
            return SliceDecoder::decode_with_hole(&skeleton, recursion_limit, Some(hole), Some(pool))
                .ok_or_else(|| DecodeError::BadCbor("inconsistent large byte string".into()).into());
        }
        // Anything else gets exactly ciborium's result, from the body put
        // back together.
        let mut body = skeleton;
        body.splice(at..at, content);
        decode_cbor_in(&body, recursion_limit, Some(pool))
    }
}

/// A buffer the protocol lends for the transport to read into (see
/// [`Protocol::input_buffer`](crate::protocol::Protocol::input_buffer)).
#[derive(Debug)]
pub struct InputBuffer {
    buf: Vec<u8>,
    filled: usize,
    end: usize,
}

impl InputBuffer {
    /// Where the next bytes read go.
    pub fn unfilled(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..self.end]
    }

    /// Records that `n` bytes were read into [`unfilled`](Self::unfilled).
    ///
    /// # Panics
    ///
    /// If `n` is more than `unfilled` held.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.end - self.filled, "advanced past the room lent");
        self.filled += n;
    }

    /// True when no room is left: read no more into it.
    pub fn is_full(&self) -> bool {
        self.filled == self.end
    }
}
