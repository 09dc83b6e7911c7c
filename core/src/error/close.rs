//! Why a connection closed: [`CloseReason`].

use std::sync::Arc;
use std::time::Duration;
use std::{fmt, io};

use super::{same_io_error, DecodeError, Error, LimitError, Misuse, ProtocolError};
/// Why a connection closed: what [`Connection::close_reason`](crate::Connection::close_reason)
/// returns and what [`Error::Closed`] carries.
///
/// `PartialEq` compares I/O errors by their kind and message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side closed it: [`Connection::close`](crate::Connection::close),
    /// or every handle to it was dropped.
    ByThisSide,
    /// The peer closed it in order: it sent its close message, or its end
    /// of the stream after its hello.
    ByPeer,
    /// The transport failed (connection reset, broken pipe, ...);
    /// [`source`](std::error::Error::source) returns the I/O error.
    Lost(Arc<io::Error>),
    /// The peer broke the protocol (a bad handshake, a reply to a request
    /// never sent, a reference to an object never handed out, ...).
    Protocol(ProtocolError),
    /// The peer sent bytes that are no valid message.
    Decode(DecodeError),
    /// A limit was exceeded: the peer sent a frame or value past one, or
    /// stopped reading while this side's output grew past
    /// `max_output_buffer`.
    Limit(LimitError),
    /// Nothing arrived for [`Config::idle_timeout`](crate::Config::idle_timeout).
    IdleTimeout(Duration),
    /// This side's driver misused the sans-IO [`Protocol`](crate::protocol::Protocol)
    /// in a way that leaves the stream unusable.
    Misuse(Misuse),
}

impl CloseReason {
    /// True when the connection ended as intended: closed by either side,
    /// or by the idle timeout. False when something went wrong (the
    /// transport failed, the peer misbehaved, a limit was hit). This is
    /// what [`Connection::serve_all`](crate::Connection::serve_all) and
    /// [`BgServingThread::stop`](crate::BgServingThread::stop) report as
    /// `Ok`.
    pub fn is_orderly(&self) -> bool {
        matches!(self, CloseReason::ByThisSide | CloseReason::ByPeer | CloseReason::IdleTimeout(_))
    }

    /// The reason a fault found while feeding or driving the protocol
    /// closes the connection with.
    pub(crate) fn from_fault(e: Error) -> CloseReason {
        match e {
            Error::Closed(r) => r,
            Error::Protocol(p) => CloseReason::Protocol(p),
            Error::Decode(d) => CloseReason::Decode(d),
            Error::Limit(l) => CloseReason::Limit(l),
            Error::Misuse(m) => CloseReason::Misuse(m),
            Error::Io(e) => CloseReason::Lost(e),
            // Not produced by the protocol's inputs or outputs; kept total
            // rather than panic inside the driver.
            other => CloseReason::Lost(Arc::new(io::Error::other(other.to_string()))),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ByThisSide => f.write_str("connection closed by this side"),
            CloseReason::ByPeer => f.write_str("connection closed by the peer"),
            CloseReason::Lost(e) => write!(f, "connection lost: {e}"),
            CloseReason::Protocol(e) => write!(f, "connection closed: the peer broke the protocol: {e}"),
            CloseReason::Decode(e) => write!(f, "connection closed: the peer sent an invalid message: {e}"),
            CloseReason::Limit(e) => write!(f, "connection closed: limit exceeded: {e}"),
            CloseReason::IdleTimeout(d) => {
                write!(f, "connection closed: nothing received for {d:?} (idle_timeout)")
            }
            CloseReason::Misuse(m) => write!(f, "connection closed: {m}"),
        }
    }
}

impl std::error::Error for CloseReason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CloseReason::Lost(e) => Some(&**e),
            _ => None,
        }
    }
}

impl PartialEq for CloseReason {
    fn eq(&self, other: &CloseReason) -> bool {
        use CloseReason::*;
        match (self, other) {
            (ByThisSide, ByThisSide) | (ByPeer, ByPeer) => true,
            (Lost(a), Lost(b)) => same_io_error(a, b),
            (Protocol(a), Protocol(b)) => a == b,
            (Decode(a), Decode(b)) => a == b,
            (Limit(a), Limit(b)) => a == b,
            (IdleTimeout(a), IdleTimeout(b)) => a == b,
            (Misuse(a), Misuse(b)) => a == b,
            _ => false,
        }
    }
}
