//! [`Value`] into Rust types: a serde `Deserializer` over `Value` itself.
//!
//! It takes the value apart (byte strings and nested `Value`s move, they
//! are not copied) and says what went wrong in the user's terms: every
//! mismatch is a [`ConvertError`] with what was expected and what was
//! found ("expected nothing (`()`), got a remote object"), never serde's or
//! CBOR's wording.
//!
//! Object references and nested `Value`s cannot be expressed in serde's
//! data model. Their `Deserialize` impls ask for a newtype struct with a
//! private name ([`VALUE_TOKEN`], [`OBJECT_TOKEN`], ...); this deserializer
//! answers such a request by handing the value over through a thread-local
//! slot and calling `visit_unit`, which the visitor answers by taking it.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Error as _, Unexpected, Visitor};

use super::{ObjectRef, Value};
use crate::error::{ConvertError, Expected};

/// The newtype-struct name `Value`'s `Deserialize` asks for.
pub(super) const VALUE_TOKEN: &str = "$netref::Value";
/// The newtype-struct name `ObjectRef`'s `Deserialize` asks for.
pub(super) const OBJECT_TOKEN: &str = "$netref::ObjectRef";
/// The newtype-struct name `RemoteObject`'s `Deserialize` asks for.
pub(super) const REMOTE_TOKEN: &str = "$netref::RemoteObject";
/// The newtype-struct name `LocalObject`'s `Deserialize` asks for.
pub(super) const LOCAL_TOKEN: &str = "$netref::LocalObject";

/// What `RemoteObject`'s visitor expects; worded by place in the error
/// (see [`Expected::RemoteObject`]).
pub(super) const REMOTE_EXPECTING: &str = "a remote object (a callback or proxy)";

thread_local! {
    /// A value on its way from [`De`] to the visitor that asked for it.
    static HANDOFF: RefCell<Option<Value>> = const { RefCell::new(None) };
}

/// Hands `value` to `visitor` (a visitor of `Value` or of an object
/// reference), which takes it in `visit_unit`.
fn hand_over<'de, V: Visitor<'de>>(value: Value, visitor: V) -> Result<V::Value, DeError> {
    HANDOFF.with(|h| *h.borrow_mut() = Some(value));
    let r = visitor.visit_unit();
    // Not taken (a foreign visitor): do not leak it into a later handover.
    HANDOFF.with(|h| h.borrow_mut().take());
    r
}

/// The value [`De`] is handing over, if it is handing one over now.
pub(super) fn take_handed_over() -> Option<Value> {
    HANDOFF.with(|h| h.borrow_mut().take())
}

/// Converts `value` into `T`.
pub(super) fn from_value<T: de::DeserializeOwned>(value: Value) -> Result<T, ConvertError> {
    T::deserialize(De(value)).map_err(|e| e.0)
}

/// The deserializer's error: a [`ConvertError`] (with no place yet).
#[derive(Debug)]
pub(super) struct DeError(pub(super) ConvertError);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.problem())
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(ConvertError::other(msg.to_string()))
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        mismatch(expected_words(&exp.to_string()), unexpected_words(unexp))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        mismatch(expected_words(&exp.to_string()), unexpected_words(unexp))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        mismatch(expected_words(&exp.to_string()), list_of(len))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let expected = match expected {
            [] => "no variant at all".to_string(),
            names => format!("one of {}", quoted_list(names)),
        };
        mismatch(Expected::Text(expected), format!("the variant `{variant}`"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let expected = match expected {
            [] => "no field at all".to_string(),
            names => format!("one of the fields {}", quoted_list(names)),
        };
        mismatch(Expected::Text(expected), format!("the field `{field}`"))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError(ConvertError::other(format!("the field `{field}` is missing")))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError(ConvertError::other(format!("the field `{field}` appears twice")))
    }
}

fn mismatch(expected: Expected, got: String) -> DeError {
    DeError(ConvertError::mismatch(expected, got))
}

fn text(s: impl Into<String>) -> Expected {
    Expected::Text(s.into())
}

fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn list_of(n: usize) -> String {
    match n {
        0 => "an empty list".into(),
        1 => "a list of 1 item".into(),
        n => format!("a list of {n} items"),
    }
}

/// A value in words: "the integer 1", "a remote object", "a list of 3 items".
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (`()`)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(x) => format!("the number {x:?}"),
        Value::Bytes(b) if b.len() == 1 => "a byte string of 1 byte".into(),
        Value::Bytes(b) => format!("a byte string of {} bytes", b.len()),
        Value::Text(s) => string_words(s),
        Value::Array(items) => list_of(items.len()),
        Value::Map(entries) => match entries.len() {
            0 => "an empty map".into(),
            1 => "a map of 1 entry".into(),
            n => format!("a map of {n} entries"),
        },
        Value::Object(ObjectRef::Remote(_)) => "a remote object".into(),
        Value::Object(ObjectRef::Local(l)) => {
            format!("this side's own `{}` object, handed back", l.type_name())
        }
    }
}

