//! The committed fuzz corpora (`fuzz/corpus/*`) replayed on stable through
//! the fuzz targets' own code (`fuzz/fuzz_targets/*.rs`, included here), so
//! every corpus file is a regression test of `cargo test`. Running the
//! fuzzers themselves needs nightly and cargo-fuzz (see CONTRIBUTING.md).
// cargo-fuzz builds the targets with `--cfg fuzzing`; here it is unset.
#![allow(unexpected_cfgs)]
// `protocol` and `rpyc_protocol` each include the two-peer body, as each
// target (a crate of its own under fuzz/) does.
#![allow(clippy::duplicate_mod)]

use std::path::{Path, PathBuf};

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fuzz/fuzz_targets/frame_decode.rs"]
mod frame_decode;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fuzz/fuzz_targets/protocol.rs"]
mod protocol;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fuzz/fuzz_targets/rpyc_protocol.rs"]
mod rpyc_protocol;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fuzz/fuzz_targets/rpyc_requests.rs"]
mod rpyc_requests;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fuzz/fuzz_targets/large_frame.rs"]
mod large_frame;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fuzz/fuzz_targets/brine.rs"]
mod brine;

use arbitrary::Arbitrary;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the {target} corpus is empty");
    files
}

/// Runs `f`, naming the corpus file in the failure.
fn replay(path: &Path, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        eprintln!("corpus file {} failed", path.display());
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn frame_decode_corpus_replays_cleanly() {
    for (path, bytes) in corpus("frame_decode") {
        replay(&path, || frame_decode::run(&bytes));
    }
}

#[test]
fn large_frame_corpus_replays_cleanly() {
    for (path, bytes) in corpus("large_frame") {
        replay(&path, || large_frame::run(&bytes));
    }
}

#[test]
fn brine_corpus_replays_cleanly() {
    for (path, bytes) in corpus("brine") {
        // Python's rpyc dumped each seed: netref decodes every one.
        assert!(netref::wire::rpyc::Brine::decode(&bytes).is_ok(), "{} does not decode", path.display());
        replay(&path, || brine::run(&bytes));
    }
}

/// Replays the `target` corpus through `run`, each file decoded as
/// libFuzzer's typed targets decode it (the whole input, taken to the end).
fn replay_typed<I: for<'a> Arbitrary<'a>>(target: &str, run: impl Fn(I)) {
    let mut decoded = 0;
    for (path, bytes) in corpus(target) {
        let Ok(input) = I::arbitrary_take_rest(arbitrary::Unstructured::new(&bytes)) else { continue };
        decoded += 1;
        replay(&path, || run(input));
    }
    assert!(decoded > 0, "no {target} corpus file decoded to an input");
}

#[test]
fn protocol_corpus_replays_cleanly() {
    replay_typed("protocol", protocol::run);
}

#[test]
fn protocol_corpus_replays_cleanly_in_the_rpyc_dialect() {
    replay_typed("protocol", rpyc_protocol::run);
}

#[test]
fn rpyc_requests_corpus_replays_cleanly() {
    replay_typed("rpyc_requests", rpyc_requests::run);
}

/// Byte-level mutations of every corpus file also go through the frame
/// decoder and the protocol without panicking: a cheap stand-in for a short
/// fuzzing run on machines without nightly.
#[test]
fn mutated_corpus_files_do_not_panic() {
    let mut files = corpus("frame_decode");
    files.extend(corpus("protocol"));
    files.extend(corpus("brine"));
    files.extend(corpus("rpyc_requests"));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (path, bytes) in &files {
        for _ in 0..64 {
            let mut m = bytes.clone();
            for _ in 0..1 + next() % 4 {
                if m.is_empty() {
                    m.push(next() as u8);
                }
                let i = (next() % m.len() as u64) as usize;
                match next() % 3 {
                    0 => m[i] = next() as u8,
                    1 => m.insert(i, next() as u8),
                    _ => {
                        m.remove(i);
                    }
                }
            }
            replay(path, || frame_decode::run(&m));
            replay(path, || brine::run(&m));
            if let Ok(input) = protocol::Input::arbitrary_take_rest(arbitrary::Unstructured::new(&m)) {
                replay(path, || protocol::run(input));
            }
            if let Ok(input) = rpyc_requests::Input::arbitrary_take_rest(arbitrary::Unstructured::new(&m)) {
                replay(path, || rpyc_requests::run(input));
            }
        }
    }
}
