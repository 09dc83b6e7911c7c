//! A frame carrying a large byte string (received straight into its own
//! buffer when it arrives in pieces), with a fuzzed message head before the
//! string, fuzzed bytes after it, a fuzzed frame length and fuzzed read
//! sizes, fed to a protocol in pieces (through its lent input buffer when
//! it offers one, or as bytes) must give the same errors, events and output
//! as the same stream fed whole, which decodes the frame in one piece.
//! Nothing may panic.
//!
//! The body is [`run`], which `core/tests/fuzz_corpus.rs` also calls on every
//! committed corpus file, so the corpus is a regression test in `cargo test`.
#![cfg_attr(fuzzing, no_main)]

use std::time::Instant;

use netref::protocol::{Event, Input, Protocol};
use netref::wire::{self, Message};
use netref::Config;

/// The string's length: just past the size the protocol receives in place.
const STRING_LEN: usize = (64 << 10) + 100;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// What a protocol did: the errors its calls returned, its output, and its
/// events (described).
type Outcome = (Vec<String>, Vec<u8>, Vec<String>);

/// One fuzz input: `[head length, tail length, length delta, flags, head..,
/// tail.., read sizes..]`. The frame is `head ++ 5a <STRING_LEN as u32> ++
/// STRING_LEN bytes ++ tail`, its length field off by the signed delta; a
/// ping follows it. Flags: bit 0, read through the lent buffer; bit 1, end
/// the stream after the frame.
pub fn run(data: &[u8]) {
    let [head_len, tail_len, delta, flags, rest @ ..] = data else { return };
    let (head_len, tail_len) = (usize::from(*head_len) * 2, usize::from(*tail_len));
    if rest.len() < head_len + tail_len {
        return;
    }
    let (head, rest) = rest.split_at(head_len);
    let (tail, steps) = rest.split_at(tail_len);
    let mut body = head.to_vec();
    body.push(0x5a);
    body.extend_from_slice(&(STRING_LEN as u32).to_be_bytes());
    body.extend((0..STRING_LEN).map(|i| (i % 251) as u8));
    body.extend_from_slice(tail);
    let len = (body.len() as i64 + i64::from(*delta as i8)).max(0) as u32;
    let mut stream = len.to_be_bytes().to_vec();
    stream.extend_from_slice(&body);
    let ping = Message::Request { seq: 99, request: wire::WireRequest::Ping(wire::Cbor::Integer(5)) };
    wire::encode_frame(&ping.into_cbor(), &mut stream, usize::MAX).expect("a ping encodes");
    let eof = flags & 2 != 0;

    let whole = feed(&stream, &[], false, eof);
    let steps: Vec<usize> = steps.iter().map(|&b| usize::from(b) * 613 + 1).collect();
    let pieces = feed(&stream, &steps, flags & 1 != 0, eof);
    assert_eq!(whole.0, pieces.0, "errors");
    assert_eq!(whole.2, pieces.2, "events");
    assert!(whole.1 == pieces.1, "output differs");
}

/// Feeds `stream` to a fresh protocol after the peer's hello, in reads of
/// the sizes in `steps` (cycled; one read of everything if empty).
fn feed(stream: &[u8], steps: &[usize], lend: bool, eof: bool) -> Outcome {
    let now = Instant::now();
    // In place: a crash reproduces whatever addresses the allocator hands out.
    let pool = netref::wire::BufferPool::with_placement(netref::wire::Placement::InPlace);
    let mut p = Protocol::with_pool(Config::default(), now, pool);
    let mut hello = Vec::new();
    let msg = Message::Hello { version: wire::VERSION, features: wire::FEATURES };
    wire::encode_frame(&msg.into_cbor(), &mut hello, usize::MAX).expect("a hello encodes");
    p.handle_input(now, Input::Receive(&hello)).expect("a hello is accepted");
    let mut errors = Vec::new();
    let mut at = 0;
    let mut step = steps.iter().copied().cycle();
    while at < stream.len() {
        let k = step.next().unwrap_or(stream.len()).min(stream.len() - at);
        let lent = if lend { p.input_buffer() } else { None };
        let result = match lent {
            Some(mut input) => {
                let room = input.unfilled();
                let k = k.min(room.len());
                room[..k].copy_from_slice(&stream[at..at + k]);
                input.advance(k);
                at += k;
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
    if eof {
        p.handle_input(now, Input::Eof).unwrap();
    }
    let mut out = Vec::new();
    p.write_to(&mut out).expect("a Vec takes everything");
    let mut events = Vec::new();
    while let Some(e) = p.poll_event() {
        events.push(match e {
            Event::Closed { reason } => format!("closed: {reason}"),
            other => format!("{other:?}"),
        });
    }
    (errors, out, events)
}
