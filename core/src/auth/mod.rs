//! Authentication: checks run on a freshly accepted (or connected) stream
//! before netref's handshake, producing the [`Credentials`] that the service
//! reads with [`Connection::credentials`](crate::Connection::credentials)
//! (RPyC's `authenticator(sock) -> (sock, credentials)`).
//!
//! An [`Authenticator`] is set on a [`Builder`](crate::Builder) (or with the
//! servers' `authenticator` builder methods). It runs on the stream before
//! the connection starts, in blocking mode, through an [`AuthStream`] whose
//! one deadline, the builder's [`auth_timeout`](crate::Builder::auth_timeout),
//! bounds the whole exchange (not each read); a failure closes the socket and
//! is logged by servers with its reason. Two ship here:
//!
//! - [`UnixPeerCred`]: the peer process's pid/uid/gid from the kernel
//!   (`SO_PEERCRED`), optionally allowing only some uids. Instant: it reads
//!   nothing from the peer, so event-loop servers run it on their loop.
//! - [`SharedSecret`]: a mutual challenge-response over any stream (meant
//!   for TCP). Both sides prove they know the secret; the secret itself never
//!   crosses the wire. The client answers with
//!   [`Builder::shared_secret`](crate::Builder::shared_secret).
//!
//! ```no_run
//! use netref::auth::{SharedSecret, UnixPeerCred};
//! use netref::{Builder, ObjectBuilder, Service, ThreadedServer};
//!
//! let service = Service::new(|conn| {
//!     let who = conn.credentials().and_then(|c| c.peer).map(|p| p.uid);
//!     ObjectBuilder::new("Hello").method("whoami", move || who).build()
//! });
//! let local = ThreadedServer::bind_unix("/tmp/app.sock", Builder::default().service(service.clone()))?
//!     .authenticator(UnixPeerCred::allow_uids([1000]));
//! let remote = ThreadedServer::bind_tcp("127.0.0.1:18861", Builder::default().service(service))?
//!     .authenticator(SharedSecret::new(b"correct horse battery staple".to_vec()));
//! // Client side:
//! let conn = Builder::default().shared_secret(b"correct horse battery staple".to_vec()).connect_tcp("127.0.0.1:18861")?;
//! # Ok::<(), netref::Error>(())
//! ```
//!
//! # Event-loop servers
//!
//! The backends' single-threaded servers (netref-mio, -polling, -calloop,
//! -glib) start each accepted connection with their builder on the loop's
//! thread, so the builder's authenticator runs there, inline. That fits
//! instant authenticators such as [`UnixPeerCred`] (one `getsockopt`).
//! **It does not fit [`SharedSecret`]**: its exchange waits for the client,
//! which would stall every other connection on the loop for up to
//! `auth_timeout` per client, so those servers refuse such a builder when
//! they are made ([`Listener::prepare_for_event_loop`](crate::Listener::prepare_for_event_loop)).
//! Serve shared-secret clients with [`ThreadedServer`](crate::ThreadedServer)
//! (or authenticate on a thread of your own and hand the connection to the
//! loop); [`Builder::auth_may_block`](crate::Builder::auth_may_block) tells
//! which kind a builder has. Every server logs a refusal once (`warn`, with the
//! peer and the reason), closes that client's socket and accepts the next
//! client at once: only a failing listener (out of file descriptors) makes
//! a server back off (see [`listener`](crate::server::listener)).
//!
//! # The shared-secret exchange
//!
//! ```text
//! server -> client   "netref-auth/1\n" || Ns            (Ns: 32 random bytes)
//! client -> server   Nc || HMAC(secret, "netref-auth client" || Ns || Nc || B)
//! server -> client   0x00 || HMAC(secret, "netref-auth server" || Nc || Ns || B)
//!                    (or 0x01 and close: the client's answer was wrong)
//! ```
//!
//! `B` binds the exchange to its channel: over TLS (feature `tls`), 32 bytes
//! of the TLS session's keying-material exporter (label
//! `EXPORTER-netref-shared-secret`), which only the two ends of that session
//! know; over a plain socket, nothing.
//!
//! HMAC is HMAC-SHA256 (RustCrypto's `hmac` and `sha2`); nonces come from the
//! operating system's random source (`getrandom`), with no file opened per
//! handshake; received MACs are checked in constant time by `hmac` itself.
//! The direction labels keep one side's answer from being replayed as the
//! other's. Over a plain socket the exchange authenticates the peer and does
//! not protect the connection that follows; over TLS it also proves that
//! the peer is the other end of this TLS session (see [`SharedSecret`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{AuthError, AuthStep, Result};
use crate::transport::Stream;

