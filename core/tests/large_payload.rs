//! Large byte strings whose frames arrive in pieces are received straight
//! into their own buffer; whatever the split, the protocol must answer
//! exactly as it does to the same frames fed whole (values, errors and
//! all), and real connections must echo large payloads intact.

use std::time::Instant;

use netref::protocol::{Event, Input, Protocol};
use netref::wire::Cbor;
use netref::wire::{self, BufferPool, Message, Placement, WireRequest};
use netref::{BgServingThread, Builder, Config, ObjectBuilder, Service, ThreadedServer, Value};

fn uint(v: u64) -> Cbor {
    Cbor::Integer(v.into())
}

fn frame(item: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_frame(item, &mut out, usize::MAX).unwrap();
    out
}

fn ping(seq: u64, payload: Cbor) -> Vec<u8> {
    frame(&Message::Request { seq, request: WireRequest::Ping(payload) }.into_cbor())
}

/// A frame holding exactly `body`, which need not be valid CBOR.
fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

/// A protocol past the peer's hello, and the time it was made at.
fn greeted() -> (Protocol, Instant) {
    greeted_with(BufferPool::new())
}

/// A deterministic protocol: large byte strings always placed in place.
fn in_place() -> BufferPool {
    BufferPool::with_placement(Placement::InPlace)
}

fn greeted_with(pool: BufferPool) -> (Protocol, Instant) {
    let now = Instant::now();
    let mut p = Protocol::with_pool(Config::default(), now, pool);
    let hello = frame(&Message::Hello { version: wire::VERSION, features: wire::FEATURES }.into_cbor());
    p.handle_input(now, Input::Receive(&hello)).unwrap();
    (p, now)
}

/// A protocol's pending output and its events, described.
fn outcome(p: &mut Protocol) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    p.write_to(&mut out).expect("a Vec takes everything");
    let mut events = Vec::new();
    while let Some(e) = p.poll_event() {
        events.push(match e {
            Event::Closed { reason } => format!("closed: {reason}"),
            other => format!("{other:?}"),
        });
    }
    (out, events)
}

/// What a protocol did with `stream` fed in pieces cut at `cuts`: every
/// error `handle_input` returned, its output, and its events.
fn run(stream: &[u8], cuts: &[usize], eof: bool) -> (Vec<String>, Vec<u8>, Vec<String>) {
    let (mut p, now) = greeted();
    let mut errors = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([stream.len()].iter()) {
        let cut = cut.clamp(at, stream.len());
        if let Err(e) = p.handle_input(now, Input::Receive(&stream[at..cut])) {
            errors.push(e.to_string());
        }
        at = cut;
    }
    if eof {
        p.handle_input(Instant::now(), Input::Eof).unwrap();
    }
    let (out, events) = outcome(&mut p);
    (errors, out, events)
}

/// Ways to cut a stream: right after each of its first bytes, at the
/// socket-ish sizes reads return, a byte at a time around a boundary.
fn cut_patterns(len: usize) -> Vec<Vec<usize>> {
    let mut patterns: Vec<Vec<usize>> = (1..48).map(|c| vec![c]).collect();
    for step in [1000, 4096, 65_483, 65_536, 130_966, 261_932] {
        patterns.push((1..).map(|i| i * step).take_while(|&c| c < len).collect());
    }
    patterns.push((1..40).collect());
    patterns.push(vec![len.saturating_sub(1)]);
    patterns.push(vec![len / 2, len / 2 + 1, len - len / 3]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..8 {
        let mut cuts: Vec<usize> = (0..6)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % len as u64) as usize
            })
            .collect();
        cuts.sort();
        patterns.push(cuts);
    }
    patterns
}

