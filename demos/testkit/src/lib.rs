//! Runs a demo binary as a child process and follows its output line by
//! line. Every wait has a deadline (the watchdog): a test that would hang
//! fails instead, and the child is killed on drop whatever happens.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one test may wait in total for its children.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// A running demo: its stdin, its stdout as a stream of lines, and everything
/// it printed so far (for failure messages).
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line the child printed so far, for checks and failure messages.
    pub transcript: Vec<String>,
    deadline: Instant,
}

impl Proc {
    /// Starts `bin` with `args`, stdin and stdout piped, stderr inherited.
    pub fn spawn(name: &str, bin: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({bin}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            name: name.to_string(),
            child,
            stdin,
            lines,
            transcript: Vec::new(),
            deadline: Instant::now() + WATCHDOG,
        }
    }

    /// The next line, or `None` at end of output. Panics at the watchdog.
    pub fn next_line(&mut self) -> Option<String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.transcript.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: watchdog ({WATCHDOG:?}) expired; output so far:\n{}", self.name, self.dump())
            }
        }
    }

    /// Reads lines until one satisfies `want`, and returns it.
    pub fn expect_by(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        loop {
            match self.next_line() {
                Some(line) if want(&line) => return line,
                Some(_) => {}
                None => panic!("{}: output ended before {what}; output:\n{}", self.name, self.dump()),
            }
        }
    }

    /// Reads lines until one contains `needle`, and returns it.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_by(&format!("a line containing {needle:?}"), |l| l.contains(needle))
    }

    /// Reads the next line and checks it is exactly `line`.
    pub fn expect_exact(&mut self, line: &str) {
        match self.next_line() {
            Some(got) if got == line => {}
            got => panic!("{}: expected {line:?}, got {got:?}; output:\n{}", self.name, self.dump()),
        }
    }

    /// The address from a `listening on ADDR` line.
    pub fn listening_addr(&mut self) -> String {
        let line = self.expect("listening on ");
        line.rsplit(' ').next().expect("an address").to_string()
    }

    /// Writes one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("writing to the child");
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Asks the child to stop with SIGTERM, as a service manager or
    /// `kill` would; it may still print and exit cleanly.
    pub fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signalling the child");
    }

    /// Kills the child at once (no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reads the rest of the output, then waits for the exit status.
    pub fn finish(&mut self) -> ExitStatus {
        while self.next_line().is_some() {}
        self.child.wait().expect("waiting for the child")
    }

    /// Reads the rest of the output and checks that the child exited with 0.
    pub fn finish_ok(&mut self) {
        let status = self.finish();
        assert!(status.success(), "{}: exited with {status}; output:\n{}", self.name, self.dump());
    }

    /// The transcript as one string, for failure messages.
    pub fn dump(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
