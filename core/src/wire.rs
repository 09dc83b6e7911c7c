//! Frames and messages: how bytes on the wire are cut and what they mean.
//!
//! A frame is a 4-byte big-endian length followed by exactly one CBOR item.
//! The length is checked against the limit *before* any of the body is
//! buffered, and a frame may arrive split at any byte. A message is a CBOR
//! array whose first element names its kind:
//!
//! | message | layout |
//! |---|---|
//! | hello   | `[0, "tether", version, features]` |
//! | request | `[1, seq, kind, ...]` (see [`RequestKind`]) |
//! | reply   | `[2, seq, value]` |
//! | error   | `[3, seq, type_name, message, [traceback...]]` |
//!
//! Values inside messages are CBOR; object references are the two private
//! tags [`TAG_SENDER_OBJECT`] and [`TAG_RECEIVER_OBJECT`] around an object id.
//! This module knows the shapes; the protocol gives the ids their meaning.

use ciborium::value::Value as Cbor;

use crate::error::{DecodeError, Error, LimitError, RemoteError, Result};

/// Bytes that open every tether hello, so that a peer speaking something else
/// is told so instead of being misread.
pub const MAGIC: &str = "tether";
/// Protocol version. Peers must agree on it exactly.
pub const VERSION: u64 = 1;
/// Feature bits this build understands (none are defined yet; the field lets
/// later versions negotiate additions without a version bump).
pub const FEATURES: u64 = 0;

/// Tag around the id of an object that lives at the sender of the message.
pub const TAG_SENDER_OBJECT: u64 = 0x7465_0001;
/// Tag around the id of the receiver's own object, handed back.
pub const TAG_RECEIVER_OBJECT: u64 = 0x7465_0002;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// Splits an incoming byte stream into frames.
///
/// Feed it whatever arrived with [`push`](Self::push), then take frames with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)` ("need more
/// bytes", a normal outcome).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        // Reclaim consumed space before growing, so a long stream of small
        // frames does not grow the buffer (amortised O(1) per byte).
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.capacity() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame body, `Ok(None)` when more bytes are needed, or
    /// an error when the header announces more than `max_len` bytes.
    pub fn next_frame(&mut self, max_len: usize) -> Result<Option<&[u8]>> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > max_len {
            return Err(LimitError::FrameTooLarge { len, max: max_len }.into());
        }
        if avail.len() < HEADER_LEN + len {
            // Reserve for the announced body only now that it passed the limit.
            let missing = HEADER_LEN + len - avail.len();
            self.buf.reserve(missing);
            return Ok(None);
        }
        let body = self.start + HEADER_LEN..self.start + HEADER_LEN + len;
        self.start = body.end;
        Ok(Some(&self.buf[body]))
    }

    /// Call at end of stream: fails if a partial frame is left over.
    pub fn finish(&self) -> Result<()> {
        let avail = &self.buf[self.start..];
        if avail.is_empty() {
            return Ok(());
        }
        let expected = if avail.len() >= HEADER_LEN {
            HEADER_LEN + u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize
        } else {
            HEADER_LEN
        };
        Err(DecodeError::Truncated { expected, got: avail.len() }.into())
    }
}

/// Decodes one frame body into a CBOR item, with an explicit recursion limit
/// (ciborium's default can overflow a small thread stack) and no trailing bytes.
pub fn decode_cbor(body: &[u8], recursion_limit: usize) -> Result<Cbor> {
    let mut rest = body;
    let item: Cbor =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, recursion_limit).map_err(|e| match e {
            ciborium::de::Error::RecursionLimitExceeded => {
                Error::Limit(LimitError::TooDeep { max: recursion_limit })
            }
            other => Error::Decode(DecodeError::BadCbor(other.to_string())),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()).into());
    }
    Ok(item)
}

