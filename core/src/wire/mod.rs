//! Frames and messages: how bytes on the wire are cut and what they mean.
//!
//! A frame is a 4-byte big-endian length followed by exactly one CBOR item.
//! The length is checked against the limit *before* any of the body is
//! buffered, and a frame may arrive split at any byte. A message is a CBOR
//! array whose first element names its kind:
//!
//! | message | layout |
//! |---|---|
//! | hello   | `[0, "netref", version, features]` |
//! | request | `[1, seq, kind, ...]` (see [`RequestKind`]) |
//! | reply   | `[2, seq, value]` |
//! | error   | `[3, seq, type_name, message, [traceback...]]` |
//!
//! Values inside messages are CBOR items ([`Cbor`]); object references are
//! the two private tags [`TAG_SENDER_OBJECT`] and [`TAG_RECEIVER_OBJECT`]
//! around an object id. This module knows the shapes; the protocol gives
//! the ids their meaning.
//!
//! The codec behind it is ciborium (and a decoder and an encoder of our own
//! for the common subset, which agree with it byte for byte), but no
//! signature here names a ciborium type: [`Cbor`] is netref's own.

use half::f16;

use crate::error::{ConvertError, DecodeError, Error, Expected, LimitError, RemoteError, Result};

/// Bytes that open every netref hello, so that a peer speaking something else
/// is told so instead of being misread.
pub const MAGIC: &str = "netref";
/// Protocol version. Peers must agree on it exactly.
pub const VERSION: u64 = 1;
/// Feature bits this build understands (none are defined yet; the field lets
/// later versions negotiate additions without a version bump).
pub const FEATURES: u64 = 0;

/// Tag around the id of an object that lives at the sender of the message.
pub const TAG_SENDER_OBJECT: u64 = 0x7465_0001;
/// Tag around the id of the receiver's own object, handed back.
pub const TAG_RECEIVER_OBJECT: u64 = 0x7465_0002;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// One CBOR data item, as messages carry it: netref's own type, so that
/// the CBOR library behind the codec is no part of the API.
///
/// Integers span CBOR's range, -2^64 to 2^64-1; [`encode_frame`] refuses
/// one outside it. Floats are written in the shortest width that holds
/// them exactly. Two floats compare as `f64`s do (a NaN equals nothing).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Cbor {
    /// An integer (major types 0 and 1; bignums that fit read as these).
    Integer(i128),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A floating-point number of any width.
    Float(f64),
    /// A text string.
    Text(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A tagged item.
    Tag(u64, Box<Cbor>),
    /// An array.
    Array(Vec<Cbor>),
    /// A map, its entries in the order they were written.
    Map(Vec<(Cbor, Cbor)>),
}

