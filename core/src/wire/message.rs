//! Message shapes: hello, request (by [`RequestKind`]), reply and error, to
//! and from [`Cbor`].

use super::cbor::Cbor;
use super::encode::{head, write_cbor, OutOfRange, Sink};
use super::large::LARGE_MIN;
use super::MAGIC;
use crate::error::{DecodeError, RemoteError, Result};

/// The kinds of request, with their wire codes.
///
/// Requests of the first group get exactly one reply or error each; the last
/// three are one-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    /// `[1, seq, 0]`: the peer's root object.
    Root = 0,
    /// `[1, seq, 1, target, args]`: call an object.
    Call = 1,
    /// `[1, seq, 2, target, name, args]`: call a method by name, one round trip.
    CallMethod = 2,
    /// `[1, seq, 3, target, name]`: read an attribute.
    GetAttr = 3,
    /// `[1, seq, 4, target]`: list exposed names.
    Dir = 4,
    /// `[1, seq, 5, payload]`: echo the payload.
    Ping = 5,
    /// `[1, 0, 6, [[id, count], ...]]`: drop references (one-way).
    Release = 6,
    /// `[1, 0, 7, seq]`: the sender no longer wants the reply to `seq` (one-way).
    Cancel = 7,
    /// `[1, 0, 8, reason]`: the sender is closing (one-way).
    Close = 8,
}

impl RequestKind {
    fn from_code(code: u64) -> Option<Self> {
        use RequestKind::*;
        Some(match code {
            0 => Root,
            1 => Call,
            2 => CallMethod,
            3 => GetAttr,
            4 => Dir,
            5 => Ping,
            6 => Release,
            7 => Cancel,
            8 => Close,
            _ => return None,
        })
    }
}

/// A request as it travels: object ids are the receiver's, values are CBOR
/// whose tags the protocol resolves.
#[derive(Debug, Clone, PartialEq)]
pub enum WireRequest {
    /// Get the root object.
    Root,
    /// Call `target` with `args` (a CBOR array).
    Call {
        /// The receiver's object id.
        target: u64,
        /// The arguments.
        args: Cbor,
    },
    /// Call `target.name(args)`.
    CallMethod {
        /// The receiver's object id.
        target: u64,
        /// The method name.
        name: String,
        /// The arguments.
        args: Cbor,
    },
    /// Read `target.name`.
    GetAttr {
        /// The receiver's object id.
        target: u64,
        /// The attribute name.
        name: String,
    },
    /// List `target`'s exposed names.
    Dir {
        /// The receiver's object id.
        target: u64,
    },
    /// Echo `payload` back.
    Ping(Cbor),
    /// Drop `count` references to each object id.
    Release(Vec<(u64, u64)>),
    /// The sender gave up waiting for the reply to this sequence number.
    Cancel(u64),
    /// The sender is closing the connection.
    Close(String),
}

impl WireRequest {
    /// True for requests that get a reply.
    pub fn expects_reply(&self) -> bool {
        !matches!(self, WireRequest::Release(_) | WireRequest::Cancel(_) | WireRequest::Close(_))
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The first message each side sends.
    Hello {
        /// Protocol version.
        version: u64,
        /// Feature bits.
        features: u64,
    },
    /// A request; `seq` is 0 for one-way requests.
    Request {
        /// Sequence number the reply will carry.
        seq: u64,
        /// What is asked.
        request: WireRequest,
    },
    /// A successful reply.
    Reply {
        /// The request's sequence number.
        seq: u64,
        /// The result.
        value: Cbor,
    },
    /// A failed reply.
    Error {
        /// The request's sequence number.
        seq: u64,
        /// The error.
        error: RemoteError,
    },
}

pub(super) fn uint(v: u64) -> Cbor {
    Cbor::Integer(v.into())
}

impl Message {
    /// The message as a CBOR item.
    pub fn to_cbor(&self) -> Cbor {
        self.clone().into_cbor()
    }