mod stream;
#[cfg(test)]
mod tests;

pub use stream::AuthStream;

/// What an [`Authenticator`] learned about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// Which check produced these, e.g. `"unix-peer-cred"` or `"shared-secret"`.
    pub method: String,
    /// The peer process, when the kernel told us (Unix sockets).
    pub peer: Option<PeerCred>,
    /// A name the peer proved, when the method has one.
    pub identity: Option<String>,
    /// The certificate chain the peer presented over TLS, DER-encoded, its
    /// own certificate first; empty without TLS or when it presented none.
    /// With the `tls` feature, `Credentials::certificate_is_valid_for`
    /// checks a name against the first one.
    pub certificates: Vec<Vec<u8>>,
}

impl Credentials {
    /// Credentials from `method`, with no peer process and no identity.
    pub fn new(method: impl Into<String>) -> Self {
        Credentials { method: method.into(), peer: None, identity: None, certificates: Vec::new() }
    }

    /// Sets the peer process.
    pub fn with_peer(mut self, peer: PeerCred) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Sets the identity.
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }
}

/// A peer process as the kernel reports it (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A check run on a stream before the connection starts.
///
/// `authenticate` may read and write the stream, which is in blocking mode
/// with one deadline for the whole exchange (see [`AuthStream`]); it returns
/// the peer's credentials or an
/// error naming why the peer was refused (usually [`Error::Auth`](crate::Error::Auth),
/// with [`AuthError::Refused`] for an application's own reasons).
pub trait Authenticator: Send + Sync + 'static {
    /// Checks the peer on `stream`.
    fn authenticate(&self, stream: &mut AuthStream<'_>) -> Result<Credentials>;

    /// True when `authenticate` never waits for the peer (it only asks the
    /// kernel), so a single-threaded event-loop server may run it inline.
    fn is_instant(&self) -> bool {
        false
    }
}

impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    fn authenticate(&self, stream: &mut AuthStream<'_>) -> Result<Credentials> {
        (**self).authenticate(stream)
    }
    fn is_instant(&self) -> bool {
        (**self).is_instant()
    }
}

// ---- SO_PEERCRED -------------------------------------------------------------

/// Reads the peer process's credentials from the kernel (`SO_PEERCRED`).
pub fn peer_cred(stream: &Stream) -> Result<PeerCred> {
    let Stream::Unix(s) = stream else {
        return Err(AuthError::NotUnixSocket.into());
    };
    // libc rather than rustix's `socket_peercred`: rustix (1.1.6) reads the
    // kernel's answer straight into a `UCred` whose pid is a non-zero
    // `Pid`, and the kernel answers pid 0 for a peer outside this process's
    // pid namespace (a client on the host of a containerised server). That
    // is undefined behaviour; measured, it comes back as `Err(os error 0)`.
    // Here pid 0 is just a pid (tests/peercred.rs).
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid ucred and `len` its size, as SO_PEERCRED
    // requires; the kernel writes at most `len` bytes into it, and every
    // bit pattern is a valid ucred (three integers).
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(AuthError::PeerCredentials(Arc::new(io::Error::last_os_error())).into());
    }
    Ok(PeerCred { pid: cred.pid, uid: cred.uid, gid: cred.gid })
}