impl Cbor {
    /// The integer, if this is one.
    pub fn as_integer(&self) -> Option<i128> {
        match self {
            Cbor::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

/// The smallest and largest integers CBOR carries.
const CBOR_INTEGERS: std::ops::RangeInclusive<i128> = -(1 << 64)..=(1 << 64) - 1;

/// `i`, when CBOR carries it; otherwise the conversion error saying so.
pub(crate) fn cbor_integer(i: i128) -> Result<i128> {
    if CBOR_INTEGERS.contains(&i) {
        return Ok(i);
    }
    Err(ConvertError::mismatch(
        Expected::Text("an integer from -2^64 to 2^64-1 (what CBOR carries)".into()),
        format!("the integer {i}"),
    )
    .into())
}

/// `item` as ciborium's `Value`, for its `Serialize` (see `Value`'s).
pub(crate) fn into_ciborium(item: Cbor) -> Result<ciborium::Value> {
    use ciborium::Value as C;
    Ok(match item {
        Cbor::Integer(i) => match ciborium::value::Integer::try_from(i) {
            Ok(i) => C::Integer(i),
            Err(_) => return Err(cbor_integer(i).expect_err("outside CBOR's range")),
        },
        Cbor::Bytes(b) => C::Bytes(b),
        Cbor::Float(x) => C::Float(x),
        Cbor::Text(t) => C::Text(t),
        Cbor::Bool(b) => C::Bool(b),
        Cbor::Null => C::Null,
        Cbor::Tag(tag, inner) => C::Tag(tag, Box::new(into_ciborium(*inner)?)),
        Cbor::Array(items) => C::Array(items.into_iter().map(into_ciborium).collect::<Result<_>>()?),
        Cbor::Map(entries) => C::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((into_ciborium(k)?, into_ciborium(v)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// What ciborium decoded, as a [`Cbor`] (its `Value` has the same shape,
/// with room for more kinds of item than it has).
fn from_ciborium(item: ciborium::Value) -> Result<Cbor> {
    use ciborium::Value as C;
    Ok(match item {
        C::Integer(i) => Cbor::Integer(i.into()),
        C::Bytes(b) => Cbor::Bytes(b),
        C::Float(x) => Cbor::Float(x),
        C::Text(t) => Cbor::Text(t),
        C::Bool(b) => Cbor::Bool(b),
        C::Null => Cbor::Null,
        C::Tag(tag, inner) => Cbor::Tag(tag, Box::new(from_ciborium(*inner)?)),
        C::Array(items) => Cbor::Array(items.into_iter().map(from_ciborium).collect::<Result<_>>()?),
        C::Map(entries) => Cbor::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((from_ciborium(k)?, from_ciborium(v)?)))
                .collect::<Result<_>>()?,
        ),
        other => return Err(DecodeError::BadCbor(format!("unsupported CBOR item {other:?}")).into()),
    })
}

/// Splits an incoming byte stream into frames.
///
/// Feed it whatever arrived with [`push`](Self::push), then take frames with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)` ("need more
/// bytes", a normal outcome).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        // Reclaim consumed space before growing, so a long stream of small
        // frames does not grow the buffer (amortised O(1) per byte).
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.capacity() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The bytes held (after [`next_frame`](Self::next_frame) returned
    /// `Ok(None)`: the start of a partial frame).
    pub(crate) fn partial(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Forgets the bytes held: they were taken elsewhere.
    pub(crate) fn discard_partial(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame body, `Ok(None)` when more bytes are needed, or
    /// an error when the header announces more than `max_len` bytes.
    pub fn next_frame(&mut self, max_len: usize) -> Result<Option<&[u8]>> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > max_len {
            return Err(LimitError::FrameTooLarge { len, max: max_len }.into());
        }
        if avail.len() < HEADER_LEN + len {
            // Reserve for the announced body only now that it passed the limit.
            let missing = HEADER_LEN + len - avail.len();
            self.buf.reserve(missing);
            return Ok(None);
        }
        let body = self.start + HEADER_LEN..self.start + HEADER_LEN + len;
        self.start = body.end;
        Ok(Some(&self.buf[body]))
    }

    /// Splits the first whole frame off `bytes`: its body and the bytes
    /// after it; `Ok(None)` when `bytes` holds no whole frame, or the same
    /// error as [`next_frame`](Self::next_frame). With an empty decoder
    /// this reads frames straight from received bytes, so only a partial
    /// frame left at their end needs [`push`](Self::push)ing.
    pub fn split_frame(bytes: &[u8], max_len: usize) -> Result<Option<(&[u8], &[u8])>> {
        if bytes.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len > max_len {
            return Err(LimitError::FrameTooLarge { len, max: max_len }.into());
        }
        if bytes.len() - HEADER_LEN < len {
            return Ok(None);
        }
        let (body, rest) = bytes[HEADER_LEN..].split_at(len);
        Ok(Some((body, rest)))
    }

    /// Call at end of stream: fails if a partial frame is left over.
    pub fn finish(&self) -> Result<()> {
        let avail = &self.buf[self.start..];
        if avail.is_empty() {
            return Ok(());
        }
        let expected = if avail.len() >= HEADER_LEN {
            HEADER_LEN + u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize
        } else {
            HEADER_LEN
        };
        Err(DecodeError::Truncated { expected, got: avail.len() }.into())
    }
}

/// Decodes one frame body into a CBOR item, with an explicit recursion limit
/// (a codec's default can overflow a small thread stack) and no trailing bytes.
pub fn decode_cbor(body: &[u8], recursion_limit: usize) -> Result<Cbor> {
    if let Some(item) = SliceDecoder::decode(body, recursion_limit) {
        return Ok(item);
    }
    let mut rest = body;
    let item: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, recursion_limit)
        .map_err(|e| match e {
            ciborium::de::Error::RecursionLimitExceeded => {
                Error::Limit(LimitError::TooDeep { max: recursion_limit })
            }
            other => Error::Decode(DecodeError::BadCbor(other.to_string())),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()).into());
    }
    if holds_bignum_tag(&item) {
        // ciborium turns a bignum into an integer only when its byte string
        // has a definite length (`c2 41 05` is 5, `c2 5f 41 05 ff` stays a
        // tag). Re-reading the item in definite form gives the integer, so a
        // value decodes the same however the peer chose to write it (the
        // fuzzer found a bignum that changed form on each round trip).
        let mut definite = Vec::new();
        ciborium::ser::into_writer(&item, &mut definite)
            .map_err(|e| Error::Decode(DecodeError::BadCbor(e.to_string())))?;
        let item = ciborium::de::from_reader_with_recursion_limit(&definite[..], recursion_limit)
            .map_err(|e| Error::Decode(DecodeError::BadCbor(e.to_string())))?;
        return from_ciborium(item);
    }
    from_ciborium(item)
}

/// Whether `item` holds a bignum tag (2 or 3) anywhere.
fn holds_bignum_tag(item: &ciborium::Value) -> bool {
    use ciborium::Value as C;
    match item {
        C::Tag(2 | 3, _) => true,
        C::Tag(_, inner) => holds_bignum_tag(inner),
        C::Array(items) => items.iter().any(holds_bignum_tag),
        C::Map(entries) => entries.iter().any(|(k, v)| holds_bignum_tag(k) || holds_bignum_tag(v)),
        _ => false,
    }
}

/// Decodes the common subset of CBOR that netref peers write (definite
/// lengths; integers, floats of 16, 32 and 64 bits, strings, arrays, maps, tags
/// other than bignums, booleans, null) straight from the frame's bytes.
///
/// ciborium reads a byte string in 4 KiB pieces through a scratch buffer
/// into a `Vec` that grows as it goes (for 1 MiB: the bytes copied twice
/// more, into fresh memory); here a byte string is one exact-size copy out of
/// the frame. Anything outside the subset, malformed input, nesting near the
/// recursion limit and trailing bytes all give `None`, and the caller
/// decodes with ciborium, so every result and every error is what ciborium
/// alone would give.
struct SliceDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Containers (arrays, maps, tags) that may enclose an item: one less
    /// than ciborium's recursion limit, so nothing it refuses is accepted.
    max_depth: usize,
    /// A byte string whose content is not in `buf` (see [`LargeString`]):
    /// its head ends at `hole.at` in `buf`, and the item is `hole.content`.
    hole: Option<Hole>,
}

struct Hole {
    at: usize,
    /// The string's length (`content` may be an empty stand-in).
    len: usize,
    content: Vec<u8>,
}

impl<'a> SliceDecoder<'a> {
    fn decode(body: &'a [u8], recursion_limit: usize) -> Option<Cbor> {
        Self::decode_with_hole(body, recursion_limit, None)
    }

    fn decode_with_hole(body: &'a [u8], recursion_limit: usize, hole: Option<Hole>) -> Option<Cbor> {
        let mut d = SliceDecoder { buf: body, pos: 0, max_depth: recursion_limit.saturating_sub(1), hole };
        let item = d.item(0)?;
        (d.pos == body.len() && d.hole.is_none()).then_some(item)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// The argument of a head whose additional information is `info`.
    fn argument(&mut self, info: u8) -> Option<u64> {
        Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take_array::<1>()?[0]),
            25 => u64::from(u16::from_be_bytes(self.take_array()?)),
            26 => u64::from(u32::from_be_bytes(self.take_array()?)),
            27 => u64::from_be_bytes(self.take_array()?),
            _ => return None, // indefinite length or reserved
        })
    }

    /// A length, which must fit in what is left of the frame (each element
    /// takes at least one byte), so a forged count allocates nothing.
    fn length(&mut self, info: u8) -> Option<usize> {
        let n = usize::try_from(self.argument(info)?).ok()?;
        (n <= self.buf.len() - self.pos).then_some(n)
    }

    fn item(&mut self, depth: usize) -> Option<Cbor> {
        let head = *self.buf.get(self.pos)?;
        self.pos += 1;
        let (major, info) = (head >> 5, head & 0x1f);
        Some(match major {
            0 => Cbor::Integer(self.argument(info)?.into()),
            1 => Cbor::Integer(-1 - i128::from(self.argument(info)?)),
            2 => {
                let n = usize::try_from(self.argument(info)?).ok()?;
                if self.hole.as_ref().is_some_and(|h| h.at == self.pos && h.len == n) {
                    return Some(Cbor::Bytes(self.hole.take()?.content));
                }
                if n > self.buf.len() - self.pos {
                    return None;
                }
                Cbor::Bytes(copy_bytes(self.take(n)?))
            }
            3 => {
                let n = self.length(info)?;
                Cbor::Text(std::str::from_utf8(self.take(n)?).ok()?.to_owned())
            }
            4..=6 if depth >= self.max_depth => return None,
            4 => {
                let n = self.length(info)?;
                let mut items = Vec::with_capacity(n.min(PREALLOCATED_ITEMS));
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Cbor::Array(items)
            }
            5 => {
                let n = self.length(info)?;
                let mut entries = Vec::with_capacity(n.min(PREALLOCATED_ITEMS));
                for _ in 0..n {
                    entries.push((self.item(depth + 1)?, self.item(depth + 1)?));
                }
                Cbor::Map(entries)
            }
            6 => match self.argument(info)? {
                // Bignums become integers in ciborium: leave them to it.
                2 | 3 => return None,
                tag => Cbor::Tag(tag, Box::new(self.item(depth + 1)?)),
            },
            _ => match info {
                20 => Cbor::Bool(false),
                21 => Cbor::Bool(true),
                22 => Cbor::Null,
                25 => Cbor::Float(f16::from_be_bytes(self.take_array()?).into()),
                26 => Cbor::Float(f32::from_be_bytes(self.take_array()?).into()),
                27 => Cbor::Float(f64::from_be_bytes(self.take_array()?)),
                // Undefined, other simple values, breaks.
                _ => return None,
            },
        })
    }
}

/// Byte strings at least this long reuse the buffer of one sent earlier
/// on this thread (see [`recycle`]); shorter ones are plain allocations.
const RECYCLE_MIN: usize = 64 << 10;
/// Larger buffers are not kept for reuse.
const RECYCLE_MAX: usize = 16 << 20;

thread_local! {
    /// The buffer of the last large byte string this thread sent.
    static SPARE_BYTES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Takes back the buffer of the largest byte string in `item`, a message
/// just encoded, for the next large byte string this thread decodes.
///
/// A megabyte freed after sending and another allocated for the next
/// message received would otherwise come from fresh memory every time
/// (the allocator returns the freed top of its heap to the kernel, and
/// every page of the next buffer faults in again): an echo server or a
/// client sending and receiving payloads in turn spent a third of its time
/// in page faults.
pub(crate) fn recycle(item: Cbor) {
    fn largest(item: Cbor, depth: usize, best: &mut Vec<u8>) {
        match item {
            Cbor::Bytes(b) if b.capacity() > best.capacity() && b.capacity() <= RECYCLE_MAX => *best = b,
            // A message's values sit at most a few levels down.
            Cbor::Array(items) if depth < 4 => items.into_iter().for_each(|i| largest(i, depth + 1, best)),
            _ => {}
        }
    }
    let mut best = Vec::new();
    largest(item, 0, &mut best);
    keep_spare(best);
}

/// `bytes` in a new `Vec`, in the recycled buffer when it fits snugly.
fn copy_bytes(bytes: &[u8]) -> Vec<u8> {
    match take_spare(bytes.len()) {
        Some(mut spare) => {
            spare.clear();
            spare.extend_from_slice(bytes);
            spare
        }
        None => bytes.to_vec(),
    }
}

/// Takes the spare buffer (see [`recycle`]) when it suits a byte string of
/// `len` bytes: big enough, and not more than twice the size (the buffer
/// is handed to the caller).
fn take_spare(len: usize) -> Option<Vec<u8>> {
    if len < RECYCLE_MIN {
        return None;
    }
    let spare = SPARE_BYTES.try_with(|spare| spare.take()).ok()?;
    (spare.capacity() >= len && spare.capacity() / 2 <= len).then_some(spare)
}

/// Keeps `bytes`, a large byte string's buffer this thread is done with,
/// for the next large byte string it receives.
fn keep_spare(bytes: Vec<u8>) {
    if (RECYCLE_MIN..=RECYCLE_MAX).contains(&bytes.capacity()) {
        // `try_with`: a connection may close (and send) while the thread's
        // locals are being destroyed; the buffer is then simply freed.
        let _ = SPARE_BYTES.try_with(|spare| spare.set(bytes));
    }
}

/// Byte strings at least this long are received straight into their own
/// buffer ([`LargeString`]) when their frame arrives in pieces, and sent
/// from it ([`Output`]).
const LARGE_MIN: usize = RECYCLE_MIN;

/// How far into a frame's body the head of a large byte string is looked
/// for: a message's values start within a few dozen bytes of it.
const LARGE_SCAN_MAX: usize = 512;

/// Room lent past the end of a large byte string's content (see
/// [`LargeString::lend`]), so that one read takes the rest of the frame,
/// and what follows it, along.
const LEND_SLACK: usize = 64 << 10;

/// Most room lent for one read pass: a fresh buffer is zeroed before it
/// is lent, so a forged length costs no more than this at a time.
const LEND_MAX: usize = 4 << 20;

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
    pub(crate) fn start(partial: &[u8]) -> Option<LargeString> {
        let header: [u8; HEADER_LEN] = partial.get(..HEADER_LEN)?.try_into().ok()?;
        let body_len = u32::from_be_bytes(header) as usize;
        let received = &partial[HEADER_LEN..];
        if received.len() >= body_len {
            return None; // a whole frame: nothing to wait for
        }
        let (at, len) = find_large_bytes(received, body_len)?;
        let mut large = LargeString {
            skeleton: received[..at].to_vec(),
            at,
            tail_len: body_len - at - len,
            content: content_buffer(len, HEADER_LEN + at),
            filled: 0,
            len,
        };
        let used = large.feed(&received[at..]);
        debug_assert_eq!(used, received.len() - at);
        Some(large)
    }

    /// Takes the frame's bytes from the start of `bytes`; returns how many.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> usize {
        let n = (self.len - self.filled).min(bytes.len());
        let within = (self.content.len() - self.filled).min(n);
        self.content[self.filled..self.filled + within].copy_from_slice(&bytes[..within]);
        self.content.extend_from_slice(&bytes[within..n]);
        self.filled += n;
        let rest = &bytes[n..];
        let t = (self.at + self.tail_len - self.skeleton.len()).min(rest.len());
        self.skeleton.extend_from_slice(&rest[..t]);
        n + t
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
    pub(crate) fn lends(&self) -> bool {
        self.filled < self.len && !aliased(HEADER_LEN + self.at, self.content.as_ptr() as usize)
    }

    /// Lends the rest of the content's buffer, and some room past it, for
    /// the transport to read into: the string then arrives in its final
    /// place with no copy at all. `None` once the content is complete.
    pub(crate) fn lend(&mut self) -> Option<InputBuffer> {
        // The kernel's copy into the buffer aliases as a send's does (see
        // `SplicingWriter`) when the buffer sits a little ahead of where
        // the string's bytes were in the peer's send (its frame started
        // one, most likely): then read into the thread's buffer and copy.
        if !self.lends() {
            return None;
        }
        let mut buf = std::mem::take(&mut self.content);
        // Within the capacity, so that growing never moves what is in.
        let room = (self.len + LEND_SLACK).min(buf.capacity().max(self.len));
        let end = room.min(self.filled + self.filled.clamp(LEND_FIRST, LEND_MAX));
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

    /// Decodes the whole frame, as [`decode_cbor`] would its contiguous
    /// body.
    pub(crate) fn decode(self, recursion_limit: usize) -> Result<Cbor> {
        debug_assert!(self.is_complete());
        let LargeString { skeleton, at, mut content, len, .. } = self;
        content.truncate(len);
        // A first pass with an empty stand-in tells whether the fast path
        // accepts the frame, before the content is moved into the item
        // (a rejected item would drop it; the fallback needs it).
        let stand_in = Hole { at, len, content: Vec::new() };
        if SliceDecoder::decode_with_hole(&skeleton, recursion_limit, Some(stand_in)).is_some() {
            let hole = Hole { at, len, content };
            return SliceDecoder::decode_with_hole(&skeleton, recursion_limit, Some(hole))
                .ok_or_else(|| DecodeError::BadCbor("inconsistent large byte string".into()).into());
        }
        // Anything else gets exactly ciborium's result, from the body put
        // back together.
        let mut body = skeleton;
        body.splice(at..at, content);
        decode_cbor(&body, recursion_limit)
    }
}

/// The first byte string of at least [`LARGE_MIN`] bytes in the frame body
/// starting with `received` (`body_len` bytes in all): where its content
/// starts and how long it is. CBOR lists items in pre-order, so reading
/// heads one after the other finds it without building anything.
fn find_large_bytes(received: &[u8], body_len: usize) -> Option<(usize, usize)> {
    let mut d = SliceDecoder { buf: received, pos: 0, max_depth: 0, hole: None };
    while d.pos < LARGE_SCAN_MAX {
        let head = *d.buf.get(d.pos)?;
        d.pos += 1;
        let (major, info) = (head >> 5, head & 0x1f);
        let arg = d.argument(info)?;
        match major {
            2 | 3 => {
                let n = usize::try_from(arg).ok()?;
                if major == 2 && n >= LARGE_MIN {
                    return (n <= body_len - d.pos).then_some((d.pos, n));
                }
                d.take(n)?;
            }
            // Integers, containers and tags: their heads only. Other
            // simple values and floats: their argument was their bytes.
            _ => {}
        }
    }
    None
}

/// A buffer the protocol lends for the transport to read into (see
/// [`Protocol::take_input_buffer`](crate::protocol::Protocol::take_input_buffer)).
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

/// Elements reserved up front for an array or map: a forged count costs
/// no more than this until its elements actually arrive.
const PREALLOCATED_ITEMS: usize = 1024;

/// Appends one frame holding `item` to `out`; fails, leaving `out` as it
/// was, if the frame would exceed `max_len` or `item` holds an integer
/// outside CBOR's range.
pub fn encode_frame(item: &Cbor, out: &mut Vec<u8>, max_len: usize) -> Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let written = write_cbor(item, out);
    close_frame(out, at, written, max_len)
}

/// Completes the frame whose header space starts at `at` and whose body
/// was just written (or failed to be): fills in its length, or takes it
/// back out of `out` with the error.
fn close_frame(
    out: &mut Vec<u8>,
    at: usize,
    written: std::result::Result<(), OutOfRange>,
    max_len: usize,
) -> Result<()> {
    if let Err(e) = written {
        out.truncate(at);
        return Err(e.into_error());
    }
    let len = out.len() - at - HEADER_LEN;
    if len > max_len || len > u32::MAX as usize {
        out.truncate(at);
        return Err(LimitError::FrameTooLarge { len, max: max_len }.into());
    }
    out[at..at + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// An integer [`write_cbor`] met outside CBOR's range.
struct OutOfRange(i128);

impl OutOfRange {
    #[cold]
    fn into_error(self) -> Error {
        cbor_integer(self.0).expect_err("out of range")
    }
}

/// Where [`write_cbor`] writes: a frame buffer, or the [`SplicingWriter`]
/// that leaves large byte strings out of it.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    /// The content of a byte string (written in one piece).
    fn put_bytes(&mut self, content: &[u8]) {
        self.put(content);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends a CBOR header of major type `major` with argument `arg`, in its
/// shortest form (as ciborium writes it).
fn head(out: &mut impl Sink, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.put(&[m | arg as u8]);
    } else if arg <= u8::MAX as u64 {
        out.put(&[m | 24, arg as u8]);
    } else if arg <= u16::MAX as u64 {
        let [a, b] = (arg as u16).to_be_bytes();
        out.put(&[m | 25, a, b]);
    } else if arg <= u32::MAX as u64 {
        let [a, b, c, d] = (arg as u32).to_be_bytes();
        out.put(&[m | 26, a, b, c, d]);
    } else {
        out.put(&[m | 27]);
        out.put(&arg.to_be_bytes());
    }
}

/// Appends `item`'s CBOR to `out`: the bytes ciborium writes for it, in
/// the shortest form of every head and float (a sync call's message went
/// through ciborium's `Serialize` item by item, about a tenth of the
/// user-space time of encoding a small call).
fn write_cbor(item: &Cbor, out: &mut impl Sink) -> std::result::Result<(), OutOfRange> {
    match item {
        Cbor::Integer(i) => {
            let i = *i;
            if let Ok(u) = u64::try_from(i) {
                head(out, 0, u);
            } else if let Ok(n) = u64::try_from(-1 - i) {
                head(out, 1, n);
            } else {
                return Err(OutOfRange(i));
            }
        }
        Cbor::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.put_bytes(b);
        }
        Cbor::Text(t) => {
            head(out, 3, t.len() as u64);
            out.put(t.as_bytes());
        }
        Cbor::Array(items) => {
            head(out, 4, items.len() as u64);
            for i in items {
                write_cbor(i, out)?;
            }
        }
        Cbor::Map(entries) => {
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                write_cbor(k, out)?;
                write_cbor(v, out)?;
            }
        }
        Cbor::Tag(tag, inner) => {
            head(out, 6, *tag);
            write_cbor(inner, out)?;
        }
        Cbor::Bool(b) => out.put(&[if *b { 0xf5 } else { 0xf4 }]),
        Cbor::Null => out.put(&[0xf6]),
        Cbor::Float(x) => write_float(*x, out),
    }
    Ok(())
}

/// Appends a float in the shortest width that holds it exactly (half,
/// single, double precision; a NaN keeps its payload bits), as ciborium
/// writes it.
fn write_float(x: f64, out: &mut impl Sink) {
    let half = f16::from_f64(x);
    if f64::from(half).to_bits() == x.to_bits() {
        let [a, b] = half.to_be_bytes();
        out.put(&[0xf9, a, b]);
    } else if f64::from(x as f32).to_bits() == x.to_bits() {
        let [a, b, c, d] = (x as f32).to_be_bytes();
        out.put(&[0xfa, a, b, c, d]);
    } else {
        out.put(&[0xfb]);
        out.put(&x.to_be_bytes());
    }
}

/// Frames queued for the peer.
///
/// Large byte strings ([`LARGE_MIN`] bytes or more) are not copied in: the
/// value's own buffer is kept beside the queue and written from in place
/// by [`slices`](Self::slices) (a vectored write). Callers that want one
/// slice ([`contiguous`](Self::contiguous)) get the copy made then.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Everything queued except the spliced strings' contents.
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    start: usize,
    /// Large byte strings in stream order; each comes before `buf[at..]`.
    spliced: std::collections::VecDeque<Spliced>,
    /// Bytes of `spliced` not yet written.
    spliced_len: usize,
}

#[derive(Debug)]
struct Spliced {
    at: usize,
    bytes: Vec<u8>,
    written: usize,
}

/// A source `(dst - src) mod 4096` bytes behind its destination, for
/// distances up to this, is not written in place (see [`SplicingWriter`]).
const ALIASING_WINDOW: isize = 256;

/// Whether a copy from `src` to `dst` (addresses, or offsets in the
/// kernel's socket pages, which start at a page) is slowed by aliasing
/// (see [`SplicingWriter`]): `dst` lies 1 to [`ALIASING_WINDOW`] bytes
/// ahead of `src` modulo a page. Addresses are only compared.
fn aliased(src: usize, dst: usize) -> bool {
    let ahead = (dst as isize).wrapping_sub(src as isize).rem_euclid(4096);
    (1..=ALIASING_WINDOW).contains(&ahead)
}

/// The buffer a large string `len` bytes long, `offset` bytes into its
/// frame, is received into. The spare, unless the kernel's copies to and
/// from it would alias: this receive's, or the send it may go back out in
/// (its head a few dozen bytes long). glibc places every large block it
/// maps 16 bytes into a page, where both do for usual heads, and a
/// recycled buffer would keep that place for good; a fresh block (from
/// the heap once one was unmapped) usually lies elsewhere. When it does
/// not, the spare is kept and the string is copied in.
fn content_buffer(len: usize, offset: usize) -> Vec<u8> {
    let suits = |buf: &Vec<u8>| {
        let page_offset = buf.as_ptr() as usize % 4096;
        !aliased(offset, buf.as_ptr() as usize)
            && (SEND_HEAD_MAX..=4096 - ALIASING_WINDOW as usize).contains(&page_offset)
    };
    let spare = take_spare(len);
    if spare.as_ref().is_some_and(suits) {
        return spare.expect("checked");
    }
    let fresh = Vec::with_capacity(len + LEND_SLACK);
    match spare {
        Some(spare) if !suits(&fresh) => spare,
        _ => fresh,
    }
}

/// Heads of frames carrying a large string are assumed shorter than this
/// when choosing a buffer for it (see [`content_buffer`]).
const SEND_HEAD_MAX: usize = 320;

/// Writes CBOR into a frame buffer, except the contents of the large byte
/// strings listed in `large`: their positions are noted instead.
///
/// The kernel copies the `i`-th byte of a `send` to offset `i` (mod 4096)
/// of its socket buffers (TCP reuses its page from offset 0 once the peer
/// has read the previous message). When a string's bytes sit a little
/// below their destination modulo a page, each load in that copy waits on
/// a store just made to a 4 KiB-aliased address: sending a 1 MiB string
/// 5 bytes "ahead" took twice as long as copying it into the frame first
/// and sending that (a frame in this buffer starts at offset 16: behind).
/// Such a string is copied in.
struct SplicingWriter<'a> {
    out: &'a mut Vec<u8>,
    large: &'a [(*const u8, usize)],
    /// Where the next write to the transport starts in `out`, and the
    /// spliced bytes queued before this frame: a string's offset in it.
    write_start: usize,
    spliced_before: usize,
    /// `(position in out, index in large)`, in stream order.
    found: Vec<(usize, usize)>,
}

