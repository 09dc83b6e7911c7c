//! One error type for the whole crate, nested by origin.
//!
//! Errors that are *events* (the peer raised an exception, the peer went away)
//! and errors that are *faults* (the peer sent garbage, a limit was hit, the API
//! was misused) share one enum so callers can match on what happened without
//! string inspection. The nested types say where it came from: why a
//! connection closed ([`CloseReason`]), which API was misused ([`Misuse`]),
//! where a value failed to convert ([`ConvertError`]), why authentication
//! refused a peer ([`AuthError`]).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

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
            _ => false,
        }
    }
}

/// I/O errors compare by kind and message (`io::Error` has no `PartialEq`).
fn same_io_error(a: &io::Error, b: &io::Error) -> bool {
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
impl From<CloseReason> for Error {
    fn from(e: CloseReason) -> Self {
        Error::Closed(e)
    }
}

// ---- why a connection closed ----------------------------------------------------

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

// ---- misuse ------------------------------------------------------------------------

/// A way of using the API that it does not support; each says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// An [`AsyncResult`](crate::AsyncResult) was awaited on a connection
    /// that nobody serves, so its reply would never be read (see
    /// [Awaiting](crate::AsyncResult#awaiting)).
    #[error(
        "awaited a result of a connection that nobody serves: attach the connection to an \
         event loop (netref-glib, netref-calloop, netref-mio, netref-polling) or start a \
         BgServingThread, or call value() to serve it from this thread"
    )]
    Unserved,
    /// An event loop was asked to watch a connection whose transport has
    /// no file descriptor.
    #[error("the connection's transport has no file descriptor, so no event loop can watch it")]
    NoFileDescriptor,
    /// A connection was attached to an event loop while it already was.
    #[error(
        "the connection is already attached to an event loop: detach it (drop its \
         `Attached`) before attaching it again"
    )]
    AlreadyAttached,
    /// A call was sent on a connection other than the one its target proxy
    /// came from. (A proxy passed as an *argument* or *result* to another
    /// connection is relayed instead; only a call's target must be at home.)
    #[error(
        "remote object {id} belongs to another connection: send a call on the connection \
         its target proxy came from"
    )]
    ForeignObject {
        /// The peer's id of the object.
        id: u64,
    },
    /// A call was made on a proxy from a bare [`Protocol`](crate::protocol::Protocol),
    /// which has no connection to send it on.
    #[error(
        "this proxy comes from a bare Protocol, which has no connection to call through: \
         send requests with Protocol::send_request, or use a Connection"
    )]
    NoConnection,
    /// Bytes were fed to a [`Protocol`](crate::protocol::Protocol) while
    /// its input buffer was lent out.
    #[error(
        "bytes were fed while the input buffer is lent out: give it back with \
         Protocol::handle_input first"
    )]
    InputBufferLent,
    /// A wait could never end: the transport reports that nothing can
    /// arrive (an in-memory [`Pair`](crate::testing::Pair) with neither side
    /// able to act).
    #[error("{detail}: the wait could never end (give the call a timeout, or let the peer act first)")]
    WaitsForever {
        /// What the transport said.
        detail: String,
    },
    /// The thread serving the connection panicked: a result callback or a
    /// service hook it ran panicked.
    #[error("the serving thread panicked: a result callback or a service hook it ran panicked")]
    ServingThreadPanicked,
}

// ---- conversions --------------------------------------------------------------------

