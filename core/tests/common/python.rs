//! The Python with rpyc 6.0.2 that the RPyC interop tests run against.
//!
//! `scripts/test.sh` makes a venv with rpyc 6.0.2 from PyPI under
//! `target/rpyc-venv` and names its python in `NETREF_RPYC_PYTHON`;
//! without it the tests say so and check nothing else.
#![allow(dead_code)] // each test file uses some of it

use std::io::Write;
use std::process::{Child, Command, Stdio};

/// The venv's python, or why there is none (printed, never silent).
pub(crate) fn python(what: &str) -> Option<String> {
    match std::env::var("NETREF_RPYC_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!(
                "SKIPPED: NETREF_RPYC_PYTHON is not set (scripts/test.sh sets it to a venv with \
                 rpyc 6.0.2); {what} did not run"
            );
            None
        }
    }
}

/// Starts `script` under `python` with `args`, its stdin and stdout piped.
pub(crate) fn spawn(python: &str, script: &str, args: &[&str]) -> Child {
    Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python}: {e}"))
}

/// Runs `script` under `python` with `args` and `input` on stdin; its
/// stdout lines, after checking that it succeeded.
pub(crate) fn run(python: &str, script: &str, args: &[&str], input: &str) -> Vec<String> {
    let mut child = spawn(python, script, args);
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "the Python side failed ({:?}); it printed:\n{stdout}", out.status);
    stdout.lines().map(str::to_owned).collect()
}

/// A Python process that is killed when dropped, so that a failing test
/// does not leave it running (holding the test's stderr open).
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