impl SplicingWriter<'_> {
    fn splice(&self, buf: &[u8]) -> Option<usize> {
        if buf.len() < LARGE_MIN {
            return None;
        }
        let key = (buf.as_ptr(), buf.len());
        let i = self.large.iter().position(|&l| l == key)?;
        if self.found.iter().any(|&(_, j)| j == i) {
            return None;
        }
        let spliced: usize = self.found.iter().map(|&(_, j)| self.large[j].1).sum();
        let dst = self.out.len() - self.write_start + self.spliced_before + spliced;
        (!aliased(buf.as_ptr() as usize, dst)).then_some(i)
    }
}

impl Sink for SplicingWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn put_bytes(&mut self, content: &[u8]) {
        match self.splice(content) {
            Some(i) => self.found.push((self.out.len(), i)),
            None => self.out.extend_from_slice(content),
        }
    }
}

/// Calls `f` on every large byte string in `item`, in stream order.
fn each_large_bytes(item: &mut Cbor, f: &mut impl FnMut(&mut Vec<u8>)) {
    match item {
        Cbor::Bytes(b) if b.len() >= LARGE_MIN => f(b),
        Cbor::Array(items) => items.iter_mut().for_each(|i| each_large_bytes(i, f)),
        Cbor::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            each_large_bytes(k, f);
            each_large_bytes(v, f)
        }),
        Cbor::Tag(_, inner) => each_large_bytes(inner, f),
        _ => {}
    }
}

