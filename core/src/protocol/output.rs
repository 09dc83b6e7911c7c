//! Output: the frames queued for the peer, as one slice or as slices for a
//! vectored write.

use super::Protocol;

impl Protocol {
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
}
