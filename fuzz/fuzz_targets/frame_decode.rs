//! Bytes -> frames -> CBOR -> messages, split at a fuzzed step; whatever is
//! read back as a message must re-encode to itself.
//!
//! The body is [`run`], which `core/tests/fuzz_corpus.rs` also calls on every
//! committed corpus file, so the corpus is a regression test in `cargo test`.
#![cfg_attr(fuzzing, no_main)]

use netref::wire::{self, FrameDecoder, Message};

const MAX_FRAME: usize = 4096;
const RECURSION_LIMIT: usize = 32;

fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_frame(&msg.to_cbor(), &mut out, usize::MAX).expect("a decoded message re-encodes");
    out
}

fn check(body: &[u8]) {
    let Ok(item) = wire::decode_cbor(body, RECURSION_LIMIT) else { return };
    let Ok(msg) = Message::from_cbor(item) else { return };
    // Encoding is stable after one round (floats and bignums may change form
    // once, never twice).
    let once = encode(&msg);
    let again =
        Message::from_cbor(wire::decode_cbor(&once[wire::HEADER_LEN..], RECURSION_LIMIT + 8).unwrap())
            .expect("a re-encoded message decodes");
    assert_eq!(encode(&again), once);
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// One fuzz input: split at a fuzzed step, decoded, re-encoded.
pub fn run(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else { return };
    let step = usize::from(step % 16) + 1;
    let mut d = FrameDecoder::new();
    for chunk in data.chunks(step) {
        d.push(chunk).expect("memory for the frame");
        loop {
            match d.next_frame(MAX_FRAME) {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME);
                    let body = body.to_vec();
                    check(&body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(d.buffered() <= MAX_FRAME + wire::HEADER_LEN + step);
    }
    let _ = d.finish();
}
