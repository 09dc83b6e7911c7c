//! Cutting an incoming byte stream into frames, with the length checked
//! against the limit before any of the body is buffered.

use super::HEADER_LEN;
use crate::error::{DecodeError, LimitError, Result};

/// Splits an incoming byte stream into frames.
///
/// Feed it whatever arrived with [`push`](Self::push), then take frames with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)` ("need more
/// bytes", a normal outcome).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    pub(super) buf: Vec<u8>,
    start: usize,
    /// Bytes each frame holds beyond what its header counts: none in
    /// netref's frames; RPyC's add a flag before the payload and a newline
    /// after it (see [`rpyc`](super::rpyc)).
    uncounted: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty decoder of frames whose header counts `uncounted` bytes
    /// fewer than follow it.
    pub(crate) fn with_uncounted(uncounted: usize) -> Self {
        FrameDecoder { uncounted, ..Self::default() }
    }

    /// Appends bytes received from the transport. The buffer grows with
    /// what arrives (never by a frame's announced length), and fails with
    /// [`LimitError::OutOfMemory`] instead of aborting when memory is spent.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        // Reclaim consumed space before growing, so a long stream of small
        // frames does not grow the buffer (amortised O(1) per byte).
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.capacity() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf
            .try_reserve(bytes.len())
            .map_err(|_| LimitError::OutOfMemory { bytes: self.buf.len() + bytes.len() })?;
        self.buf.extend_from_slice(bytes);
        Ok(())
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

    /// The next complete frame body (with its uncounted bytes), `Ok(None)`
    /// when more bytes are needed, or
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
        let whole = HEADER_LEN + len + self.uncounted;
        if avail.len() < whole {
            // Nothing is reserved for the announced body: a peer announcing
            // the largest frame allowed and sending one byte would make
            // every connection reserve `max_frame_len` of address space.
            return Ok(None);
        }
        let body = self.start + HEADER_LEN..self.start + whole;
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
            HEADER_LEN
                + u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize
                + self.uncounted
        } else {
            HEADER_LEN
        };
        Err(DecodeError::Truncated { expected, got: avail.len() }.into())
    }
}