impl Output {
    /// Bytes queued and not yet written.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start + self.spliced_len
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues one frame holding `msg`. The messages every call sends (a
    /// call, a method call, a reply) without a large byte string are
    /// written straight from their parts; the rest go through
    /// [`push_frame`](Self::push_frame).
    pub(crate) fn push_message(&mut self, msg: Message, max_len: usize) -> Result<()> {
        if !msg.holds_large_bytes() {
            let at = self.buf.len();
            self.buf.extend_from_slice(&[0; HEADER_LEN]);
            if let Some(written) = msg.write_direct(&mut self.buf) {
                return close_frame(&mut self.buf, at, written, max_len);
            }
            self.buf.truncate(at);
        }
        self.push_frame(msg.into_cbor(), max_len)
    }

    /// Queues one frame holding `item`, whose large byte strings move into
    /// the queue; fails, queuing nothing, if the frame would exceed
    /// `max_len`. The largest byte string left in the item is recycled.
    pub(crate) fn push_frame(&mut self, mut item: Cbor, max_len: usize) -> Result<()> {
        let mut large = Vec::new();
        each_large_bytes(&mut item, &mut |b| large.push((b.as_ptr(), b.len())));
        if large.is_empty() {
            let queued = encode_frame(&item, &mut self.buf, max_len);
            recycle(item);
            return queued;
        }
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        let mut w = SplicingWriter {
            out: &mut self.buf,
            large: &large,
            write_start: self.start,
            spliced_before: self.spliced_len,
            found: Vec::new(),
        };
        if let Err(e) = write_cbor(&item, &mut w) {
            self.buf.truncate(at);
            return Err(e.into_error());
        }
        let found = w.found;
        let spliced: usize = found.iter().map(|&(_, i)| large[i].1).sum();
        let len = self.buf.len() - at - HEADER_LEN + spliced;
        if len > max_len || len > u32::MAX as usize {
            self.buf.truncate(at);
            return Err(LimitError::FrameTooLarge { len, max: max_len }.into());
        }
        self.buf[at..at + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        let mut taken: Vec<Option<Vec<u8>>> = Vec::new();
        each_large_bytes(&mut item, &mut |b| taken.push(Some(std::mem::take(b))));
        for (pos, i) in found {
            let bytes = taken[i].take().expect("each string is spliced once");
            self.spliced.push_back(Spliced { at: pos, bytes, written: 0 });
        }
        self.spliced_len += spliced;
        recycle(item);
        // Those copied in after all are done with.
        taken.into_iter().flatten().for_each(keep_spare);
        Ok(())
    }

    /// Up to `dst.len()` slices of what is queued, in order; how many.
    pub(crate) fn slices<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut pos = self.start;
        for s in &self.spliced {
            if s.at > pos && n < dst.len() {
                dst[n] = std::io::IoSlice::new(&self.buf[pos..s.at]);
                n += 1;
            }
            if n == dst.len() {
                return n;
            }
            dst[n] = std::io::IoSlice::new(&s.bytes[s.written..]);
            n += 1;
            pos = s.at;
        }
        if pos < self.buf.len() && n < dst.len() {
            dst[n] = std::io::IoSlice::new(&self.buf[pos..]);
            n += 1;
        }
        n
    }

    /// Everything queued as one slice: spliced strings are copied in
    /// first (and their buffers recycled).
    pub(crate) fn contiguous(&mut self) -> &[u8] {
        if let Some(first) = self.spliced.front().map(|s| s.at) {
            let tail = self.buf.split_off(first);
            self.buf.reserve(self.spliced_len + tail.len());
            let mut pos = first;
            for s in std::mem::take(&mut self.spliced) {
                self.buf.extend_from_slice(&tail[pos - first..s.at - first]);
                self.buf.extend_from_slice(&s.bytes[s.written..]);
                pos = s.at;
                keep_spare(s.bytes);
            }
            self.buf.extend_from_slice(&tail[pos - first..]);
            self.spliced_len = 0;
        }
        &self.buf[self.start..]
    }

    /// Drops the first `n` bytes queued: they were written.
    ///
    /// # Panics
    ///
    /// If more than [`len`](Self::len) bytes are consumed.
    pub(crate) fn consume(&mut self, mut n: usize) {
        assert!(n <= self.len(), "consumed more output than was queued");
        while n > 0 {
            let next = self.spliced.front().map_or(self.buf.len(), |s| s.at);
            let k = (next - self.start).min(n);
            self.start += k;
            n -= k;
            if n == 0 {
                break;
            }
            let s = self.spliced.front_mut().expect("checked against len");
            let k = (s.bytes.len() - s.written).min(n);
            s.written += k;
            self.spliced_len -= k;
            n -= k;
            if s.written == s.bytes.len() {
                let done = self.spliced.pop_front().expect("present");
                keep_spare(done.bytes);
            }
        }
        if self.start == self.buf.len() && self.spliced.is_empty() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.spliced.iter_mut().for_each(|s| s.at -= self.start);
            self.start = 0;
        }
    }
}

