//! The listening socket every netref server accepts on, and what one accept
//! yields.
//!
//! [`ThreadedServer`](crate::ThreadedServer) and the event-loop backends'
//! servers (netref-mio, -polling, -calloop, -glib) share [`Listener`], so
//! they agree on one thing that matters for availability: telling a failure
//! of *one client* from a failure of *the listener*.
//!
//! - A client the [authenticator](crate::Authenticator) refuses, or whose
//!   socket dies before its connection starts, is [`Accepted::Rejected`]:
//!   it is logged here, once, and the server accepts the next client at
//!   once. Backing off then would let a client that connects and gets
//!   refused over and over stall everyone else's accepts.
//! - A listener that cannot accept (`EMFILE`/`ENFILE`: out of file
//!   descriptors) is [`Accepted::Failed`]: the listener stays readable, so
//!   the server logs it and stops accepting for
//!   [`ACCEPT_BACKOFF`](crate::server::ACCEPT_BACKOFF) instead of spinning,
//!   serving the connections it has meanwhile.
//!
//! A loop's accept handler, in full:
//!
//! ```no_run
//! use netref::{Accepted, Builder, Listener};
//!
//! let listener = Listener::bind_tcp("127.0.0.1:18861")?; // non-blocking
//! let builder = Builder::default();
//! // ... when the loop says the listener is readable:
//! loop {
//!     match listener.accept_connection(&builder) {
//!         Accepted::Connection(conn) => { /* attach `conn` to the loop */ }
//!         Accepted::Rejected(_) => {} // already logged; next client
//!         Accepted::WouldBlock => break,
//!         Accepted::Failed(e) => {
//!             log::warn!("accept failed ({e}); retrying in {:?}", netref::server::ACCEPT_BACKOFF);
//!             break; // and stop watching the listener for ACCEPT_BACKOFF
//!         }
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use rustix::io::Errno;

use crate::connection::{Builder, Connection};
use crate::error::{Error, Result};
use crate::transport::Stream;

/// A listening stream socket, TCP or Unix.
///
/// [`bind_tcp`](Self::bind_tcp) and [`bind_unix`](Self::bind_unix) return it
/// non-blocking, as servers driven by an event loop need; one made `From` a
/// std listener keeps that listener's mode (see
/// [`set_nonblocking`](Self::set_nonblocking)). Dropping a Unix listener
/// does not remove its socket file.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix-socket listener.
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Listener::Unix(l)
    }
}

impl Listener {
    /// Listens on a TCP address, non-blocking (port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr)).
    pub fn bind_tcp(addr: impl ToSocketAddrs) -> io::Result<Listener> {
        let listener = Listener::Tcp(TcpListener::bind(addr)?);
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// Listens on a Unix socket path, non-blocking.
    pub fn bind_unix(path: impl AsRef<Path>) -> io::Result<Listener> {
        let listener = Listener::Unix(UnixListener::bind(path)?);
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// Makes [`accept`](Self::accept) return `WouldBlock` instead of waiting
    /// when no client is waiting (`true`), or wait (`false`).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(nonblocking),
            Listener::Unix(l) => l.set_nonblocking(nonblocking),
        }
    }

    /// Readies the listener for a single-threaded event-loop server that
    /// starts connections with `builder`: makes it non-blocking, and refuses
    /// a builder whose authentication waits for the client (a
    /// [`SharedSecret`](crate::auth::SharedSecret), a non-instant
    /// authenticator), which would stall every connection on the loop for up
    /// to `auth_timeout` per client. Serve those with
    /// [`ThreadedServer`](crate::ThreadedServer).
    pub fn prepare_for_event_loop(&self, builder: &Builder) -> io::Result<()> {
        if builder.auth_may_block() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this builder's authentication waits for the client (a shared secret or a \
                 non-instant authenticator) and would stall the event loop: serve it with \
                 ThreadedServer, or use an instant authenticator such as UnixPeerCred",
            ));
        }
        self.set_nonblocking(true)
    }

    /// The TCP address listened on; `None` for a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    /// Accepts one client's stream. Errors that belong to a client that
    /// went away before it was accepted (`ECONNABORTED` and the network
    /// errors Linux passes on from the new socket) and `EINTR` are skipped:
    /// the next waiting client is accepted instead. So an error returned is
    /// `WouldBlock` (nobody waiting, when non-blocking) or the listener's own
    /// failure, such as `EMFILE`.
    pub fn accept(&self) -> io::Result<Stream> {
        loop {
            let accepted = match self {
                Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            match accepted {
                Err(e) if client_gone(&e) => {
                    log::debug!("netref server: a client went away before it was accepted ({e})");
                }
                other => return other,
            }
        }
    }

    /// Accepts one client and starts a connection with `builder` over it:
    /// the builder's authenticator (which should be
    /// [instant](crate::Authenticator::is_instant) on an event loop's thread)
    /// and the handshake run here, on the calling thread. See [`Accepted`]
    /// for what to do with each outcome; a rejection is already logged.
    pub fn accept_connection(&self, builder: &Builder) -> Accepted {
        match self.accept() {
            Ok(stream) => match start_accepted(builder.clone(), stream, true) {
                Ok(conn) => Accepted::Connection(conn),
                Err(e) => Accepted::Rejected(e),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accepted::WouldBlock,
            Err(e) => Accepted::Failed(e),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// What one [`Listener::accept_connection`] yielded.
#[derive(Debug)]
#[must_use = "a failed listener must be backed off, or the server spins"]
pub enum Accepted {
    /// A client was accepted and its connection started (not yet attached
    /// to any loop).
    Connection(Connection),
    /// That one client failed: the authenticator refused it, or its socket
    /// died before the connection started. Its socket is closed and the
    /// reason logged (`warn` for a refusal, `info` otherwise). Keep
    /// accepting at once: the listener is fine.
    Rejected(Error),
    /// No client is waiting: wait for the listener to become readable.
    WouldBlock,
    /// The listener itself failed, typically out of file descriptors
    /// (`EMFILE`/`ENFILE`). It stays readable with the client still queued,
    /// so stop accepting for a moment
    /// ([`ACCEPT_BACKOFF`](crate::server::ACCEPT_BACKOFF)) rather than
    /// spin, and log it: the caller knows how long it backs off.
    Failed(io::Error),
}

/// Starts a connection with `builder` over a stream a server accepted,
/// logging why when it does not start: the one place servers report a
/// rejected client. `on_loop`: an event loop's server, which leaves a TLS
/// handshake to the connection's reads rather than wait for it.
pub(crate) fn start_accepted(builder: Builder, stream: Stream, on_loop: bool) -> Result<Connection> {
    let peer = stream.describe_peer();
    builder.start_accepted(stream, on_loop).inspect_err(|e| match e {
        Error::Auth(why) => log::warn!("netref server: refused {peer}: {why}"),
        Error::Tls(why) => log::warn!("netref server: refused {peer}: {why}"),
        e => log::info!("netref server: dropped {peer} before its connection started: {e}"),
    })
}

/// True for an accept error that belongs to one client, which the kernel
/// has already dropped from the queue, rather than to the listener: retry.
fn client_gone(e: &io::Error) -> bool {
    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) {
        return true;
    }
    // accept(2), Linux: "already-pending network errors on the new socket"
    // are returned from accept(); the man page says to retry on them.
    matches!(
        Errno::from_io_error(e),
        Some(
            Errno::NETDOWN
                | Errno::PROTO
                | Errno::NOPROTOOPT
                | Errno::HOSTDOWN
                | Errno::NONET
                | Errno::HOSTUNREACH
                | Errno::NETUNREACH
        )
    )
}