/// Authenticates Unix-socket peers by the kernel's record of their process
/// (`SO_PEERCRED`): credentials carry pid, uid and gid; optionally only
/// some uids are allowed. TCP peers are refused.
#[derive(Debug, Clone)]
pub struct UnixPeerCred {
    allowed: Option<Vec<u32>>,
}

impl UnixPeerCred {
    /// Allows any peer process, recording its credentials.
    pub fn any() -> Self {
        UnixPeerCred { allowed: None }
    }

    /// Allows only peer processes running as one of `uids`.
    pub fn allow_uids(uids: impl IntoIterator<Item = u32>) -> Self {
        UnixPeerCred { allowed: Some(uids.into_iter().collect()) }
    }
}

impl Authenticator for UnixPeerCred {
    fn authenticate(&self, stream: &mut AuthStream<'_>) -> Result<Credentials> {
        let peer = peer_cred(stream.get_ref())?;
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(&peer.uid) {
                return Err(AuthError::UidNotAllowed {
                    pid: peer.pid,
                    uid: peer.uid,
                    allowed: allowed.clone(),
                }
                .into());
            }
        }
        Ok(Credentials::new("unix-peer-cred").with_peer(peer))
    }

    fn is_instant(&self) -> bool {
        true
    }
}

// ---- shared secret -------------------------------------------------------------

const MAGIC: &[u8] = b"netref-auth/1\n";
const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
const CLIENT_LABEL: &[u8] = b"netref-auth client";
const SERVER_LABEL: &[u8] = b"netref-auth server";
const ACCEPTED: u8 = 0;
const REJECTED: u8 = 1;