/// The kinds of request, with their wire codes.
///
/// Requests of the first group get exactly one reply or error each; the last
/// three are one-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    /// `[1, seq, 0]`: the peer's root object.
    Root = 0,
    /// `[1, seq, 1, target, args]`: call an object.
    Call = 1,
    /// `[1, seq, 2, target, name, args]`: call a method by name, one round trip.
    CallMethod = 2,
    /// `[1, seq, 3, target, name]`: read an attribute.
    GetAttr = 3,
    /// `[1, seq, 4, target]`: list exposed names.
    Dir = 4,
    /// `[1, seq, 5, payload]`: echo the payload.
    Ping = 5,
    /// `[1, 0, 6, [[id, count], ...]]`: drop references (one-way).
    Release = 6,
    /// `[1, 0, 7, seq]`: the sender no longer wants the reply to `seq` (one-way).
    Cancel = 7,
    /// `[1, 0, 8, reason]`: the sender is closing (one-way).
    Close = 8,
}

impl RequestKind {
    fn from_code(code: u64) -> Option<Self> {
        use RequestKind::*;
        Some(match code {
            0 => Root,
            1 => Call,
            2 => CallMethod,
            3 => GetAttr,
            4 => Dir,
            5 => Ping,
            6 => Release,
            7 => Cancel,
            8 => Close,
            _ => return None,
        })
    }
}

