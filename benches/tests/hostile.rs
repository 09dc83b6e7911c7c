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

/// The "done when": under `ulimit -v 4G`, set for the child
/// server, 100 connections announcing a maximal frame abort no server
/// kind (reserving what a frame announced used to abort the process after
/// about 30).
#[test]
fn maximal_frames_under_an_address_space_limit_abort_no_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_hostile"))
        .args(["--rows", "1", "--full", "--as-limit-gib", "4", "--secs", "1", "--no-latency-bound"])
        .output()
        .expect("the hostile program runs");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(out.status.success(), "a server failed:\n{report}");
    assert_eq!(report.lines().filter(|l| l.contains("| 100 connections held |")).count(), 5, "{report}");
}
