//! A connection to a child process over its stdin (RPyC's
//! `connect_subproc`), and the child's side of it (`connect_stdpipes`).
//!
//! The child's stdin is one end of a Unix socket pair, which carries the
//! connection both ways: one descriptor, so the connection is an ordinary
//! socket connection that every loop backend can watch, the child's exit
//! closes it (the peer sees the end of the stream), and the child's stdout
//! and stderr stay its own, so nothing it prints can corrupt the
//! connection. (RPyC uses two pipes, stdin and stdout.)

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use super::builder::Builder;
use super::Connection;
use crate::error::Result;

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

    /// Runs a connection over this process's stdin, as a child started by
    /// [`connect_subproc`](Self::connect_subproc) (RPyC's
    /// `connect_stdpipes`). Afterwards stdin reads nothing, so a stray read
    /// of it cannot take the connection's bytes; stdout is untouched.
    ///
    /// Fails when stdin is not a socket: a pair of pipes (a shell's) is not
    /// supported yet.
    pub fn connect_stdpipes(self) -> Result<Connection> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let stat = rustix::fs::fstat(fd).map_err(std::io::Error::from)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "connect_stdpipes needs stdin to be a socket, as connect_subproc starts a child \
                 (a pair of pipes is not supported)",
            )
            .into());
        }
        let socket = UnixStream::from(fd.try_clone_to_owned()?);
        // Stdin lets go of the socket: it reads /dev/null from now on.
        let null = std::fs::File::open("/dev/null")?;
        rustix::stdio::dup2_stdin(&null).map_err(std::io::Error::from)?;
        self.over_stream(socket)
    }
}
