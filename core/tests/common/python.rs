//! The Python with rpyc 6.0.2 that the RPyC interop tests run against, and
//! its processes. Shared by `core/tests/rpyc_*.rs` and the conformance
//! suite's RPyC checks (`backends/conformance/src/rpyc.rs`).
//!
//! `scripts/test.sh` makes a venv with rpyc 6.0.2 from PyPI under
//! `target/rpyc-venv` and names its python in `NETREF_RPYC_PYTHON`;
//! without it the tests say so and check nothing else.
#![allow(dead_code)]
// each user uses some of it
// Public for the conformance crate, which re-exports it; private to each
// of core's test crates.
#![allow(unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// The venv's python, or why there is none (printed, never silent).
pub fn python(what: &str) -> Option<String> {
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

/// A Python process, killed when dropped, so that a failing test leaves
/// none running (holding the test's stderr open).
pub struct Running(Option<Child>);

impl Running {
    /// Starts `python` with `args`, its stdin and stdout piped.
    pub fn start(python: &str, args: &[&str]) -> Running {
        let child = Command::new(python)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("running {python}: {e}"));
        Running(Some(child))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running until finished or dropped")
    }

    /// Waits for its next line of output.
    pub fn first_line(&mut self) -> String {
        let mut line = String::new();
        BufReader::new(self.child().stdout.as_mut().expect("piped")).read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// Writes `input`, closes stdin and waits; its output lines, after
    /// checking that it succeeded.
    pub fn finish(mut self, input: &str) -> Vec<String> {
        self.child().stdin.take().expect("piped").write_all(input.as_bytes()).unwrap();
        let out = self.0.take().expect("running").wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "the Python side failed ({:?}); it printed:\n{stdout}", out.status);
        stdout.lines().map(str::to_owned).collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `script` (Python source) with `args` and `input` on stdin; its
/// output lines, after checking that it succeeded.
pub fn run(python: &str, script: &str, args: &[&str], input: &str) -> Vec<String> {
    let mut argv = vec!["-c", script];
    argv.extend_from_slice(args);
    Running::start(python, &argv).finish(input)
}
