//! What the protocol reports ([`Event`], [`Request`]) and what it is asked to
//! send ([`Call`]), and its [`Phase`].

use crate::error::{CloseReason, Place, RemoteError};
use crate::value::object::LocalObject;
use crate::value::Value;

/// What a protocol reports to its driver.
#[derive(Debug)]
pub enum Event {
    /// The peer asks something of a local object; answer with
    /// [`Protocol::send_reply`](super::Protocol::send_reply) using `seq`.
    Request {
        /// Sequence number to reply to.
        seq: u64,
        /// What is asked.
        request: Request,
    },
    /// The reply to one of our requests.
    Reply {
        /// Our request's sequence number.
        seq: u64,
        /// The value, or the error the peer raised.
        result: Result<Value, RemoteError>,
    },
    /// Our request `seq` passed its deadline: the reply will be dropped and
    /// the peer was sent a cancel.
    Expired {
        /// Our request's sequence number.
        seq: u64,
    },
    /// The peer no longer wants the reply to its request `seq` (it expired
    /// there). A reply is still owed; one that has not started may be answered
    /// with an error at once.
    Cancelled {
        /// The peer's request's sequence number.
        seq: u64,
    },
    /// The connection ended; every request awaiting a reply has failed
    /// (a driver fails them with [`Error::Closed`](crate::Error::Closed) and this reason).
    Closed {
        /// Why it ended.
        reason: CloseReason,
    },
}

/// A request from the peer, its object references resolved: every kind a
/// driver answers (the protocol answers none itself).
#[derive(Debug)]
pub enum Request {
    /// The peer asks for this side's root object (its service).
    Root,
    /// A round trip: reply with the payload, unchanged.
    Ping(Value),
    /// Call `target` itself.
    Call {
        /// The local object.
        target: LocalObject,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Call the method `name` of `target`.
    CallMethod {
        /// The local object.
        target: LocalObject,
        /// The method name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Read the attribute `name` of `target`.
    GetAttr {
        /// The local object.
        target: LocalObject,
        /// The attribute name.
        name: String,
    },
    /// List `target`'s exposed names.
    Dir {
        /// The local object.
        target: LocalObject,
    },
    /// A request that cannot be served (it names an unknown object, holds a
    /// bad reference, or is of an unknown kind); reply with this error.
    Invalid(RemoteError),
}

/// A request this side sends.
#[derive(Debug, Clone)]
pub enum Call {
    /// Get the peer's root object.
    Root,
    /// Call a remote object.
    Call {
        /// The peer's id of the object ([`RemoteObject::id`](crate::RemoteObject::id)).
        target: u64,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Call a remote object's method by name.
    CallMethod {
        /// The peer's id of the object ([`RemoteObject::id`](crate::RemoteObject::id)).
        target: u64,
        /// The method name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Read a remote attribute.
    GetAttr {
        /// The peer's id of the object ([`RemoteObject::id`](crate::RemoteObject::id)).
        target: u64,
        /// The attribute name.
        name: String,
    },
    /// List a remote object's exposed names.
    Dir {
        /// The peer's id of the object ([`RemoteObject::id`](crate::RemoteObject::id)).
        target: u64,
    },
    /// Round trip with a payload.
    Ping(Value),
}

impl Call {
    /// Where the reply's value is, for conversion errors.
    pub(crate) fn result_place(&self) -> Place {
        match self {
            Call::Root => Place::Result { method: Some("root".into()) },
            Call::Call { .. } => Place::Result { method: None },
            Call::CallMethod { name, .. } => Place::Result { method: Some(name.clone()) },
            Call::GetAttr { name, .. } => Place::Attribute { name: name.clone() },
            Call::Dir { .. } => Place::Result { method: Some("dir".into()) },
            Call::Ping(_) => Place::Result { method: Some("ping".into()) },
        }
    }
}

/// Where the connection is in its life, named for what it expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Our hello is queued; waiting for the peer's.
    ExpectHello,
    /// Handshake done; requests and replies flow.
    Open,
    /// Ended; nothing more is accepted or sent.
    Closed,
}
