//! RPyC 6's dialect (`RPYC-WIRE.md`), as a second codec under the same
//! protocol: RPyC's frames are cut and decoded here, each message becomes
//! the [`Message`] netref's own dialect would have carried (the same
//! requests, replies, object tables and events), and each message this side
//! sends is written as RPyC's. What RPyC asks that netref's dialect has no
//! request for (an object's `repr`, hash, equality, its class's methods,
//! releases, which it acknowledges) is answered here, from the export table.
//!
//! Object references: the peer's objects are known by their id packs,
//! mapped to the ids of the import table; ours go out as
//! `("netref.<type>", 1, <export id>)`, or as `builtins.function` for an
//! object that exposes no names (a callback, a bound method), which Python
//! knows without asking.

use std::collections::{HashMap, HashSet};

use super::{Event, Phase, Protocol, Request};
use crate::error::{CloseReason, DecodeError, Error, Misuse, ProtocolError, RemoteError, Result};
use crate::value::object::LocalObject;
use crate::wire::rpyc::{self, handler, Boxed, Brine, IdPack, Packet, Vinegar};
use crate::wire::{Cbor, Message, WireRequest, TAG_RECEIVER_OBJECT, TAG_SENDER_OBJECT};

/// What this side knows of an RPyC connection beyond the common tables.
#[derive(Debug, Default)]
pub(super) struct RpycTables {
    /// The peer's objects, under the ids the import table knows them by.
    import_ids: HashMap<IdPack, u64>,
    packs: HashMap<u64, IdPack>,
    next_import: u64,
    /// Our requests whose answers nobody waits for (releases, the close):
    /// their replies are dropped.
    unanswered: HashSet<u64>,
    /// Whether the peer has sent anything yet: an RPyC 5 server closes
    /// without a word on RPyC 6's first request.
    heard: bool,
}

/// How a netref request names the peer's request `seq` of RPyC's: one
/// more, so that none is 0, which netref's dialect keeps for one-way
/// requests.
fn our_seq(theirs: u64) -> Result<u64> {
    theirs
        .checked_add(1)
        .ok_or_else(|| DecodeError::Malformed(format!("sequence number {theirs} is out of range")).into())
}

/// The name an exported object goes by in its id pack.
fn name_pack(object: &LocalObject) -> String {
    if object.object().dir().is_empty() {
        // Python knows this class without an INSPECT, and it is callable.
        "builtins.function".into()
    } else {
        // A prefix no Python module has: `__class__` then stays a
        // question for this side (RPYC-WIRE.md §3, point 7).
        format!("netref.{}", object.type_name())
    }
}

fn str_arg(item: Boxed, what: &str) -> std::result::Result<String, RemoteError> {
    match item {
        Boxed::Value(Brine::Str(s)) => Ok(s),
        Boxed::Value(Brine::Bytes(b)) => {
            String::from_utf8(b).map_err(|_| RemoteError::type_error(format!("{what} must be text")))
        }
        _ => Err(RemoteError::type_error(format!("{what} must be a str"))),
    }
}