/// Where a value that failed to convert was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// An argument of a method or callable this side serves.
    Argument {
        /// Its position, counted from 1.
        position: usize,
        /// What was called: `Type.method`, `Type()` for a callable object,
        /// `callback()` for a [`callback`](crate::callback). `None` when
        /// unknown.
        callee: Option<String>,
    },
    /// What a method returned: the peer's reply to one of our calls, or a
    /// local method's return value.
    Result {
        /// The method (`watch`, or `Type.method` for a local one); `None`
        /// when an object itself was called.
        method: Option<String>,
    },
    /// The value of an attribute.
    Attribute {
        /// The attribute's name.
        name: String,
    },
    /// A value converted with no further context ([`from_value`](crate::from_value),
    /// [`to_value`](crate::to_value)).
    Value,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Argument { position, callee: Some(c) } => write!(f, "argument {position} of `{c}`"),
            Place::Argument { position, callee: None } => write!(f, "argument {position}"),
            Place::Result { method: Some(m) } => write!(f, "the result of `{m}`"),
            Place::Result { method: None } => f.write_str("the result of the call"),
            Place::Attribute { name } => write!(f, "the attribute `{name}`"),
            Place::Value => f.write_str("a value"),
        }
    }
}

/// A value that did not convert to (or from) the Rust type asked for: where
/// it was, what was expected and what was found, in the user's terms, e.g.
/// ``argument 2 of `FileMonitor.watch`: expected a callback (a remote
/// object), got the integer 1``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    place: Place,
    problem: Problem,
}

/// What went wrong in a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The value is not of the kind asked for.
    Mismatch { expected: Expected, got: String },
    /// Anything else (a missing field, a custom serde error), in words.
    Other(String),
}

/// What a conversion expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    /// A proxy for a peer's object: worded by place (an argument of a
    /// served method is the peer's callback).
    RemoteObject,
    /// Anything else, in words ("an integer", "a list of 2 items").
    Text(String),
}

impl ConvertError {
    /// A mismatch: `expected` (in words) was asked for, `got` (in words) was found.
    pub(crate) fn mismatch(expected: Expected, got: impl Into<String>) -> Self {
        ConvertError { place: Place::Value, problem: Problem::Mismatch { expected, got: got.into() } }
    }

    /// A problem that is no mismatch, in words.
    pub(crate) fn other(message: impl Into<String>) -> Self {
        ConvertError { place: Place::Value, problem: Problem::Other(message.into()) }
    }

    /// The same problem, found at `place`.
    pub(crate) fn at(mut self, place: Place) -> Self {
        self.place = place;
        self
    }

    /// Where the value was.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// What was expected, in words ("a callback (a remote object)",
    /// "nothing (`()`)"); `None` when the problem is not a mismatch of kinds
    /// (a missing field, say).
    pub fn expected(&self) -> Option<&str> {
        match &self.problem {
            Problem::Mismatch { expected: Expected::RemoteObject, .. } => Some(match self.place {
                Place::Argument { .. } => "a callback (a remote object)",
                _ => "a remote object (a callback or proxy)",
            }),
            Problem::Mismatch { expected: Expected::Text(t), .. } => Some(t),
            Problem::Other(_) => None,
        }
    }

    /// What was found instead, in words ("the integer 1", "a remote
    /// object"); `None` when the problem is not a mismatch of kinds.
    pub fn got(&self) -> Option<&str> {
        match &self.problem {
            Problem::Mismatch { got, .. } => Some(got),
            Problem::Other(_) => None,
        }
    }

    /// What went wrong, without the place: "expected X, got Y", or the
    /// problem in words.
    pub fn problem(&self) -> String {
        match &self.problem {
            Problem::Mismatch { got, .. } => {
                format!("expected {}, got {got}", self.expected().expect("a mismatch"))
            }
            Problem::Other(m) => m.clone(),
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Value => write!(f, "cannot convert a value: {}", self.problem()),
            place => write!(f, "{place}: {}", self.problem()),
        }
    }
}

impl std::error::Error for ConvertError {}

// ---- authentication -------------------------------------------------------------------

/// A step of the shared-secret exchange (see [`auth`](crate::auth)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// The server sends its challenge.
    SendingChallenge,
    /// The server reads the client's answer.
    ReadingAnswer,
    /// The server sends its proof.
    SendingProof,
    /// The client reads the server's challenge.
    ReadingChallenge,
    /// The client sends its answer.
    SendingAnswer,
    /// The client reads the server's verdict.
    ReadingVerdict,
    /// The client reads the server's proof.
    ReadingProof,
}

