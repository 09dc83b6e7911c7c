//! The wire layer's unit tests: codec agreement with ciborium, framing,
//! the fast paths against the slow ones.

use half::f16;

use super::cbor::from_ciborium;
use super::encode::write_cbor;
use super::large::LARGE_MIN;
use super::message::uint;
use super::pool::RECYCLE_MIN;
use super::pool::{aliased, ALIASING_WINDOW};
use super::slice_decoder::SliceDecoder;
use super::*;
use crate::error::{DecodeError, Error};
use proptest::prelude::*;

/// Any CBOR item, nested a few levels.
fn any_cbor() -> impl Strategy<Value = Cbor> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| Cbor::Integer(i.into())),
        any::<u64>().prop_map(|i| Cbor::Integer(i.into())),
        (-(1i128 << 64)..(1i128 << 64)).prop_map(Cbor::Integer),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Cbor::Bytes),
        ".{0,40}".prop_map(Cbor::Text),
        any::<bool>().prop_map(Cbor::Bool),
        Just(Cbor::Null),
        any::<f64>().prop_map(Cbor::Float),
        any::<f32>().prop_map(|f| Cbor::Float(f.into())),
        // Every half float, NaN payloads included: written in two bytes.
        any::<u16>().prop_map(|b| Cbor::Float(f16::from_bits(b).into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..30).prop_map(Cbor::Array),
            prop::collection::vec((inner.clone(), inner.clone()), 0..8).prop_map(Cbor::Map),
            (any::<u64>(), inner).prop_map(|(t, i)| Cbor::Tag(t, Box::new(i))),
        ]
    })
}

/// The messages `write_direct` writes, with any payload.
fn direct_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any_cbor()).prop_map(|(seq, target, args)| Message::Request {
            seq,
            request: WireRequest::Call { target, args }
        }),
        (any::<u64>(), any::<u64>(), ".{0,30}", any_cbor()).prop_map(|(seq, target, name, args)| {
            Message::Request { seq, request: WireRequest::CallMethod { target, name, args } }
        }),
        (any::<u64>(), any_cbor()).prop_map(|(seq, value)| Message::Reply { seq, value }),
    ]
}

proptest! {
    /// A message written straight from its parts is the frame its
    /// CBOR item gives.
    #[test]
    fn direct_messages_match_their_items(msg in direct_message()) {
        let mut direct = Output::default();
        let mut item = Vec::new();
        let a = direct.push_message(msg.clone(), usize::MAX).map_err(|e| e.to_string());
        let b = encode_frame(&msg.into_cbor(), &mut item, usize::MAX).map_err(|e| e.to_string());
        prop_assert_eq!(&a, &b);
        if a.is_ok() {
            prop_assert_eq!(direct.contiguous(), &item[..]);
        }
    }

    /// `write_cbor` writes exactly the bytes ciborium writes, so peers
    /// see no difference.
    #[test]
    fn write_cbor_matches_ciborium(item in any_cbor()) {
        let mut ours = Vec::new();
        prop_assert!(write_cbor(&item, &mut ours).is_ok());
        prop_assert_eq!(ours, ciborium_bytes(&item));
    }
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&msg.to_cbor(), &mut out, 1 << 20).unwrap();
    out
}

#[test]
fn split_anywhere() {
    let msg = Message::Request {
        seq: 7,
        request: WireRequest::CallMethod {
            target: 3,
            name: "add".into(),
            args: Cbor::Array(vec![uint(1), uint(2)]),
        },
    };
    let bytes = frame(&msg);
    for cut in 0..=bytes.len() {
        let mut d = FrameDecoder::new();
        d.push(&bytes[..cut]).unwrap();
        if cut < bytes.len() {
            assert!(d.next_frame(1 << 20).unwrap().is_none());
            d.push(&bytes[cut..]).unwrap();
        }
        let body = d.next_frame(1 << 20).unwrap().unwrap().to_vec();
        assert_eq!(Message::from_cbor(decode_cbor(&body, 32).unwrap()).unwrap(), msg);
        assert!(d.next_frame(1 << 20).unwrap().is_none());
        d.finish().unwrap();
    }
}

/// ciborium's own decoding, for comparison with the slice decoder.
fn ciborium_decode(body: &[u8], limit: usize) -> Option<Cbor> {
    let mut rest = body;
    let item = ciborium::de::from_reader_with_recursion_limit(&mut rest, limit).ok()?;
    rest.is_empty().then(|| from_ciborium(item).unwrap())
}

/// ciborium's own encoding of `item`.
fn ciborium_bytes(item: &Cbor) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&into_ciborium(item.clone()).unwrap(), &mut bytes).unwrap();
    bytes
}