fn assert_split_matches_whole(stream: &[u8], eof: bool) {
    let whole = run(stream, &[], eof);
    for cuts in cut_patterns(stream.len()) {
        let split = run(stream, &cuts, eof);
        assert_eq!(split.0, whole.0, "errors, cut at {cuts:?}");
        assert_eq!(split.2, whole.2, "events, cut at {cuts:?}");
        assert!(split.1 == whole.1, "output differs, cut at {cuts:?}");
    }
}

#[test]
fn split_large_byte_strings_are_answered_as_whole_ones() {
    let payloads = [
        Cbor::Bytes(pattern((1 << 20) + 7, 1)),
        // Content followed by more of the message.
        Cbor::Array(vec![Cbor::Bytes(pattern(200_000, 2)), uint(5), Cbor::Text("after".into())]),
        Cbor::Map(vec![(Cbor::Text("k".into()), Cbor::Bytes(pattern(100_000, 3)))]),
        // A small string first, then two large ones (only the first is
        // received apart).
        Cbor::Array(vec![
            Cbor::Bytes(pattern(10, 4)),
            Cbor::Bytes(pattern(70_000, 5)),
            Cbor::Bytes(pattern(70_000, 6)),
        ]),
        // At and under the threshold.
        Cbor::Bytes(pattern(64 << 10, 7)),
        Cbor::Bytes(pattern((64 << 10) - 1, 8)),
        // Large text is not a byte string.
        Cbor::Text("é".repeat(150_000)),
        // A tag the protocol refuses: an error reply, the same either way.
        Cbor::Tag(99, Box::new(Cbor::Bytes(pattern(100_000, 9)))),
        // Outside the fast decoder's subset (a bignum): ciborium decodes it.
        Cbor::Array(vec![Cbor::Bytes(pattern(90_000, 10)), Cbor::Tag(2, Box::new(Cbor::Bytes(vec![1, 2])))]),
    ];
    for payload in payloads {
        let mut stream = ping(1, payload);
        // More frames behind it, so pieces straddle frame boundaries.
        stream.extend(ping(2, uint(7)));
        stream.extend(ping(3, Cbor::Bytes(pattern(80_000, 11))));
        assert_split_matches_whole(&stream, false);
    }
}

#[test]
fn bad_frames_around_large_byte_strings_fail_the_same_way() {
    let big = Cbor::Bytes(pattern(100_000, 12));
    let body = |item: &Cbor| frame(item).split_off(wire::HEADER_LEN);
    let request =
        |payload: Cbor| Message::Request { seq: 1, request: WireRequest::Ping(payload) }.into_cbor();
    // Trailing bytes after the item.
    let mut trailing = body(&request(big.clone()));
    trailing.push(0x01);
    // A message of a shape nobody knows.
    let unknown = body(&Cbor::Array(vec![uint(9), big.clone()]));
    // Invalid UTF-8 before the string.
    let mut bad_text =
        body(&Cbor::Array(vec![uint(1), uint(1), uint(5), Cbor::Text("ab".into()), big.clone()]));
    let at = bad_text.iter().position(|&b| b == b'a').unwrap();
    bad_text[at] = 0xff;
    // Nested past the depth limit around the string.
    let deep = (0..80).fold(big.clone(), |inner, _| Cbor::Array(vec![inner]));
    let deep = body(&request(deep));
    // A reply to nothing.
    let stray = body(&Message::Reply { seq: 42, value: big.clone() }.into_cbor());
    for b in [trailing, unknown, bad_text, deep, stray] {
        let stream = raw_frame(&b);
        let (errors, _, _) = run(&stream, &[], false);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_split_matches_whole(&stream, false);
    }
}

#[test]
fn a_stream_ending_inside_a_large_frame_is_truncated() {
    let stream = ping(1, Cbor::Bytes(pattern(300_000, 13)));
    for end in [10, 1000, 200_000, stream.len() - 1] {
        let (_, _, events) = run(&stream[..end], &[end / 2], true);
        let expected = format!("announced {} bytes, stream ended after {end}", stream.len());
        assert!(events.iter().any(|e| e.starts_with("closed:") && e.contains(&expected)), "{events:?}");
        assert_eq!(events, run(&stream[..end], &[], true).2);
    }
}