impl fmt::Display for AuthStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthStep::SendingChallenge => "sending the challenge",
            AuthStep::ReadingAnswer => "reading the client's answer",
            AuthStep::SendingProof => "sending the server's proof",
            AuthStep::ReadingChallenge => "reading the server's challenge",
            AuthStep::SendingAnswer => "sending our answer",
            AuthStep::ReadingVerdict => "reading the server's verdict",
            AuthStep::ReadingProof => "reading the server's proof",
        })
    }
}

/// Why authentication refused a peer (or a server refused us).
///
/// `PartialEq` compares I/O errors by their kind and message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthError {
    /// An [`Authenticator`](crate::Authenticator) of the application refused
    /// the peer, for this reason.
    Refused(String),
    /// Peer credentials (`SO_PEERCRED`) need a Unix socket; the stream is TCP.
    NotUnixSocket,
    /// The kernel did not tell the peer's credentials.
    PeerCredentials(Arc<io::Error>),
    /// The peer process runs as a uid that is not allowed.
    UidNotAllowed {
        /// The peer's process id.
        pid: i32,
        /// The peer's user id.
        uid: u32,
        /// The allowed user ids.
        allowed: Vec<u32>,
    },
    /// (Server) the client's answer to the challenge is wrong: it does not
    /// know the shared secret.
    WrongAnswer,
    /// (Client) the server sent no netref-auth challenge.
    NoChallenge,
    /// (Client) the server rejected our answer: the shared secrets differ.
    Rejected,
    /// (Client) the server closed the connection after our answer,
    /// usually for a wrong shared secret.
    ClosedAfterAnswer,
    /// (Client) the server sent a verdict byte this version does not know.
    UnknownVerdict(u8),
    /// (Client) the server failed to prove that it knows the shared secret.
    ServerUnproven,
    /// A step took longer than the builder's `auth_timeout`.
    TimedOut(AuthStep),
    /// The peer closed the connection during a step.
    PeerClosed(AuthStep),
    /// A step failed with an I/O error.
    Io(AuthStep, Arc<io::Error>),
    /// The operating system gave no random nonce (`getrandom` failed).
    NoRandomness(Arc<io::Error>),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Refused(why) => f.write_str(why),
            AuthError::NotUnixSocket => {
                f.write_str("peer credentials (SO_PEERCRED) need a Unix socket, not TCP")
            }
            AuthError::PeerCredentials(e) => write!(f, "reading peer credentials failed: {e}"),
            AuthError::UidNotAllowed { pid, uid, allowed } => write!(
                f,
                "peer process {pid} runs as uid {uid}, which is not among the allowed uids {allowed:?}"
            ),
            AuthError::WrongAnswer => f.write_str(
                "the client's answer to the challenge is wrong (it does not know the shared secret)",
            ),
            AuthError::NoChallenge => f.write_str(
                "the server did not send a netref-auth challenge (does it require a shared secret?)",
            ),
            AuthError::Rejected => f.write_str("the server rejected our answer: the shared secrets differ"),
            AuthError::ClosedAfterAnswer => {
                f.write_str("the server closed the connection after our answer (wrong shared secret?)")
            }
            AuthError::UnknownVerdict(v) => write!(f, "the server sent an unknown verdict {v}"),
            AuthError::ServerUnproven => {
                f.write_str("the server failed to prove that it knows the shared secret")
            }
            AuthError::TimedOut(step) => write!(f, "timed out {step} (auth_timeout)"),
            AuthError::PeerClosed(step) => write!(f, "the peer closed the connection while {step}"),
            AuthError::Io(step, e) => write!(f, "{step} failed: {e}"),
            AuthError::NoRandomness(e) => {
                write!(f, "reading a random nonce from the operating system failed: {e}")
            }
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthError::PeerCredentials(e) | AuthError::Io(_, e) | AuthError::NoRandomness(e) => Some(&**e),
            _ => None,
        }
    }
}

