//! A connection over two pipes, one each way (RPyC's `connect_pipes`).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::{poll_timeout, poll_until, Bell, Transport};

/// Reads from one file descriptor and writes to another (two pipes, a
/// process's stdin and stdout), non-blocking.
///
/// An event loop watches one descriptor per connection; this one is an
/// epoll instance holding both ends, readable when the read end is, and
/// when the write end is writable while output waits for it (a write that
/// would have blocked arms it). Polling an epoll instance checks its
/// entries again, so it is not readable once they are not (the
/// conformance suite's loops sleep on it). Writing to a pipe whose reader has gone
/// raises `SIGPIPE` unless the process ignores it, as Rust programs do by
/// default.
pub struct PipeTransport {
    read: OwnedFd,
    write: OwnedFd,
    /// Both ends, for event loops.
    both: OwnedFd,
    /// The write end is in `both`, watched for writability.
    write_armed: Mutex<bool>,
    bell: Bell,
    shut: AtomicBool,
}

/// Keys of the two ends in the epoll instance.
const READ_END: u64 = 0;
const WRITE_END: u64 = 1;

impl PipeTransport {
    /// Reads from `read` and writes to `write`, making both non-blocking.
    pub fn new(read: impl Into<OwnedFd>, write: impl Into<OwnedFd>) -> io::Result<Self> {
        let (read, write) = (read.into(), write.into());
        rustix::io::ioctl_fionbio(&read, true)?;
        rustix::io::ioctl_fionbio(&write, true)?;
        let both = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(&both, &read, EventData::new_u64(READ_END), EventFlags::IN)?;
        Ok(PipeTransport {
            read,
            write,
            both,
            write_armed: Mutex::new(false),
            bell: Bell::new()?,
            shut: AtomicBool::new(false),
        })
    }

    /// Watches (or stops watching) the write end in `both`.
    fn arm_write(&self, armed: bool) {
        let mut current = self.write_armed.lock().unwrap_or_else(|e| e.into_inner());
        if *current == armed {
            return;
        }
        let done = if armed {
            epoll::add(&self.both, &self.write, EventData::new_u64(WRITE_END), EventFlags::OUT)
        } else {
            epoll::delete(&self.both, &self.write)
        };
        if done.is_ok() {
            *current = armed;
        }
    }

    fn result(&self, r: rustix::io::Result<usize>, writing: bool) -> io::Result<usize> {
        match r {
            Err(Errno::AGAIN) => {
                if writing {
                    self.arm_write(true);
                }
                Err(io::ErrorKind::WouldBlock.into())
            }
            Ok(n) => {
                if writing {
                    self.arm_write(false);
                }
                Ok(n)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Transport for PipeTransport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.shut.load(Ordering::Acquire) {
            return Ok(0);
        }
        self.result(rustix::io::read(&self.read, buf), false)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if self.shut.load(Ordering::Acquire) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.result(rustix::io::write(&self.write, buf), true)
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.shut.load(Ordering::Acquire) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let bufs = &bufs[..bufs.len().min(super::IOV_MAX)];
        self.result(rustix::io::writev(&self.write, bufs), true)
    }

    fn wait(&self, want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = poll_timeout(timeout);
        let write = if want_write { PollFlags::OUT } else { PollFlags::empty() };
        let mut fds = [
            PollFd::new(&self.read, PollFlags::IN),
            PollFd::new(&self.write, write),
            PollFd::new(&self.bell, PollFlags::IN),
        ];
        poll_until(&mut fds, timeout.as_ref())?;
        if !fds[2].revents().is_empty() {
            self.bell.clear();
        }
        Ok(())
    }

    fn wake(&self) {
        self.bell.ring();
    }

    fn shutdown(&self) {
        self.shut.store(true, Ordering::Release);
        // Both ends become /dev/null: the pipes close for the peer now (it
        // reads the end of the stream; its writes fail), and the
        // descriptors this transport owns stay valid until it is dropped.
        if let Ok(null) = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
            for fd in [&self.read, &self.write] {
                // SAFETY: both descriptors are open (owned by `self`) and
                // `dup3` only makes `fd` a copy of `null`: it stays an
                // open descriptor, owned as before.
                unsafe { libc::dup3(null.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC) };
            }
        }
        self.bell.ring();
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.both.as_fd())
    }

    fn describe(&self) -> String {
        "pipes".into()
    }
}
