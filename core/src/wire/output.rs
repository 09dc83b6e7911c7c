//! The queue of frames for the peer, which sends large byte strings from
//! their own buffer (a vectored write) instead of copying them in.

use super::cbor::Cbor;
use super::encode::{close_frame, encode_frame, write_cbor, Sink};
use super::large::LARGE_MIN;
use super::message::Message;
use super::pool::BufferPool;
use super::HEADER_LEN;
use crate::error::{LimitError, Result};

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
    /// Where sent large byte strings' buffers go.
    pool: BufferPool,
}

#[derive(Debug)]
struct Spliced {
    at: usize,
    bytes: Vec<u8>,
    written: usize,
}

/// Writes CBOR into a frame buffer, except the contents of the large byte
/// strings listed in `large` that the pool's [`Placement`](super::Placement) lets leave
/// from their own buffer: their positions are noted instead.
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
    pool: &'a BufferPool,
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
        self.pool.in_place(buf.as_ptr() as usize, dst).then_some(i)
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
    /// An empty queue that keeps sent large byte strings' buffers in `pool`.
    pub(crate) fn new(pool: BufferPool) -> Self {
        Output { pool, ..Output::default() }
    }

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

    /// Queues bytes already framed (RPyC's dialect writes its own frames).
    pub(crate) fn push_bytes(&mut self, frame: &[u8]) {
        self.buf.extend_from_slice(frame);
    }

    /// Queues one frame holding `item`, whose large byte strings move into
    /// the queue; fails, queuing nothing, if the frame would exceed
    /// `max_len`. The largest byte string left in the item is recycled.
    pub(crate) fn push_frame(&mut self, mut item: Cbor, max_len: usize) -> Result<()> {
        let mut large = Vec::new();
        each_large_bytes(&mut item, &mut |b| large.push((b.as_ptr(), b.len())));
        if large.is_empty() {
            let queued = encode_frame(&item, &mut self.buf, max_len);
            self.pool.recycle(item);
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
            pool: &self.pool,
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
        self.pool.recycle(item);
        // Those copied in after all are done with.
        taken.into_iter().flatten().for_each(|b| self.pool.keep(b));
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
    /// first (and their buffers recycled). The tests compare it with the
    /// slices.
    #[cfg(test)]
    pub(crate) fn contiguous(&mut self) -> &[u8] {
        if let Some(first) = self.spliced.front().map(|s| s.at) {
            let tail = self.buf.split_off(first);
            self.buf.reserve(self.spliced_len + tail.len());
            let mut pos = first;
            for s in std::mem::take(&mut self.spliced) {
                self.buf.extend_from_slice(&tail[pos - first..s.at - first]);
                self.buf.extend_from_slice(&s.bytes[s.written..]);
                pos = s.at;
                self.pool.keep(s.bytes);
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
                self.pool.keep(done.bytes);
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