/// A secret both sides know, never printed.
#[derive(Clone)]
pub(crate) struct Secret(Arc<[u8]>);

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The server side of a mutual shared-secret challenge-response (see the
/// module docs for the exchange). Works over TCP and Unix sockets; clients
/// answer with [`Builder::shared_secret`](crate::Builder::shared_secret).
///
/// **Over a plain socket it authenticates the peer and nothing more.**
/// Everything after the exchange is plaintext that an on-path attacker can
/// read and change, and a relay that does not know the secret can pass the
/// challenge and answer between a real client and the server, then make
/// calls of its own on the authenticated connection (`core/tests/tls.rs`
/// shows it). Over an untrusted network, use it over TLS (feature `tls`,
/// `Builder::tls`): the connection is then encrypted and
/// the exchange is bound to the TLS session, so the same relay, even one
/// holding a certificate the client trusts, is refused.
///
/// It waits for the client's answer, so it is not [instant](Authenticator::is_instant):
/// [`ThreadedServer`](crate::ThreadedServer) and
/// [`OneShotServer`](crate::OneShotServer) run it on the connection's own
/// thread; the event-loop backends' single-threaded servers refuse it.
#[derive(Clone)]
pub struct SharedSecret {
    secret: Secret,
}

impl SharedSecret {
    /// An authenticator accepting clients that know `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        SharedSecret { secret: Secret::new(secret.into()) }
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl Authenticator for SharedSecret {
    fn authenticate(&self, stream: &mut AuthStream<'_>) -> Result<Credentials> {
        let binding = stream.channel_binding();
        challenge(stream, &self.secret, random_nonce()?, binding)
    }
}

/// The server side of the exchange, with its nonce given (random in use,
/// fixed in the test that pins the bytes).
fn challenge(
    stream: &mut (impl Read + Write),
    secret: &Secret,
    server_nonce: [u8; NONCE_LEN],
    binding: Option<[u8; 32]>,
) -> Result<Credentials> {
    let binding = binding.as_ref().map_or(&[][..], |b| &b[..]);
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&server_nonce);
    stream.write_all(&hello).map_err(|e| io_auth(AuthStep::SendingChallenge, e))?;
    let mut answer = [0u8; NONCE_LEN + MAC_LEN];
    stream.read_exact(&mut answer).map_err(|e| io_auth(AuthStep::ReadingAnswer, e))?;
    let (client_nonce, client_mac) = answer.split_at(NONCE_LEN);
    if mac(secret, CLIENT_LABEL, &server_nonce, client_nonce, binding).verify_slice(client_mac).is_err() {
        let _ = stream.write_all(&[REJECTED]);
        return Err(AuthError::WrongAnswer.into());
    }
    let proof = mac(secret, SERVER_LABEL, client_nonce, &server_nonce, binding).finalize().into_bytes();
    let mut reply = vec![ACCEPTED];
    reply.extend_from_slice(&proof);
    stream.write_all(&reply).map_err(|e| io_auth(AuthStep::SendingProof, e))?;
    Ok(Credentials::new("shared-secret"))
}

/// The client side of the exchange: answers the server's challenge and
/// checks the server's proof.
pub(crate) fn answer_challenge(stream: &mut AuthStream<'_>, secret: &Secret) -> Result<Credentials> {
    let binding = stream.channel_binding();
    answer(stream, secret, random_nonce()?, binding)
}

/// The client side with its nonce given (see [`challenge`]).
fn answer(
    stream: &mut (impl Read + Write),
    secret: &Secret,
    client_nonce: [u8; NONCE_LEN],
    binding: Option<[u8; 32]>,
) -> Result<Credentials> {
    let binding = binding.as_ref().map_or(&[][..], |b| &b[..]);
    let mut hello = [0u8; MAGIC.len() + NONCE_LEN];
    stream.read_exact(&mut hello).map_err(|e| io_auth(AuthStep::ReadingChallenge, e))?;
    if &hello[..MAGIC.len()] != MAGIC {
        return Err(AuthError::NoChallenge.into());
    }
    let server_nonce = &hello[MAGIC.len()..];
    let client_mac = mac(secret, CLIENT_LABEL, server_nonce, &client_nonce, binding).finalize().into_bytes();
    let mut answer = client_nonce.to_vec();
    answer.extend_from_slice(&client_mac);
    stream.write_all(&answer).map_err(|e| io_auth(AuthStep::SendingAnswer, e))?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => AuthError::ClosedAfterAnswer.into(),
        _ => io_auth(AuthStep::ReadingVerdict, e),
    })?;
    match status[0] {
        ACCEPTED => {}
        REJECTED => {
            return Err(AuthError::Rejected.into());
        }
        other => return Err(AuthError::UnknownVerdict(other).into()),
    }
    let mut proof = [0u8; MAC_LEN];
    stream.read_exact(&mut proof).map_err(|e| io_auth(AuthStep::ReadingProof, e))?;
    if mac(secret, SERVER_LABEL, &client_nonce, server_nonce, binding).verify_slice(&proof).is_err() {
        return Err(AuthError::ServerUnproven.into());
    }
    Ok(Credentials::new("shared-secret"))
}

/// HMAC-SHA256 under `secret` over `label || first || second || binding`,
/// the one shape of MAC in the exchange: `finalize` it to send it, or check
/// a received one with `verify_slice` (constant time; a tag of the wrong
/// length is refused too). `binding` is the channel's (see
/// [`AuthStream::channel_binding`]; empty over a plain socket), so that
/// over TLS an answer proves the secret *on this TLS session* only.
fn mac(secret: &Secret, label: &[u8], first: &[u8], second: &[u8], binding: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length (a long one is hashed first), so this
    // cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC accepts keys of any length");
    mac.update(label);
    mac.update(first);
    mac.update(second);
    mac.update(binding);
    mac
}

fn io_auth(step: AuthStep, e: io::Error) -> crate::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => AuthError::TimedOut(step).into(),
        io::ErrorKind::UnexpectedEof => AuthError::PeerClosed(step).into(),
        _ => AuthError::Io(step, Arc::new(e)).into(),
    }
}

/// A fresh nonce from the operating system (the `getrandom` system call on
/// Linux): no file is opened, so it works when the process is out of file
/// descriptors; a failure is an error of this handshake, not a panic.
fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| AuthError::NoRandomness(Arc::new(e.into())))?;
    Ok(nonce)
}