    /// The message as a CBOR item, taking it apart: values move into the
    /// item instead of being copied (a 1 MiB byte string stays one buffer).
    pub fn into_cbor(self) -> Cbor {
        match self {
            Message::Hello { version, features } => {
                Cbor::Array(vec![uint(0), Cbor::Text(MAGIC.into()), uint(version), uint(features)])
            }
            Message::Request { seq, request } => {
                // Room for the longest request (a method call), so the
                // pushes below never reallocate.
                let mut a = Vec::with_capacity(6);
                a.extend([uint(1), uint(seq)]);
                match request {
                    WireRequest::Root => a.push(uint(RequestKind::Root as u64)),
                    WireRequest::Call { target, args } => {
                        a.extend([uint(RequestKind::Call as u64), uint(target), args])
                    }
                    WireRequest::CallMethod { target, name, args } => {
                        a.extend([uint(RequestKind::CallMethod as u64), uint(target), Cbor::Text(name), args])
                    }
                    WireRequest::GetAttr { target, name } => {
                        a.extend([uint(RequestKind::GetAttr as u64), uint(target), Cbor::Text(name)])
                    }
                    WireRequest::Dir { target } => a.extend([uint(RequestKind::Dir as u64), uint(target)]),
                    WireRequest::Ping(p) => a.extend([uint(RequestKind::Ping as u64), p]),
                    WireRequest::Release(items) => a.extend([
                        uint(RequestKind::Release as u64),
                        Cbor::Array(
                            items.into_iter().map(|(id, n)| Cbor::Array(vec![uint(id), uint(n)])).collect(),
                        ),
                    ]),
                    WireRequest::Cancel(s) => a.extend([uint(RequestKind::Cancel as u64), uint(s)]),
                    WireRequest::Close(reason) => {
                        a.extend([uint(RequestKind::Close as u64), Cbor::Text(reason)])
                    }
                }
                Cbor::Array(a)
            }
            Message::Reply { seq, value } => Cbor::Array(vec![uint(2), uint(seq), value]),
            Message::Error { seq, error } => Cbor::Array(
                vec![
                    uint(3),
                    uint(seq),
                    Cbor::Text(error.type_name),
                    Cbor::Text(error.message),
                    Cbor::Array(error.traceback.into_iter().map(Cbor::Text).collect()),
                ]
                .into_iter()
                // A typed method's own error, as data (encoded CBOR in a byte
                // string): only when there is one, so other errors keep five fields.
                .chain(error.value.map(Cbor::Bytes))
                .collect(),
            ),
        }
    }

    /// Writes the CBOR of a call, a method call or a reply straight from
    /// its parts: the bytes `write_cbor(&self.to_cbor())` gives, without
    /// building the message's array (an allocation, two walks over it and
    /// its drop, per message). `None` for the other messages.
    pub(super) fn write_direct(&self, out: &mut Vec<u8>) -> Option<std::result::Result<(), OutOfRange>> {
        Some(match self {
            Message::Request { seq, request: WireRequest::Call { target, args } } => {
                head(out, 4, 5);
                for n in [1, *seq, RequestKind::Call as u64, *target] {
                    head(out, 0, n);
                }
                write_cbor(args, out)
            }
            Message::Request { seq, request: WireRequest::CallMethod { target, name, args } } => {
                head(out, 4, 6);
                for n in [1, *seq, RequestKind::CallMethod as u64, *target] {
                    head(out, 0, n);
                }
                head(out, 3, name.len() as u64);
                out.put(name.as_bytes());
                write_cbor(args, out)
            }
            Message::Reply { seq, value } => {
                head(out, 4, 3);
                head(out, 0, 2);
                head(out, 0, *seq);
                write_cbor(value, out)
            }
            _ => return None,
        })
    }

    /// Whether the payload of a message [`write_direct`](Self::write_direct)
    /// writes holds a byte string sent in place (see [`Output`]).
    pub(super) fn holds_large_bytes(&self) -> bool {
        fn large(item: &Cbor) -> bool {
            match item {
                Cbor::Bytes(b) => b.len() >= LARGE_MIN,
                Cbor::Array(items) => items.iter().any(large),
                Cbor::Map(entries) => entries.iter().any(|(k, v)| large(k) || large(v)),
                Cbor::Tag(_, inner) => large(inner),
                _ => false,
            }
        }
        match self {
            Message::Request {
                request: WireRequest::Call { args, .. } | WireRequest::CallMethod { args, .. },
                ..
            } => large(args),
            Message::Reply { value, .. } => large(value),
            _ => false,
        }
    }