#[test]
fn an_integer_outside_cbors_range_is_refused_and_nothing_is_written() {
    for i in [1i128 << 64, -(1i128 << 64) - 1, i128::MAX, i128::MIN] {
        let mut out = vec![1, 2, 3];
        let item = Cbor::Array(vec![uint(1), Cbor::Integer(i)]);
        let err = encode_frame(&item, &mut out, usize::MAX).unwrap_err();
        assert!(matches!(err, Error::Convert(_)), "{err:?}");
        assert!(err.to_string().contains("an integer from -2^64 to 2^64-1"), "{err}");
        assert_eq!(out, [1, 2, 3]);
    }
    // The edges of the range are written, as ciborium writes them.
    for i in [(1i128 << 64) - 1, -(1i128 << 64), -(1i128 << 63) - 1] {
        let mut out = Vec::new();
        encode_frame(&Cbor::Integer(i), &mut out, usize::MAX).unwrap();
        assert_eq!(out[HEADER_LEN..], ciborium_bytes(&Cbor::Integer(i)));
        assert_eq!(decode_cbor(&out[HEADER_LEN..], 8).unwrap(), Cbor::Integer(i));
    }
}

#[test]
fn a_bignum_decodes_the_same_in_definite_and_indefinite_form() {
    for (definite, indefinite) in [
        (&[0xc2u8, 0x41, 0x05][..], &[0xc2u8, 0x5f, 0x41, 0x05, 0xff][..]),
        (&[0xc2, 0x40][..], &[0xc2, 0x5f, 0xff][..]),
        (&[0xc3, 0x41, 0x05][..], &[0xc3, 0x5f, 0x41, 0x05, 0xff][..]),
    ] {
        let a = decode_cbor(definite, 8).unwrap();
        let b = decode_cbor(indefinite, 8).unwrap();
        assert!(matches!(a, Cbor::Integer(_)), "{a:?}");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
    // Nested inside a message, too.
    let b = decode_cbor(&[0x82, 0x01, 0xc2, 0x5f, 0x41, 0x07, 0xff], 8).unwrap();
    assert_eq!(format!("{b:?}"), format!("{:?}", Cbor::Array(vec![uint(1), uint(7)])));
}

#[test]
fn slice_decoder_agrees_with_ciborium() {
    let mut big = Vec::new();
    for i in 0..40u64 {
        big.push(Cbor::Integer(((i * 0x1234_5678_9abc) as i64 - 77).into()));
    }
    let items = [
        Cbor::Array(vec![
            uint(2),
            uint(u64::MAX),
            Cbor::Integer(-1 - i128::from(u64::MAX)),
            Cbor::Bytes(vec![9; 20_000]),
            Cbor::Text("héllo".repeat(30)),
            Cbor::Map(vec![(Cbor::Text("k".into()), Cbor::Null), (uint(1), Cbor::Bool(true))]),
            Cbor::Tag(TAG_SENDER_OBJECT, Box::new(uint(5))),
            Cbor::Float(1.0),
            Cbor::Float(-0.0),
            Cbor::Float(1.5e-7),
            Cbor::Float(0.1),
            Cbor::Float(f64::INFINITY),
            Cbor::Array(big),
        ]),
        // Outside the subset (a bignum): left to ciborium.
        Cbor::Array(vec![uint(1), Cbor::Tag(2, Box::new(Cbor::Bytes(vec![1, 2])))]),
        Cbor::Array(vec![Cbor::Float(f64::NAN)]),
        Cbor::Array((0..40).fold(vec![Cbor::Null], |inner, _| vec![Cbor::Array(inner)])),
    ];
    let same = |a: &Cbor, b: &Cbor| format!("{a:?}") == format!("{b:?}");
    // Every encoding, and every mutation of it: whatever the slice
    // decoder accepts, ciborium decodes identically.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (n, item) in items.iter().enumerate() {
        let bytes = ciborium_bytes(item);
        assert_eq!(SliceDecoder::decode(&bytes, 256, None).is_some(), n != 1, "{item:?}");
        for limit in [8, 40, 41, 42, 256] {
            let fast = SliceDecoder::decode(&bytes, limit, None);
            let slow = ciborium_decode(&bytes, limit);
            if let Some(fast) = &fast {
                assert!(same(fast, slow.as_ref().unwrap()), "{fast:?}");
            }
        }
        for _ in 0..3000 {
            let mut m = bytes.clone();
            for _ in 0..3 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (seed >> 33) as usize % m.len();
                m[at] = (seed >> 20) as u8;
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            m.truncate(m.len() - (seed >> 60) as usize % 2);
            if let Some(fast) = SliceDecoder::decode(&m, 64, None) {
                let slow = ciborium_decode(&m, 64).expect("ciborium accepts what the slice decoder does");
                assert!(same(&fast, &slow), "{fast:?} vs {slow:?}");
            }
        }
    }
    // Every half float, NaNs and their payloads included, decodes to
    // ciborium's exact value.
    for bits in 0..=u16::MAX {
        let bytes = [0xf9, (bits >> 8) as u8, bits as u8];
        let fast = SliceDecoder::decode(&bytes, 8, None);
        let (Some(Cbor::Float(a)), Some(Cbor::Float(b))) = (fast, ciborium_decode(&bytes, 8)) else {
            panic!("half float {bits:#x}")
        };
        assert_eq!(a.to_bits(), b.to_bits(), "half float {bits:#x}");
    }
}

