//! Byte transports under a connection: non-blocking reads and writes, plus a
//! blocking wait that another thread can interrupt.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendFlags};

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
    /// Whether an event loop watches the fd now (a
    /// [`Driver`](crate::Driver) is attached). Such a loop may be
    /// edge-triggered: it signals once for data and an end of stream that
    /// arrive together, so reads must go on until the socket itself says
    /// `WouldBlock`. The default does nothing.
    fn set_loop_driven(&self, driven: bool) {
        let _ = driven;
    }
    /// True while bytes the transport accepted are still inside it, waiting
    /// for the socket to take them (TLS records): the connection watches for
    /// writability and calls [`flush`](Self::flush) until it is false. The
    /// default is false.
    fn wants_write(&self) -> bool {
        false
    }
    /// Writes what the transport holds until the socket would block. The
    /// default has nothing to write.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    /// True when bytes the transport already took from the socket wait
    /// inside it to be read (TLS plaintext decrypted with a record that did
    /// not fit the reader's buffer): no readiness of the fd will announce
    /// them, so a [`Driver`](crate::Driver) steps again at once and
    /// [`wait`](Self::wait) returns at once. The default is false.
    fn has_buffered_input(&self) -> bool {
        false
    }
    /// True while the transport is still being established on an event loop
    /// (a TLS handshake the loop drives with the connection's reads): the
    /// connection starts its service once it is not, so that the service
    /// sees the peer's [`credentials`](Self::credentials). The default is
    /// false.
    fn establishing(&self) -> bool {
        false
    }
    /// What the transport proved about the peer (its TLS certificates), once
    /// established. The default proves nothing.
    fn credentials(&self) -> Option<crate::auth::Credentials> {
        None
    }
    /// A short description for logs and tracebacks (peer address).
    fn describe(&self) -> String;
}

mod pipes;

pub use pipes::PipeTransport;

/// A transport as [`Read`] and [`Write`], for code written against them
/// (the protocol's `write_to`, rustls's `read_tls` and `write_tls`): the
/// same non-blocking calls, `WouldBlock` included.
pub(crate) struct AsIo<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: Transport + ?Sized> Read for AsIo<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<T: Transport + ?Sized> Write for AsIo<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Most slices one `sendmsg` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// How long one `wait` lasts at most when there is no wake-up bell.
const SLICE: Duration = Duration::from_millis(10);

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
    /// Sets the read and write timeouts of blocking I/O on the stream
    /// (`None`: block forever), as an authenticator's exchange needs.
    pub fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }

    /// Sets the socket's read timeout (`SO_RCVTIMEO`; `None`: none).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the socket's write timeout (`SO_SNDTIMEO`; `None`: none).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(timeout),
            Stream::Unix(s) => s.set_write_timeout(timeout),
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
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
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

/// A wake-up another thread rings to end a `poll(2)`: an eventfd, one
/// descriptor (a pipe or socket pair takes two).
///
/// Ringing adds to the eventfd's counter, which makes it readable until
/// [`clear`](Self::clear) reads the counter back to zero; a bell rung and
/// never cleared stays readable, a latch.
#[derive(Debug)]
pub(crate) struct Bell(OwnedFd);

impl Bell {
    /// A new, silent bell (non-blocking, close-on-exec).
    pub(crate) fn new() -> io::Result<Bell> {
        Ok(Bell(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?))
    }

