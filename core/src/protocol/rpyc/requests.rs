//! The peer's requests: each mapped onto the request netref's dialect
//! would carry, or answered here (RPyC's questions netref has no request
//! for), or refused with the Python exception that names why.

use super::super::{Event, Protocol, Request};
use super::our_seq;
use super::values::name_pack;
use crate::error::{DecodeError, ProtocolError, RemoteError, Result};
use crate::value::object::LocalObject;
use crate::wire::rpyc::{handler, Boxed, Brine, IdPack, Packet};
use crate::wire::{Cbor, WireRequest};

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
    pub(super) fn handle_rpyc_request(&mut self, theirs: u64, handler: u64, args: Boxed) -> Result<()> {
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
            Err(e) => return Err(super::super::messages::bad_args(e)),
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
    pub(super) fn answer(&mut self, theirs: u64, value: Boxed) -> Result<()> {
        self.push_packet(Packet::Reply { seq: theirs, value })
    }

    /// Hands the driver a request it answers with `error`.
    fn invalid(&mut self, seq: u64, error: RemoteError) -> Result<()> {
        self.events.push_back(Event::Request { seq, request: Request::Invalid(error) });
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
