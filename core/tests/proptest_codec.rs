//! Property tests of the codec: messages survive framing and any split of
//! the byte stream, and serde data survives `to_value`/`from_value`.

use std::collections::BTreeMap;

use netref::wire::{self, Cbor, FrameDecoder, Message, WireRequest};
use netref::{RemoteError, Value};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

const CASES: u32 = 256;
/// Generous enough for the generated nesting plus the message's own levels.
const RECURSION_LIMIT: usize = 64;

// ---- strategies -------------------------------------------------------------

fn cbor_integer() -> impl Strategy<Value = Cbor> {
    prop_oneof![
        any::<u64>().prop_map(|n| Cbor::Integer(n.into())),
        any::<i64>().prop_map(|n| Cbor::Integer(n.into())),
        // The whole of CBOR's range, -2^64 ..= 2^64-1.
        (-(1i128 << 64)..(1i128 << 64)).prop_map(Cbor::Integer),
    ]
}

fn cbor_float() -> impl Strategy<Value = f64> {
    // NaN is never equal to itself; everything else must round-trip exactly
    // (ciborium may shorten a float to f16/f32 when that loses nothing).
    prop_oneof![
        any::<f64>().prop_filter("not NaN", |x| !x.is_nan()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        any::<f32>().prop_filter("not NaN", |x| !x.is_nan()).prop_map(f64::from),
    ]
}

fn cbor_leaf() -> impl Strategy<Value = Cbor> {
    prop_oneof![
        Just(Cbor::Null),
        any::<bool>().prop_map(Cbor::Bool),
        cbor_integer(),
        cbor_float().prop_map(Cbor::Float),
        vec(any::<u8>(), 0..40).prop_map(Cbor::Bytes),
        ".{0,20}".prop_map(Cbor::Text),
    ]
}

/// Any CBOR item netref may carry, nested at most `depth` levels. Tags 2 and
/// 3 (bignums) are left out: ciborium reads them back as integers.
fn cbor(depth: u32) -> impl Strategy<Value = Cbor> {
    cbor_leaf().prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Cbor::Array),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Cbor::Map),
            (any::<u64>().prop_filter("not a bignum tag", |t| *t != 2 && *t != 3), inner)
                .prop_map(|(t, v)| Cbor::Tag(t, Box::new(v))),
        ]
    })
}

fn args() -> impl Strategy<Value = Cbor> {
    vec(cbor(4), 0..4).prop_map(Cbor::Array)
}

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![1..10u64, 1..=u64::MAX]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_]{0,12}", ".{0,16}"]
}

fn request() -> impl Strategy<Value = Message> {
    let replied = prop_oneof![
        Just(WireRequest::Root),
        (any::<u64>(), args()).prop_map(|(target, args)| WireRequest::Call { target, args }),
        (any::<u64>(), name(), args()).prop_map(|(target, name, args)| WireRequest::CallMethod {
            target,
            name,
            args
        }),
        (any::<u64>(), name()).prop_map(|(target, name)| WireRequest::GetAttr { target, name }),
        any::<u64>().prop_map(|target| WireRequest::Dir { target }),
        cbor(5).prop_map(WireRequest::Ping),
    ];
    let one_way = prop_oneof![
        vec((any::<u64>(), any::<u64>()), 0..8).prop_map(WireRequest::Release),
        any::<u64>().prop_map(WireRequest::Cancel),
        ".{0,30}".prop_map(WireRequest::Close),
    ];
    prop_oneof![
        (seq(), replied).prop_map(|(seq, request)| Message::Request { seq, request }),
        one_way.prop_map(|request| Message::Request { seq: 0, request }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(version, features)| Message::Hello { version, features }),
        request(),
        (any::<u64>(), cbor(5)).prop_map(|(seq, value)| Message::Reply { seq, value }),
        (any::<u64>(), name(), ".{0,40}", vec(".{0,40}", 0..3), proptest::option::of(".{0,20}")).prop_map(
            |(seq, type_name, message, traceback, typed)| {
                // Some errors carry a typed method's own error as data.
                let mut error = match typed {
                    Some(text) => RemoteError::typed(&Text(text)),
                    None => RemoteError::new(type_name, message),
                };
                error.traceback = traceback;
                Message::Error { seq, error }
            }
        ),
    ]
}

/// A typed method's error, for the messages that carry one.
#[derive(serde::Serialize)]
struct Text(String);

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn encode(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        wire::encode_frame(&m.to_cbor(), &mut out, usize::MAX).unwrap();
    }
    out
}

/// Feeds `bytes` to one decoder in the given chunks, collecting every message.
fn decode_in_chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Message> {
    let mut d = FrameDecoder::new();
    let mut got = Vec::new();
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(bytes.len());
    for end in bounds {
        d.push(&bytes[at..end]).unwrap();
        at = end;
        while let Some(body) = d.next_frame(bytes.len()).unwrap() {
            let item = wire::decode_cbor(body, RECURSION_LIMIT).unwrap();
            got.push(Message::from_cbor(item).unwrap());
        }
    }
    assert_eq!(d.buffered(), 0);
    d.finish().unwrap();
    got
}

