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
//! Conversion errors are [`ConvertError`]s in the user's words: what was
//! expected and what was found ("expected nothing (`()`), got a remote
//! object").

use std::any::TypeId;
use std::cell::RefCell;
use std::fmt;
use std::mem::ManuallyDrop;

use serde::de::{DeserializeOwned, Error as _, Unexpected, Visitor};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::connection::remote::RemoteObject;
use crate::error::{ConvertError, DecodeError, Error, LimitError, Place, Result};
use crate::value::object::LocalObject;
use crate::wire::{cbor_integer, Cbor};

mod de;
pub mod object;

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

    /// Walks the value into a CBOR tree; object references go through
    /// `on_object`. Fails past `max_depth` levels of nesting.
    pub(crate) fn to_cbor(
        &self,
        max_depth: usize,
        on_object: &mut dyn FnMut(&ObjectRef) -> Result<Cbor>,
    ) -> Result<Cbor> {
        self.to_cbor_at(0, max_depth, on_object)
    }

    fn to_cbor_at(
        &self,
        depth: usize,
        max: usize,
        on_object: &mut dyn FnMut(&ObjectRef) -> Result<Cbor>,
    ) -> Result<Cbor> {
        if depth > max {
            return Err(LimitError::TooDeep { max }.into());
        }
        Ok(match self {
            Value::Null => Cbor::Null,
            Value::Bool(b) => Cbor::Bool(*b),
            Value::Integer(i) => Cbor::Integer(cbor_integer(*i)?),
            Value::Float(x) => Cbor::Float(*x),
            Value::Bytes(b) => Cbor::Bytes(b.clone()),
            Value::Text(s) => Cbor::Text(s.clone()),
            Value::Array(items) => Cbor::Array(
                items.iter().map(|v| v.to_cbor_at(depth + 1, max, on_object)).collect::<Result<_>>()?,
            ),
            Value::Map(entries) => Cbor::Map(
                entries
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.to_cbor_at(depth + 1, max, on_object)?,
                            v.to_cbor_at(depth + 1, max, on_object)?,
                        ))
                    })
                    .collect::<Result<_>>()?,
            ),
            Value::Object(o) => on_object(o)?,
        })
    }

    /// Like [`to_cbor`](Self::to_cbor), taking the value apart: byte and
    /// text strings move into the tree instead of being copied.
    pub(crate) fn into_cbor(
        self,
        max_depth: usize,
        on_object: &mut dyn FnMut(&ObjectRef) -> Result<Cbor>,
    ) -> Result<Cbor> {
        self.into_cbor_at(0, max_depth, on_object)
    }

    fn into_cbor_at(
        self,
        depth: usize,
        max: usize,
        on_object: &mut dyn FnMut(&ObjectRef) -> Result<Cbor>,
    ) -> Result<Cbor> {
        if depth > max {
            return Err(LimitError::TooDeep { max }.into());
        }
        Ok(match self {
            Value::Bytes(b) => Cbor::Bytes(b),
            Value::Text(s) => Cbor::Text(s),
            Value::Array(items) => Cbor::Array(
                items
                    .into_iter()
                    .map(|v| v.into_cbor_at(depth + 1, max, on_object))
                    .collect::<Result<_>>()?,
            ),
            Value::Map(entries) => Cbor::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        Ok((
                            k.into_cbor_at(depth + 1, max, on_object)?,
                            v.into_cbor_at(depth + 1, max, on_object)?,
                        ))
                    })
                    .collect::<Result<_>>()?,
            ),
            // Scalars and references: nothing to move.
            other => other.to_cbor_at(depth, max, on_object)?,
        })
    }

    /// Fails where converting this value through CBOR would: nesting past
    /// [`CONVERT_MAX_DEPTH`] or an integer outside CBOR's range. The
    /// `Value`-to-`Value` fast paths check this so that they succeed and
    /// fail exactly as the round trip they skip.
    fn check_convertible(&self) -> Result<()> {
        fn walk(v: &Value, depth: usize) -> Result<()> {
            if depth > CONVERT_MAX_DEPTH {
                return Err(LimitError::TooDeep { max: CONVERT_MAX_DEPTH }.into());
            }
            match v {
                Value::Integer(i) => {
                    cbor_integer(*i)?;
                }
                Value::Array(items) => items.iter().try_for_each(|v| walk(v, depth + 1))?,
                Value::Map(entries) => {
                    entries.iter().try_for_each(|(k, v)| {
                        walk(k, depth + 1)?;
                        walk(v, depth + 1)
                    })?;
                }
                _ => {}
            }
            Ok(())
        }
        walk(self, 0)
    }

    /// Builds a value from a CBOR tree; tags go through `on_tag`, which
    /// decides what they mean. Fails past `max_depth` levels of nesting.
    pub(crate) fn from_cbor(
        cbor: Cbor,
        max_depth: usize,
        on_tag: &mut dyn FnMut(u64, Cbor) -> Result<Value>,
    ) -> Result<Value> {
        Self::from_cbor_at(cbor, 0, max_depth, on_tag)
    }

    fn from_cbor_at(
        cbor: Cbor,
        depth: usize,
        max: usize,
        on_tag: &mut dyn FnMut(u64, Cbor) -> Result<Value>,
    ) -> Result<Value> {
        if depth > max {
            return Err(LimitError::TooDeep { max }.into());
        }
        Ok(match cbor {
            Cbor::Null => Value::Null,
            Cbor::Bool(b) => Value::Bool(b),
            Cbor::Integer(i) => Value::Integer(i),
            Cbor::Float(x) => Value::Float(x),
            Cbor::Bytes(b) => Value::Bytes(b),
            Cbor::Text(s) => Value::Text(s),
            Cbor::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| Self::from_cbor_at(v, depth + 1, max, on_tag))
                    .collect::<Result<_>>()?,
            ),
            Cbor::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        Ok((
                            Self::from_cbor_at(k, depth + 1, max, on_tag)?,
                            Self::from_cbor_at(v, depth + 1, max, on_tag)?,
                        ))
                    })
                    .collect::<Result<_>>()?,
            ),
            Cbor::Tag(tag, inner) => on_tag(tag, *inner)?,
        })
    }

    /// Builds a value from what ciborium's serializer made of a Rust
    /// value (see [`to_value`]); its tags are placeholders for the
    /// references parked in `stash`. Fails past [`CONVERT_MAX_DEPTH`].
    fn from_serialized(
        item: ciborium::Value,
        depth: usize,
        stash: &mut [Option<ObjectRef>],
    ) -> Result<Value> {
        use ciborium::Value as C;
        if depth > CONVERT_MAX_DEPTH {
            return Err(LimitError::TooDeep { max: CONVERT_MAX_DEPTH }.into());
        }
        Ok(match item {
            C::Null => Value::Null,
            C::Bool(b) => Value::Bool(b),
            C::Integer(i) => Value::Integer(i128::from(i)),
            C::Float(x) => Value::Float(x),
            C::Bytes(b) => Value::Bytes(b),
            C::Text(s) => Value::Text(s),
            C::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| Self::from_serialized(v, depth + 1, stash))
                    .collect::<Result<_>>()?,
            ),
            C::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        Ok((
                            Self::from_serialized(k, depth + 1, stash)?,
                            Self::from_serialized(v, depth + 1, stash)?,
                        ))
                    })
                    .collect::<Result<_>>()?,
            ),
            C::Tag(tag, inner) => unstash(tag, *inner, stash)?,
            other => {
                return Err(DecodeError::Malformed(format!("unsupported CBOR value {other:?}")).into());
            }
        })
    }
}

