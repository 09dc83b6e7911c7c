//! Output: the frames queued for the peer, written with one vectored write
//! at a time.

use std::io;

use super::Protocol;

/// Slices handed to one vectored write: a frame's head, a large byte string
/// written from the buffer of the value sent, the frames after it.
const SLICES_PER_WRITE: usize = 8;

impl Protocol {
    /// Writes the bytes waiting for the peer to `w` (sending pending
    /// releases first), with vectored writes so that a large byte string
    /// goes from the buffer of the value sent instead of being copied:
    /// until everything is written or `w` would block. Returns how many
    /// bytes were written; `Ok(0)` when nothing was waiting or `w` took
    /// nothing before blocking.
    ///
    /// An error is `w`'s (a write of zero bytes is
    /// [`WriteZero`](io::ErrorKind::WriteZero)); what was written before it
    /// counts as sent. Hand it back as [`Input::Failed`](super::Input::Failed)
    /// to end the connection.
    pub fn write_to<W: io::Write + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        self.flush_releases();
        let mut written = 0;
        loop {
            let mut slices = [io::IoSlice::new(&[]); SLICES_PER_WRITE];
            let n = self.out.slices(&mut slices);
            if n == 0 {
                return Ok(written);
            }
            let result = match n {
                // A plain write for one slice: some transports (and
                // kernels) take it a little faster than a vectored one.
                1 => w.write(&slices[0]),
                _ => w.write_vectored(&slices[..n]),
            };
            match result {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "the peer stopped accepting data"))
                }
                Ok(k) => {
                    self.out.consume(k);
                    written += k;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// How many bytes are waiting to be written (releases not yet made
    /// into a message aside).
    pub fn pending_output_len(&self) -> usize {
        self.out.len()
    }

    /// True when output is waiting (the transport wants write readiness).
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty() || !self.releases.is_empty()
    }
}
