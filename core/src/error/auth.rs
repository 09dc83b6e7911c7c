//! Why authentication refused a peer: [`AuthError`] and the [`AuthStep`] it failed at.

use std::sync::Arc;
use std::{fmt, io};

use super::same_io_error;
/// A step of the shared-secret exchange (see [`auth`](crate::auth)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// The server sends its challenge.
    SendingChallenge,
    /// The server reads the client's answer.
    ReadingAnswer,
    /// The server sends its proof.
    SendingProof,
    /// The client reads the server's challenge.
    ReadingChallenge,
    /// The client sends its answer.
    SendingAnswer,
    /// The client reads the server's verdict.
    ReadingVerdict,
    /// The client reads the server's proof.
    ReadingProof,
}

impl fmt::Display for AuthStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthStep::SendingChallenge => "sending the challenge",
            AuthStep::ReadingAnswer => "reading the client's answer",
            AuthStep::SendingProof => "sending the server's proof",
            AuthStep::ReadingChallenge => "reading the server's challenge",
            AuthStep::SendingAnswer => "sending our answer",
            AuthStep::ReadingVerdict => "reading the server's verdict",
            AuthStep::ReadingProof => "reading the server's proof",
        })
    }
}

/// Why authentication refused a peer (or a server refused us).
///
/// `PartialEq` compares I/O errors by their kind and message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthError {
    /// An [`Authenticator`](crate::Authenticator) of the application refused
    /// the peer, for this reason.
    Refused(String),
    /// Peer credentials (`SO_PEERCRED`) need a Unix socket; the stream is TCP.
    NotUnixSocket,
    /// The kernel did not tell the peer's credentials.
    PeerCredentials(Arc<io::Error>),
    /// The peer process runs as a uid that is not allowed.
    UidNotAllowed {
        /// The peer's process id.
        pid: i32,
        /// The peer's user id.
        uid: u32,
        /// The allowed user ids.
        allowed: Vec<u32>,
    },
    /// (Server) the client's answer to the challenge is wrong: it does not
    /// know the shared secret.
    WrongAnswer,
    /// (Client) the server sent no netref-auth challenge.
    NoChallenge,
    /// (Client) the server rejected our answer: the shared secrets differ.
    Rejected,
    /// (Client) the server closed the connection after our answer,
    /// usually for a wrong shared secret.
    ClosedAfterAnswer,
    /// (Client) the server sent a verdict byte this version does not know.
    UnknownVerdict(u8),
    /// (Client) the server failed to prove that it knows the shared secret.
    ServerUnproven,
    /// A step took longer than the builder's `auth_timeout`.
    TimedOut(AuthStep),
    /// The peer closed the connection during a step.
    PeerClosed(AuthStep),
    /// A step failed with an I/O error.
    Io(AuthStep, Arc<io::Error>),
    /// The operating system gave no random nonce (`getrandom` failed).
    NoRandomness(Arc<io::Error>),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Refused(why) => f.write_str(why),
            AuthError::NotUnixSocket => {
                f.write_str("peer credentials (SO_PEERCRED) need a Unix socket, not TCP")
            }
            AuthError::PeerCredentials(e) => write!(f, "reading peer credentials failed: {e}"),
            AuthError::UidNotAllowed { pid, uid, allowed } => write!(
                f,
                "peer process {pid} runs as uid {uid}, which is not among the allowed uids {allowed:?}"
            ),
            AuthError::WrongAnswer => f.write_str(
                "the client's answer to the challenge is wrong (it does not know the shared secret)",
            ),
            AuthError::NoChallenge => f.write_str(
                "the server did not send a netref-auth challenge (does it require a shared secret?)",
            ),
            AuthError::Rejected => f.write_str("the server rejected our answer: the shared secrets differ"),
            AuthError::ClosedAfterAnswer => {
                f.write_str("the server closed the connection after our answer (wrong shared secret?)")
            }
            AuthError::UnknownVerdict(v) => write!(f, "the server sent an unknown verdict {v}"),
            AuthError::ServerUnproven => {
                f.write_str("the server failed to prove that it knows the shared secret")
            }
            AuthError::TimedOut(step) => write!(f, "timed out {step} (auth_timeout)"),
            AuthError::PeerClosed(step) => write!(f, "the peer closed the connection while {step}"),
            AuthError::Io(step, e) => write!(f, "{step} failed: {e}"),
            AuthError::NoRandomness(e) => {
                write!(f, "reading a random nonce from the operating system failed: {e}")
            }
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthError::PeerCredentials(e) | AuthError::Io(_, e) | AuthError::NoRandomness(e) => Some(&**e),
            _ => None,
        }
    }
}

impl PartialEq for AuthError {
    fn eq(&self, other: &AuthError) -> bool {
        use AuthError::*;
        match (self, other) {
            (Refused(a), Refused(b)) => a == b,
            (PeerCredentials(a), PeerCredentials(b)) | (NoRandomness(a), NoRandomness(b)) => {
                same_io_error(a, b)
            }
            (
                UidNotAllowed { pid: p1, uid: u1, allowed: a1 },
                UidNotAllowed { pid: p2, uid: u2, allowed: a2 },
            ) => p1 == p2 && u1 == u2 && a1 == a2,
            (UnknownVerdict(a), UnknownVerdict(b)) => a == b,
            (TimedOut(a), TimedOut(b)) | (PeerClosed(a), PeerClosed(b)) => a == b,
            (Io(s1, e1), Io(s2, e2)) => s1 == s2 && same_io_error(e1, e2),
            (NotUnixSocket, NotUnixSocket)
            | (WrongAnswer, WrongAnswer)
            | (NoChallenge, NoChallenge)
            | (Rejected, Rejected)
            | (ClosedAfterAnswer, ClosedAfterAnswer)
            | (ServerUnproven, ServerUnproven) => true,
            _ => false,
        }
    }
}
