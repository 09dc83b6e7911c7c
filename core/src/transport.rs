//! Byte transports under a connection: non-blocking reads and writes, plus a
//! blocking wait that another thread can interrupt.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// What a connection needs from the bytes underneath it.
///
/// `read` and `write` never block (they return `WouldBlock`); `wait` blocks
/// until the transport is readable, writable (when `want_write`), woken by
/// [`wake`](Self::wake) from another thread, or the timeout passes.
pub trait Transport: Send + Sync + 'static {
    /// Reads what is available; `Ok(0)` is end of stream.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes what fits.
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Writes what fits of `bufs`, in order, as if they were one buffer
    /// (in one system call where the transport can). By default, writes
    /// the first non-empty one.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => self.write(b),
            None => Ok(0),
        }
    }
    /// Blocks until something may have changed (spurious returns are fine).
    fn wait(&self, want_write: bool, timeout: Option<Duration>) -> io::Result<()>;
    /// Makes a `wait` in progress on another thread return.
    fn wake(&self);
    /// Shuts the transport down in both directions; waits return.
    fn shutdown(&self);
    /// The file descriptor an event loop can watch, if there is one.
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// A short description for logs and tracebacks (peer address).
    fn describe(&self) -> String;
}

/// Most slices one `sendmsg` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// A connected stream socket: TCP or Unix.
#[derive(Debug)]
pub enum Stream {
    /// A TCP stream.
    Tcp(TcpStream),
    /// A Unix stream.
    Unix(UnixStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}
impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream::Unix(s)
    }
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Sets the read and write timeouts of blocking I/O on the stream
    /// (`None`: block forever), as an authenticator's exchange needs.
    pub fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
        }
    }

    /// Another handle to the same socket.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shuts the socket down in both directions: blocked reads and writes
    /// on any handle to it return.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        }
    }

    /// The peer's address, for logs.
    pub fn describe_peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "tcp".into()),
            Stream::Unix(s) => match s.peer_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("unix:{}", p.display()),
                    None => "unix".into(),
                },
                Err(_) => "unix".into(),
            },
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A socket plus a wake-up pipe, waited on with `poll(2)`.
///
/// The wake-up pipe is made on first use (a blocking `wait` or a `wake`), so
/// a connection served only by an event loop costs one file descriptor, not
/// three (a server holding 10,000 connections needs 10,000 descriptors, not
/// 30,000).
#[derive(Debug)]
pub struct SocketTransport {
    stream: Stream,
    /// `(read end, write end)`; `Err` if it could not be made (out of file
    /// descriptors): waits then poll the socket in short slices instead.
    wake: OnceLock<Result<(UnixStream, UnixStream), ()>>,
    /// The last read was short, so the socket was drained: the next read
    /// (the one that would only return `WouldBlock`) is skipped.
    drained: AtomicBool,
    label: String,
}

impl SocketTransport {
    /// Wraps a connected stream, making it non-blocking (and TCP_NODELAY).
    pub fn new(stream: impl Into<Stream>) -> io::Result<Self> {
        let stream = stream.into();
        let label = match &stream {
            Stream::Tcp(s) => {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                s.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "tcp".into())
            }
            Stream::Unix(s) => {
                s.set_nonblocking(true)?;
                match s.peer_addr() {
                    Ok(a) => match a.as_pathname() {
                        Some(p) => format!("unix:{}", p.display()),
                        None => "unix".into(),
                    },
                    Err(_) => "unix".into(),
                }
            }
        };
        Ok(SocketTransport { stream, wake: OnceLock::new(), drained: AtomicBool::new(false), label })
    }

    /// The wake-up pipe, made now if need be. Both `wait` and `wake` make
    /// it, so a `wake` racing with the first `wait` is never lost.
    fn wake_pipe(&self) -> Option<&(UnixStream, UnixStream)> {
        self.wake
            .get_or_init(|| {
                let pair = UnixStream::pair().and_then(|(rx, tx)| {
                    rx.set_nonblocking(true)?;
                    tx.set_nonblocking(true)?;
                    Ok((rx, tx))
                });
                pair.map_err(|e| log::warn!("netref: no wake-up pipe ({e}); waits poll in slices"))
            })
            .as_ref()
            .ok()
    }

    /// The underlying stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }
}

impl Transport for SocketTransport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // A stream socket's read stops short only once its queue is empty,
        // so the read after a short one would just return `WouldBlock`:
        // say so without the syscall. Data arriving meanwhile makes the
        // socket readable again (level-triggered waits) or raises a new
        // edge (edge-triggered loops), so nothing is missed. Callers read
        // until `WouldBlock`, so the flag never outlives that loop.
        if self.drained.swap(false, Ordering::Relaxed) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = match &self.stream {
            Stream::Tcp(s) => (&*s).read(buf)?,
            Stream::Unix(s) => (&*s).read(buf)?,
        };
        if n > 0 && n < buf.len() {
            self.drained.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.stream {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // `sendmsg` rather than std's `write_vectored` (`writev`): like
        // std's `write` (`send`), it passes MSG_NOSIGNAL, so a peer that
        // went away is an EPIPE error, not a SIGPIPE that kills a process
        // which does not ignore it.
        //
        // SAFETY: an all-zero `msghdr` is valid (no address, no control
        // data); `IoSlice` is guaranteed ABI-compatible with `iovec` on
        // Unix, and `bufs`, which sendmsg only reads, outlives the call.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
            libc::sendmsg(self.stream.fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn wait(&self, want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = libc::POLLIN;
        if want_write {
            events |= libc::POLLOUT;
        }
        let pipe = self.wake_pipe();
        let mut fds = [
            libc::pollfd { fd: self.stream.fd(), events, revents: 0 },
            libc::pollfd { fd: pipe.map_or(-1, |p| p.0.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        let mut ms = match timeout {
            None => -1,
            // Round up so a wait never ends just before its deadline.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        if pipe.is_none() && !(0..=10).contains(&ms) {
            ms = 10; // no wake-up pipe: notice wakes within 10 ms
        }
        // SAFETY: `fds` is a valid array of two pollfd structs for the whole
        // call (poll ignores the entry whose fd is -1).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        if let Some((rx, _)) = pipe.filter(|_| fds[1].revents != 0) {
            let mut sink = [0u8; 64];
            while matches!((&*rx).read(&mut sink), Ok(n) if n > 0) {}
        }
        Ok(())
    }

    fn wake(&self) {
        // A full pipe already guarantees a wake-up; the error is irrelevant.
        if let Some((_, tx)) = self.wake_pipe() {
            let _ = (&*tx).write(&[1]);
        }
    }

    fn shutdown(&self) {
        let _ = match &self.stream {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
        // The shut socket itself now wakes any poll on it; ring the pipe
        // only if one exists.
        if let Some(Ok((_, tx))) = self.wake.get() {
            let _ = (&*tx).write(&[1]);
        }
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.stream.as_fd())
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}