#[test]
fn real_connections_echo_large_payloads_intact() {
    let echo = || {
        Builder::default()
            .service(Service::object(ObjectBuilder::new("Echo").method("echo", |v: Value| v).build()))
    };
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", echo()).unwrap();
    let addr = server.local_addr().unwrap();
    server.spawn();
    let tcp = netref::connect(addr).unwrap();
    let (unix, server_side) = Builder::default().pair(echo()).unwrap();
    let _serving = BgServingThread::new(&server_side);
    for conn in [&tcp, &unix] {
        let root = conn.root().unwrap();
        for (n, size) in [(1u8, 3 << 20), (2, 1 << 20), (3, 70_000), (4, 10)] {
            let data = pattern(size, n);
            let back: Value = root.call_method("echo", vec![Value::Bytes(data.clone())]).unwrap();
            assert!(matches!(&back, Value::Bytes(b) if *b == data), "{size} bytes came back changed");
            // Inside a larger value, with more after it.
            let nested = Value::Array(vec![Value::Bytes(data.clone()), Value::Integer(5)]);
            let back: Value = root.call_method("echo", vec![nested.clone()]).unwrap();
            assert_eq!(back, nested);
        }
    }
}

#[test]
fn connections_of_one_builder_share_its_buffer_pool_whatever_the_placement() {
    for placement in [Placement::InPlace, Placement::AvoidPageAliasing] {
        let pool = BufferPool::with_placement(placement);
        let echo = Service::object(ObjectBuilder::new("Echo").method("echo", |v: Value| v).build());
        let server = Builder::default().service(echo).buffer_pool(&pool);
        let (client, server_side) = Builder::default().pair(server).unwrap();
        let _serving = BgServingThread::new(&server_side);
        let root = client.root().unwrap();
        assert_eq!(pool.spare_count(), 0);
        for round in 0..3u8 {
            let data = pattern(1 << 20, round);
            let back: Value = root.call_method("echo", vec![Value::Bytes(data.clone())]).unwrap();
            assert!(matches!(&back, Value::Bytes(b) if *b == data), "{placement:?}: came back changed");
        }
        // The server's reply left from the buffer it received into, which
        // then went to the builder's pool, not to some thread. A small call
        // after it: the server wrote the last reply out before reading it.
        let _: Value = root.call_method("echo", (1,)).unwrap();
        assert!(pool.spare_count() >= 1, "{placement:?}: {pool:?}");
    }
}

/// Like [`run`], but reading the way a connection does with the lending
/// API: into the protocol's own buffer whenever it offers one, `step`
/// bytes at most per read.
fn run_lending(stream: &[u8], step: usize, pool: BufferPool) -> (Vec<String>, Vec<u8>, Vec<String>, usize) {
    let (mut p, now) = greeted_with(pool);
    let mut errors = Vec::new();
    let mut at = 0;
    let mut lent = 0;
    while at < stream.len() {
        let k = step.min(stream.len() - at);
        let lends = p.lends_input_buffer();
        let lent_now = p.input_buffer();
        assert_eq!(lends, lent_now.is_some(), "lends_input_buffer says what input_buffer does");
        let result = match lent_now {
            Some(mut input) => {
                let room = input.unfilled();
                let k = k.min(room.len());
                room[..k].copy_from_slice(&stream[at..at + k]);
                input.advance(k);
                at += k;
                lent += 1;
                p.handle_input(now, Input::Filled(input))
            }
            None => {
                at += k;
                p.handle_input(now, Input::Receive(&stream[at - k..at]))
            }
        };
        if let Err(e) = result {
            errors.push(e.to_string());
        }
    }
    let (out, events) = outcome(&mut p);
    (errors, out, events, lent)
}

