//! The stream an authenticator talks over, with one deadline for the whole
//! exchange.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::transport::Stream;

/// The connection's socket while an [`Authenticator`](super::Authenticator)
/// runs on it: in blocking mode, with one deadline for the whole exchange
/// ([`Builder::auth_timeout`](crate::Builder::auth_timeout) after it began).
///
/// Each read and write may wait only for what is left of that deadline, so
/// a peer that answers one byte at a time cannot stretch authentication:
/// once the deadline passes, every read and write fails with
/// [`io::ErrorKind::TimedOut`]. A socket read timeout alone would restart
/// with every byte.
pub struct AuthStream<'a> {
    stream: &'a mut Stream,
    deadline: Instant,
    timeout: Duration,
}

impl<'a> AuthStream<'a> {
    /// `stream`, whose exchange must end within `timeout` from now: what a
    /// builder makes for its authenticator, and what runs one on a thread of
    /// your own (then hand the stream to a loop).
    pub fn new(stream: &'a mut Stream, timeout: Duration) -> Self {
        AuthStream { stream, deadline: Instant::now() + timeout, timeout }
    }

    /// The socket, to ask the kernel about it (such as
    /// [`peer_cred`](super::peer_cred)). Read and write through the
    /// `AuthStream` itself, so that its deadline holds.
    pub fn get_ref(&self) -> &Stream {
        self.stream
    }

    /// When the exchange must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What is left until the deadline, or a `TimedOut` error once it has
    /// passed.
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("authentication took longer than {:?} (auth_timeout)", self.timeout),
            ));
        }
        Ok(left)
    }
}

impl Read for AuthStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        self.stream.read(buf)
    }
}

impl Write for AuthStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
