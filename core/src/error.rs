//! One error type for the whole crate, nested by origin.
//!
//! Errors that are *events* (the peer raised an exception, the peer went away)
//! and errors that are *faults* (the peer sent garbage, a limit was hit, the API
//! was misused) share one enum so callers can match on what happened without
//! string inspection. The nested enums say where it came from.

use std::fmt;
use std::io;
use std::time::Duration;

/// The result type used throughout netref.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in netref.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The remote side raised an error while handling our request.
    Remote(RemoteError),
    /// The peer broke the protocol; the connection is unusable.
    Protocol(ProtocolError),
    /// Bytes could not be decoded into a frame or message.
    Decode(DecodeError),
    /// A configured limit was exceeded.
    Limit(LimitError),
    /// The caller used the API in a way it does not support.
    Misuse(String),
    /// A value could not be converted to or from a Rust type.
    Convert(String),
    /// An [`AsyncResult`](crate::AsyncResult) expired before its reply arrived
    /// (RPyC's `AsyncResultTimeout`).
    Timeout(Duration),
    /// The connection is closed; the string says why.
    Closed(String),
    /// An I/O error on the transport (kind and message).
    Io(std::io::ErrorKind, String),
    /// Authentication failed before the connection started (see
    /// [`auth`](crate::auth)); the string says why.
    Auth(String),
}

impl Error {
    /// True for the timeout raised by an expired `AsyncResult` or `timed` call.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// True when the connection was closed or lost.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed(_) | Error::Io(..))
    }

    /// The remote error, when this error came from the peer.
    pub fn as_remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// Turns any error into the form it takes on the wire when a local method
    /// fails while serving the peer.
    pub(crate) fn into_remote(self) -> RemoteError {
        match self {
            Error::Remote(r) => r,
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
            Error::Io(..) => "IOError",
            Error::Auth(_) => "AuthenticationError",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote(r) => r.fmt(f),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Decode(e) => write!(f, "decode error: {e}"),
            Error::Limit(e) => write!(f, "limit exceeded: {e}"),
            Error::Misuse(m) => write!(f, "API misuse: {m}"),
            Error::Convert(m) => write!(f, "conversion error: {m}"),
            Error::Timeout(d) => write!(f, "result expired after {d:?} (AsyncResultTimeout)"),
            Error::Closed(why) => write!(f, "connection closed: {why}"),
            Error::Io(kind, m) => write!(f, "I/O error ({kind:?}): {m}"),
            Error::Auth(why) => write!(f, "authentication failed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.kind(), e.to_string())
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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The handshake failed: wrong magic, incompatible version or missing features.
    Handshake(String),
    /// A message arrived that is not valid in the current state.
    Unexpected(String),
    /// A reply or error named a sequence number we never sent (or already answered).
    UnknownSequence(u64),
    /// The peer referred to one of our objects that we never handed out or already freed.
    UnknownObject(u64),
    /// The peer released more references than it was given.
    OverRelease {
        /// The object id.
        id: u64,
        /// How many references the peer released.
        released: u64,
        /// How many it held.
        held: u64,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Handshake(m) => write!(f, "handshake failed: {m}"),
            ProtocolError::Unexpected(m) => write!(f, "unexpected message: {m}"),
            ProtocolError::UnknownSequence(s) => {
                write!(f, "reply to unknown sequence number {s}")
            }
            ProtocolError::UnknownObject(id) => {
                write!(f, "reference to unknown object id {id}")
            }
            ProtocolError::OverRelease { id, released, held } => {
                write!(f, "peer released {released} references to object {id} but held {held}")
            }
        }
    }
}

/// Bytes that do not form a valid frame or message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame body is not valid CBOR (the string is the decoder's message).
    BadCbor(String),
    /// The frame holds more bytes after the one CBOR item it may contain.
    TrailingBytes(usize),
    /// The stream ended in the middle of a frame.
    Truncated {
        /// Bytes the frame header promised.
        expected: usize,
        /// Bytes that arrived before the end.
        got: usize,
    },
    /// The message is CBOR but not of a known shape; says what was wrong.
    Malformed(String),
    /// A message kind this version does not know.
    UnknownMessage(u64),
    /// A request kind this version does not know.
    UnknownRequest(u64),
    /// A CBOR tag netref does not use.
    UnknownTag(u64),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadCbor(m) => write!(f, "invalid CBOR: {m}"),
            DecodeError::TrailingBytes(n) => {
                write!(f, "{n} trailing bytes after the message in a frame")
            }
            DecodeError::Truncated { expected, got } => {
                write!(f, "truncated frame: header announced {expected} bytes, stream ended after {got}")
            }
            DecodeError::Malformed(m) => write!(f, "malformed message: {m}"),
            DecodeError::UnknownMessage(k) => write!(f, "unknown message kind {k}"),
            DecodeError::UnknownRequest(k) => write!(f, "unknown request kind {k}"),
            DecodeError::UnknownTag(t) => write!(f, "unknown CBOR tag {t}"),
        }
    }
}

/// A configured limit was exceeded. Each variant names the limit's
/// [`Config`](crate::Config) field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitError {
    /// A frame larger than `max_frame_len`.
    FrameTooLarge {
        /// The announced or produced frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Values nested deeper than `max_depth`.
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More requests awaiting replies than `max_pending`.
    TooManyPending {
        /// The limit.
        max: usize,
    },
    /// More objects exported to the peer than `max_exported`.
    TooManyExported {
        /// The limit.
        max: usize,
    },
    /// More peer objects held at once than `max_imported`.
    TooManyImported {
        /// The limit.
        max: usize,
    },
    /// More unsent output than `max_output_buffer`.
    OutputBufferFull {
        /// Bytes queued.
        queued: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds max_frame_len ({max})")
            }
            LimitError::TooDeep { max } => write!(f, "value nested deeper than max_depth ({max})"),
            LimitError::TooManyPending { max } => {
                write!(f, "more than max_pending ({max}) requests awaiting replies")
            }
            LimitError::TooManyExported { max } => {
                write!(f, "more than max_exported ({max}) objects exported to the peer")
            }
            LimitError::TooManyImported { max } => {
                write!(f, "more than max_imported ({max}) objects imported from the peer")
            }
            LimitError::OutputBufferFull { queued, max } => write!(
                f,
                "{queued} bytes of output queued, over max_output_buffer ({max}): the peer is not reading"
            ),
        }
    }
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
    fn io_errors_are_named_as_python_names_them() {
        let named = |kind: io::ErrorKind| RemoteError::from_error(&io::Error::from(kind)).type_name;
        assert_eq!(named(io::ErrorKind::NotFound), "FileNotFoundError");
        assert_eq!(named(io::ErrorKind::PermissionDenied), "PermissionError");
        assert_eq!(named(io::ErrorKind::ConnectionReset), "ConnectionResetError");
        assert_eq!(named(io::ErrorKind::InvalidData), "OSError");
    }
}
