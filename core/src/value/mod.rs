//! The values that cross the wire: plain data plus object references.
//!
//! [`Value`] is the dynamic form. Any serde type converts to and from it with
//! [`to_value`] and [`from_value`]; object references ([`RemoteObject`],
//! [`LocalObject`], [`ObjectRef`]) may sit anywhere inside such a type.
//!
//! Object references cannot be expressed in serde's data model. Into a
//! `Value` ([`to_value`]), they are parked in a thread-local *stash* and
//! represented by a private CBOR tag holding their stash index. Out of a
//! `Value` ([`from_value`]), a deserializer of netref's own hands them to
//! the reference types directly; a type that has no place for one fails
//! the conversion instead of losing the reference.
//!
//! Conversion errors are [`ConvertError`](crate::ConvertError)s in the user's words: what was
//! expected and what was found ("expected nothing (`()`), got a remote
//! object").

use std::fmt;

use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::value::object::LocalObject;
pub use remote::RemoteObject;

mod cbor;
mod convert;
mod de;
pub mod object;
pub(crate) mod remote;
mod serde_impls;

pub(crate) use convert::{
    cast, from_plain_cbor, from_value_at, into_value, placed, to_plain_cbor, STASH_TAG,
};
pub use convert::{from_value, to_value};
use convert::{park, unstash, CONVERT_MAX_DEPTH};

/// A dynamically typed value: what one argument or result is on the wire.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// Nothing (`None`, `()`, CBOR null).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer in CBOR's range (-2^64 ..= 2^64-1).
    Integer(i128),
    /// A floating point number.
    Float(f64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A text string.
    Text(String),
    /// A list.
    Array(Vec<Value>),
    /// A map, in the order the entries were written.
    Map(Vec<(Value, Value)>),
    /// A reference to an object: ours or the peer's.
    Object(ObjectRef),
}

/// A reference to an object that one side exposes to the other.
#[derive(Clone, Debug)]
pub enum ObjectRef {
    /// An object that lives in this process.
    Local(LocalObject),
    /// A proxy for an object that lives at the peer (RPyC's netref).
    Remote(RemoteObject),
}

impl ObjectRef {
    /// True when both refer to the same object.
    pub fn same_as(&self, other: &ObjectRef) -> bool {
        match (self, other) {
            (ObjectRef::Local(a), ObjectRef::Local(b)) => a.same_as(b),
            (ObjectRef::Remote(a), ObjectRef::Remote(b)) => a.same_as(b),
            _ => false,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Integer(a), Integer(b)) => a == b,
            (Float(a), Float(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Bytes(a), Bytes(b)) => a == b,
            (Text(a), Text(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Object(a), Object(b)) => a.same_as(b),
            _ => false,
        }
    }
}

impl Value {
    /// The text, if this is a text value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => i64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The object reference, if this is one.
    pub fn as_object(&self) -> Option<&ObjectRef> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The remote object, if this is a proxy for one of the peer's objects.
    pub fn as_remote(&self) -> Option<&RemoteObject> {
        match self {
            Value::Object(ObjectRef::Remote(r)) => Some(r),
            _ => None,
        }
    }

    /// Converts this value into a Rust type (see [`from_value`]).
    pub fn deserialize_into<T: DeserializeOwned>(self) -> Result<T> {
        from_value(self)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bytes(b) => write!(f, "b<{} bytes>", b.len()),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Object(ObjectRef::Local(l)) => write!(f, "<local {}>", l.type_name()),
            Value::Object(ObjectRef::Remote(r)) => write!(f, "<netref #{}>", r.id()),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident via $conv:expr),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::$variant($conv(v)) }
        }
    )*};
}

value_from! {
    bool => Bool via |v| v,
    i8 => Integer via i128::from, i16 => Integer via i128::from, i32 => Integer via i128::from,
    i64 => Integer via i128::from, u8 => Integer via i128::from, u16 => Integer via i128::from,
    u32 => Integer via i128::from, u64 => Integer via i128::from,
    f32 => Float via f64::from, f64 => Float via |v| v,
    String => Text via |v| v, &str => Text via String::from,
    Vec<Value> => Array via |v| v,
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}
impl From<RemoteObject> for Value {
    fn from(r: RemoteObject) -> Value {
        Value::Object(ObjectRef::Remote(r))
    }
}
impl From<LocalObject> for Value {
    fn from(l: LocalObject) -> Value {
        Value::Object(ObjectRef::Local(l))
    }
}
impl From<ObjectRef> for Value {
    fn from(o: ObjectRef) -> Value {
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_to_value_fast_paths_keep_references_and_limits() {
        let obj = ObjectRef::Local(crate::ObjectBuilder::new("T").build());
        let v = Value::Array(vec![Value::Bytes(vec![1, 2, 3]), Value::Object(obj.clone())]);
        let back: Value = from_value(v.clone()).unwrap();
        assert_eq!(back, v);
        assert_eq!(to_value(&v).unwrap(), v);
        assert_eq!(into_value(v.clone()).unwrap(), v);
        // Other types still go through CBOR, and still refuse to drop a reference.
        assert!(from_value::<Vec<()>>(v).is_err());

        // The fast paths fail where the round trip through CBOR fails.
        let mut deep = Value::Null;
        for _ in 0..=CONVERT_MAX_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        assert!(from_value::<Value>(deep.clone()).is_err());
        assert!(to_value(&deep).is_err());
        assert!(into_value(deep).is_err());
        let huge = Value::Integer(i128::MAX);
        assert!(from_value::<Value>(huge.clone()).is_err());
        assert!(to_value(&huge).is_err());
    }
}