fn string_words(s: &str) -> String {
    const SHOWN: usize = 40;
    let n = s.chars().count();
    if n <= SHOWN {
        return format!("the string {s:?}");
    }
    let start: String = s.chars().take(SHOWN).collect();
    format!("the string {start:?}… ({n} characters)")
}

/// serde's words for an unexpected input, in the user's.
fn unexpected_words(unexp: Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("the boolean {b}"),
        Unexpected::Unsigned(n) => format!("the integer {n}"),
        Unexpected::Signed(n) => format!("the integer {n}"),
        Unexpected::Float(x) => format!("the number {x:?}"),
        Unexpected::Char(c) => format!("the character {c:?}"),
        Unexpected::Str(s) => string_words(s),
        Unexpected::Bytes(b) => format!("a byte string of {} bytes", b.len()),
        Unexpected::Unit => "nothing (`()`)".into(),
        Unexpected::Option => "an optional value".into(),
        Unexpected::NewtypeStruct => "a newtype struct".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a map".into(),
        Unexpected::Enum => "an enum value".into(),
        Unexpected::UnitVariant => "a variant name".into(),
        Unexpected::NewtypeVariant | Unexpected::TupleVariant | Unexpected::StructVariant => {
            "a variant with data".into()
        }
        Unexpected::Other(s) => s.into(),
    }
}

/// serde's (or a visitor's) words for what it expected, in the user's.
/// Anything not recognised is kept: a visitor's own `expecting` is
/// written for people already.
fn expected_words(exp: &str) -> Expected {
    if exp == REMOTE_EXPECTING {
        return Expected::RemoteObject;
    }
    if let Some(range) = integer_range(exp) {
        return text(range);
    }
    let words = match exp {
        "unit" => "nothing (`()`)",
        "a string" | "a borrowed string" => "a string",
        "a character" | "a char" | "char" => "a single character",
        "a sequence" => "a list",
        "a byte array" | "a borrowed byte array" | "byte array" | "bytes" => "a byte string",
        "option" => "an optional value",
        "f32" | "f64" => "a number",
        "variant identifier" => "a variant name",
        "field identifier" => "a field name",
        _ => {
            let n = |s: &str| s.parse::<usize>().ok();
            if let Some(len) = exp.strip_prefix("a tuple of size ").and_then(n) {
                return text(list_of(len));
            }
            if let Some(len) = exp.strip_prefix("an array of length ").and_then(n) {
                return text(list_of(len));
            }
            if let Some(name) = exp.strip_prefix("unit struct ") {
                return text(format!("nothing (`{name}`)"));
            }
            if let Some(name) = exp.strip_prefix("tuple struct ") {
                return text(format!("a `{name}` (a list)"));
            }
            if let Some(name) = exp.strip_prefix("struct ") {
                return text(format!("a `{name}` (a map of its fields)"));
            }
            if let Some(name) = exp.strip_prefix("enum ") {
                return text(format!("a `{name}`"));
            }
            exp
        }
    };
    text(words)
}

/// "an integer from 0 to 255 (`u8`)" for an integer type's name.
fn integer_range(name: &str) -> Option<String> {
    let (min, max): (i128, i128) = match name {
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i128" | "u128" => return Some(format!("an integer (`{name}`)")),
        _ => return None,
    };
    Some(format!("an integer from {min} to {max} (`{name}`)"))
}

/// True when `value` holds an object reference anywhere.
fn holds_object(value: &Value) -> bool {
    match value {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().any(holds_object),
        Value::Map(entries) => entries.iter().any(|(k, v)| holds_object(k) || holds_object(v)),
        _ => false,
    }
}

/// A `Value` being deserialized.
struct De(Value);

impl De {
    fn mismatch(&self, expected: impl Into<String>) -> DeError {
        mismatch(Expected::Text(expected.into()), describe(&self.0))
    }

    fn integer<N: TryFrom<i128>>(self, name: &str) -> Result<N, DeError> {
        match self.0 {
            Value::Integer(i) => N::try_from(i).map_err(|_| {
                mismatch(text(integer_range(name).unwrap_or_else(|| "an integer".into())), describe(&self.0))
            }),
            _ => Err(self.mismatch("an integer")),
        }
    }
}

