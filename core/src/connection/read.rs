//! Reading from the transport: into the thread's buffer, or straight into the
//! buffer the protocol lends for a large byte string.

use std::io;

use super::state::StateGuard;
use super::{Shared, READ_BUF};
use crate::protocol::Input;

/// Bytes read from a transport at a time.
pub(super) const READ_BUF_LEN: usize = 64 * 1024;

/// A thread's read buffer grows to hold everything one drive reads (until
/// the transport would block); past this it goes back to [`READ_BUF_LEN`]
/// after use, so one burst does not pin its size for the thread's life.
pub(super) const READ_BUF_KEEP: usize = 4 << 20;

/// Most bytes a serving thread reads in one pass before they are fed to the
/// protocol. A peer that keeps sending could otherwise keep one pass
/// reading (and the buffer growing) before any limit is checked; the thread
/// reads again at once. An event loop's step reads less (`STEP_READ_MAX`).
pub(super) const READ_PASS_MAX: usize = 4 << 20;

impl Shared {
    /// Reads until the transport would block (or `max` bytes are in), then
    /// calls `feed` with what arrived, whether the stream
    /// ended and whether more may be waiting (or the error, when nothing
    /// was read before it). No lock is held while reading.
    ///
    /// Everything goes into one buffer, the thread's own (a connection
    /// costs no 64 KiB of its own: an idle server holding 10,000
    /// connections would spend 640 MiB on them), which `feed` reads in
    /// place: no copy per read and no fresh memory for every megabyte
    /// received.
    pub(super) fn read_available<R>(
        &self,
        max: usize,
        feed: impl FnOnce(io::Result<(&[u8], bool, bool)>) -> R,
    ) -> R {
        READ_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                let read = self.read_into(&mut buf, max);
                let r = feed(read.map(|(n, eof, more)| (&buf[..n], eof, more)));
                if buf.len() > READ_BUF_KEEP {
                    *buf = vec![0; READ_BUF_LEN];
                }
                r
            }
            // Re-entered on this thread (a driver driving an in-memory
            // peer): a buffer of its own.
            Err(_) => {
                let mut buf = vec![0; READ_BUF_LEN];
                let read = self.read_into(&mut buf, max);
                feed(read.map(|(n, eof, more)| (&buf[..n], eof, more)))
            }
        })
    }

    /// Reads into the buffer the protocol lent until the transport would
    /// block, the buffer is full or `max` bytes are in, gives it back and
    /// returns the lock. `more`: the read stopped at the buffer's end or at
    /// `max`, so more may be waiting.
    pub(super) fn read_lent(
        &self,
        mut input: crate::wire::InputBuffer,
        max: usize,
        more: &mut bool,
    ) -> StateGuard<'_> {
        let mut eof = false;
        let mut error = None;
        let mut read = 0;
        while !input.is_full() && read < max {
            let room = input.unfilled();
            let len = room.len().min(max - read);
            let room = &mut room[..len];
            match self.transport.read(room) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    input.advance(n);
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        *more = input.is_full() || read >= max;
        let mut st = self.lock();
        let now = self.clock.now();
        let _ = st.proto.handle_input(now, Input::Filled(input));
        if eof {
            let _ = st.proto.handle_input(now, Input::Eof);
        } else if let Some(e) = error {
            let _ = st.proto.handle_input(now, Input::Failed(e));
        }
        st
    }

    /// Reads into `buf` from its start, growing it as needed, until the
    /// transport would block or `max` bytes are in: the bytes
    /// read, whether the stream ended, and whether the pass was cut short
    /// (more may be waiting).
    pub(super) fn read_into(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<(usize, bool, bool)> {
        let mut filled = 0;
        loop {
            if filled >= max {
                return Ok((filled, false, true));
            }
            if buf.len() - filled < READ_BUF_LEN {
                // Zeroed once here; the buffer keeps its length afterwards.
                buf.resize(filled + READ_BUF_LEN, 0);
            }
            let end = buf.len().min(max);
            match self.transport.read(&mut buf[filled..end]) {
                Ok(0) => return Ok((filled, true, false)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((filled, false, false)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if filled == 0 => return Err(e),
                Err(_) => return Ok((filled, false, false)),
            }
        }
    }
}
