//! A connection over TLS (feature `tls`): a client's [`Builder::connect_tls`],
//! and a server's [`Builder::tls`] for the streams it accepts.

use std::net::TcpStream;

use super::{Builder, Connection};
use crate::auth::AuthStream;
use crate::error::Result;
use crate::tls::{TlsAcceptor, TlsConnector, TlsTransport};
use crate::transport::Stream;

impl Builder {
    /// Connects over TCP to `host` at `port` and runs TLS on it with `tls`,
    /// checking that the server's certificate is valid for `host` (RPyC's
    /// `ssl_connect`). The handshake, then this builder's authentication
    /// (a shared secret is bound to the TLS session), run before it
    /// returns, within [`auth_timeout`](Self::auth_timeout); a bad
    /// certificate, a wrong name or a plaintext server is an
    /// [`Error::Tls`](crate::Error::Tls) saying which.
    pub fn connect_tls(self, tls: &TlsConnector, host: &str, port: u16) -> Result<Connection> {
        let stream = TcpStream::connect((host, port))?;
        self.over_tls_stream(tls, host, stream)
    }

    /// Runs TLS with `tls` as a client on a connected `stream`, checking the
    /// server's certificate for `server_name` (a DNS name or an IP
    /// address), then the connection over it (see
    /// [`connect_tls`](Self::connect_tls)).
    pub fn over_tls_stream(
        self,
        tls: &TlsConnector,
        server_name: &str,
        stream: impl Into<Stream>,
    ) -> Result<Connection> {
        let transport = tls.transport(stream.into(), server_name)?;
        self.start_over_tls(transport)
    }

    /// Servers that start connections with this builder
    /// ([`ThreadedServer`](crate::ThreadedServer), every event-loop
    /// server, [`Listener::accept_connection`](crate::Listener::accept_connection))
    /// run TLS with `acceptor` on each stream they accept, before the
    /// authentication (an [instant](crate::Authenticator::is_instant)
    /// authenticator runs on the socket itself). A thread-per-connection
    /// server runs the handshake on the connection's thread within
    /// [`auth_timeout`](Self::auth_timeout); an event loop runs it without
    /// blocking, as the connection's first reads, and starts the service
    /// once it is over (within
    /// [`Config::handshake_timeout`](crate::Config)), so the service
    /// always sees the client's certificates in
    /// [`Connection::credentials`].
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// The handshake, blocking, then authentication over the session, then
    /// the connection.
    fn start_over_tls(self, transport: TlsTransport) -> Result<Connection> {
        transport.complete_handshake(self.auth_timeout)?;
        let credentials = if self.authenticates() {
            self.authenticate_on(&mut AuthStream::over_tls(&transport, self.auth_timeout))?
        } else {
            None
        };
        Ok(Connection::start(self, Box::new(transport), credentials))
    }

    /// Starts a connection with TLS over a stream a server accepted. On an
    /// event loop (`on_loop`), the handshake is left to the connection's
    /// reads.
    pub(super) fn accept_tls(
        self,
        acceptor: &TlsAcceptor,
        mut stream: Stream,
        on_loop: bool,
    ) -> Result<Connection> {
        if on_loop {
            // Only instant authenticators run on a loop: on the socket.
            let credentials = self.authenticate(&mut stream)?;
            let transport = acceptor.transport(stream)?;
            return Ok(Connection::start(self, Box::new(transport), credentials));
        }
        self.start_over_tls(acceptor.transport(stream)?)
    }
}