/// Appends one frame holding `item` to `out`; fails, leaving `out` as it
/// was, if the frame would exceed `max_len`.
pub fn encode_frame(item: &Cbor, out: &mut Vec<u8>, max_len: usize) -> Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = ciborium::ser::into_writer(item, &mut *out) {
        out.truncate(at);
        return Err(Error::Convert(format!("CBOR encoding failed: {e}")));
    }
    let len = out.len() - at - HEADER_LEN;
    if len > max_len || len > u32::MAX as usize {
        out.truncate(at);
        return Err(LimitError::FrameTooLarge { len, max: max_len }.into());
    }
    out[at..at + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

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

fn uint(v: u64) -> Cbor {
    Cbor::Integer(v.into())
}

impl Message {
    /// The message as a CBOR item.
    pub fn to_cbor(&self) -> Cbor {
        match self {
            Message::Hello { version, features } => {
                Cbor::Array(vec![uint(0), Cbor::Text(MAGIC.into()), uint(*version), uint(*features)])
            }
            Message::Request { seq, request } => {
                let mut a = vec![uint(1), uint(*seq)];
                match request {
                    WireRequest::Root => a.push(uint(RequestKind::Root as u64)),
                    WireRequest::Call { target, args } => {
                        a.extend([uint(RequestKind::Call as u64), uint(*target), args.clone()])
                    }
                    WireRequest::CallMethod { target, name, args } => a.extend([
                        uint(RequestKind::CallMethod as u64),
                        uint(*target),
                        Cbor::Text(name.clone()),
                        args.clone(),
                    ]),
                    WireRequest::GetAttr { target, name } => {
                        a.extend([uint(RequestKind::GetAttr as u64), uint(*target), Cbor::Text(name.clone())])
                    }
                    WireRequest::Dir { target } => a.extend([uint(RequestKind::Dir as u64), uint(*target)]),
                    WireRequest::Ping(p) => a.extend([uint(RequestKind::Ping as u64), p.clone()]),
                    WireRequest::Release(items) => a.extend([
                        uint(RequestKind::Release as u64),
                        Cbor::Array(
                            items.iter().map(|(id, n)| Cbor::Array(vec![uint(*id), uint(*n)])).collect(),
                        ),
                    ]),
                    WireRequest::Cancel(s) => a.extend([uint(RequestKind::Cancel as u64), uint(*s)]),
                    WireRequest::Close(reason) => {
                        a.extend([uint(RequestKind::Close as u64), Cbor::Text(reason.clone())])
                    }
                }
                Cbor::Array(a)
            }
            Message::Reply { seq, value } => Cbor::Array(vec![uint(2), uint(*seq), value.clone()]),
            Message::Error { seq, error } => Cbor::Array(vec![
                uint(3),
                uint(*seq),
                Cbor::Text(error.type_name.clone()),
                Cbor::Text(error.message.clone()),
                Cbor::Array(error.traceback.iter().cloned().map(Cbor::Text).collect()),
            ]),
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
                Message::Error { seq, error: RemoteError { type_name, message, traceback } }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&msg.to_cbor(), &mut out, 1 << 20).unwrap();
        out
    }

    #[test]
    fn split_anywhere() {
        let msg = Message::Request {
            seq: 7,
            request: WireRequest::CallMethod {
                target: 3,
                name: "add".into(),
                args: Cbor::Array(vec![uint(1), uint(2)]),
            },
        };
        let bytes = frame(&msg);
        for cut in 0..=bytes.len() {
            let mut d = FrameDecoder::new();
            d.push(&bytes[..cut]);
            if cut < bytes.len() {
                assert!(d.next_frame(1 << 20).unwrap().is_none());
                d.push(&bytes[cut..]);
            }
            let body = d.next_frame(1 << 20).unwrap().unwrap().to_vec();
            assert_eq!(Message::from_cbor(decode_cbor(&body, 32).unwrap()).unwrap(), msg);
            assert!(d.next_frame(1 << 20).unwrap().is_none());
            d.finish().unwrap();
        }
    }

    #[test]
    fn oversized_header_rejected_before_buffering() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_be_bytes());
        let err = d.next_frame(1024).unwrap_err();
        assert!(err.to_string().contains("exceeds max_frame_len"), "{err}");
        assert!(d.buf.capacity() < 1024);
    }

    #[test]
    fn truncated_at_end_of_stream() {
        let bytes = frame(&Message::Hello { version: 1, features: 0 });
        let mut d = FrameDecoder::new();
        d.push(&bytes[..bytes.len() - 1]);
        assert!(d.next_frame(1 << 20).unwrap().is_none());
        assert!(matches!(d.finish(), Err(Error::Decode(DecodeError::Truncated { .. }))));
    }
}