impl PartialEq for AuthError {
    fn eq(&self, other: &AuthError) -> bool {
        use AuthError::*;
        match (self, other) {
            (Refused(a), Refused(b)) => a == b,
            (PeerCredentials(a), PeerCredentials(b)) | (NoRandomness(a), NoRandomness(b)) => {
                same_io_error(a, b)
            }
            (
                UidNotAllowed { pid: p1, uid: u1, allowed: a1 },
                UidNotAllowed { pid: p2, uid: u2, allowed: a2 },
            ) => p1 == p2 && u1 == u2 && a1 == a2,
            (UnknownVerdict(a), UnknownVerdict(b)) => a == b,
            (TimedOut(a), TimedOut(b)) | (PeerClosed(a), PeerClosed(b)) => a == b,
            (Io(s1, e1), Io(s2, e2)) => s1 == s2 && same_io_error(e1, e2),
            (NotUnixSocket, NotUnixSocket)
            | (WrongAnswer, WrongAnswer)
            | (NoChallenge, NoChallenge)
            | (Rejected, Rejected)
            | (ClosedAfterAnswer, ClosedAfterAnswer)
            | (ServerUnproven, ServerUnproven) => true,
            _ => false,
        }
    }
}

/// An error raised by the peer while it handled one of our requests.
///
/// Displays the way RPyC prints a remote exception: the type and message,
/// then one `Remote Traceback` section per hop the error travelled through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The remote error's type name, e.g. `ValueError` or `ParseIntError`.
    pub type_name: String,
    /// The remote error's message.
    pub message: String,
    /// Traceback sections, innermost hop first. Empty when the peer hides
    /// tracebacks.
    pub traceback: Vec<String>,
}

impl RemoteError {
    /// A remote error with a type name and a message and no traceback yet.
    pub fn new(type_name: impl Into<String>, message: impl Into<String>) -> Self {
        RemoteError { type_name: type_name.into(), message: message.into(), traceback: Vec::new() }
    }

    /// The error a peer returns for a name that is not exposed
    /// (RPyC's `AttributeError`).
    pub fn attribute(object: &str, name: &str) -> Self {
        RemoteError::new("AttributeError", format!("'{object}' object has no exposed attribute '{name}'"))
    }

    /// The error for wrong arguments (RPyC's `TypeError`).
    pub fn type_error(message: impl Into<String>) -> Self {
        RemoteError::new("TypeError", message)
    }

    /// The error for a value of the right type but wrong content (RPyC's `ValueError`).
    pub fn value_error(message: impl Into<String>) -> Self {
        RemoteError::new("ValueError", message)
    }

    /// Builds a remote error from any displayable error, naming it after its
    /// Rust type (`ParseIntError`, not `core::num::error::ParseIntError`).
    ///
    /// An [`io::Error`] is named the way Python names it: `FileNotFoundError`,
    /// `PermissionError`, `FileExistsError`, `TimeoutError`, ... and
    /// `OSError` for the rest. Another type whose name is just `Error` keeps
    /// its module (`fmt::Error`, `serde_json::Error`). A
    /// [`netref::Error`](Error) from a nested call keeps its remote type and
    /// traceback.
    pub fn from_error<E: fmt::Display + 'static>(err: &E) -> Self {
        let any = err as &dyn std::any::Any;
        if let Some(e) = any.downcast_ref::<Error>() {
            return e.clone().into_remote();
        }
        if let Some(e) = any.downcast_ref::<RemoteError>() {
            return e.clone();
        }
        if let Some(e) = any.downcast_ref::<io::Error>() {
            return RemoteError::new(python_os_error(e.kind()), e.to_string());
        }
        RemoteError::new(error_type_name::<E>(), err.to_string())
    }
}