#[test]
fn sent_byte_strings_are_recycled_for_decoding() {
    let pool = BufferPool::new();
    let big = vec![1u8; RECYCLE_MIN * 2];
    let ptr = big.as_ptr();
    pool.recycle(Message::Reply { seq: 1, value: Cbor::Array(vec![Cbor::Bytes(big)]) }.into_cbor());
    assert_eq!(pool.spare_count(), 1);
    let payload: Vec<u8> = (0..RECYCLE_MIN * 2).map(|i| i as u8).collect();
    let body = ciborium_bytes(&Cbor::Bytes(payload.clone()));
    let Cbor::Bytes(got) = decode_cbor_in(&body, 8, Some(&pool)).unwrap() else { panic!() };
    assert_eq!(got, payload);
    assert_eq!(got.as_ptr(), ptr, "the sent buffer was reused");
    // Taken once: the next one is a fresh allocation, and a buffer far
    // larger than needed is not handed out.
    assert_eq!(pool.spare_count(), 0);
    let Cbor::Bytes(again) = decode_cbor_in(&body, 8, Some(&pool)).unwrap() else { panic!() };
    assert_eq!(again, payload);
    pool.recycle(Cbor::Bytes(vec![0; RECYCLE_MIN * 8]));
    let Cbor::Bytes(small) = decode_cbor_in(&body, 8, Some(&pool)).unwrap() else { panic!() };
    assert!(small.capacity() < RECYCLE_MIN * 8);
    assert_eq!(pool.spare_count(), 1, "the oversized buffer stays in the pool");
    // Without a pool nothing is reused.
    let Cbor::Bytes(plain) = decode_cbor(&body, 8).unwrap() else { panic!() };
    assert_eq!(plain, payload);
}

#[test]
fn a_pool_keeps_a_few_buffers_and_prefers_large_ones() {
    let pool = BufferPool::new();
    for i in 0..6 {
        pool.recycle(Cbor::Bytes(vec![0; RECYCLE_MIN * (i + 1)]));
    }
    assert_eq!(pool.spare_count(), 4, "bounded");
    // The two smallest were dropped: a string of RECYCLE_MIN bytes finds
    // no buffer at most twice its size.
    let body = ciborium_bytes(&Cbor::Bytes(vec![7; RECYCLE_MIN]));
    decode_cbor_in(&body, 8, Some(&pool)).unwrap();
    assert_eq!(pool.spare_count(), 4);
    // Too small or too large buffers are never kept.
    pool.recycle(Cbor::Bytes(vec![0; 100]));
    assert_eq!(pool.spare_count(), 4);
    let shared = pool.clone();
    let body = ciborium_bytes(&Cbor::Bytes(vec![7; RECYCLE_MIN * 4]));
    decode_cbor_in(&body, 8, Some(&shared)).unwrap();
    assert_eq!(pool.spare_count(), 3, "clones share one pool");
}

#[test]
fn aliasing_is_a_destination_just_ahead_of_its_source_modulo_a_page() {
    assert!(aliased(0, 5));
    assert!(aliased(4095, 4));
    assert!(aliased(16, 16 + ALIASING_WINDOW as usize));
    assert!(!aliased(5, 0), "behind is fine");
    assert!(!aliased(16, 16), "level is fine");
    assert!(!aliased(0, ALIASING_WINDOW as usize + 1));
    // A frame's string 21 bytes in, sent from a buffer 16 bytes into a
    // page (where glibc maps large blocks): the case measured slow.
    assert!(aliased(16, 21));
    // Received 13 bytes into its frame into such a buffer: slow too.
    assert!(aliased(13, 16));
}

#[test]
fn a_received_string_gets_a_buffer_big_enough() {
    let pool = BufferPool::new();
    for len in [LARGE_MIN, 1 << 20] {
        for _ in 0..3 {
            let b = pool.receive_buffer(len, 13).unwrap();
            assert!(b.capacity() >= len);
            pool.recycle(Cbor::Bytes(b));
        }
    }
}

/// A forged length reserves at most `RESERVE_FIRST`: the buffer of a string
/// announced at 128 MiB grows only as its bytes come.
#[test]
fn a_received_string_reserves_no_more_than_a_first_window() {
    let claimed = 128 << 20;
    for pool in [BufferPool::new(), BufferPool::with_placement(Placement::InPlace)] {
        let b = pool.receive_buffer(claimed, 13).unwrap();
        assert!(b.capacity() <= super::large::RESERVE_FIRST, "{} bytes reserved", b.capacity());
    }
}

#[test]
fn oversized_header_rejected_before_buffering() {
    let mut d = FrameDecoder::new();
    d.push(&u32::MAX.to_be_bytes()).unwrap();
    let err = d.next_frame(1024).unwrap_err();
    assert!(err.to_string().contains("exceeds max_frame_len"), "{err}");
    assert!(d.buf.capacity() < 1024);
}

#[test]
fn truncated_at_end_of_stream() {
    let bytes = frame(&Message::Hello { version: 1, features: 0 });
    let mut d = FrameDecoder::new();
    d.push(&bytes[..bytes.len() - 1]).unwrap();
    assert!(d.next_frame(1 << 20).unwrap().is_none());
    assert!(matches!(d.finish(), Err(Error::Decode(DecodeError::Truncated { .. }))));
}