macro_rules! deserialize_integer {
    ($($method:ident => $visit:ident($t:ty)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.$visit(self.integer::<$t>(stringify!($t))?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Integer(i) => {
                if let Ok(u) = u64::try_from(i) {
                    visitor.visit_u64(u)
                } else if let Ok(s) = i64::try_from(i) {
                    visitor.visit_i64(s)
                } else {
                    visitor.visit_i128(i)
                }
            }
            Value::Float(x) => visitor.visit_f64(x),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Text(s) => visitor.visit_string(s),
            Value::Array(items) => visit_list(items, visitor),
            Value::Map(entries) => visit_map(entries, visitor),
            Value::Object(_) => Err(mismatch(expected_words(&expecting(&visitor)), describe(&self.0))),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(b),
            _ => Err(self.mismatch("a boolean")),
        }
    }

    deserialize_integer! {
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Float(x) => visitor.visit_f64(x),
            // An integer is a number too (serde's float visitors take them).
            Value::Integer(_) => self.deserialize_any(visitor),
            _ => Err(self.mismatch("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Value::Text(s) = &self.0 {
            let mut chars = s.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return visitor.visit_char(c);
            }
        }
        Err(self.mismatch("a single character"))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Text(s) => visitor.visit_string(s),
            _ => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            _ => Err(self.mismatch("a byte string")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.mismatch("nothing (`()`)")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.mismatch(format!("nothing (`{name}`)"))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match name {
            VALUE_TOKEN => hand_over(self.0, visitor),
            OBJECT_TOKEN | REMOTE_TOKEN | LOCAL_TOKEN => match self.0 {
                Value::Object(_) => hand_over(self.0, visitor),
                _ => Err(mismatch(expected_words(&expecting(&visitor)), describe(&self.0))),
            },
            _ => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Array(items) => visit_list(items, visitor),
            _ => Err(self.mismatch("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Array(items) if items.len() == len => visit_list(items, visitor),
            _ => Err(self.mismatch(list_of(len))),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Array(items) if items.len() == len => visit_list(items, visitor),
            _ => Err(self.mismatch(format!("a `{name}` ({})", list_of(len)))),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Map(entries) => visit_map(entries, visitor),
            _ => Err(self.mismatch("a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Map(entries) => visit_map(entries, visitor),
            _ => Err(self.mismatch(format!("a `{name}` (a map of its fields)"))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Text(_) => visitor.visit_enum(Variant { name: self.0, data: None }),
            Value::Map(mut entries) if entries.len() == 1 => {
                let (name, data) = entries.pop().expect("one entry");
                visitor.visit_enum(Variant { name, data: Some(data) })
            }
            _ => Err(self.mismatch(match variants {
                [] => format!("a `{name}`"),
                names => format!("a `{name}` (one of {})", quoted_list(names)),
            })),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Text(s) => visitor.visit_string(s),
            Value::Integer(_) => self.deserialize_any(visitor),
            _ => Err(self.mismatch("a name (a string)")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if holds_object(&self.0) {
            return Err(DeError(ConvertError::other(
                "an object reference would be dropped: the type asked for has no field for it \
                 (take a RemoteObject, LocalObject, ObjectRef or Value there)",
            )));
        }
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A visitor's `expecting` text.
fn expecting<'de, V: Visitor<'de>>(visitor: &V) -> String {
    struct Show<'a, V>(&'a V);
    impl<'de, V: Visitor<'de>> fmt::Display for Show<'_, V> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }
    }
    Show(visitor).to_string()
}

fn visit_list<'de, V: Visitor<'de>>(items: Vec<Value>, visitor: V) -> Result<V::Value, DeError> {
    let len = items.len();
    let mut seq = Seq { items: items.into_iter(), taken: 0 };
    let value = visitor.visit_seq(&mut seq)?;
    if !seq.items.as_slice().is_empty() {
        return Err(DeError::invalid_length(len, &format!("a list of at most {} items", seq.taken).as_str()));
    }
    Ok(value)
}

fn visit_map<'de, V: Visitor<'de>>(entries: Vec<(Value, Value)>, visitor: V) -> Result<V::Value, DeError> {
    visitor.visit_map(Map { entries: entries.into_iter(), value: None })
}

struct Seq {
    items: std::vec::IntoIter<Value>,
    taken: usize,
}

impl<'de> de::SeqAccess<'de> for &mut Seq {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(v) => {
                self.taken += 1;
                seed.deserialize(De(v)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map {
    entries: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
}

impl<'de> de::MapAccess<'de> for Map {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(De(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let v =
            self.value.take().ok_or_else(|| DeError(ConvertError::other("a map value asked for twice")))?;
        seed.deserialize(De(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An enum value: a variant name, with its data when it has some (a map of
/// one entry, as serde's externally tagged representation has it).
struct Variant {
    name: Value,
    data: Option<Value>,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = DeError;
    type Variant = VariantData;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, VariantData), DeError> {
        let name = seed.deserialize(De(self.name))?;
        Ok((name, VariantData(self.data)))
    }
}

struct VariantData(Option<Value>);

impl<'de> de::VariantAccess<'de> for VariantData {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.0 {
            None | Some(Value::Null) => Ok(()),
            Some(v) => Err(mismatch(text("nothing (a variant without data)"), describe(&v))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.0 {
            Some(v) => seed.deserialize(De(v)),
            None => Err(mismatch(text("a variant with data"), "a variant name alone".into())),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Some(v) => de::Deserializer::deserialize_tuple(De(v), len, visitor),
            None => Err(mismatch(text(list_of(len)), "a variant name alone".into())),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Some(v) => de::Deserializer::deserialize_map(De(v), visitor),
            None => Err(mismatch(text("a map of the variant's fields"), "a variant name alone".into())),
        }
    }
}