    /// Makes the bell readable. Fails only when the counter is already
    /// near its maximum, that is, readable: so the error is irrelevant.
    pub(crate) fn ring(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Makes the bell silent again (one read resets the counter).
    pub(crate) fn clear(&self) {
        let _ = rustix::io::read(&self.0, &mut [0u8; 8]);
    }
}

impl AsFd for Bell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// `timeout` as `poll` takes it: `None` waits forever (as does a timeout
/// too long for a `Timespec`).
pub(crate) fn poll_timeout(timeout: Option<Duration>) -> Option<Timespec> {
    timeout.and_then(|d| Timespec::try_from(d).ok())
}

/// `poll(2)` on `fds`; a signal that interrupts it is a (spurious) return.
pub(crate) fn poll_until(fds: &mut [PollFd<'_>], timeout: Option<&Timespec>) -> io::Result<()> {
    match poll(fds, timeout) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A socket plus a wake-up eventfd, waited on with `poll(2)`.
///
/// The eventfd is made on first use (a blocking `wait` or a `wake`), so a
/// connection served only by an event loop costs one file descriptor, not
/// two (a server holding 10,000 connections needs 10,000 descriptors, not
/// 20,000).
#[derive(Debug)]
pub struct SocketTransport {
    stream: Stream,
    /// `Err` if it could not be made (out of file descriptors): waits then
    /// poll the socket in short slices instead.
    wake: OnceLock<Result<Bell, ()>>,
    /// The last read was short, so the socket was drained: the next read
    /// (the one that would only return `WouldBlock`) is skipped. Only while
    /// no event loop watches the fd (`loop_driven`): the data may have come
    /// with the end of the stream, and a level-triggered wait reports that
    /// again, an edge-triggered loop does not.
    drained: AtomicBool,
    loop_driven: AtomicBool,
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
        Ok(SocketTransport {
            stream,
            wake: OnceLock::new(),
            drained: AtomicBool::new(false),
            loop_driven: AtomicBool::new(false),
            label,
        })
    }

    /// The wake-up bell, made now if need be. Both `wait` and `wake` make
    /// it, so a `wake` racing with the first `wait` is never lost.
    fn bell(&self) -> Option<&Bell> {
        self.wake
            .get_or_init(|| {
                Bell::new().map_err(|e| log::warn!("netref: no wake-up eventfd ({e}); waits poll in slices"))
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
        // so the read after a short one would just return `WouldBlock`, or
        // 0 for an end of stream that came with the data: say `WouldBlock`
        // without the syscall. This connection's own waits are
        // level-triggered (`poll`), so they report readable again for
        // anything left, the end of the stream included. Under an event
        // loop, which may be edge-triggered, every read is made (see
        // `drained`). Callers read until `WouldBlock`, so the flag never
        // outlives that loop.
        if self.drained.swap(false, Ordering::Relaxed) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = match &self.stream {
            Stream::Tcp(s) => (&*s).read(buf)?,
            Stream::Unix(s) => (&*s).read(buf)?,
        };
        if n > 0 && n < buf.len() && !self.loop_driven.load(Ordering::Relaxed) {
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
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        Ok(sendmsg(&self.stream, bufs, &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL)?)
    }

    fn wait(&self, want_write: bool, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = PollFlags::IN;
        if want_write {
            events |= PollFlags::OUT;
        }
        let bell = self.bell();
        let mut timeout = timeout;
        if bell.is_none() {
            // No wake-up bell: notice wakes within 10 ms.
            timeout = Some(timeout.map_or(SLICE, |t| t.min(SLICE)));
        }
        // The timeout goes to the kernel in nanoseconds (`ppoll`), so a
        // wait never ends before its deadline.
        let timeout = poll_timeout(timeout);
        match bell {
            Some(bell) => {
                let mut fds = [PollFd::new(&self.stream, events), PollFd::new(bell, PollFlags::IN)];
                poll_until(&mut fds, timeout.as_ref())?;
                if !fds[1].revents().is_empty() {
                    bell.clear();
                }
            }
            None => poll_until(&mut [PollFd::new(&self.stream, events)], timeout.as_ref())?,
        }
        Ok(())
    }

    fn wake(&self) {
        if let Some(bell) = self.bell() {
            bell.ring();
        }
    }

    fn shutdown(&self) {
        let _ = match &self.stream {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
        // The shut socket itself now wakes any poll on it; ring the bell
        // only if one exists.
        if let Some(Ok(bell)) = self.wake.get() {
            bell.ring();
        }
    }

    fn set_loop_driven(&self, driven: bool) {
        self.loop_driven.store(driven, Ordering::Relaxed);
        self.drained.store(false, Ordering::Relaxed);
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.stream.as_fd())
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}
