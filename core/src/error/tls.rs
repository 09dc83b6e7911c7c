//! Why TLS failed: [`TlsError`] and the [`TlsPeer`] it names.

use std::fmt;
use std::time::Duration;

/// Which side a TLS error is about, seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsPeer {
    /// The server (we are its client).
    Server,
    /// The client (we are its server).
    Client,
}

impl fmt::Display for TlsPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsPeer::Server => "server",
            TlsPeer::Client => "client",
        })
    }
}

/// Why a TLS connection was not made, or ended (see `netref::tls`, feature `tls`):
/// in the terms of what went wrong, not of the TLS library's states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or name given to netref could not be used.
    #[error("TLS: {0}")]
    Config(String),
    /// The peer sent something that is not TLS: a plaintext netref or RPyC
    /// peer, or another protocol.
    #[error("TLS: the {peer} does not speak TLS (a plaintext peer, or another protocol)")]
    NotTls {
        /// Who.
        peer: TlsPeer,
    },
    /// The peer's certificate was refused.
    #[error("TLS: the {peer}'s certificate {reason}")]
    Certificate {
        /// Whose certificate.
        peer: TlsPeer,
        /// What is wrong with it, e.g. `is not valid for "example.org"`.
        reason: String,
    },
    /// This server asks every client for a certificate and the client
    /// presented none.
    #[error("TLS: the client presented no certificate, and this server requires one")]
    NoClientCertificate,
    /// The peer ended the handshake with an alert: it refused us (our
    /// certificate, or no common protocol version or cipher).
    #[error("TLS: the {peer} refused the handshake ({alert})")]
    Refused {
        /// Who refused.
        peer: TlsPeer,
        /// The alert it sent, e.g. `BadCertificate`.
        alert: String,
    },
    /// The peer closed the connection before the handshake was over.
    #[error("TLS: the {peer} closed the connection during the handshake")]
    ClosedInHandshake {
        /// Who.
        peer: TlsPeer,
    },
    /// The handshake did not end within the time allowed
    /// ([`Builder::auth_timeout`](crate::Builder::auth_timeout)).
    #[error("TLS: the handshake did not complete within {0:?} (auth_timeout)")]
    HandshakeTimeout(Duration),
    /// Anything else the TLS library reported.
    #[error("TLS: {0}")]
    Other(String),
}