/// A request as it travels: object ids are the receiver's, values are CBOR
/// whose tags the protocol resolves.
#[derive(Debug, Clone, PartialEq)]
pub enum WireRequest {
    /// Get the root object.
    Root,
    /// Call `target` with `args` (a CBOR array).
    Call {
        /// The receiver's object id.
        target: u64,
        /// The arguments.
        args: Cbor,
    },
    /// Call `target.name(args)`.
    CallMethod {
        /// The receiver's object id.
        target: u64,
        /// The method name.
        name: String,
        /// The arguments.
        args: Cbor,
    },
    /// Read `target.name`.
    GetAttr {
        /// The receiver's object id.
        target: u64,
        /// The attribute name.
        name: String,
    },
    /// List `target`'s exposed names.
    Dir {
        /// The receiver's object id.
        target: u64,
    },
    /// Echo `payload` back.
    Ping(Cbor),
    /// Drop `count` references to each object id.
    Release(Vec<(u64, u64)>),
    /// The sender gave up waiting for the reply to this sequence number.
    Cancel(u64),
    /// The sender is closing the connection.
    Close(String),
}

impl WireRequest {
    /// True for requests that get a reply.
    pub fn expects_reply(&self) -> bool {
        !matches!(self, WireRequest::Release(_) | WireRequest::Cancel(_) | WireRequest::Close(_))
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The first message each side sends.
    Hello {
        /// Protocol version.
        version: u64,
        /// Feature bits.
        features: u64,
    },
    /// A request; `seq` is 0 for one-way requests.
    Request {
        /// Sequence number the reply will carry.
        seq: u64,
        /// What is asked.
        request: WireRequest,
    },
    /// A successful reply.
    Reply {
        /// The request's sequence number.
        seq: u64,
        /// The result.
        value: Cbor,
    },
    /// A failed reply.
    Error {
        /// The request's sequence number.
        seq: u64,
        /// The error.
        error: RemoteError,
    },
}

fn uint(v: u64) -> Cbor {
    Cbor::Integer(v.into())
}

impl Message {
    /// The message as a CBOR item.
    pub fn to_cbor(&self) -> Cbor {
        self.clone().into_cbor()
    }

    /// The message as a CBOR item, taking it apart: values move into the
    /// item instead of being copied (a 1 MiB byte string stays one buffer).
    pub fn into_cbor(self) -> Cbor {
        match self {
            Message::Hello { version, features } => {
                Cbor::Array(vec![uint(0), Cbor::Text(MAGIC.into()), uint(version), uint(features)])
            }
            Message::Request { seq, request } => {
                // Room for the longest request (a method call), so the
                // pushes below never reallocate.
                let mut a = Vec::with_capacity(6);
                a.extend([uint(1), uint(seq)]);
                match request {
                    WireRequest::Root => a.push(uint(RequestKind::Root as u64)),
                    WireRequest::Call { target, args } => {
                        a.extend([uint(RequestKind::Call as u64), uint(target), args])
                    }
                    WireRequest::CallMethod { target, name, args } => {
                        a.extend([uint(RequestKind::CallMethod as u64), uint(target), Cbor::Text(name), args])
                    }
                    WireRequest::GetAttr { target, name } => {
                        a.extend([uint(RequestKind::GetAttr as u64), uint(target), Cbor::Text(name)])
                    }
                    WireRequest::Dir { target } => a.extend([uint(RequestKind::Dir as u64), uint(target)]),
                    WireRequest::Ping(p) => a.extend([uint(RequestKind::Ping as u64), p]),
                    WireRequest::Release(items) => a.extend([
                        uint(RequestKind::Release as u64),
                        Cbor::Array(
                            items.into_iter().map(|(id, n)| Cbor::Array(vec![uint(id), uint(n)])).collect(),
                        ),
                    ]),
                    WireRequest::Cancel(s) => a.extend([uint(RequestKind::Cancel as u64), uint(s)]),
                    WireRequest::Close(reason) => {
                        a.extend([uint(RequestKind::Close as u64), Cbor::Text(reason)])
                    }
                }
                Cbor::Array(a)
            }
            Message::Reply { seq, value } => Cbor::Array(vec![uint(2), uint(seq), value]),
            Message::Error { seq, error } => Cbor::Array(vec![
                uint(3),
                uint(seq),
                Cbor::Text(error.type_name),
                Cbor::Text(error.message),
                Cbor::Array(error.traceback.into_iter().map(Cbor::Text).collect()),
            ]),
        }
    }

    /// Writes the CBOR of a call, a method call or a reply straight from
    /// its parts: the bytes `write_cbor(&self.to_cbor())` gives, without
    /// building the message's array (an allocation, two walks over it and
    /// its drop, per message). `None` for the other messages.
    fn write_direct(&self, out: &mut Vec<u8>) -> Option<std::result::Result<(), OutOfRange>> {
        Some(match self {
            Message::Request { seq, request: WireRequest::Call { target, args } } => {
                head(out, 4, 5);
                for n in [1, *seq, RequestKind::Call as u64, *target] {
                    head(out, 0, n);
                }
                write_cbor(args, out)
            }
            Message::Request { seq, request: WireRequest::CallMethod { target, name, args } } => {
                head(out, 4, 6);
                for n in [1, *seq, RequestKind::CallMethod as u64, *target] {
                    head(out, 0, n);
                }
                head(out, 3, name.len() as u64);
                out.put(name.as_bytes());
                write_cbor(args, out)
            }
            Message::Reply { seq, value } => {
                head(out, 4, 3);
                head(out, 0, 2);
                head(out, 0, *seq);
                write_cbor(value, out)
            }
            _ => return None,
        })
    }

    /// Whether the payload of a message [`write_direct`](Self::write_direct)
    /// writes holds a byte string sent in place (see [`Output`]).
    fn holds_large_bytes(&self) -> bool {
        fn large(item: &Cbor) -> bool {
            match item {
                Cbor::Bytes(b) => b.len() >= LARGE_MIN,
                Cbor::Array(items) => items.iter().any(large),
                Cbor::Map(entries) => entries.iter().any(|(k, v)| large(k) || large(v)),
                Cbor::Tag(_, inner) => large(inner),
                _ => false,
            }
        }
        match self {
            Message::Request {
                request: WireRequest::Call { args, .. } | WireRequest::CallMethod { args, .. },
                ..
            } => large(args),
            Message::Reply { value, .. } => large(value),
            _ => false,
        }
    }

