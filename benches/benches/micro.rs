//! Micro-benchmarks of netref's hot paths, with divan:
//! `cargo bench -p netref-benches`.
//!
//! - wire: encoding and decoding one request frame (`add(1, 2)`) and one
//!   1 MiB reply;
//! - values: converting arguments to [`Value`]s and back;
//! - protocol: one `Protocol` answering another's request, in memory;
//! - pair: a synchronous call over `netref::testing::Pair` (both sides, the
//!   whole connection layer, no sockets).

use std::time::Instant;

use netref::protocol::{Call, Event, Input, Protocol, Request};
use netref::testing::Pair;
use netref::wire::{decode_cbor, encode_frame, Cbor, FrameDecoder, Message, WireRequest};
use netref::{async_, from_value, to_value, Config, ObjectBuilder, Service, Value};

fn main() {
    divan::main();
}

const MAX: usize = 128 << 20;

fn add_request() -> Message {
    Message::Request {
        seq: 42,
        request: WireRequest::CallMethod {
            target: 0,
            name: "add".into(),
            args: Cbor::Array(vec![Cbor::Integer(1), Cbor::Integer(2)]),
        },
    }
}

fn big_reply() -> Message {
    Message::Reply { seq: 42, value: Cbor::Bytes(vec![7; 1 << 20]) }
}

fn frame_of(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&msg.to_cbor(), &mut out, MAX).unwrap();
    out
}

/// Encode: message → CBOR item → framed bytes.
#[divan::bench(args = ["add", "1MiB"])]
fn wire_encode(bencher: divan::Bencher<'_, '_>, which: &str) {
    let msg = if which == "add" { add_request() } else { big_reply() };
    let mut out = Vec::with_capacity(2 << 20);
    bencher.bench_local(|| {
        out.clear();
        encode_frame(&msg.to_cbor(), &mut out, MAX).unwrap();
        out.len()
    });
}

/// Decode: bytes → frame → CBOR item → message.
#[divan::bench(args = ["add", "1MiB"])]
fn wire_decode(bencher: divan::Bencher<'_, '_>, which: &str) {
    let bytes = frame_of(&if which == "add" { add_request() } else { big_reply() });
    bencher.bench_local(|| {
        let mut dec = FrameDecoder::new();
        dec.push(&bytes).unwrap();
        let body = dec.next_frame(MAX).unwrap().unwrap();
        Message::from_cbor(decode_cbor(body, 64).unwrap()).unwrap()
    });
}

/// Arguments `(1i64, 2i64)` to values and back.
#[divan::bench]
fn value_convert() -> (i64, i64) {
    let v = to_value(&(divan::black_box(1i64), 2i64)).unwrap();
    from_value(v).unwrap()
}

/// One sans-IO round trip: a client protocol's ping answered by a server
/// protocol, bytes handed across by hand.
#[divan::bench]
fn protocol_ping_round_trip(bencher: divan::Bencher<'_, '_>) {
    let now = Instant::now();
    let mut client = Protocol::new(Config::default(), now);
    let mut server = Protocol::new(Config::default(), now);
    let pump = |from: &mut Protocol, to: &mut Protocol| {
        let mut out = Vec::new();
        from.write_to(&mut out).unwrap();
        to.handle_input(now, Input::Receive(&out)).unwrap();
    };
    // Handshake.
    pump(&mut client, &mut server);
    pump(&mut server, &mut client);
    while client.poll_event().is_some() {}
    while server.poll_event().is_some() {}
    bencher.bench_local(|| {
        let seq = client.send_request(Call::Ping(Value::Integer(7)), None).unwrap();
        pump(&mut client, &mut server);
        while let Some(Event::Request { seq, request: Request::Ping(payload) }) = server.poll_event() {
            server.send_reply(seq, Ok(payload));
        }
        pump(&mut server, &mut client);
        match client.poll_event() {
            Some(Event::Reply { seq: s, .. }) => assert_eq!(s, seq),
            other => panic!("unexpected {other:?}"),
        }
    });
}

fn pair() -> Pair {
    let calc = ObjectBuilder::new("Bench").method("add", |a: i64, b: i64| a + b).build();
    Pair::new(Service::none(), Service::object(calc))
}

/// A synchronous `root.add(1, 2)` through two in-memory connections.
#[divan::bench]
fn pair_sync_call(bencher: divan::Bencher<'_, '_>) {
    let pair = pair();
    let root = pair.client.root().unwrap();
    bencher.bench_local(|| root.call_method::<i64>("add", (1i64, 2i64)).unwrap());
}

/// 100 async calls in flight through the in-memory pair (per batch).
#[divan::bench]
fn pair_async_100(bencher: divan::Bencher<'_, '_>) {
    let pair = pair();
    let root = pair.client.root().unwrap();
    bencher.bench_local(|| {
        let pending: Vec<_> = (0..100).map(|i| async_(&root).call_method("add", (i as i64, 1i64))).collect();
        for r in pending {
            r.value_as::<i64>().unwrap();
        }
    });
}
