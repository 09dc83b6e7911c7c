//! Bytes -> brine (RPyC's value encoding): whatever decodes must encode to
//! bytes that decode and encode to themselves again (Python's dumper's
//! form), and nothing panics, however deep or long the input claims to be.
//!
//! The body is [`run`], which `core/tests/fuzz_corpus.rs` also calls on every
//! committed corpus file, so the corpus is a regression test in `cargo test`.
#![cfg_attr(fuzzing, no_main)]

use netref::wire::rpyc::Brine;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// One fuzz input: decoded, and if it decodes, re-encoded twice.
pub fn run(data: &[u8]) {
    let Ok(value) = Brine::decode(data) else { return };
    let once = value.to_bytes();
    let again = Brine::decode(&once).expect("netref's own encoding decodes");
    assert_eq!(again.to_bytes(), once);
}