    /// Reads a message from a CBOR item, naming what is wrong when it does
    /// not have a known shape.
    pub fn from_cbor(item: Cbor) -> Result<Message, DecodeError> {
        let Cbor::Array(items) = item else {
            return Err(malformed("a message must be a CBOR array"));
        };
        let mut f = Fields { items: items.into_iter(), what: "message" };
        let kind = f.uint("message kind")?;
        let msg = match kind {
            0 => {
                f.what = "hello";
                let magic = f.text("magic")?;
                if magic != MAGIC {
                    return Err(malformed(&format!("hello magic is {magic:?}, not {MAGIC:?}")));
                }
                Message::Hello { version: f.uint("version")?, features: f.uint("features")? }
            }
            1 => {
                f.what = "request";
                let seq = f.uint("sequence number")?;
                let code = f.uint("request kind")?;
                let kind = RequestKind::from_code(code).ok_or(DecodeError::UnknownRequest(code))?;
                let request = match kind {
                    RequestKind::Root => WireRequest::Root,
                    RequestKind::Call => {
                        WireRequest::Call { target: f.uint("target")?, args: f.array("arguments")? }
                    }
                    RequestKind::CallMethod => WireRequest::CallMethod {
                        target: f.uint("target")?,
                        name: f.text("method name")?,
                        args: f.array("arguments")?,
                    },
                    RequestKind::GetAttr => {
                        WireRequest::GetAttr { target: f.uint("target")?, name: f.text("attribute name")? }
                    }
                    RequestKind::Dir => WireRequest::Dir { target: f.uint("target")? },
                    RequestKind::Ping => WireRequest::Ping(f.any("payload")?),
                    RequestKind::Release => {
                        let Cbor::Array(pairs) = f.array("release list")? else { unreachable!() };
                        let mut out = Vec::with_capacity(pairs.len());
                        for pair in pairs {
                            let mut p = Fields {
                                items: match pair {
                                    Cbor::Array(p) => p.into_iter(),
                                    _ => return Err(malformed("release entry must be [id, count]")),
                                },
                                what: "release entry",
                            };
                            out.push((p.uint("object id")?, p.uint("count")?));
                            p.end()?;
                        }
                        WireRequest::Release(out)
                    }
                    RequestKind::Cancel => WireRequest::Cancel(f.uint("cancelled sequence number")?),
                    RequestKind::Close => WireRequest::Close(f.text("reason")?),
                };
                if request.expects_reply() == (seq == 0) {
                    return Err(malformed(&format!(
                        "request kind {code} with sequence number {seq}: replies need a nonzero one, one-way requests zero"
                    )));
                }
                Message::Request { seq, request }
            }
            2 => {
                f.what = "reply";
                Message::Reply { seq: f.uint("sequence number")?, value: f.any("value")? }
            }
            3 => {
                f.what = "error";
                let seq = f.uint("sequence number")?;
                let type_name = f.text("error type")?;
                let message = f.text("error message")?;
                let Cbor::Array(tb) = f.array("traceback")? else { unreachable!() };
                let traceback = tb
                    .into_iter()
                    .map(|t| match t {
                        Cbor::Text(s) => Ok(s),
                        _ => Err(malformed("traceback entries must be text")),
                    })
                    .collect::<Result<_, _>>()?;
                let value = match f.items.next() {
                    None => None,
                    Some(Cbor::Bytes(b)) => Some(b),
                    Some(_) => return Err(malformed("an error's value must be a byte string of CBOR")),
                };
                Message::Error { seq, error: RemoteError { type_name, message, traceback, value } }
            }
            other => return Err(DecodeError::UnknownMessage(other)),
        };
        f.end()?;
        Ok(msg)
    }
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(what.to_string())
}

struct Fields {
    items: std::vec::IntoIter<Cbor>,
    what: &'static str,
}

impl Fields {
    fn any(&mut self, field: &str) -> Result<Cbor, DecodeError> {
        self.items.next().ok_or_else(|| malformed(&format!("{} is missing its {field}", self.what)))
    }
    fn uint(&mut self, field: &str) -> Result<u64, DecodeError> {
        match self.any(field)? {
            Cbor::Integer(i) => u64::try_from(i)
                .map_err(|_| malformed(&format!("{} {field} must be an unsigned integer", self.what))),
            _ => Err(malformed(&format!("{} {field} must be an unsigned integer", self.what))),
        }
    }
    fn text(&mut self, field: &str) -> Result<String, DecodeError> {
        match self.any(field)? {
            Cbor::Text(s) => Ok(s),
            _ => Err(malformed(&format!("{} {field} must be text", self.what))),
        }
    }
    fn array(&mut self, field: &str) -> Result<Cbor, DecodeError> {
        match self.any(field)? {
            a @ Cbor::Array(_) => Ok(a),
            _ => Err(malformed(&format!("{} {field} must be an array", self.what))),
        }
    }
    fn end(&mut self) -> Result<(), DecodeError> {
        match self.items.len() {
            0 => Ok(()),
            n => Err(malformed(&format!("{} has {n} unexpected extra fields", self.what))),
        }
    }
}
