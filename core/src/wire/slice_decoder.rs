//! A decoder of our own for the common subset of CBOR, straight out of the
//! frame's bytes; it gives up (and ciborium decodes) on anything else.

use half::f16;

use super::cbor::Cbor;
use super::encode::PREALLOCATED_ITEMS;
use super::large::{LARGE_MIN, LARGE_SCAN_MAX};
use super::pool::BufferPool;

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
pub(super) struct SliceDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Containers (arrays, maps, tags) that may enclose an item: one less
    /// than ciborium's recursion limit, so nothing it refuses is accepted.
    max_depth: usize,
    /// A byte string whose content is not in `buf` (see [`LargeString`]):
    /// its head ends at `hole.at` in `buf`, and the item is `hole.content`.
    hole: Option<Hole>,
    /// Where large byte strings' buffers come from (none: allocations).
    pool: Option<&'a BufferPool>,
}

pub(super) struct Hole {
    pub(super) at: usize,
    /// The string's length (`content` may be an empty stand-in).
    pub(super) len: usize,
    pub(super) content: Vec<u8>,
}

impl<'a> SliceDecoder<'a> {
    pub(super) fn decode(
        body: &'a [u8],
        recursion_limit: usize,
        pool: Option<&'a BufferPool>,
    ) -> Option<Cbor> {
        Self::decode_with_hole(body, recursion_limit, None, pool)
    }

    pub(super) fn decode_with_hole(
        body: &'a [u8],
        recursion_limit: usize,
        hole: Option<Hole>,
        pool: Option<&'a BufferPool>,
    ) -> Option<Cbor> {
        let max_depth = recursion_limit.saturating_sub(1);
        let mut d = SliceDecoder { buf: body, pos: 0, max_depth, hole, pool };
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
                {
                    let bytes = self.take(n)?;
                    Cbor::Bytes(self.pool.map_or_else(|| bytes.to_vec(), |p| p.copy(bytes)))
                }
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

/// The first byte string of at least [`LARGE_MIN`] bytes in the frame body
/// starting with `received` (`body_len` bytes in all): where its content
/// starts and how long it is. CBOR lists items in pre-order, so reading
/// heads one after the other finds it without building anything.
pub(super) fn find_large_bytes(received: &[u8], body_len: usize) -> Option<(usize, usize)> {
    let mut d = SliceDecoder { buf: received, pos: 0, max_depth: 0, hole: None, pool: None };
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
