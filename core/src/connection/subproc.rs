//! A connection to a child process over its stdin (RPyC's
//! `connect_subproc`), the child's side of it (`connect_stdpipes`), and a
//! connection over two pipes (`connect_pipes`).
//!
//! The child's stdin is one end of a Unix socket pair, which carries the
//! connection both ways: one descriptor, so the connection is an ordinary
//! socket connection that every loop backend can watch, the child's exit
//! closes it (the peer sees the end of the stream), and the child's stdout
//! and stderr stay its own, so nothing it prints can corrupt the
//! connection. (RPyC uses two pipes, stdin and stdout: `connect_stdpipes`
//! takes those too, for a parent that starts the child that way.)

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use super::builder::Builder;
use super::Connection;
use crate::error::Result;
use crate::transport::PipeTransport;

impl Builder {
    /// Starts `command` with its stdin carrying a connection to it, both
    /// ways (RPyC's `connect_subproc`); its stdout and stderr are left as
    /// the command has them. The child serves its side with
    /// [`connect_stdpipes`](Self::connect_stdpipes). When the child exits,
    /// the connection ends as closed by the peer; calls waiting on it fail
    /// at once. The [`Child`] is the caller's to wait for; `command`'s
    /// stdin is reset to null once the child has started.
    ///
    /// ```no_run
    /// use std::process::Command;
    ///
    /// let (conn, mut child) = netref::Builder::default().connect_subproc(&mut Command::new("./worker"))?;
    /// let sum: i64 = conn.root()?.call_method("add", (1, 2))?;
    /// conn.close();
    /// child.wait()?;
    /// # let _ = sum;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_subproc(self, command: &mut Command) -> Result<(Connection, Child)> {
        let (ours, theirs) = UnixStream::pair()?;
        let child = command.stdin(Stdio::from(OwnedFd::from(theirs))).spawn()?;
        // The command holds the child's end until it is dropped; the
        // child's exit must be the only thing keeping it open.
        command.stdin(Stdio::null());
        Ok((self.over_stream(ours)?, child))
    }

    /// Runs a connection over this process's stdio, as a child started by
    /// [`connect_subproc`](Self::connect_subproc) (RPyC's
    /// `connect_stdpipes`): over stdin alone when it is a socket (as
    /// `connect_subproc` makes it), otherwise reading stdin and writing
    /// stdout, which must then be pipes (as a parent that starts the
    /// child with `Stdio::piped()` for both, or RPyC's `connect_subproc`,
    /// makes them). Afterwards stdin reads nothing, so a stray read of it
    /// cannot take the connection's bytes; with pipes, stdout writes to
    /// stderr, so a stray `println!` cannot corrupt the connection.
    pub fn connect_stdpipes(self) -> Result<Connection> {
        let kind = |fd| {
            let stat = rustix::fs::fstat(fd).map_err(std::io::Error::from)?;
            Ok::<_, crate::Error>(rustix::fs::FileType::from_raw_mode(stat.st_mode))
        };
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let null = std::fs::File::open("/dev/null")?;
        if kind(fd)? == rustix::fs::FileType::Socket {
            let socket = UnixStream::from(fd.try_clone_to_owned()?);
            // Stdin lets go of the socket: it reads /dev/null from now on.
            rustix::stdio::dup2_stdin(&null).map_err(std::io::Error::from)?;
            return self.over_stream(socket);
        }
        let stdout = std::io::stdout();
        let out = stdout.as_fd();
        if kind(fd)? != rustix::fs::FileType::Fifo || kind(out)? != rustix::fs::FileType::Fifo {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "connect_stdpipes needs stdin to be a socket (as connect_subproc starts a child) \
                 or stdin and stdout to be pipes",
            )
            .into());
        }
        let (read, write) = (fd.try_clone_to_owned()?, out.try_clone_to_owned()?);
        rustix::stdio::dup2_stdin(&null).map_err(std::io::Error::from)?;
        rustix::stdio::dup2_stdout(std::io::stderr().as_fd()).map_err(std::io::Error::from)?;
        self.connect_pipes(read, write)
    }

    /// Runs a connection over two pipes (RPyC's `connect_pipes`): it reads
    /// what the peer writes into `read` and writes into `write`, for a
    /// peer that does the reverse (such as a child started with piped
    /// stdin and stdout that calls [`connect_stdpipes`](Self::connect_stdpipes)).
    /// Event loops watch it like any connection (see [`PipeTransport`]).
    /// Authentication does not apply (the pipes' ends are the processes
    /// that hold them).
    ///
    /// ```no_run
    /// use std::process::{Command, Stdio};
    ///
    /// let mut child = Command::new("./worker").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    /// let (to_child, from_child) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    /// let conn = netref::Builder::default().connect_pipes(from_child, to_child)?;
    /// let sum: i64 = conn.root()?.call_method("add", (1, 2))?;
    /// # let _ = sum;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_pipes(self, read: impl Into<OwnedFd>, write: impl Into<OwnedFd>) -> Result<Connection> {
        Ok(self.over_transport(PipeTransport::new(read, write)?))
    }
}