// ---- (a) and (b): messages through frames --------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn message_round_trip(msg in message()) {
        let item = msg.to_cbor();
        let mut bytes = Vec::new();
        wire::encode_frame(&item, &mut bytes, usize::MAX).unwrap();
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(len, bytes.len() - wire::HEADER_LEN);

        let mut d = FrameDecoder::new();
        d.push(&bytes).unwrap();
        let body = d.next_frame(len).unwrap().expect("a whole frame").to_vec();
        prop_assert!(d.next_frame(len).unwrap().is_none());
        d.finish().unwrap();
        let decoded = wire::decode_cbor(&body, RECURSION_LIMIT).unwrap();
        prop_assert_eq!(&decoded, &item);
        prop_assert_eq!(Message::from_cbor(decoded).unwrap(), msg);

        // One byte under the frame's length is refused on the header alone,
        // and encoding under that limit fails without leaving anything behind.
        if len > 0 {
            let mut d = FrameDecoder::new();
            d.push(&bytes[..wire::HEADER_LEN]).unwrap();
            prop_assert!(d.next_frame(len - 1).is_err());
            let mut out = vec![7u8];
            prop_assert!(wire::encode_frame(&item, &mut out, len - 1).is_err());
            prop_assert_eq!(out, vec![7u8]);
        }
    }

    #[test]
    fn frames_split_anywhere(
        msgs in vec(message(), 1..6),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let bytes = encode(&msgs);
        prop_assert_eq!(&decode_in_chunks(&bytes, &cuts), &msgs);
    }

    #[test]
    fn frames_one_byte_at_a_time(msgs in vec(message(), 1..4)) {
        let bytes = encode(&msgs);
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(&decode_in_chunks(&bytes, &cuts), &msgs);
    }

    /// Whatever the bytes, decoding a frame body fails cleanly or yields a
    /// message; it never panics.
    #[test]
    fn arbitrary_bodies_never_panic(body in vec(any::<u8>(), 0..64)) {
        if let Ok(item) = wire::decode_cbor(&body, RECURSION_LIMIT) {
            let _ = Message::from_cbor(item);
        }
    }

    /// A valid stream cut short anywhere is reported as truncated at its end.
    #[test]
    fn truncated_streams_are_reported(msgs in vec(message(), 1..4), cut in any::<usize>()) {
        let bytes = encode(&msgs);
        let cut = cut % bytes.len();
        let mut d = FrameDecoder::new();
        d.push(&bytes[..cut]).unwrap();
        let mut whole = 0;
        while d.next_frame(bytes.len()).unwrap().is_some() {
            whole += 1;
        }
        prop_assert!(whole < msgs.len());
        let partial = d.buffered() > 0;
        prop_assert_eq!(d.finish().is_err(), partial);
    }
}

// ---- (c): serde data through Value ----------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, String),
    Struct { w: f64, h: Option<u16> },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Inner {
    name: String,
    tags: Vec<String>,
    shape: Shape,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Outer {
    small: i8,
    int: i64,
    big: u64,
    float: f64,
    single: f32,
    flag: bool,
    maybe: Option<String>,
    text: String,
    letter: char,
    raw: Vec<u8>,
    pair: (u16, i32),
    map: BTreeMap<String, i32>,
    keyed: BTreeMap<u32, Vec<Option<bool>>>,
    children: Vec<Inner>,
    unit: (),
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("not NaN", |x| !x.is_nan())
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<i32>().prop_map(Shape::Newtype),
        (any::<u8>(), ".{0,8}").prop_map(|(a, b)| Shape::Tuple(a, b)),
        (finite_f64(), any::<Option<u16>>()).prop_map(|(w, h)| Shape::Struct { w, h }),
    ]
}

fn inner() -> impl Strategy<Value = Inner> {
    (".{0,10}", vec(".{0,6}", 0..4), shape()).prop_map(|(name, tags, shape)| Inner { name, tags, shape })
}

prop_compose! {
    fn outer()(
        small in any::<i8>(),
        int in any::<i64>(),
        big in any::<u64>(),
        float in finite_f64(),
        single in any::<f32>().prop_filter("not NaN", |x| !x.is_nan()),
        flag in any::<bool>(),
        maybe in proptest::option::of(".{0,10}"),
        text in ".{0,30}",
        letter in any::<char>(),
        raw in vec(any::<u8>(), 0..32),
        pair in any::<(u16, i32)>(),
        map in proptest::collection::btree_map(".{0,6}", any::<i32>(), 0..5),
        keyed in proptest::collection::btree_map(any::<u32>(), vec(any::<Option<bool>>(), 0..3), 0..4),
        children in vec(inner(), 0..4),
    ) -> Outer {
        Outer { small, int, big, float, single, flag, maybe, text, letter, raw, pair, map, keyed, children, unit: () }
    }
}

/// Any plain `Value` (no object references), nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i128 << 64)..(1i128 << 64)).prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float), // Value's equality treats NaN as equal to NaN
        vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        ".{0,12}".prop_map(Value::Text),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn serde_round_trip(data in outer()) {
        let value = netref::to_value(&data).unwrap();
        let back: Outer = netref::from_value(value.clone()).unwrap();
        prop_assert_eq!(&back, &data);
        // Converting twice gives the same Value.
        prop_assert_eq!(netref::to_value(&back).unwrap(), value);
    }

    #[test]
    fn serde_round_trip_of_collections(data in vec(inner(), 0..6), opt in proptest::option::of(inner())) {
        let back: Vec<Inner> = netref::from_value(netref::to_value(&data).unwrap()).unwrap();
        prop_assert_eq!(back, data);
        let back: Option<Inner> = netref::from_value(netref::to_value(&opt).unwrap()).unwrap();
        prop_assert_eq!(back, opt);
    }

    #[test]
    fn value_round_trip(v in value()) {
        prop_assert_eq!(&netref::to_value(&v).unwrap(), &v);
        let back: Value = netref::from_value(v.clone()).unwrap();
        prop_assert_eq!(back, v);
    }
}