/// Python's name for the `OSError` subclass of an I/O error kind.
fn python_os_error(kind: io::ErrorKind) -> &'static str {
    use io::ErrorKind::*;
    match kind {
        NotFound => "FileNotFoundError",
        PermissionDenied => "PermissionError",
        AlreadyExists => "FileExistsError",
        TimedOut => "TimeoutError",
        WouldBlock => "BlockingIOError",
        Interrupted => "InterruptedError",
        BrokenPipe => "BrokenPipeError",
        ConnectionRefused => "ConnectionRefusedError",
        ConnectionReset => "ConnectionResetError",
        ConnectionAborted => "ConnectionAbortedError",
        IsADirectory => "IsADirectoryError",
        NotADirectory => "NotADirectoryError",
        _ => "OSError",
    }
}

/// The name a Rust error type goes by on the wire: its short name, with the
/// module kept when that name is just `Error` (`fmt::Error`, not `Error`;
/// `serde_json::Error` for `serde_json::error::Error`).
fn error_type_name<E: ?Sized>() -> String {
    let short = short_type_name::<E>();
    if short != "Error" {
        return short;
    }
    let full = std::any::type_name::<E>();
    let module = full.rsplit("::").skip(1).find(|segment| *segment != "error");
    match module {
        Some(m) => format!("{m}::Error"),
        None => short,
    }
}

/// `a::b::C<d::E>` -> `C<E>`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    for ch in full.chars() {
        match ch {
            ':' => segment.clear(),
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | ';' | '&' => {
                out.push_str(&segment);
                segment.clear();
                out.push(ch);
            }
            c => segment.push(c),
        }
    }
    out.push_str(&segment);
    out
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.type_name, self.message)?;
        for (i, section) in self.traceback.iter().enumerate() {
            write!(f, "\n\n========= Remote Traceback ({}) =========\n{}", i + 1, section)?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

/// The peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The handshake failed: wrong magic, incompatible version or missing features.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A message arrived that is not valid in the current state.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// A reply or error named a sequence number we never sent (or already answered).
    #[error("reply to unknown sequence number {0}")]
    UnknownSequence(u64),
    /// The peer referred to one of our objects that we never handed out or already freed.
    #[error("reference to unknown object id {0}")]
    UnknownObject(u64),
    /// The peer released more references than it was given.
    #[error("peer released {released} references to object {id} but held {held}")]
    OverRelease {
        /// The object id.
        id: u64,
        /// How many references the peer released.
        released: u64,
        /// How many it held.
        held: u64,
    },
}

/// Bytes that do not form a valid frame or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame body is not valid CBOR (the string is the decoder's message).
    #[error("invalid CBOR: {0}")]
    BadCbor(String),
    /// The frame holds more bytes after the one CBOR item it may contain.
    #[error("{0} trailing bytes after the message in a frame")]
    TrailingBytes(usize),
    /// The stream ended in the middle of a frame.
    #[error("truncated frame: header announced {expected} bytes, stream ended after {got}")]
    Truncated {
        /// Bytes the frame header promised.
        expected: usize,
        /// Bytes that arrived before the end.
        got: usize,
    },
    /// The message is CBOR but not of a known shape; says what was wrong.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message kind this version does not know.
    #[error("unknown message kind {0}")]
    UnknownMessage(u64),
    /// A request kind this version does not know.
    #[error("unknown request kind {0}")]
    UnknownRequest(u64),
    /// A CBOR tag netref does not use.
    #[error("unknown CBOR tag {0}")]
    UnknownTag(u64),
}