/// Nesting allowed in conversions between Rust types and [`Value`] (the wire
/// applies the connection's own, usually smaller, `max_depth`).
const CONVERT_MAX_DEPTH: usize = 128;

/// The private tag that stands for a parked object reference during a
/// conversion. It never appears on the wire: the protocol rejects it.
pub(crate) const STASH_TAG: u64 = 0x7465_7468; // "teth"

thread_local! {
    static STASH: RefCell<Option<Vec<Option<ObjectRef>>>> = const { RefCell::new(None) };
}

/// Runs `f` with a fresh stash, restoring the previous one afterwards so that
/// conversions may nest (a `Serialize` impl may call `to_value`).
fn with_stash<R>(initial: Vec<Option<ObjectRef>>, f: impl FnOnce() -> R) -> (R, Vec<Option<ObjectRef>>) {
    let saved = STASH.with(|s| s.replace(Some(initial)));
    struct Restore(Option<Option<Vec<Option<ObjectRef>>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let saved = self.0.take().unwrap_or(None);
            STASH.with(|s| *s.borrow_mut() = saved);
        }
    }
    let mut restore = Restore(Some(saved));
    let r = f();
    let saved = restore.0.take().unwrap_or(None);
    let stash = STASH.with(|s| s.replace(saved)).unwrap_or_default();
    (r, stash)
}

fn park(o: ObjectRef) -> Option<u64> {
    STASH.with(|s| {
        s.borrow_mut().as_mut().map(|v| {
            v.push(Some(o));
            (v.len() - 1) as u64
        })
    })
}

