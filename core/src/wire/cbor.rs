//! [`Cbor`], netref's own CBOR item, and the one boundary with ciborium:
//! conversion both ways and [`decode_cbor`] (the fast subset decoder first,
//! ciborium for everything else).

use super::pool::BufferPool;
use super::slice_decoder::SliceDecoder;
use crate::error::{ConvertError, DecodeError, Error, Expected, LimitError, Result};

/// One CBOR data item, as messages carry it: netref's own type, so that
/// the CBOR library behind the codec is no part of the API.
///
/// Integers span CBOR's range, -2^64 to 2^64-1; [`encode_frame`](super::encode_frame) refuses
/// one outside it. Floats are written in the shortest width that holds
/// them exactly. Two floats compare as `f64`s do (a NaN equals nothing).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Cbor {
    /// An integer (major types 0 and 1; bignums that fit read as these).
    Integer(i128),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A floating-point number of any width.
    Float(f64),
    /// A text string.
    Text(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A tagged item.
    Tag(u64, Box<Cbor>),
    /// An array.
    Array(Vec<Cbor>),
    /// A map, its entries in the order they were written.
    Map(Vec<(Cbor, Cbor)>),
}

impl Cbor {
    /// The integer, if this is one.
    pub fn as_integer(&self) -> Option<i128> {
        match self {
            Cbor::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

/// The smallest and largest integers CBOR carries.
const CBOR_INTEGERS: std::ops::RangeInclusive<i128> = -(1 << 64)..=(1 << 64) - 1;

/// `i`, when CBOR carries it; otherwise the conversion error saying so.
pub(crate) fn cbor_integer(i: i128) -> Result<i128> {
    if CBOR_INTEGERS.contains(&i) {
        return Ok(i);
    }
    Err(ConvertError::mismatch(
        Expected::Text("an integer from -2^64 to 2^64-1 (what CBOR carries)".into()),
        format!("the integer {i}"),
    )
    .into())
}

/// `item` as ciborium's `Value`, for its `Serialize` (see `Value`'s).
pub(crate) fn into_ciborium(item: Cbor) -> Result<ciborium::Value> {
    use ciborium::Value as C;
    Ok(match item {
        Cbor::Integer(i) => match ciborium::value::Integer::try_from(i) {
            Ok(i) => C::Integer(i),
            Err(_) => return Err(cbor_integer(i).expect_err("outside CBOR's range")),
        },
        Cbor::Bytes(b) => C::Bytes(b),
        Cbor::Float(x) => C::Float(x),
        Cbor::Text(t) => C::Text(t),
        Cbor::Bool(b) => C::Bool(b),
        Cbor::Null => C::Null,
        Cbor::Tag(tag, inner) => C::Tag(tag, Box::new(into_ciborium(*inner)?)),
        Cbor::Array(items) => C::Array(items.into_iter().map(into_ciborium).collect::<Result<_>>()?),
        Cbor::Map(entries) => C::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((into_ciborium(k)?, into_ciborium(v)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// What ciborium decoded, as a [`Cbor`] (its `Value` has the same shape,
/// with room for more kinds of item than it has).
pub(super) fn from_ciborium(item: ciborium::Value) -> Result<Cbor> {
    use ciborium::Value as C;
    Ok(match item {
        C::Integer(i) => Cbor::Integer(i.into()),
        C::Bytes(b) => Cbor::Bytes(b),
        C::Float(x) => Cbor::Float(x),
        C::Text(t) => Cbor::Text(t),
        C::Bool(b) => Cbor::Bool(b),
        C::Null => Cbor::Null,
        C::Tag(tag, inner) => Cbor::Tag(tag, Box::new(from_ciborium(*inner)?)),
        C::Array(items) => Cbor::Array(items.into_iter().map(from_ciborium).collect::<Result<_>>()?),
        C::Map(entries) => Cbor::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((from_ciborium(k)?, from_ciborium(v)?)))
                .collect::<Result<_>>()?,
        ),
        other => return Err(DecodeError::BadCbor(format!("unsupported CBOR item {other:?}")).into()),
    })
}

/// Decodes one frame body into a CBOR item, with an explicit recursion limit
/// (a codec's default can overflow a small thread stack) and no trailing bytes.
pub fn decode_cbor(body: &[u8], recursion_limit: usize) -> Result<Cbor> {
    decode_cbor_in(body, recursion_limit, None)
}

/// [`decode_cbor`], with large byte strings' buffers from `pool`.
pub(crate) fn decode_cbor_in(body: &[u8], recursion_limit: usize, pool: Option<&BufferPool>) -> Result<Cbor> {
    if let Some(item) = SliceDecoder::decode(body, recursion_limit, pool) {
        return Ok(item);
    }
    let mut rest = body;
    let item: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, recursion_limit)
        .map_err(|e| match e {
            ciborium::de::Error::RecursionLimitExceeded => {
                Error::Limit(LimitError::TooDeep { max: recursion_limit })
            }
            other => Error::Decode(DecodeError::BadCbor(other.to_string())),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()).into());
    }
    if holds_bignum_tag(&item) {
        // ciborium turns a bignum into an integer only when its byte string
        // has a definite length (`c2 41 05` is 5, `c2 5f 41 05 ff` stays a
        // tag). Re-reading the item in definite form gives the integer, so a
        // value decodes the same however the peer chose to write it (the
        // fuzzer found a bignum that changed form on each round trip).
        let mut definite = Vec::new();
        ciborium::ser::into_writer(&item, &mut definite)
            .map_err(|e| Error::Decode(DecodeError::BadCbor(e.to_string())))?;
        let item = ciborium::de::from_reader_with_recursion_limit(&definite[..], recursion_limit)
            .map_err(|e| Error::Decode(DecodeError::BadCbor(e.to_string())))?;
        return from_ciborium(item);
    }
    from_ciborium(item)
}

/// Whether `item` holds a bignum tag (2 or 3) anywhere.
fn holds_bignum_tag(item: &ciborium::Value) -> bool {
    use ciborium::Value as C;
    match item {
        C::Tag(2 | 3, _) => true,
        C::Tag(_, inner) => holds_bignum_tag(inner),
        C::Array(items) => items.iter().any(holds_bignum_tag),
        C::Map(entries) => entries.iter().any(|(k, v)| holds_bignum_tag(k) || holds_bignum_tag(v)),
        _ => false,
    }
}
