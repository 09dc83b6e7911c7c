//! A [`Value`] to and from the wire's CBOR items, with object references
//! handed to the caller (the protocol gives them their ids).

use super::{unstash, ObjectRef, Value, CONVERT_MAX_DEPTH};
use crate::error::{DecodeError, LimitError, Result};
use crate::wire::{cbor_integer, Cbor};

impl Value {
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
    pub(super) fn check_convertible(&self) -> Result<()> {
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
    pub(super) fn from_serialized(
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
