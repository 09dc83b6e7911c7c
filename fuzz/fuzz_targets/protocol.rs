//! The two-peer fuzz target ([`two_peers`]) with both sides speaking
//! netref's own dialect.
//!
//! The body is [`run`], which `core/tests/fuzz_corpus.rs` also calls on every
//! committed corpus file (decoded with `arbitrary` as libFuzzer does), so the
//! corpus is a regression test in `cargo test`.
#![cfg_attr(fuzzing, no_main)]

#[path = "two_peers.rs"]
mod two_peers;

pub use two_peers::Input;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|input: Input| run(input));

/// One fuzz input, in netref's dialect.
pub fn run(input: Input) {
    two_peers::run_speaking(input, netref::Dialect::Netref)
}