#[test]
fn reading_into_the_lent_buffer_is_the_same_as_feeding_bytes() {
    // On a pool that places in place, every large string is lent; on the
    // default one, lending depends on buffer addresses (see
    // `wire::Placement`), but never changes what comes out.
    let mut stream = ping(1, Cbor::Bytes(pattern(600_000, 20)));
    stream.extend(ping(
        2,
        Cbor::Array(vec![Cbor::Text("t".repeat(280)), Cbor::Bytes(pattern(300_000, 21)), uint(3)]),
    ));
    stream.extend(ping(3, uint(7)));
    stream.extend(ping(4, Cbor::Bytes(pattern(1 << 20, 22))));
    let whole = run(&stream, &[], false);
    for step in [7, 1000, 65_536, 100_003, 1 << 20, 8 << 20] {
        for (pool, deterministic) in [(in_place(), true), (BufferPool::new(), false)] {
            let lent = run_lending(&stream, step, pool);
            assert_eq!(lent.0, whole.0, "errors, reads of {step}");
            assert_eq!(lent.2, whole.2, "events, reads of {step}");
            assert!(lent.1 == whole.1, "output differs, reads of {step}");
            if deterministic && step <= 100_003 {
                assert!(lent.3 > 0, "the protocol never lent its buffer (reads of {step})");
            }
        }
    }
    // The same run lends the same number of times: nothing depends on
    // where the allocator put a buffer.
    let counts: Vec<usize> = (0..3).map(|_| run_lending(&stream, 65_536, in_place()).3).collect();
    assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
    // A bad frame read through the lent buffer fails the same way.
    let bad = frame(&Cbor::Array(vec![uint(9), Cbor::Bytes(pattern(200_000, 23))]));
    assert_eq!(run_lending(&bad, 50_000, in_place()).0, run(&bad, &[], false).0);
}

#[test]
fn feeding_bytes_while_the_buffer_is_lent_is_refused() {
    let now = Instant::now();
    let hello = frame(&Message::Hello { version: wire::VERSION, features: wire::FEATURES }.into_cbor());
    // Two layouts, strings 13 and about 300 bytes into their frames: on a
    // pool that places in place, both are lent.
    let layouts = [
        ping(1, Cbor::Bytes(pattern(200_000, 24))),
        ping(1, Cbor::Array(vec![Cbor::Text("t".repeat(280)), Cbor::Bytes(pattern(200_000, 25))])),
    ];
    let mut refused = 0;
    for stream in layouts {
        let mut p = Protocol::with_pool(Config::default(), now, in_place());
        p.handle_input(now, Input::Receive(&hello)).unwrap();
        p.handle_input(now, Input::Receive(&stream[..1000])).unwrap();
        let input = p.input_buffer().expect("a pool that places in place lends");
        assert!(p.input_buffer().is_none(), "lent once at a time");
        let err = p.handle_input(now, Input::Receive(&stream[1000..])).unwrap_err();
        assert!(err.to_string().contains("lent out"), "{err}");
        p.handle_input(now, Input::Filled(input)).unwrap();
        refused += 1;
    }
    assert_eq!(refused, 2);
}

/// A transport that takes at most `take` bytes from at most `max_slices`
/// slices per write, and would block once `room` bytes are in.
struct Chunky {
    sent: Vec<u8>,
    max_slices: usize,
    take: usize,
    room: usize,
}

