//! The stream an authenticator talks over, with one deadline for the whole
//! exchange.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::transport::Stream;

/// The connection's socket while an [`Authenticator`](super::Authenticator)
/// runs on it: blocking, with one deadline for the whole exchange
/// ([`Builder::auth_timeout`](crate::Builder::auth_timeout) after it began);
/// over TLS, once the handshake is over, its reads and writes go through
/// the TLS session.
///
/// Each read and write may wait only for what is left of that deadline, so
/// a peer that answers one byte at a time cannot stretch authentication:
/// once the deadline passes, every read and write fails with
/// [`io::ErrorKind::TimedOut`]. A socket read timeout alone would restart
/// with every byte.
pub struct AuthStream<'a> {
    channel: Channel<'a>,
    deadline: Instant,
    timeout: Duration,
}

/// What an exchange reads and writes.
enum Channel<'a> {
    /// The socket itself, in blocking mode.
    Plain(&'a mut Stream),
    /// A TLS session over the socket (non-blocking: waits poll it).
    #[cfg(feature = "tls")]
    Tls(&'a crate::tls::TlsTransport),
}

impl<'a> AuthStream<'a> {
    /// `stream`, whose exchange must end within `timeout` from now: what a
    /// builder makes for its authenticator, and what runs one on a thread of
    /// your own (then hand the stream to a loop).
    pub fn new(stream: &'a mut Stream, timeout: Duration) -> Self {
        AuthStream { channel: Channel::Plain(stream), deadline: Instant::now() + timeout, timeout }
    }

    /// The TLS session `tls`, whose handshake is over.
    #[cfg(feature = "tls")]
    pub(crate) fn over_tls(tls: &'a crate::tls::TlsTransport, timeout: Duration) -> Self {
        AuthStream { channel: Channel::Tls(tls), deadline: Instant::now() + timeout, timeout }
    }

    /// The socket, to ask the kernel about it (such as
    /// [`peer_cred`](super::peer_cred)). Read and write through the
    /// `AuthStream` itself, so that its deadline holds.
    pub fn get_ref(&self) -> &Stream {
        match &self.channel {
            Channel::Plain(stream) => stream,
            #[cfg(feature = "tls")]
            Channel::Tls(tls) => tls.stream(),
        }
    }

    /// When the exchange must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// 32 bytes only this channel has, for an exchange to bind its proofs
    /// to it: over TLS, the session's keying-material exporter (a relay
    /// that terminates TLS on each side has two sessions, and two different
    /// values); `None` over a plain socket.
    pub fn channel_binding(&self) -> Option<[u8; 32]> {
        match &self.channel {
            Channel::Plain(_) => None,
            #[cfg(feature = "tls")]
            Channel::Tls(tls) => tls.channel_binding(),
        }
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

    /// Runs `op` on the TLS session until it does not say `WouldBlock`,
    /// waiting for the socket (readable, or writable when `write`) within
    /// the deadline.
    #[cfg(feature = "tls")]
    fn blocking<T>(
        &self,
        tls: &crate::tls::TlsTransport,
        write: bool,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        use crate::transport::Transport;
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tls.wait(write, Some(self.remaining()?))?
                }
                other => return other,
            }
        }
    }
}

impl Read for AuthStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        match &mut self.channel {
            Channel::Plain(stream) => {
                stream.set_read_timeout(Some(left))?;
                stream.read(buf)
            }
            #[cfg(feature = "tls")]
            Channel::Tls(tls) => {
                use crate::transport::Transport;
                let tls = *tls;
                self.blocking(tls, false, || tls.read(buf))
            }
        }
    }
}

impl Write for AuthStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        match &mut self.channel {
            Channel::Plain(stream) => {
                stream.set_write_timeout(Some(left))?;
                stream.write(buf)
            }
            #[cfg(feature = "tls")]
            Channel::Tls(tls) => {
                use crate::transport::Transport;
                let tls = *tls;
                let n = self.blocking(tls, true, || tls.write(buf))?;
                // The records leave now: the peer is waiting for them.
                self.blocking(tls, true, || {
                    tls.flush()?;
                    if tls.wants_write() {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(())
                })?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