/// ciborium's serializer error, in words (its `Display` is its `Debug`).
fn serialize_error(e: ciborium::value::Error) -> Error {
    match e {
        ciborium::value::Error::Custom(message) => ConvertError::other(message).into(),
    }
}

/// Converts any serializable Rust value into a [`Value`].
///
/// Object references inside `value` ([`RemoteObject`], [`LocalObject`],
/// [`ObjectRef`], nested [`Value`]s) are kept as references.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    if let Some(v) = as_value_ref(value) {
        // A `Value` converts to itself: clone it rather than walk it into
        // CBOR and back (each walk copies every byte string).
        v.check_convertible()?;
        return Ok(v.clone());
    }
    let (item, mut stash) = with_stash(Vec::new(), || ciborium::Value::serialized(value));
    let item = item.map_err(serialize_error)?;
    Value::from_serialized(item, 0, &mut stash)
}

fn unstash(tag: u64, inner: ciborium::Value, stash: &mut [Option<ObjectRef>]) -> Result<Value> {
    if tag != STASH_TAG {
        return Err(ConvertError::other(format!("CBOR tag {tag} is not supported in netref values")).into());
    }
    let index = inner
        .as_integer()
        .and_then(|i| usize::try_from(i128::from(i)).ok())
        .ok_or_else(|| ConvertError::other("malformed object placeholder"))?;
    stash
        .get_mut(index)
        .and_then(Option::take)
        .map(Value::Object)
        .ok_or_else(|| ConvertError::other(format!("object placeholder #{index} used twice")).into())
}

/// Converts a [`Value`] into any deserializable Rust type.
///
/// Fails, rather than losing the reference, when `value` holds an object
/// reference at a place where `T` has no field that can take one.
///
/// Errors are [`Error::Convert`] with what `T` expected and what the value
/// holds, or [`Error::Limit`] for a value nested deeper than 128 levels.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T> {
    // Fails where the wire would: nesting too deep, an integer CBOR cannot
    // carry. (Also keeps the deserializer's recursion bounded.)
    value.check_convertible()?;
    // A `Value` asked for as a `Value` is returned as is, references and all.
    let value = match cast::<Value, T>(value) {
        Ok(t) => return Ok(t),
        Err(value) => value,
    };
    Ok(de::from_value(value)?)
}

/// [`from_value`], naming `place` in a conversion error.
pub(crate) fn from_value_at<T: DeserializeOwned>(value: Value, place: &Place) -> Result<T> {
    from_value(value).map_err(|e| placed(e, place))
}

/// `e` with `place` named, when it is a conversion error.
pub(crate) fn placed(e: Error, place: &Place) -> Error {
    match e {
        Error::Convert(c) => Error::Convert(c.at(place.clone())),
        other => other,
    }
}

/// Like [`to_value`], taking the value: a `Value` is moved, not copied.
/// What methods return goes through here (an echoed 1 MiB byte string
/// is not copied at all).
pub(crate) fn into_value<T: Serialize>(value: T) -> Result<Value> {
    match cast::<T, Value>(value) {
        Ok(v) => {
            v.check_convertible()?;
            Ok(v)
        }
        Err(value) => to_value(&value),
    }
}

/// The [`TypeId`] of any `T`, `'static` or not (`TypeId::of` needs
/// `T: 'static`, which `from_value`'s public bound does not promise).
/// Lifetimes are erased, so `Foo<'a>` and `Foo<'static>` share one id;
/// that is harmless here, where ids are only compared with `Value`'s and
/// `Value` has no lifetime parameters.
fn type_id_of<T: ?Sized>() -> TypeId {
    typeid::of::<T>()
}

/// `from` as a `To` when both are the same type, `Err(from)` otherwise.
/// Only called with `Value` as one of the two types (see the safety note).
pub(crate) fn cast<From, To>(from: From) -> std::result::Result<To, From> {
    if type_id_of::<From>() != type_id_of::<To>() {
        return Err(from);
    }
    let from = ManuallyDrop::new(from);
    // SAFETY: `From` and `To` are the same type up to lifetimes, and every
    // caller names `Value`, which has none, as one of them: this moves a
    // `Value` (`ManuallyDrop` keeps the original from being dropped).
    Ok(unsafe { std::ptr::read(&*from as *const From as *const To) })
}

/// `value` seen as a `Value`, when `T` is `Value`.
fn as_value_ref<T: ?Sized>(value: &T) -> Option<&Value> {
    if type_id_of::<T>() != TypeId::of::<Value>() {
        return None;
    }
    // SAFETY: `T` is `Value` (same type id; `Value` has no lifetimes), so
    // the pointer is a thin pointer to a live `Value`.
    Some(unsafe { &*(value as *const T as *const Value) })
}

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