    /// Reads a message from a CBOR item, naming what is wrong when it does
    /// not have a known shape.
    pub fn from_cbor(item: Cbor) -> Result<Message, DecodeError> {
        let Cbor::Array(items) = item else {
            return Err(malformed("a message must be a CBOR array"));
        };
        let mut f = Fields { items: items.into_iter(), what: "message" };
        let kind = f.uint("message kind")?;
        let msg = match kind {
            0 => {
                f.what = "hello";
                let magic = f.text("magic")?;
                if magic != MAGIC {
                    return Err(malformed(&format!("hello magic is {magic:?}, not {MAGIC:?}")));
                }
                Message::Hello { version: f.uint("version")?, features: f.uint("features")? }
            }
            1 => {
                f.what = "request";
                let seq = f.uint("sequence number")?;
                let code = f.uint("request kind")?;
                let kind = RequestKind::from_code(code).ok_or(DecodeError::UnknownRequest(code))?;
                let request = match kind {
                    RequestKind::Root => WireRequest::Root,
                    RequestKind::Call => {
                        WireRequest::Call { target: f.uint("target")?, args: f.array("arguments")? }
                    }
                    RequestKind::CallMethod => WireRequest::CallMethod {
                        target: f.uint("target")?,
                        name: f.text("method name")?,
                        args: f.array("arguments")?,
                    },
                    RequestKind::GetAttr => {
                        WireRequest::GetAttr { target: f.uint("target")?, name: f.text("attribute name")? }
                    }
                    RequestKind::Dir => WireRequest::Dir { target: f.uint("target")? },
                    RequestKind::Ping => WireRequest::Ping(f.any("payload")?),
                    RequestKind::Release => {
                        let Cbor::Array(pairs) = f.array("release list")? else { unreachable!() };
                        let mut out = Vec::with_capacity(pairs.len());
                        for pair in pairs {
                            let mut p = Fields {
                                items: match pair {
                                    Cbor::Array(p) => p.into_iter(),
                                    _ => return Err(malformed("release entry must be [id, count]")),
                                },
                                what: "release entry",
                            };
                            out.push((p.uint("object id")?, p.uint("count")?));
                            p.end()?;
                        }
                        WireRequest::Release(out)
                    }
                    RequestKind::Cancel => WireRequest::Cancel(f.uint("cancelled sequence number")?),
                    RequestKind::Close => WireRequest::Close(f.text("reason")?),
                };
                if request.expects_reply() == (seq == 0) {
                    return Err(malformed(&format!(
                        "request kind {code} with sequence number {seq}: replies need a nonzero one, one-way requests zero"
                    )));
                }
                Message::Request { seq, request }
            }
            2 => {
                f.what = "reply";
                Message::Reply { seq: f.uint("sequence number")?, value: f.any("value")? }
            }
            3 => {
                f.what = "error";
                let seq = f.uint("sequence number")?;
                let type_name = f.text("error type")?;
                let message = f.text("error message")?;
                let Cbor::Array(tb) = f.array("traceback")? else { unreachable!() };
                let traceback = tb
                    .into_iter()
                    .map(|t| match t {
                        Cbor::Text(s) => Ok(s),
                        _ => Err(malformed("traceback entries must be text")),
                    })
                    .collect::<Result<_, _>>()?;
                Message::Error { seq, error: RemoteError { type_name, message, traceback } }
            }
            other => return Err(DecodeError::UnknownMessage(other)),
        };
        f.end()?;
        Ok(msg)
    }
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(what.to_string())
}

struct Fields {
    items: std::vec::IntoIter<Cbor>,
    what: &'static str,
}

impl Fields {
    fn any(&mut self, field: &str) -> Result<Cbor, DecodeError> {
        self.items.next().ok_or_else(|| malformed(&format!("{} is missing its {field}", self.what)))
    }
    fn uint(&mut self, field: &str) -> Result<u64, DecodeError> {
        match self.any(field)? {
            Cbor::Integer(i) => u64::try_from(i)
                .map_err(|_| malformed(&format!("{} {field} must be an unsigned integer", self.what))),
            _ => Err(malformed(&format!("{} {field} must be an unsigned integer", self.what))),
        }
    }
    fn text(&mut self, field: &str) -> Result<String, DecodeError> {
        match self.any(field)? {
            Cbor::Text(s) => Ok(s),
            _ => Err(malformed(&format!("{} {field} must be text", self.what))),
        }
    }
    fn array(&mut self, field: &str) -> Result<Cbor, DecodeError> {
        match self.any(field)? {
            a @ Cbor::Array(_) => Ok(a),
            _ => Err(malformed(&format!("{} {field} must be an array", self.what))),
        }
    }
    fn end(&mut self) -> Result<(), DecodeError> {
        match self.items.len() {
            0 => Ok(()),
            n => Err(malformed(&format!("{} has {n} unexpected extra fields", self.what))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any CBOR item, nested a few levels.
    fn any_cbor() -> impl Strategy<Value = Cbor> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| Cbor::Integer(i.into())),
            any::<u64>().prop_map(|i| Cbor::Integer(i.into())),
            (-(1i128 << 64)..(1i128 << 64)).prop_map(Cbor::Integer),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Cbor::Bytes),
            ".{0,40}".prop_map(Cbor::Text),
            any::<bool>().prop_map(Cbor::Bool),
            Just(Cbor::Null),
            any::<f64>().prop_map(Cbor::Float),
            any::<f32>().prop_map(|f| Cbor::Float(f.into())),
            // Every half float, NaN payloads included: written in two bytes.
            any::<u16>().prop_map(|b| Cbor::Float(f16::from_bits(b).into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..30).prop_map(Cbor::Array),
                prop::collection::vec((inner.clone(), inner.clone()), 0..8).prop_map(Cbor::Map),
                (any::<u64>(), inner).prop_map(|(t, i)| Cbor::Tag(t, Box::new(i))),
            ]
        })
    }

    /// The messages `write_direct` writes, with any payload.
    fn direct_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any_cbor()).prop_map(|(seq, target, args)| Message::Request {
                seq,
                request: WireRequest::Call { target, args }
            }),
            (any::<u64>(), any::<u64>(), ".{0,30}", any_cbor()).prop_map(|(seq, target, name, args)| {
                Message::Request { seq, request: WireRequest::CallMethod { target, name, args } }
            }),
            (any::<u64>(), any_cbor()).prop_map(|(seq, value)| Message::Reply { seq, value }),
        ]
    }

    proptest! {
        /// A message written straight from its parts is the frame its
        /// CBOR item gives.
        #[test]
        fn direct_messages_match_their_items(msg in direct_message()) {
            let mut direct = Output::default();
            let mut item = Vec::new();
            let a = direct.push_message(msg.clone(), usize::MAX).map_err(|e| e.to_string());
            let b = encode_frame(&msg.into_cbor(), &mut item, usize::MAX).map_err(|e| e.to_string());
            prop_assert_eq!(&a, &b);
            if a.is_ok() {
                prop_assert_eq!(direct.contiguous(), &item[..]);
            }
        }

        /// `write_cbor` writes exactly the bytes ciborium writes, so peers
        /// see no difference.
        #[test]
        fn write_cbor_matches_ciborium(item in any_cbor()) {
            let mut ours = Vec::new();
            prop_assert!(write_cbor(&item, &mut ours).is_ok());
            prop_assert_eq!(ours, ciborium_bytes(&item));
        }
    }

    fn frame(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&msg.to_cbor(), &mut out, 1 << 20).unwrap();
        out
    }

    #[test]
    fn split_anywhere() {
        let msg = Message::Request {
            seq: 7,
            request: WireRequest::CallMethod {
                target: 3,
                name: "add".into(),
                args: Cbor::Array(vec![uint(1), uint(2)]),
            },
        };
        let bytes = frame(&msg);
        for cut in 0..=bytes.len() {
            let mut d = FrameDecoder::new();
            d.push(&bytes[..cut]);
            if cut < bytes.len() {
                assert!(d.next_frame(1 << 20).unwrap().is_none());
                d.push(&bytes[cut..]);
            }
            let body = d.next_frame(1 << 20).unwrap().unwrap().to_vec();
            assert_eq!(Message::from_cbor(decode_cbor(&body, 32).unwrap()).unwrap(), msg);
            assert!(d.next_frame(1 << 20).unwrap().is_none());
            d.finish().unwrap();
        }
    }

    /// ciborium's own decoding, for comparison with the slice decoder.
    fn ciborium_decode(body: &[u8], limit: usize) -> Option<Cbor> {
        let mut rest = body;
        let item = ciborium::de::from_reader_with_recursion_limit(&mut rest, limit).ok()?;
        rest.is_empty().then(|| from_ciborium(item).unwrap())
    }

    /// ciborium's own encoding of `item`.
    fn ciborium_bytes(item: &Cbor) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&into_ciborium(item.clone()).unwrap(), &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn an_integer_outside_cbors_range_is_refused_and_nothing_is_written() {
        for i in [1i128 << 64, -(1i128 << 64) - 1, i128::MAX, i128::MIN] {
            let mut out = vec![1, 2, 3];
            let item = Cbor::Array(vec![uint(1), Cbor::Integer(i)]);
            let err = encode_frame(&item, &mut out, usize::MAX).unwrap_err();
            assert!(matches!(err, Error::Convert(_)), "{err:?}");
            assert!(err.to_string().contains("an integer from -2^64 to 2^64-1"), "{err}");
            assert_eq!(out, [1, 2, 3]);
        }
        // The edges of the range are written, as ciborium writes them.
        for i in [(1i128 << 64) - 1, -(1i128 << 64), -(1i128 << 63) - 1] {
            let mut out = Vec::new();
            encode_frame(&Cbor::Integer(i), &mut out, usize::MAX).unwrap();
            assert_eq!(out[HEADER_LEN..], ciborium_bytes(&Cbor::Integer(i)));
            assert_eq!(decode_cbor(&out[HEADER_LEN..], 8).unwrap(), Cbor::Integer(i));
        }
    }

    #[test]
    fn a_bignum_decodes_the_same_in_definite_and_indefinite_form() {
        for (definite, indefinite) in [
            (&[0xc2u8, 0x41, 0x05][..], &[0xc2u8, 0x5f, 0x41, 0x05, 0xff][..]),
            (&[0xc2, 0x40][..], &[0xc2, 0x5f, 0xff][..]),
            (&[0xc3, 0x41, 0x05][..], &[0xc3, 0x5f, 0x41, 0x05, 0xff][..]),
        ] {
            let a = decode_cbor(definite, 8).unwrap();
            let b = decode_cbor(indefinite, 8).unwrap();
            assert!(matches!(a, Cbor::Integer(_)), "{a:?}");
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        // Nested inside a message, too.
        let b = decode_cbor(&[0x82, 0x01, 0xc2, 0x5f, 0x41, 0x07, 0xff], 8).unwrap();
        assert_eq!(format!("{b:?}"), format!("{:?}", Cbor::Array(vec![uint(1), uint(7)])));
    }

    #[test]
    fn slice_decoder_agrees_with_ciborium() {
        let mut big = Vec::new();
        for i in 0..40u64 {
            big.push(Cbor::Integer(((i * 0x1234_5678_9abc) as i64 - 77).into()));
        }
        let items = [
            Cbor::Array(vec![
                uint(2),
                uint(u64::MAX),
                Cbor::Integer(-1 - i128::from(u64::MAX)),
                Cbor::Bytes(vec![9; 20_000]),
                Cbor::Text("héllo".repeat(30)),
                Cbor::Map(vec![(Cbor::Text("k".into()), Cbor::Null), (uint(1), Cbor::Bool(true))]),
                Cbor::Tag(TAG_SENDER_OBJECT, Box::new(uint(5))),
                Cbor::Float(1.0),
                Cbor::Float(-0.0),
                Cbor::Float(1.5e-7),
                Cbor::Float(0.1),
                Cbor::Float(f64::INFINITY),
                Cbor::Array(big),
            ]),
            // Outside the subset (a bignum): left to ciborium.
            Cbor::Array(vec![uint(1), Cbor::Tag(2, Box::new(Cbor::Bytes(vec![1, 2])))]),
            Cbor::Array(vec![Cbor::Float(f64::NAN)]),
            Cbor::Array((0..40).fold(vec![Cbor::Null], |inner, _| vec![Cbor::Array(inner)])),
        ];
        let same = |a: &Cbor, b: &Cbor| format!("{a:?}") == format!("{b:?}");
        // Every encoding, and every mutation of it: whatever the slice
        // decoder accepts, ciborium decodes identically.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for (n, item) in items.iter().enumerate() {
            let bytes = ciborium_bytes(item);
            assert_eq!(SliceDecoder::decode(&bytes, 256).is_some(), n != 1, "{item:?}");
            for limit in [8, 40, 41, 42, 256] {
                let fast = SliceDecoder::decode(&bytes, limit);
                let slow = ciborium_decode(&bytes, limit);
                if let Some(fast) = &fast {
                    assert!(same(fast, slow.as_ref().unwrap()), "{fast:?}");
                }
            }
            for _ in 0..3000 {
                let mut m = bytes.clone();
                for _ in 0..3 {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let at = (seed >> 33) as usize % m.len();
                    m[at] = (seed >> 20) as u8;
                }
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                m.truncate(m.len() - (seed >> 60) as usize % 2);
                if let Some(fast) = SliceDecoder::decode(&m, 64) {
                    let slow = ciborium_decode(&m, 64).expect("ciborium accepts what the slice decoder does");
                    assert!(same(&fast, &slow), "{fast:?} vs {slow:?}");
                }
            }
        }
        // Every half float, NaNs and their payloads included, decodes to
        // ciborium's exact value.
        for bits in 0..=u16::MAX {
            let bytes = [0xf9, (bits >> 8) as u8, bits as u8];
            let fast = SliceDecoder::decode(&bytes, 8);
            let (Some(Cbor::Float(a)), Some(Cbor::Float(b))) = (fast, ciborium_decode(&bytes, 8)) else {
                panic!("half float {bits:#x}")
            };
            assert_eq!(a.to_bits(), b.to_bits(), "half float {bits:#x}");
        }
    }

    #[test]
    fn sent_byte_strings_are_recycled_for_decoding() {
        let big = vec![1u8; RECYCLE_MIN * 2];
        let ptr = big.as_ptr();
        recycle(Message::Reply { seq: 1, value: Cbor::Array(vec![Cbor::Bytes(big)]) }.into_cbor());
        let payload: Vec<u8> = (0..RECYCLE_MIN * 2).map(|i| i as u8).collect();
        let body = ciborium_bytes(&Cbor::Bytes(payload.clone()));
        let Cbor::Bytes(got) = decode_cbor(&body, 8).unwrap() else { panic!() };
        assert_eq!(got, payload);
        assert_eq!(got.as_ptr(), ptr, "the sent buffer was reused");
        // Taken once: the next one is a fresh allocation, and a buffer far
        // larger than needed is not handed out.
        let Cbor::Bytes(again) = decode_cbor(&body, 8).unwrap() else { panic!() };
        assert_eq!(again, payload);
        recycle(Cbor::Bytes(vec![0; RECYCLE_MIN * 8]));
        let Cbor::Bytes(small) = decode_cbor(&body, 8).unwrap() else { panic!() };
        assert!(small.capacity() < RECYCLE_MIN * 8);
    }

    #[test]
    fn aliasing_is_a_destination_just_ahead_of_its_source_modulo_a_page() {
        assert!(aliased(0, 5));
        assert!(aliased(4095, 4));
        assert!(aliased(16, 16 + ALIASING_WINDOW as usize));
        assert!(!aliased(5, 0), "behind is fine");
        assert!(!aliased(16, 16), "level is fine");
        assert!(!aliased(0, ALIASING_WINDOW as usize + 1));
        // A frame's string 21 bytes in, sent from a buffer 16 bytes into a
        // page (where glibc maps large blocks): the case measured slow.
        assert!(aliased(16, 21));
        // Received 13 bytes into its frame into such a buffer: slow too.
        assert!(aliased(13, 16));
    }

    #[test]
    fn a_received_string_gets_a_buffer_big_enough() {
        for len in [LARGE_MIN, 1 << 20] {
            for _ in 0..3 {
                let b = content_buffer(len, 13);
                assert!(b.capacity() >= len);
                keep_spare(b);
            }
        }
    }

    #[test]
    fn oversized_header_rejected_before_buffering() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_be_bytes());
        let err = d.next_frame(1024).unwrap_err();
        assert!(err.to_string().contains("exceeds max_frame_len"), "{err}");
        assert!(d.buf.capacity() < 1024);
    }

    #[test]
    fn truncated_at_end_of_stream() {
        let bytes = frame(&Message::Hello { version: 1, features: 0 });
        let mut d = FrameDecoder::new();
        d.push(&bytes[..bytes.len() - 1]);
        assert!(d.next_frame(1 << 20).unwrap().is_none());
        assert!(matches!(d.finish(), Err(Error::Decode(DecodeError::Truncated { .. }))));
    }
}
