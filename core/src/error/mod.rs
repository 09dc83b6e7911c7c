//! One error type for the whole crate, nested by origin.
//!
//! Errors that are *events* (the peer raised an exception, the peer went away)
//! and errors that are *faults* (the peer sent garbage, a limit was hit, the API
//! was misused) share one enum so callers can match on what happened without
//! string inspection. The nested types say where it came from: why a
//! connection closed ([`CloseReason`]), which API was misused ([`Misuse`]),
//! where a value failed to convert ([`ConvertError`]), why authentication
//! refused a peer ([`AuthError`]).

use std::sync::Arc;
use std::time::Duration;
use std::{fmt, io};

use remote::python_os_error;

mod auth;
mod close;
mod convert;
mod faults;
mod misuse;
mod remote;
#[cfg(test)]
mod tests;
mod tls;

pub use auth::{AuthError, AuthStep};
pub use close::CloseReason;
pub(crate) use convert::Expected;
pub use convert::{ConvertError, Place};
pub use faults::{DecodeError, LimitError, ProtocolError};
pub use misuse::Misuse;
pub use remote::RemoteError;
pub use tls::{TlsError, TlsPeer};

/// The result type used throughout netref.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in netref.
///
/// `PartialEq` compares I/O errors by their kind and message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The remote side raised an error while handling our request.
    Remote(RemoteError),
    /// The connection is closed, and why. Every call pending when it
    /// closed fails with this, and so does every later call.
    Closed(CloseReason),
    /// The peer answered in a way the protocol does not allow, without the
    /// connection closing (a fault that closes it is [`Error::Closed`]).
    Protocol(ProtocolError),
    /// Bytes could not be decoded into a frame or message.
    Decode(DecodeError),
    /// A configured limit stopped this call (the connection stays open).
    Limit(LimitError),
    /// The caller used the API in a way it does not support.
    Misuse(Misuse),
    /// A value could not be converted to or from a Rust type.
    Convert(ConvertError),
    /// An [`AsyncResult`](crate::AsyncResult) expired before its reply arrived
    /// (RPyC's `AsyncResultTimeout`).
    Timeout(Duration),
    /// An I/O error outside a running connection (connecting, binding,
    /// accepting); shared so that `Error` stays `Clone`.
    /// [`source`](std::error::Error::source) returns it.
    Io(Arc<io::Error>),
    /// Authentication failed before the connection started (see
    /// [`auth`](crate::auth)).
    Auth(AuthError),
    /// TLS failed before the connection started: the handshake, or a
    /// certificate or key given (see `netref::tls`, feature `tls`).
    Tls(TlsError),
}

impl Error {
    /// True for the timeout raised by an expired `AsyncResult` or `timed` call.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// True when the connection was closed or lost.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed(_))
    }

    /// The remote error, when this error came from the peer.
    pub fn as_remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// Why the connection closed, when this error says it did.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match self {
            Error::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// Turns any error into the form it takes on the wire when a local method
    /// fails while serving the peer.
    pub(crate) fn into_remote(self) -> RemoteError {
        match self {
            Error::Remote(r) => r,
            // Python's OSErrors carry the system's message alone.
            Error::Io(e) => RemoteError::new(python_os_error(e.kind()), e.to_string()),
            other => RemoteError::new(other.kind_name(), other.to_string()),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Error::Remote(_) => "RemoteError",
            Error::Protocol(_) => "ProtocolError",
            Error::Decode(_) => "DecodeError",
            Error::Limit(_) => "LimitError",
            Error::Misuse(_) => "MisuseError",
            Error::Convert(_) => "TypeError",
            Error::Timeout(_) => "AsyncResultTimeout",
            Error::Closed(_) => "EOFError",
            Error::Io(e) => python_os_error(e.kind()),
            Error::Auth(_) => "AuthenticationError",
            Error::Tls(_) => "SSLError",
        }
    }
}

// `Error`, `CloseReason` and `AuthError` are written out, not derived with
// thiserror as `Misuse`, `ProtocolError`, `DecodeError` and `LimitError`
// are: their `source` is the `io::Error` inside an `Arc` (thiserror's
// `#[source]` would return the `Arc`, which does not downcast to
// `io::Error`), and a nested error whose text their own already includes
// is no source (thiserror's `#[from]` makes it one, and an error report
// would print it twice). `ConvertError`'s and `RemoteError`'s texts are
// composed (by place, traceback sections), not formatted from fields.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote(r) => r.fmt(f),
            Error::Closed(why) => why.fmt(f),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Decode(e) => write!(f, "decode error: {e}"),
            Error::Limit(e) => write!(f, "limit exceeded: {e}"),
            Error::Misuse(m) => m.fmt(f),
            Error::Convert(e) => e.fmt(f),
            Error::Timeout(d) => write!(f, "result expired after {d:?} (AsyncResultTimeout)"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Auth(why) => write!(f, "authentication failed: {why}"),
            Error::Tls(why) => why.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            Error::Closed(why) => why.source(),
            Error::Auth(why) => why.source(),
            _ => None,
        }
    }
}

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        use Error::*;
        match (self, other) {
            (Remote(a), Remote(b)) => a == b,
            (Closed(a), Closed(b)) => a == b,
            (Protocol(a), Protocol(b)) => a == b,
            (Decode(a), Decode(b)) => a == b,
            (Limit(a), Limit(b)) => a == b,
            (Misuse(a), Misuse(b)) => a == b,
            (Convert(a), Convert(b)) => a == b,
            (Timeout(a), Timeout(b)) => a == b,
            (Io(a), Io(b)) => same_io_error(a, b),
            (Auth(a), Auth(b)) => a == b,
            (Tls(a), Tls(b)) => a == b,
            _ => false,
        }
    }
}

/// I/O errors compare by kind and message (`io::Error` has no `PartialEq`).
pub(super) fn same_io_error(a: &io::Error, b: &io::Error) -> bool {
    a.kind() == b.kind() && a.to_string() == b.to_string()
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<RemoteError> for Error {
    fn from(e: RemoteError) -> Self {
        Error::Remote(e)
    }
}
impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Decode(e)
    }
}
impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
impl From<LimitError> for Error {
    fn from(e: LimitError) -> Self {
        Error::Limit(e)
    }
}
impl From<Misuse> for Error {
    fn from(e: Misuse) -> Self {
        Error::Misuse(e)
    }
}
impl From<ConvertError> for Error {
    fn from(e: ConvertError) -> Self {
        Error::Convert(e)
    }
}
impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        Error::Auth(e)
    }
}
impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::Tls(e)
    }
}
impl From<CloseReason> for Error {
    fn from(e: CloseReason) -> Self {
        Error::Closed(e)
    }
}
