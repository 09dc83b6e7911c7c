//! The two-peer fuzz target ([`two_peers`]) with both sides speaking RPyC
//! 6's dialect: the same operations and the same invariants (no error
//! between well-behaved peers, nothing left exported or imported once
//! settled) through id packs, boxed values, one DEL per released object and
//! requests whose answers are dropped.
//!
//! The body is [`run`], which `core/tests/fuzz_corpus.rs` also calls on every
//! committed corpus file of the `protocol` target (the same input type).
#![cfg_attr(fuzzing, no_main)]

#[path = "two_peers.rs"]
mod two_peers;

pub use two_peers::Input;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|input: Input| run(input));

/// One fuzz input, in RPyC's dialect.
pub fn run(input: Input) {
    two_peers::run_speaking(input, netref::Dialect::Rpyc)
}