impl Protocol {
    /// Cuts the RPyC frames in `bytes` and handles each message.
    pub(super) fn cut_rpyc_frames(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.decoder.push(bytes) {
            return self.refuse(e);
        }
        let max = self.config.max_frame_len;
        let max_items = self.config.max_frame_items;
        while self.phase != Phase::Closed {
            let packet = match self.decoder.next_frame(max) {
                Ok(None) => break,
                Ok(Some(body)) => {
                    rpyc::open_frame(body, max).and_then(|payload| Packet::decode(&payload, max_items))
                }
                Err(e) => Err(e),
            };
            self.frame_started = None;
            if let Err(e) = packet.and_then(|p| self.handle_packet(p)) {
                return self.refuse(e);
            }
        }
        Ok(())
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<()> {
        self.rpyc().heard = true;
        match packet {
            Packet::Reply { seq, value } => {
                if self.rpyc().unanswered.remove(&seq) {
                    return Ok(());
                }
                match self.unbox(value) {
                    Ok(value) => self.handle_message(Message::Reply { seq, value }),
                    Err(e) => self.handle_answer(
                        seq,
                        Err(RemoteError::new(
                            "InvalidReply",
                            format!("the peer's reply could not be read: {e}"),
                        )),
                    ),
                }
            }
            Packet::Exception { seq, exception } => {
                if self.rpyc().unanswered.remove(&seq) {
                    return Ok(());
                }
                self.handle_answer(seq, Err(exception.into_remote_error()))
            }
            Packet::Request { seq, handler, args } => self.handle_rpyc_request(seq, handler, args),
        }
    }

    fn handle_rpyc_request(&mut self, theirs: u64, handler: u64, args: Boxed) -> Result<()> {
        let seq = our_seq(theirs)?;
        if !(handler::PING..=handler::INSTANCECHECK).contains(&handler) {
            return Err(ProtocolError::UnknownHandler(handler).into());
        }
        let mut items = args.into_items()?.into_iter();
        let mut next = || items.next().unwrap_or(Boxed::Value(Brine::None));
        let request = match handler {
            handler::PING => WireRequest::Ping(self.unbox(next())?),
            handler::CLOSE => WireRequest::Close("the RPyC peer closes".into()),
            handler::GETROOT => WireRequest::Root,
            handler::GETATTR => {
                let target = self.our_object(next());
                let name = str_arg(next(), "an attribute name");
                match (target, name) {
                    // Python asks the owner for `__doc__` of every netref.
                    (Ok(_), Ok(name)) if name == "__doc__" => {
                        return self.answer(theirs, Boxed::Value(Brine::None));
                    }
                    (Ok(target), Ok(name)) => WireRequest::GetAttr { target, name },
                    (Err(e), _) | (_, Err(e)) => return self.invalid(seq, e),
                }
            }
            handler::CALL => {
                let target = self.our_object(next());
                let (args, kwargs) = (next(), next());
                match target
                    .and_then(|target| self.call_args(target, None, args, kwargs).map(|args| (target, args)))
                {
                    Ok((target, args)) => WireRequest::Call { target, args },
                    Err(e) => return self.invalid(seq, e),
                }
            }
            handler::CALLATTR => {
                let target = self.our_object(next());
                let name = str_arg(next(), "a method name");
                let (args, kwargs) = (next(), next());
                let parts = target
                    .and_then(|t| name.map(|n| (t, n)))
                    .and_then(|(t, n)| self.call_args(t, Some(&n), args, kwargs).map(|a| (t, n, a)));
                match parts {
                    Ok((target, name, args)) => WireRequest::CallMethod { target, name, args },
                    Err(e) => return self.invalid(seq, e),
                }
            }
            handler::DIR => match self.our_object(next()) {
                Ok(target) => WireRequest::Dir { target },
                Err(e) => return self.invalid(seq, e),
            },
            handler::REPR | handler::STR => {
                return match self.our_object(next()).and_then(|id| self.export_object(id)) {
                    Ok((id, object)) => {
                        let text = format!("<{} object, netref id {id}>", name_pack(&object));
                        self.answer(theirs, Boxed::Value(Brine::Str(text)))
                    }
                    Err(e) => self.invalid(seq, e),
                };
            }
            handler::HASH => {
                return match self.our_object(next()) {
                    Ok(id) => self.answer(theirs, Boxed::Value(Brine::Int(id.into()))),
                    Err(e) => self.invalid(seq, e),
                };
            }
            handler::CMP => {
                let (target, other) = (self.our_object(next()), next());
                let op = str_arg(next(), "a comparison");
                let same = match other {
                    Boxed::ReceiverObject(pack) => {
                        target.as_ref().ok() == u64::try_from(pack.instance_id).ok().as_ref()
                    }
                    _ => false,
                };
                let answer = match op.as_deref() {
                    Ok("__eq__") => Brine::Bool(same),
                    Ok("__ne__") => Brine::Bool(!same),
                    _ => Brine::NotImplemented,
                };
                return match target {
                    Ok(_) => self.answer(theirs, Boxed::Value(answer)),
                    Err(e) => self.invalid(seq, e),
                };
            }
            handler::DEL => {
                let target = self.our_object(next());
                let count = match next() {
                    Boxed::Value(Brine::Int(n)) => u64::try_from(n).ok(),
                    _ => None,
                };
                let (Ok(id), Some(count)) = (target, count) else {
                    return Err(DecodeError::Malformed("a release must be (object, count)".into()).into());
                };
                self.release(id, count)?;
                return self.answer(theirs, Boxed::Value(Brine::None));
            }
            handler::INSPECT => {
                let pack = match next() {
                    Boxed::Value(pack) => IdPack::from_brine(pack)?,
                    _ => {
                        return Err(
                            DecodeError::Malformed("INSPECT names an id pack, as a value".into()).into()
                        )
                    }
                };
                return match u64::try_from(pack.instance_id)
                    .map_err(|_| ())
                    .and_then(|id| self.exports.contains_key(&id).then_some(id).ok_or(()))
                {
                    // Every object may be called (one that is not says so
                    // when it is); its other names are read with GETATTR,
                    // which Python sends for any name it is not told of.
                    Ok(_) => {
                        let call = Brine::Tuple(vec![Brine::Str("__call__".into()), Brine::None]);
                        self.answer(theirs, Boxed::Value(Brine::Tuple(vec![call])))
                    }
                    Err(()) => self.invalid(seq, unknown_object(pack.instance_id)),
                };
            }
            handler::PICKLE => {
                return self
                    .invalid(seq, RemoteError::value_error("pickling is disabled (netref never unpickles)"))
            }
            handler::SETATTR | handler::DELATTR => {
                return self.invalid(
                    seq,
                    RemoteError::new(
                        "AttributeError",
                        "netref objects' attributes are read-only to the peer",
                    ),
                )
            }
            handler::BUFFITER => {
                return self
                    .invalid(seq, RemoteError::type_error("netref objects are not iterable from RPyC"))
            }
            _ => {
                let what = match handler {
                    handler::OLDSLICING => "Python 2 slicing",
                    handler::CTXEXIT => "`with` blocks",
                    _ => "isinstance() against a netref class",
                };
                return self.invalid(
                    seq,
                    RemoteError::new("NotImplementedError", format!("{what} on netref objects")),
                );
            }
        };
        self.handle_request(seq, request)
    }

    /// The export id of the object a request names (label 3 with one of
    /// our id packs), or the error to answer with.
    fn our_object(&self, item: Boxed) -> std::result::Result<u64, RemoteError> {
        match item {
            Boxed::ReceiverObject(pack) => match u64::try_from(pack.instance_id) {
                Ok(id) => Ok(id),
                Err(_) => Err(unknown_object(pack.instance_id)),
            },
            _ => Err(RemoteError::type_error("the request must name an object of this side")),
        }
    }

    fn export_object(&self, id: u64) -> std::result::Result<(u64, LocalObject), RemoteError> {
        self.local_target(id).map(|object| (id, object))
    }

    /// A call's arguments, in order: the positional ones, then the keyword
    /// ones put where the object's parameter names say
    /// ([`Object::parameters`](crate::Object::parameters)) of `method` (of
    /// the object itself when `None`). Keyword arguments of a method whose
    /// names are not known are refused rather than dropped.
    fn call_args(
        &mut self,
        target: u64,
        method: Option<&str>,
        args: Boxed,
        kwargs: Boxed,
    ) -> std::result::Result<Cbor, RemoteError> {
        let mut positional = match self.unbox(args) {
            Ok(Cbor::Array(a)) => a,
            Ok(_) => return Err(RemoteError::type_error("a call's arguments must be a tuple")),
            Err(e) => return Err(super::messages::bad_args(e)),
        };
        let keywords = match self.unbox(kwargs) {
            Ok(Cbor::Null) => Vec::new(),
            Ok(Cbor::Array(pairs)) => pairs,
            Ok(_) | Err(_) => {
                return Err(RemoteError::type_error("keyword arguments must be (name, value) pairs"))
            }
        };
        if keywords.is_empty() {
            return Ok(Cbor::Array(positional));
        }
        let mut named = Vec::with_capacity(keywords.len());
        for pair in keywords {
            match pair {
                Cbor::Array(kv) if kv.len() == 2 => {
                    let [k, v]: [Cbor; 2] = kv.try_into().expect("two");
                    let Cbor::Text(k) = k else {
                        return Err(RemoteError::type_error("keyword argument names must be str"));
                    };
                    named.push((k, v));
                }
                _ => return Err(RemoteError::type_error("keyword arguments must be (name, value) pairs")),
            }
        }
        let object = self.local_target(target)?;
        let callee = match method {
            Some(m) => format!("{}.{m}", object.type_name()),
            None => object.type_name().to_string(),
        };
        let Some(params) = object.object().parameters(method) else {
            return Err(RemoteError::type_error(format!(
                "`{callee}` takes positional arguments only (its parameter names are not known): \
                 pass keyword arguments by position"
            )));
        };
        for (k, _) in &named {
            match params.iter().position(|p| p == k) {
                None => {
                    return Err(RemoteError::type_error(format!(
                        "`{callee}` got an unexpected keyword argument '{k}'"
                    )))
                }
                Some(i) if i < positional.len() => {
                    return Err(RemoteError::type_error(format!(
                        "`{callee}` got multiple values for argument '{k}'"
                    )))
                }
                Some(_) => {}
            }
        }
        // The parameters after the positional arguments, in order, up to
        // the last one named; one left out before it is missing.
        for p in params.get(positional.len()..).unwrap_or_default() {
            if named.is_empty() {
                break;
            }
            match named.iter().position(|(k, _)| k == p) {
                Some(i) => positional.push(named.swap_remove(i).1),
                None => return Err(RemoteError::type_error(format!("`{callee}` is missing argument '{p}'"))),
            }
        }
        Ok(Cbor::Array(positional))
    }

    /// Answers the peer's request at once, as the protocol itself.
    fn answer(&mut self, theirs: u64, value: Boxed) -> Result<()> {
        self.push_packet(Packet::Reply { seq: theirs, value })
    }

    /// Hands the driver a request it answers with `error`.
    fn invalid(&mut self, seq: u64, error: RemoteError) -> Result<()> {
        self.events.push_back(Event::Request { seq, request: Request::Invalid(error) });
        Ok(())
    }

    /// Why the connection ended when the peer closed its end: a peer that
    /// closes without answering anything while requests wait is most
    /// likely an RPyC 5 server, which does that on RPyC 6's messages.
    pub(super) fn rpyc_eof_reason(&self) -> Option<CloseReason> {
        let tables = self.rpyc.as_ref()?;
        (!tables.heard && !self.pending.is_empty()).then(|| {
            CloseReason::Protocol(ProtocolError::Handshake(
                "the RPyC peer closed the connection without answering anything: a server speaking \
                 RPyC < 6 does that on RPyC 6's messages (netref speaks RPyC 6.0's)"
                    .into(),
            ))
        })
    }

    fn rpyc(&mut self) -> &mut RpycTables {
        self.rpyc.get_or_insert_with(Box::default)
    }

    /// A value of the peer's, with references as netref's dialect tags them.
    fn unbox(&mut self, value: Boxed) -> Result<Cbor> {
        Ok(match value {
            Boxed::Value(v) => brine_to_cbor(v)?,
            Boxed::Tuple(items) => {
                Cbor::Array(items.into_iter().map(|i| self.unbox(i)).collect::<Result<_>>()?)
            }
            Boxed::SenderObject(pack) => {
                let tables = self.rpyc();
                let id = match tables.import_ids.get(&pack) {
                    Some(&id) => id,
                    None => {
                        tables.next_import += 1;
                        let id = tables.next_import;
                        tables.packs.insert(id, pack.clone());
                        tables.import_ids.insert(pack, id);
                        id
                    }
                };
                Cbor::Tag(TAG_SENDER_OBJECT, Box::new(Cbor::Integer(id.into())))
            }
            Boxed::ReceiverObject(pack) => {
                let id = u64::try_from(pack.instance_id).map_err(|_| ProtocolError::UnknownObject(0))?;
                Cbor::Tag(TAG_RECEIVER_OBJECT, Box::new(Cbor::Integer(id.into())))
            }
        })
    }

    /// A value of netref's dialect, boxed as RPyC boxes it.
    fn boxed(&mut self, value: Cbor) -> Result<Boxed> {
        Ok(match value {
            Cbor::Null => Boxed::Value(Brine::None),
            Cbor::Bool(b) => Boxed::Value(Brine::Bool(b)),
            Cbor::Integer(i) => Boxed::Value(Brine::Int(i)),
            Cbor::Float(f) => Boxed::Value(Brine::Float(f)),
            Cbor::Bytes(b) => Boxed::Value(Brine::Bytes(b)),
            Cbor::Text(s) => Boxed::Value(Brine::Str(s)),
            Cbor::Array(items) => {
                Boxed::tuple(items.into_iter().map(|i| self.boxed(i)).collect::<Result<_>>()?)
            }
            // Brine has no mapping: a map goes as a tuple of (key, value)
            // pairs, which Python's `dict()` takes.
            Cbor::Map(entries) => Boxed::tuple(
                entries
                    .into_iter()
                    .map(|(k, v)| Ok(Boxed::tuple(vec![self.boxed(k)?, self.boxed(v)?])))
                    .collect::<Result<_>>()?,
            ),
            Cbor::Tag(TAG_SENDER_OBJECT, id) => {
                let id = tagged_id(&id)?;
                let object = self.exports.get(&id).ok_or(ProtocolError::UnknownObject(id))?;
                Boxed::SenderObject(IdPack {
                    name: name_pack(&object.object),
                    class_id: 1,
                    instance_id: id.into(),
                })
            }
            Cbor::Tag(TAG_RECEIVER_OBJECT, id) => Boxed::ReceiverObject(self.their_pack(tagged_id(&id)?)?),
            Cbor::Tag(tag, _) => return Err(DecodeError::UnknownTag(tag).into()),
        })
    }

    fn their_pack(&mut self, id: u64) -> Result<IdPack> {
        self.rpyc().packs.get(&id).cloned().ok_or_else(|| Misuse::ForeignObject { id }.into())
    }

    /// Queues `msg` as RPyC's messages say it.
    pub(super) fn send_rpyc(&mut self, msg: Message) -> Result<()> {
        let empty = || Boxed::Value(Brine::Tuple(Vec::new()));
        let packet = match msg {
            // RPyC has no greeting.
            Message::Hello { .. } => return Ok(()),
            Message::Reply { seq, value } => Packet::Reply { seq: seq - 1, value: self.boxed(value)? },
            Message::Error { seq, error } => {
                Packet::Exception { seq: seq - 1, exception: Vinegar::from_remote_error(&error) }
            }
            Message::Request { seq, request } => {
                let (handler, args) = match request {
                    WireRequest::Root => (handler::GETROOT, empty()),
                    WireRequest::Call { target, args } => {
                        let parts =
                            vec![Boxed::ReceiverObject(self.their_pack(target)?), self.boxed(args)?, empty()];
                        (handler::CALL, Boxed::tuple(parts))
                    }
                    WireRequest::CallMethod { target, name, args } => {
                        let object = Boxed::ReceiverObject(self.their_pack(target)?);
                        let parts = vec![object, Boxed::Value(Brine::Str(name)), self.boxed(args)?, empty()];
                        (handler::CALLATTR, Boxed::tuple(parts))
                    }
                    WireRequest::GetAttr { target, name } => {
                        let object = Boxed::ReceiverObject(self.their_pack(target)?);
                        (handler::GETATTR, Boxed::tuple(vec![object, Boxed::Value(Brine::Str(name))]))
                    }
                    WireRequest::Dir { target } => {
                        (handler::DIR, Boxed::tuple(vec![Boxed::ReceiverObject(self.their_pack(target)?)]))
                    }
                    WireRequest::Ping(payload) => (handler::PING, Boxed::tuple(vec![self.boxed(payload)?])),
                    WireRequest::Release(items) => {
                        // One DEL per object (RPyC has no batch), each a
                        // request whose acknowledgement is dropped.
                        for (id, count) in items {
                            let tables = self.rpyc();
                            let Some(pack) = tables.packs.remove(&id) else { continue };
                            tables.import_ids.remove(&pack);
                            let args = Boxed::tuple(vec![
                                Boxed::ReceiverObject(pack),
                                Boxed::Value(Brine::Int(count.into())),
                            ]);
                            self.send_unanswered(handler::DEL, args)?;
                        }
                        return Ok(());
                    }
                    // RPyC cannot take a request back: the late reply is dropped here.
                    WireRequest::Cancel(_) => return Ok(()),
                    WireRequest::Close(_) => return self.send_unanswered(handler::CLOSE, empty()),
                };
                Packet::Request { seq, handler, args }
            }
        };
        self.push_packet(packet)
    }

    /// Sends a request of its own sequence number whose answer is dropped.
    fn send_unanswered(&mut self, handler: u64, args: Boxed) -> Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.rpyc().unanswered.insert(seq);
        self.push_packet(Packet::Request { seq, handler, args })
    }