impl std::io::Write for Chunky {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_vectored(&[std::io::IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let mut budget = self.take.min(self.room);
        let start = self.sent.len();
        for s in bufs.iter().take(self.max_slices) {
            let k = budget.min(s.len());
            self.sent.extend_from_slice(&s[..k]);
            budget -= k;
        }
        let n = self.sent.len() - start;
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything `p` has to send, written `take` bytes at a time from at most
/// `max_slices` slices.
fn drain_slices(p: &mut Protocol, max_slices: usize, take: usize) -> Vec<u8> {
    let mut w = Chunky { sent: Vec::new(), max_slices, take, room: usize::MAX };
    p.write_to(&mut w).expect("written");
    w.sent
}

#[test]
fn queued_large_strings_are_sent_intact_however_they_are_written() {
    use netref::protocol::Call;
    let values = || {
        vec![
            Value::Bytes(pattern(300_000, 30)),
            Value::Integer(5),
            Value::Array(vec![Value::Bytes(pattern(100_000, 31)), Value::Bytes(pattern(70_000, 32))]),
            Value::Bytes(pattern(10, 33)),
            Value::Bytes(pattern(1 << 20, 34)),
        ]
    };
    let queue = || {
        let now = Instant::now();
        let mut p = Protocol::new(Config::default(), now);
        for v in values() {
            p.send_request(Call::Ping(v), None).unwrap();
        }
        p
    };
    let expected = {
        let mut p = queue();
        let mut all = Vec::new();
        p.write_to(&mut all).expect("a Vec takes everything");
        assert!(!p.wants_write());
        all
    };
    let mut decoder = wire::FrameDecoder::new();
    decoder.push(&expected).unwrap();
    let mut frames = 0;
    while decoder.next_frame(usize::MAX).unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 1 + values().len(), "the hello and each ping");
    for max_slices in 1..=4 {
        for take in [1, 13, 4096, 65_536, 300_017, usize::MAX / 2] {
            let mut p = queue();
            assert_eq!(p.pending_output_len(), expected.len());
            let sent = drain_slices(&mut p, max_slices, take.min(expected.len()));
            assert!(sent == expected, "slices of {max_slices}, writes of {take}");
            assert!(!p.wants_write());
        }
    }
    // Part written before the transport would block, the rest later.
    let mut p = queue();
    let mut w = Chunky { sent: Vec::new(), max_slices: 2, take: usize::MAX, room: 200_000 };
    assert_eq!(p.write_to(&mut w).expect("blocking is not an error"), 200_000);
    assert!(p.wants_write());
    w.room = usize::MAX;
    p.write_to(&mut w).expect("written");
    assert!(w.sent == expected);
    assert!(!p.wants_write());
}

#[test]
fn a_forged_length_costs_memory_only_as_bytes_arrive() {
    // A ping announcing a 100 MiB byte string, then only its first bytes:
    // the frame of a ping with an empty string, its head (0x40) replaced.
    // The text before it moves the string out of the offsets where the
    // protocol declines to lend (see `feeding_bytes_while_the_buffer_is_lent_is_refused`).
    const CLAIMED: usize = 100 << 20;
    let (mut p, now) = greeted();
    let empty = ping(7, Cbor::Array(vec![Cbor::Text("t".repeat(280)), Cbor::Bytes(Vec::new())]));
    assert_eq!(empty.last(), Some(&0x40));
    let mut body = empty[4..empty.len() - 1].to_vec();
    body.push(0x5a); // a byte string with a 4-byte length
    body.extend_from_slice(&(CLAIMED as u32).to_be_bytes());
    let mut stream = ((body.len() + CLAIMED) as u32).to_be_bytes().to_vec();
    stream.extend_from_slice(&body);
    stream.extend_from_slice(&[9; 1000]);
    p.handle_input(now, Input::Receive(&stream)).unwrap();
    let mut received = 1000;
    // Each lend offers at most as much as has arrived (64 KiB at first):
    // the buffer grows with the data, not with the claim.
    for _ in 0..6 {
        let mut input = p.input_buffer().expect("the protocol lends its buffer");
        let room = input.unfilled().len();
        assert!(room <= received.max(64 << 10), "lent {room} bytes with {received} received");
        input.unfilled().fill(9);
        input.advance(room);
        received += room;
        p.handle_input(now, Input::Filled(input)).unwrap();
    }
    assert!(received > 1 << 20, "the lent room grew with the data: {received}");
}
