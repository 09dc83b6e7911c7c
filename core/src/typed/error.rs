//! [`CallError`]: how a typed method returning `Result<T, E>` fails on the
//! client.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::error::{CloseReason, Error, RemoteError};

/// The error of a typed call whose method returns `Result<T, E>`: the
/// method's own error, or the call failing on the way.
///
/// `E` needs no `From<netref::Error>`: the two stay apart, so matching on
/// the method's errors never has to consider a timeout, and the other way
/// round.
///
/// ```
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct NotFound;
/// # impl std::fmt::Display for NotFound {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("not found") }
/// # }
/// # fn show(r: Result<u64, netref::typed::CallError<NotFound>>) {
/// match r {
///     Ok(size) => println!("{size} bytes"),
///     Err(netref::typed::CallError::App(NotFound)) => println!("no such file"),
///     Err(e) if e.is_timeout() => println!("the server is slow"),
///     Err(e) => println!("call failed: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum CallError<E> {
    /// The method ran and returned `Err(e)`.
    App(E),
    /// The call failed for a reason outside the method's signature: the
    /// peer's method panicked or raised another error
    /// ([`Error::Remote`], with its traceback), the result expired
    /// ([`Error::Timeout`]), the connection closed ([`Error::Closed`]), or
    /// a protocol error, limit or conversion stopped it.
    Rpc(Error),
}

impl<E> CallError<E> {
    /// The method's own error, if that is what this is.
    pub fn app(&self) -> Option<&E> {
        match self {
            CallError::App(e) => Some(e),
            CallError::Rpc(_) => None,
        }
    }

    /// The method's own error, if that is what this is; otherwise the
    /// failed call's error.
    pub fn into_app(self) -> Result<E, Error> {
        match self {
            CallError::App(e) => Ok(e),
            CallError::Rpc(e) => Err(e),
        }
    }

    /// netref's error, when the call failed on the way.
    pub fn rpc(&self) -> Option<&Error> {
        match self {
            CallError::Rpc(e) => Some(e),
            CallError::App(_) => None,
        }
    }

    /// The peer's exception that is not the method's own error (a panic, a
    /// `TypeError` for a wrong argument): its type, message and traceback.
    pub fn remote(&self) -> Option<&RemoteError> {
        self.rpc().and_then(Error::as_remote)
    }

    /// True when the result expired before the reply came.
    pub fn is_timeout(&self) -> bool {
        self.rpc().is_some_and(Error::is_timeout)
    }

    /// True when the connection closed or was lost.
    pub fn is_closed(&self) -> bool {
        self.rpc().is_some_and(Error::is_closed)
    }

    /// Why the connection closed, when it did.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.rpc().and_then(Error::close_reason)
    }
}

/// A failed call, read as the method's own error when the peer's typed
/// method returned one that decodes as an `E`.
impl<E: DeserializeOwned> From<Error> for CallError<E> {
    fn from(error: Error) -> Self {
        if let Error::Remote(remote) = &error {
            match remote.value::<E>() {
                Some(Ok(e)) => return CallError::App(e),
                // The peer's method returns another error type than this
                // side's trait says: say so, keeping the peer's error.
                Some(Err(mismatch)) => log::warn!("netref: {mismatch}"),
                None => {}
            }
        }
        CallError::Rpc(error)
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::App(e) => e.fmt(f),
            CallError::Rpc(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::App(e) => e.source(),
            CallError::Rpc(e) => e.source(),
        }
    }
}
