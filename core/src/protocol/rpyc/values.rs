//! Values both ways: RPyC's boxed values and id packs to and from the
//! tagged CBOR items the protocol's object tables read and write.

use super::super::Protocol;
use crate::error::{DecodeError, Error, Misuse, ProtocolError, Result};
use crate::value::object::LocalObject;
use crate::wire::rpyc::{Boxed, Brine, IdPack};
use crate::wire::{Cbor, TAG_RECEIVER_OBJECT, TAG_SENDER_OBJECT};

/// The name an exported object goes by in its id pack.
pub(super) fn name_pack(object: &LocalObject) -> String {
    if object.object().dir().is_empty() {
        // Python knows this class without an INSPECT, and it is callable.
        "builtins.function".into()
    } else {
        // A prefix no Python module has: `__class__` then stays a
        // question for this side (RPYC-WIRE.md §3, point 7).
        format!("netref.{}", object.type_name())
    }
}

impl Protocol {
    /// A value of the peer's, with references as netref's dialect tags them.
    pub(super) fn unbox(&mut self, value: Boxed) -> Result<Cbor> {
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
    pub(super) fn boxed(&mut self, value: Cbor) -> Result<Boxed> {
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

    pub(super) fn their_pack(&mut self, id: u64) -> Result<IdPack> {
        self.rpyc().packs.get(&id).cloned().ok_or_else(|| Misuse::ForeignObject { id }.into())
    }
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