/// A configured limit was exceeded. Each variant names the limit's
/// [`Config`](crate::Config) field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A frame larger than `max_frame_len`.
    #[error("frame of {len} bytes exceeds max_frame_len ({max})")]
    FrameTooLarge {
        /// The announced or produced frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Values nested deeper than `max_depth`.
    #[error("value nested deeper than max_depth ({max})")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More requests awaiting replies than `max_pending`.
    #[error("more than max_pending ({max}) requests awaiting replies")]
    TooManyPending {
        /// The limit.
        max: usize,
    },
    /// More objects exported to the peer than `max_exported`.
    #[error("more than max_exported ({max}) objects exported to the peer")]
    TooManyExported {
        /// The limit.
        max: usize,
    },
    /// More peer objects held at once than `max_imported`.
    #[error("more than max_imported ({max}) objects imported from the peer")]
    TooManyImported {
        /// The limit.
        max: usize,
    },
    /// Calls nested deeper than `max_nesting` on one thread (a callback
    /// calling the peer, which calls back, and so on).
    #[error(
        "calls nested deeper than max_nesting ({max}): each callback calling the peer back runs one level deeper on the thread's stack"
    )]
    TooDeeplyNested {
        /// The limit.
        max: usize,
    },
    /// More unsent output than `max_output_buffer`.
    #[error("{queued} bytes of output queued, over max_output_buffer ({max}): the peer is not reading")]
    OutputBufferFull {
        /// Bytes queued.
        queued: usize,
        /// The limit.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_error_prints_like_rpyc() {
        let mut e = RemoteError::value_error("invalid literal for int() with base 10: 'foo'");
        e.traceback.push("Traceback (most recent call last):\n  in Service.int\nValueError: invalid literal for int() with base 10: 'foo'".into());
        let text = Error::Remote(e).to_string();
        assert!(text.starts_with("ValueError: invalid literal for int() with base 10: 'foo'\n\n========= Remote Traceback (1) ========="));
        assert!(text.contains("in Service.int"));
    }

    #[test]
    fn short_names() {
        assert_eq!(short_type_name::<std::num::ParseIntError>(), "ParseIntError");
        assert_eq!(short_type_name::<Vec<std::string::String>>(), "Vec<String>");
        let e: std::num::ParseIntError = "x".parse::<i32>().unwrap_err();
        assert_eq!(RemoteError::from_error(&e).type_name, "ParseIntError");
    }

    #[test]
    fn a_type_called_just_error_keeps_its_module() {
        assert_eq!(RemoteError::from_error(&fmt::Error).type_name, "fmt::Error");
        mod serde_like {
            pub(super) mod error {
                #[derive(Debug)]
                pub(crate) struct Error;
                impl std::fmt::Display for Error {
                    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bad input")
                    }
                }
            }
        }
        // `serde_json::error::Error` reads `serde_json::Error`: a module
        // called `error` is skipped.
        let e = RemoteError::from_error(&serde_like::error::Error);
        assert_eq!((e.type_name.as_str(), e.message.as_str()), ("serde_like::Error", "bad input"));
    }

    #[test]
    fn misuse_names_the_fix() {
        assert_eq!(
            Error::from(Misuse::Unserved).to_string(),
            "awaited a result of a connection that nobody serves: attach the connection to an event loop \
             (netref-glib, netref-calloop, netref-mio, netref-polling) or start a BgServingThread, or call \
             value() to serve it from this thread"
        );
        assert_eq!(
            Misuse::NoFileDescriptor.to_string(),
            "the connection's transport has no file descriptor, so no event loop can watch it"
        );
    }

    #[test]
    fn io_errors_are_named_as_python_names_them() {
        let named = |kind: io::ErrorKind| RemoteError::from_error(&io::Error::from(kind)).type_name;
        assert_eq!(named(io::ErrorKind::NotFound), "FileNotFoundError");
        assert_eq!(named(io::ErrorKind::PermissionDenied), "PermissionError");
        assert_eq!(named(io::ErrorKind::ConnectionReset), "ConnectionResetError");
        assert_eq!(named(io::ErrorKind::InvalidData), "OSError");
        // Also when it reaches the peer inside a netref::Error.
        let wrapped = Error::from(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(RemoteError::from_error(&wrapped).type_name, "FileNotFoundError");
    }
}