    fn push_packet(&mut self, packet: Packet) -> Result<()> {
        let mut payload = Vec::new();
        packet.encode(&mut payload);
        let mut frame = Vec::new();
        rpyc::write_frame(&payload, &mut frame, self.config.max_frame_len)?;
        self.out.push_bytes(&frame);
        Ok(())
    }
}

fn unknown_object(instance_id: i128) -> RemoteError {
    RemoteError::new(
        "ReferenceError",
        format!(
            "no object with id {instance_id} was handed to this peer (never exported, or already released)"
        ),
    )
}

fn tagged_id(inner: &Cbor) -> Result<u64> {
    inner
        .as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| Error::Decode(DecodeError::Malformed("an object tag must wrap an object id".into())))
}

/// A value brine carries, as the CBOR item netref's values are read from.
/// What netref's values have no kind for is refused by name.
fn brine_to_cbor(value: Brine) -> Result<Cbor> {
    let refuse = |what: &str| -> Result<Cbor> {
        Err(DecodeError::Malformed(format!("{what} has no netref value to stand for it")).into())
    };
    Ok(match value {
        Brine::None => Cbor::Null,
        Brine::Bool(b) => Cbor::Bool(b),
        Brine::Int(i) => Cbor::Integer(crate::wire::cbor_integer(i)?),
        Brine::Float(f) => Cbor::Float(f),
        Brine::Bytes(b) => Cbor::Bytes(b),
        Brine::Str(s) => Cbor::Text(s),
        Brine::Tuple(items) | Brine::FrozenSet(items) => {
            Cbor::Array(items.into_iter().map(brine_to_cbor).collect::<Result<_>>()?)
        }
        Brine::Complex(..) => return refuse("a complex number"),
        Brine::Slice(_) => return refuse("a slice"),
        Brine::NotImplemented => return refuse("NotImplemented"),
        Brine::Ellipsis => return refuse("Ellipsis"),
    })
}

impl Protocol {
    /// Ends the connection for `e` (named in the peer's terms before its
    /// greeting); returns the error that ended it.
    pub(super) fn refuse(&mut self, e: Error) -> Result<()> {
        let reason = CloseReason::from_fault(self.explain_bad_greeting(e));
        self.fail(reason.clone());
        Err(Error::Closed(reason))
    }
}
