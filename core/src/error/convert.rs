//! Where a value failed to convert, and why: [`ConvertError`] and its [`Place`].

use std::fmt;
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
