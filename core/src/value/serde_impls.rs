//! serde for [`Value`], [`ObjectRef`] and the object handles: a reference
//! crosses a conversion as a placeholder tag (see `convert`).

use std::fmt;

use serde::de::{Error as _, Unexpected, Visitor};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::remote::RemoteObject;
use super::{de, park, ObjectRef, Value, CONVERT_MAX_DEPTH, STASH_TAG};
use crate::error::{ConvertError, Error};
use crate::value::object::LocalObject;
use crate::wire::Cbor;

type Placeholder = ciborium::tag::Required<u64, STASH_TAG>;

impl Serialize for ObjectRef {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match park(self.clone()) {
            Some(index) => Placeholder::from(ciborium::tag::Required(index)).serialize(s),
            None => Err(S::Error::custom("object references serialize only through netref::to_value")),
        }
    }
}

/// Receives an object reference from netref's deserializer (see `de`).
struct ObjectVisitor(&'static str);

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = ObjectRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<ObjectRef, E> {
        match de::take_handed_over() {
            Some(Value::Object(o)) => Ok(o),
            _ => Err(E::custom("object references deserialize only through netref::from_value")),
        }
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> std::result::Result<ObjectRef, D::Error> {
        Err(D::Error::custom("object references deserialize only through netref::from_value"))
    }
}

impl<'de> Deserialize<'de> for ObjectRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_newtype_struct(
            de::OBJECT_TOKEN,
            ObjectVisitor("an object reference (a remote object or one of this side's own)"),
        )
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // Through ciborium's `Value`, whose `Serialize` writes tags (the
        // stash's placeholders) the way ciborium's serializer reads them.
        let cbor = self
            .to_cbor(CONVERT_MAX_DEPTH, &mut |o| match park(o.clone()) {
                Some(i) => Ok(Cbor::Tag(STASH_TAG, Box::new(Cbor::Integer(i.into())))),
                None => {
                    Err(ConvertError::other("object references serialize only through netref::to_value")
                        .into())
                }
            })
            .and_then(crate::wire::into_ciborium)
            .map_err(|e| match e {
                Error::Convert(c) => S::Error::custom(c.problem()),
                other => S::Error::custom(other),
            })?;
        cbor.serialize(s)
    }
}

/// Builds a [`Value`] from any deserializer; netref's own hands the value
/// over whole (see `de`), so nested values move instead of being rebuilt.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Value, E> {
        Ok(de::take_handed_over().unwrap_or(Value::Null))
    }
    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: serde::de::Error>(self, i: i64) -> std::result::Result<Value, E> {
        Ok(Value::Integer(i.into()))
    }
    fn visit_i128<E: serde::de::Error>(self, i: i128) -> std::result::Result<Value, E> {
        Ok(Value::Integer(i))
    }
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> std::result::Result<Value, E> {
        Ok(Value::Integer(u.into()))
    }
    fn visit_u128<E: serde::de::Error>(self, u: u128) -> std::result::Result<Value, E> {
        i128::try_from(u)
            .map(Value::Integer)
            .map_err(|_| E::invalid_value(Unexpected::Other("an integer past 2^127"), &self))
    }
    fn visit_f64<E: serde::de::Error>(self, x: f64) -> std::result::Result<Value, E> {
        Ok(Value::Float(x))
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::Text(s.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> std::result::Result<Value, E> {
        Ok(Value::Text(s))
    }
    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> std::result::Result<Value, E> {
        Ok(Value::Bytes(b.to_vec()))
    }
    fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> std::result::Result<Value, E> {
        Ok(Value::Bytes(b))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_newtype_struct(de::VALUE_TOKEN, ValueVisitor)
    }
}

impl Serialize for RemoteObject {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ObjectRef::Remote(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RemoteObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match d.deserialize_newtype_struct(de::REMOTE_TOKEN, ObjectVisitor(de::REMOTE_EXPECTING))? {
            ObjectRef::Remote(r) => Ok(r),
            ObjectRef::Local(l) => Err(D::Error::invalid_type(
                Unexpected::Other(&format!(
                    "this side's own `{}` object, handed back (take a LocalObject or ObjectRef for it)",
                    l.type_name()
                )),
                &de::REMOTE_EXPECTING,
            )),
        }
    }
}

impl Serialize for LocalObject {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ObjectRef::Local(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for LocalObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        const EXPECTING: &str = "one of this side's own objects, handed back";
        match d.deserialize_newtype_struct(de::LOCAL_TOKEN, ObjectVisitor(EXPECTING))? {
            ObjectRef::Local(l) => Ok(l),
            ObjectRef::Remote(r) => Err(D::Error::invalid_type(
                Unexpected::Other(&format!("a remote object (the peer's object {})", r.id())),
                &EXPECTING,
            )),
        }
    }
}
