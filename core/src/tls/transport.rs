//! TLS between the socket and the protocol: a [`Transport`] whose reads and
//! writes go through rustls, so that every backend drives it as it drives a
//! plain socket, handshake included.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::errors::from_rustls;
use crate::auth::Credentials;
use crate::error::{Error, Result, TlsError, TlsPeer};
use crate::transport::{AsIo, SocketTransport, Stream, Transport};

/// A socket with a rustls session on it.
///
/// Reads decrypt what the socket has (running the handshake while it
/// lasts); writes encrypt and send what the socket takes, keeping the rest
/// as records for [`flush`](Transport::flush) ([`wants_write`](Transport::wants_write)
/// says so). One lock guards the session; no other lock is taken under it.
pub(crate) struct TlsTransport {
    socket: SocketTransport,
    tls: Mutex<rustls::Connection>,
    /// Who the other end is, for errors.
    peer: TlsPeer,
    /// The name the server's certificate must be valid for (client side).
    server_name: Option<String>,
    /// The handshake is over (read without the lock).
    established: AtomicBool,
    /// The session holds records the socket has not taken yet.
    pending: AtomicBool,
}

impl TlsTransport {
    /// `session` over `stream` (made non-blocking).
    pub(crate) fn new(
        stream: Stream,
        session: rustls::Connection,
        peer: TlsPeer,
        server_name: Option<String>,
    ) -> io::Result<Self> {
        Ok(TlsTransport {
            socket: SocketTransport::new(stream)?,
            tls: Mutex::new(session),
            peer,
            server_name,
            established: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        })
    }

    fn session(&self) -> MutexGuard<'_, rustls::Connection> {
        self.tls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket underneath.
    pub(crate) fn stream(&self) -> &Stream {
        self.socket.stream()
    }

    /// A TLS failure as the I/O error a connection closes with; its text
    /// is the [`TlsError`]'s, which it carries (see [`tls_error_of`]).
    fn failed(&self, e: &rustls::Error, tls: &rustls::Connection) -> io::Error {
        let why = from_rustls(e, self.peer, self.server_name.as_deref(), tls.is_handshaking());
        io::Error::new(io::ErrorKind::InvalidData, why)
    }

    /// Sends the records the session holds until the socket would block.
    fn send_records(&self, tls: &mut rustls::Connection) -> io::Result<()> {
        let result = loop {
            if !tls.wants_write() {
                break Ok(());
            }
            match tls.write_tls(&mut AsIo(&self.socket)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(self.reason_for(tls).unwrap_or(e)),
            }
        };
        self.pending.store(tls.wants_write(), Ordering::Relaxed);
        result
    }

    /// Why the peer went away, when it said so: a peer that refuses the
    /// handshake sends an alert and closes, and a write after that fails
    /// (`EPIPE`) before any read sees the alert. Reads what the socket
    /// still has, once, without sending anything.
    fn reason_for(&self, tls: &mut rustls::Connection) -> Option<io::Error> {
        tls.read_tls(&mut AsIo(&self.socket)).ok()?;
        let e = tls.process_new_packets().err()?;
        Some(self.failed(&e, tls))
    }

    /// Reads records from the socket into the session and processes them
    /// (answering the handshake): `Ok(false)` when the socket had nothing,
    /// `Ok(true)` for records or the end of the stream.
    fn receive_records(&self, tls: &mut rustls::Connection) -> io::Result<bool> {
        let eof = match tls.read_tls(&mut AsIo(&self.socket)) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        if eof && tls.is_handshaking() {
            let why = TlsError::ClosedInHandshake { peer: self.peer };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
        }
        if let Err(e) = tls.process_new_packets() {
            // The alert rustls queued tells the peer why.
            let _ = self.send_records(tls);
            return Err(self.failed(&e, tls));
        }
        if !tls.is_handshaking() {
            self.established.store(true, Ordering::Release);
        }
        self.send_records(tls)?;
        Ok(true)
    }

