//! Rust types to and from [`Value`] through serde, with object
//! references parked beside the conversion instead of serialized.

use std::any::TypeId;
use std::cell::RefCell;
use std::mem::ManuallyDrop;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{de, ObjectRef, Value};
use crate::error::{ConvertError, Error, Place, Result};

/// Nesting allowed in conversions between Rust types and [`Value`] (the wire
/// applies the connection's own, usually smaller, `max_depth`).
pub(super) const CONVERT_MAX_DEPTH: usize = 128;

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

pub(super) fn park(o: ObjectRef) -> Option<u64> {
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
/// Object references inside `value` ([`RemoteObject`](crate::RemoteObject), [`LocalObject`](crate::LocalObject),
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

pub(super) fn unstash(tag: u64, inner: ciborium::Value, stash: &mut [Option<ObjectRef>]) -> Result<Value> {
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

/// `value` as plain CBOR bytes (a typed method's error, as it travels in
/// an error message): data only, so an object reference inside fails.
pub(crate) fn to_plain_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let cbor = to_value(value)?.to_cbor(CONVERT_MAX_DEPTH, &mut |_| {
        Err(ConvertError::other("an error's value cannot hold an object reference").into())
    })?;
    let mut bytes = Vec::new();
    ciborium::into_writer(&crate::wire::into_ciborium(cbor)?, &mut bytes)
        .map_err(|e| ConvertError::other(e.to_string()))?;
    Ok(bytes)
}

/// The value [`to_plain_cbor`] wrote, as a `T`.
pub(crate) fn from_plain_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let cbor = crate::wire::decode_cbor(bytes, CONVERT_MAX_DEPTH)?;
    let value = Value::from_cbor(cbor, CONVERT_MAX_DEPTH, &mut |tag, _| {
        Err(ConvertError::other(format!("an error's value holds the unknown CBOR tag {tag}")).into())
    })?;
    from_value(value)
}
