//! How a connection is made: [`Builder`] (service, limits, clock,
//! authentication) and [`connect`].

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::budget::MemoryBudget;
use super::service::Service;
use super::Connection;
use crate::auth::{AuthStream, Authenticator, Credentials, Secret};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::Result;
use crate::transport::{SocketTransport, Stream, Transport};
use crate::wire::BufferPool;

/// Sets up connections: the service exposed, the limits, the clock, and
/// authentication.
#[derive(Clone)]
pub struct Builder {
    pub(super) service: Service,
    /// Shared by every connection the builder makes (each would otherwise
    /// carry two copies: its own and its protocol's).
    pub(super) config: Arc<Config>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) authenticator: Option<Arc<dyn Authenticator>>,
    pub(super) secret: Option<Secret>,
    pub(super) auth_timeout: Duration,
    /// TLS on the streams this builder's servers accept.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::tls::TlsAcceptor>,
    pub(super) pool: BufferPool,
    pub(super) budget: MemoryBudget,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            service: Service::none(),
            config: Arc::new(Config::default()),
            clock: Arc::new(SystemClock),
            authenticator: None,
            secret: None,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            #[cfg(feature = "tls")]
            tls: None,
            pool: BufferPool::new(),
            budget: MemoryBudget::default(),
        }
    }
}

/// How long authentication may take by default (see [`Builder::auth_timeout`]).
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

impl Builder {
    /// The service this side exposes (default: none).
    pub fn service(mut self, service: Service) -> Self {
        self.service = service;
        self
    }

    /// The limits (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// Shares `pool`'s spare buffers for large byte strings with the
    /// connections this builder starts (default: a pool of this builder's
    /// own, which every connection started from it or a clone of it
    /// shares; see [`BufferPool`]).
    pub fn buffer_pool(mut self, pool: &BufferPool) -> Self {
        self.pool = pool.clone();
        self
    }

    /// Counts the bytes buffered by the connections this builder starts
    /// against `budget`, which other builders may share (default: a budget
    /// of [`DEFAULT_MEMORY_BUDGET`](super::budget::DEFAULT_MEMORY_BUDGET) of
    /// this builder's own, which every connection started from it or a
    /// clone of it shares; see [`MemoryBudget`]).
    pub fn memory_budget(mut self, budget: &MemoryBudget) -> Self {
        self.budget = budget.clone();
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the peer of every stream this builder starts a connection
    /// over, before the handshake (see [`auth`](crate::auth)); the result is
    /// [`Connection::credentials`]. A refused peer's stream is closed and
    /// the connection is not made ([`Error::Auth`](crate::Error::Auth)). Servers usually set it
    /// with their own `authenticator` method.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Answers a server's [`SharedSecret`](crate::auth::SharedSecret)
    /// challenge with `secret` before the handshake, and checks that the
    /// server knows it too. The secret never crosses the wire.
    pub fn shared_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(Secret::new(secret.into()));
        self
    }

    /// How long the whole authentication exchange may take (default: 10 s):
    /// one deadline for every read and write of it, so a peer that answers
    /// a byte at a time gains nothing. Past it the peer is refused with a
    /// timeout error.
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// True when starting a connection with this builder may wait for the
    /// peer (a non-[instant](Authenticator::is_instant) authenticator or a
    /// shared secret): single-threaded event-loop servers refuse such
    /// builders rather than stall their loop.
    pub fn auth_may_block(&self) -> bool {
        self.secret.is_some() || self.authenticator.as_ref().is_some_and(|a| !a.is_instant())
    }

    /// Runs this builder's authentication on `stream` (blocking, within
    /// one `auth_timeout` for the whole exchange). `None` when nothing is
    /// configured.
    pub(super) fn authenticate(&self, stream: &mut Stream) -> Result<Option<Credentials>> {
        if !self.authenticates() {
            return Ok(None);
        }
        // One deadline for everything below, however the peer paces it.
        let credentials = self.authenticate_on(&mut AuthStream::new(stream, self.auth_timeout));
        stream.set_timeouts(None)?;
        credentials
    }

    /// True when this builder authenticates the peer.
    pub(super) fn authenticates(&self) -> bool {
        self.authenticator.is_some() || self.secret.is_some()
    }

    /// This builder's authenticator, then its shared-secret answer, on
    /// `exchange`.
    pub(super) fn authenticate_on(&self, exchange: &mut AuthStream<'_>) -> Result<Option<Credentials>> {
        let mut credentials = None;
        if let Some(auth) = &self.authenticator {
            credentials = Some(auth.authenticate(exchange)?);
        }
        if let Some(secret) = &self.secret {
            let proved = crate::auth::answer_challenge(exchange, secret)?;
            credentials.get_or_insert(proved);
        }
        Ok(credentials)
    }

    /// Connects over TCP (RPyC's `rpyc.connect(host, port)`).
    pub fn connect_tcp(self, addr: impl ToSocketAddrs) -> Result<Connection> {
        self.over_stream(TcpStream::connect(addr)?)
    }

    /// Connects to a Unix socket.
    pub fn connect_unix(self, path: impl AsRef<Path>) -> Result<Connection> {
        self.over_stream(UnixStream::connect(path)?)
    }

    /// Runs a connection over an already connected stream, after this
    /// builder's authentication (if any) succeeded on it.
    pub fn over_stream(self, stream: impl Into<Stream>) -> Result<Connection> {
        let mut stream = stream.into();
        let credentials = self.authenticate(&mut stream)?;
        Ok(Connection::start(self, Box::new(SocketTransport::new(stream)?), credentials))
    }

    /// Starts a connection over a stream a server accepted: TLS first when
    /// the builder has an acceptor (on an event loop, `on_loop`, left to
    /// the connection's reads), then authentication.
    pub(crate) fn start_accepted(self, stream: Stream, on_loop: bool) -> Result<Connection> {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = self.tls.clone() {
            return self.accept_tls(&acceptor, stream, on_loop);
        }
        let _ = on_loop;
        self.over_stream(stream)
    }

    /// Runs a connection over any transport. Authentication does not apply
    /// here (it needs a [`Stream`]): authenticate the transport's bytes
    /// yourself before.
    pub fn over_transport(self, transport: impl Transport) -> Connection {
        if self.authenticator.is_some() || self.secret.is_some() {
            log::warn!("netref: over_transport() skips the builder's authentication");
        }
        Connection::start(self, Box::new(transport), None)
    }

    /// Two connected connections in one process over a socketpair: `self`'s
    /// service on the first, `other`'s on the second. Authentication does
    /// not apply (both ends are this process).
    pub fn pair(self, other: Builder) -> Result<(Connection, Connection)> {
        let (a, b) = UnixStream::pair()?;
        let a = Box::new(SocketTransport::new(a)?);
        let b = Box::new(SocketTransport::new(b)?);
        Ok((Connection::start(self, a, None), Connection::start(other, b, None)))
    }
}

/// Connects over TCP with default settings and no service of our own.
pub fn connect(addr: impl ToSocketAddrs) -> Result<Connection> {
    Builder::default().connect_tcp(addr)
}
