//! An exception the peer raised, printed the way RPyC prints it: [`RemoteError`].

use std::{fmt, io};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ConvertError, Error};
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
    /// The error itself as data (CBOR), when a typed method returned it:
    /// what lets a typed client get the method's own error type back
    /// ([`CallError::App`](crate::typed::CallError::App)).
    /// Set by [`with_value`](Self::with_value), read by
    /// [`value`](Self::value).
    pub(crate) value: Option<Vec<u8>>,
}

impl RemoteError {
    /// A remote error with a type name and a message and no traceback yet.
    pub fn new(type_name: impl Into<String>, message: impl Into<String>) -> Self {
        RemoteError {
            type_name: type_name.into(),
            message: message.into(),
            traceback: Vec::new(),
            value: None,
        }
    }

    /// The error a typed method returned: named after `E` and displayed as
    /// it displays, carrying `error` itself as data so a typed client reads
    /// it back as an `E` ([`value`](Self::value)).
    ///
    /// When `error` does not serialize as plain data (it holds an object
    /// reference, or its `Serialize` fails), the error still travels, by
    /// its name and message alone.
    pub fn typed<E: fmt::Display + Serialize + 'static>(error: &E) -> Self {
        let mut remote = RemoteError::new(error_type_name::<E>(), error.to_string());
        remote.value = crate::value::to_plain_cbor(error).ok();
        remote
    }

    /// The error the peer's typed method returned, read back as an `E`:
    /// `None` when the error carries no value (the peer's method is not
    /// typed, or the error is netref's own), `Some(Err(..))` when the value
    /// is not an `E` (the peer's method returns another error type).
    pub fn value<E: DeserializeOwned>(&self) -> Option<Result<E, Error>> {
        let bytes = self.value.as_deref()?;
        Some(crate::value::from_plain_cbor(bytes).map_err(|e| match e {
            Error::Convert(c) => Error::Convert(ConvertError::other(format!(
                "the peer's `{}` error is not a `{}`: {}",
                self.type_name,
                short_type_name::<E>(),
                c.problem()
            ))),
            other => other,
        }))
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
pub(super) fn python_os_error(kind: io::ErrorKind) -> &'static str {
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
