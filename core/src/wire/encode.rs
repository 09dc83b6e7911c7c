//! The frame encoder: a hand-written CBOR writer for [`Cbor`] that agrees
//! with ciborium byte for byte (tests check it), and frame closing.

use half::f16;

use super::cbor::{cbor_integer, Cbor};
use super::HEADER_LEN;
use crate::error::{Error, LimitError, Result};

/// Elements reserved up front for an array or map: a forged count costs
/// no more than this until its elements actually arrive.
pub(super) const PREALLOCATED_ITEMS: usize = 1024;

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
pub(super) fn close_frame(
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
pub(super) struct OutOfRange(i128);

impl OutOfRange {
    #[cold]
    pub(super) fn into_error(self) -> Error {
        cbor_integer(self.0).expect_err("out of range")
    }
}

/// Where [`write_cbor`] writes: a frame buffer, or the [`SplicingWriter`]
/// that leaves large byte strings out of it.
pub(super) trait Sink {
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
pub(super) fn head(out: &mut impl Sink, major: u8, arg: u64) {
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
pub(super) fn write_cbor(item: &Cbor, out: &mut impl Sink) -> std::result::Result<(), OutOfRange> {
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
