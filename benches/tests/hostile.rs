//! Every attack of the hostile-peers table against every server kind, at
//! the small size: each server survives, every call of a well-behaved
//! client on it succeeds while the attack runs, and the server's fds
//! return to their start. The latency bound (p99 under 50 ms on the loop
//! servers during rows 3-5) is measured, not asserted here:
//! `cargo run --release -p netref-benches --bin hostile -- --full`.

use std::process::Command;

#[test]
fn every_server_kind_survives_every_attack() {
    let out = Command::new(env!("CARGO_BIN_EXE_hostile"))
        .args(["--secs", "1", "--no-latency-bound"])
        .output()
        .expect("the hostile program runs");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a server failed an attack:\n{report}");
    // Every server kind met every attack.
    let rows = report.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| server")).count();
    assert_eq!(rows, 5 * 11, "{report}");
}