    /// Runs the handshake to its end, blocking, within `timeout`: what a
    /// client and a thread-per-connection server do before the connection
    /// starts (an event loop's server lets its reads run it instead).
    ///
    /// A TLS 1.3 client's side of the handshake ends before the server has
    /// checked it (the client's certificate, or its absence, is checked
    /// with the client's last message), and a refusal then comes as an
    /// alert. So a client waits, too, for the first records the server
    /// sends once the handshake is over (its session tickets, or the
    /// connection's first bytes; a netref server always sends some) or its
    /// alert: a refused client learns why here, not from a broken pipe.
    pub(crate) fn complete_handshake(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        // Whether the server's verdict on our side of the handshake is still
        // to come (known once the handshake is over).
        let mut verdict_pending = None;
        loop {
            {
                let mut tls = self.session();
                self.send_records(&mut tls).map_err(tls_error_of)?;
                let over = !tls.is_handshaking();
                if over {
                    let pending = *verdict_pending.get_or_insert(
                        self.peer == TlsPeer::Server
                            && tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
                    );
                    if !pending {
                        self.established.store(true, Ordering::Release);
                        return Ok(());
                    }
                }
                if self.receive_records(&mut tls).map_err(tls_error_of)? {
                    if over {
                        verdict_pending = Some(false);
                    }
                    continue;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TlsError::HandshakeTimeout(timeout).into());
            }
            self.socket.wait(self.wants_write(), Some(left))?;
        }
    }

    /// 32 bytes only this TLS session has: its keying-material exporter
    /// (RFC 5705 / RFC 8446 §7.5) for netref's shared-secret exchange.
    pub(crate) fn channel_binding(&self) -> Option<[u8; 32]> {
        self.session().export_keying_material([0u8; 32], b"EXPORTER-netref-shared-secret", None).ok()
    }
}

/// The error a TLS step failed with: the [`TlsError`] an I/O error of
/// [`TlsTransport`] carries, or the I/O error itself.
fn tls_error_of(e: io::Error) -> Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<TlsError>()) {
        Some(why) => Error::Tls(why.clone()),
        None => e.into(),
    }
}

impl Transport for TlsTransport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut tls = self.session();
        loop {
            match tls.reader().read(buf) {
                // Plaintext, or 0 once the peer's close_notify came.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without TLS's close_notify:
                // an end of stream like any other (netref's frames tell a
                // message cut short).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if !self.receive_records(&mut tls)? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut tls = self.session();
        // Records still waiting for the socket: take nothing more until it
        // takes them, as a full socket would.
        self.send_records(&mut tls)?;
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // The session's buffer is full (a handshake not over yet).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_records(&mut tls)?;
        Ok(n)
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut tls = self.session();
        self.send_records(&mut tls)?;
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_records(&mut tls)?;
        Ok(n)
    }

    fn wants_write(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    fn flush(&self) -> io::Result<()> {
        self.send_records(&mut self.session())
    }

    fn establishing(&self) -> bool {
        !self.established.load(Ordering::Acquire)
    }

    fn credentials(&self) -> Option<Credentials> {
        let tls = self.session();
        let chain = tls.peer_certificates()?;
        let mut credentials = Credentials::new("tls-certificate");
        credentials.certificates = chain.iter().map(|c| c.as_ref().to_vec()).collect();
        Some(credentials)
    }

    fn has_buffered_input(&self) -> bool {
        let mut tls = self.session();
        let mut reader = tls.reader();
        matches!(reader.fill_buf(), Ok(plaintext) if !plaintext.is_empty())
    }

    fn wait(&self, want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        // Plaintext already decrypted is nothing `poll` can see: a reader
        // that stopped short of it (its buffer was full) reads it now.
        if self.has_buffered_input() {
            return Ok(());
        }
        self.socket.wait(want_write || self.wants_write(), timeout)
    }

    fn wake(&self) {
        self.socket.wake();
    }

    fn shutdown(&self) {
        {
            let mut tls = self.session();
            tls.send_close_notify();
            let _ = self.send_records(&mut tls);
        }
        self.socket.shutdown();
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.socket.as_fd()
    }

    fn set_loop_driven(&self, driven: bool) {
        self.socket.set_loop_driven(driven);
    }

    fn describe(&self) -> String {
        self.socket.describe()
    }
}
