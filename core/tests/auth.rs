//! Authentication before the handshake: Unix peer credentials and the
//! shared-secret challenge-response, over real sockets, with a sniffing
//! relay to show the secret never crosses the wire.

use netref_logcap as logcap;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use netref::auth::{AuthStream, Credentials, SharedSecret, UnixPeerCred};
use netref::{
    AuthError, Authenticator, Builder, Connection, Error, ObjectBuilder, Service, Stream, ThreadedServer,
};

const PATIENCE: Duration = Duration::from_secs(10);

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// A service that reports the credentials it saw, from the root factory and
/// from a method (through a `WeakConnection`).
fn whoami_service() -> Service {
    Service::new(|conn: &Connection| {
        let at_connect = conn.credentials().cloned();
        let weak = conn.downgrade();
        ObjectBuilder::new("WhoAmI")
            .method("at_connect", move || describe(at_connect.as_ref()))
            .method("in_method", move || describe(weak.upgrade().as_ref().and_then(|c| c.credentials())))
            .method("add", |a: i64, b: i64| a + b)
            .method("echo", |s: String| s)
            .build()
    })
}

fn describe(c: Option<&Credentials>) -> (String, Option<(i32, u32, u32)>) {
    match c {
        Some(c) => (c.method.clone(), c.peer.map(|p| (p.pid, p.uid, p.gid))),
        None => ("none".into(), None),
    }
}

struct Running {
    server: ThreadedServer,
    thread: Option<thread::JoinHandle<()>>,
}

impl Running {
    fn start(server: ThreadedServer) -> Running {
        let thread = Some(server.spawn());
        Running { server, thread }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.close();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn sock_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netref-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn unix_peer_cred_allowed_uid_passes_and_the_service_sees_credentials() {
    let path = sock_path("allowed.sock");
    let server = ThreadedServer::bind_unix(&path, Builder::default().service(whoami_service()))
        .unwrap()
        .authenticator(UnixPeerCred::allow_uids([uid()]));
    let _running = Running::start(server);
    let conn = Builder::default().connect_unix(&path).unwrap();
    let root = conn.root().unwrap();
    let gid = rustix::process::getgid().as_raw();
    let me = Some((std::process::id() as i32, uid(), gid));
    let seen: (String, Option<(i32, u32, u32)>) = root.call_method("at_connect", ()).unwrap();
    assert_eq!(seen, ("unix-peer-cred".to_string(), me));
    let seen: (String, Option<(i32, u32, u32)>) = root.call_method("in_method", ()).unwrap();
    assert_eq!(seen, ("unix-peer-cred".to_string(), me));
    assert_eq!(conn.credentials(), None, "the client authenticated nobody");
}

#[test]
fn unix_peer_cred_disallowed_uid_is_refused_and_logged() {
    logcap::install();
    let path = sock_path("refused.sock");
    let other = uid().wrapping_add(4242);
    let server = ThreadedServer::bind_unix(&path, Builder::default().service(whoami_service()))
        .unwrap()
        .authenticator(UnixPeerCred::allow_uids([other]));
    let _running = Running::start(server);
    let conn = Builder::default().connect_unix(&path).unwrap();
    let err = conn.root().unwrap_err();
    assert!(err.is_closed(), "the server closed the socket: {err}");
    let line =
        logcap::wait_for(&["refused", &format!("uid {}", uid()), "not among the allowed uids"], PATIENCE);
    assert!(line.starts_with("WARN"), "{line}");
}

#[test]
fn unix_peer_cred_refuses_tcp_peers_with_a_clear_reason() {
    logcap::install();
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(whoami_service()))
        .unwrap()
        .authenticator(UnixPeerCred::any());
    let addr = server.local_addr().unwrap();
    let _running = Running::start(server);
    let conn = Builder::default().connect_tcp(addr).unwrap();
    assert!(conn.root().unwrap_err().is_closed());
    logcap::wait_for(&["refused", "SO_PEERCRED", "need a Unix socket"], PATIENCE);
}

const SECRET: &[u8] = b"netref-test-secret: 7f3a9c2e correct horse battery staple";

fn secret_server() -> (Running, SocketAddr) {
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(whoami_service()))
        .unwrap()
        .authenticator(SharedSecret::new(SECRET.to_vec()))
        .auth_timeout(Duration::from_secs(5));
    let addr = server.local_addr().unwrap();
    (Running::start(server), addr)
}

#[test]
fn shared_secret_right_secret_passes_both_ways() {
    let (_running, addr) = secret_server();
    let conn = Builder::default().shared_secret(SECRET.to_vec()).connect_tcp(addr).unwrap();
    let root = conn.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (2, 3)).unwrap(), 5);
    let seen: (String, Option<(i32, u32, u32)>) = root.call_method("in_method", ()).unwrap();
    assert_eq!(seen, ("shared-secret".to_string(), None));
    // The server proved it knows the secret too.
    assert_eq!(conn.credentials().map(|c| c.method.as_str()), Some("shared-secret"));
}

#[test]
fn shared_secret_wrong_secret_fails_clearly_on_both_sides() {
    logcap::install();
    let (_running, addr) = secret_server();
    let err = Builder::default().shared_secret(b"not the secret".to_vec()).connect_tcp(addr).unwrap_err();
    match &err {
        Error::Auth(AuthError::Rejected) => {
            assert!(err.to_string().contains("rejected our answer: the shared secrets differ"), "{err}")
        }
        other => panic!("expected an authentication error, got {other}"),
    }
    assert!(err.to_string().starts_with("authentication failed:"), "{err}");
    logcap::wait_for(&["refused", "does not know the shared secret"], PATIENCE);
    // The server keeps serving clients that know it.
    let conn = Builder::default().shared_secret(SECRET.to_vec()).connect_tcp(addr).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (1, 1)).unwrap(), 2);
}

#[test]
fn client_without_the_secret_fails_and_the_server_times_it_out() {
    logcap::install();
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(whoami_service()))
        .unwrap()
        .authenticator(SharedSecret::new(SECRET.to_vec()))
        .auth_timeout(Duration::from_millis(200));
    let addr = server.local_addr().unwrap();
    let _running = Running::start(server);
    let conn = Builder::default().connect_tcp(addr).unwrap();
    let err = conn.root().expect_err("an unauthenticated client gets nothing");
    assert!(err.to_string().contains("the peer asks for authentication first"), "{err}");
    logcap::wait_for(
        &["refused", "the peer closed the connection while reading the client's answer"],
        PATIENCE,
    );
    // A client that says nothing at all is dropped after auth_timeout.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    logcap::wait_for(&["refused", "timed out reading the client's answer (auth_timeout)"], PATIENCE);
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).expect("the server closed the silent client's socket");
    assert_eq!(rest.len(), b"netref-auth/1\n".len() + 32, "only the challenge was sent");
}

/// `auth_timeout` bounds the whole exchange, not each read: a client that
/// answers the challenge one byte at a time, each byte well inside the
/// timeout, is refused once the exchange as a whole has taken that long.
/// (The pacing is the attack being simulated; the test waits on the
/// server's log line and on its socket closing.)
#[test]
fn a_client_answering_a_byte_at_a_time_is_refused_at_the_exchange_deadline() {
    logcap::install();
    let timeout = Duration::from_millis(300);
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(whoami_service()))
        .unwrap()
        .authenticator(SharedSecret::new(SECRET.to_vec()))
        .auth_timeout(timeout);
    let addr = server.local_addr().unwrap();
    let _running = Running::start(server);
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    let me = slow.local_addr().unwrap().to_string();
    let refusal = ["refused", &me, "timed out reading the client's answer (auth_timeout)"];
    let mut challenge = [0u8; 14 + 32];
    slow.read_exact(&mut challenge).unwrap();
    // The answer is 64 bytes; at one byte every 30 ms it would take ~2 s,
    // each gap a tenth of the timeout.
    let started = std::time::Instant::now();
    let mut sent = 0;
    for byte in [0u8; 64] {
        if slow.write_all(&[byte]).is_err() {
            break;
        }
        sent += 1;
        if logcap::logged(&refusal) {
            break;
        }
        thread::sleep(timeout / 10);
    }
    logcap::wait_for(&refusal, PATIENCE);
    assert!(sent < 64, "the server waited for the whole dribbled answer ({:?})", started.elapsed());
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no verdict for a client that never finished: {rest:?}");
}

#[test]
fn client_detects_a_server_that_does_not_know_the_secret() {
    // A fake server: sends a challenge, accepts any answer, "proves" itself
    // with garbage.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut challenge = b"netref-auth/1\n".to_vec();
        challenge.extend_from_slice(&[7u8; 32]);
        s.write_all(&challenge).unwrap();
        let mut answer = [0u8; 64];
        s.read_exact(&mut answer).unwrap();
        let mut verdict = vec![0u8];
        verdict.extend_from_slice(&[9u8; 32]);
        s.write_all(&verdict).unwrap();
        answer
    });
    let err = Builder::default().shared_secret(SECRET.to_vec()).connect_tcp(addr).unwrap_err();
    assert!(matches!(&err, Error::Auth(AuthError::ServerUnproven)), "{err}");
    assert!(err.to_string().contains("failed to prove"), "{err}");
    let answer = fake.join().unwrap();
    assert!(!contains(&answer, SECRET));
}

/// Copies bytes both ways between a client and `upstream`, recording them.
fn sniffing_relay(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let relay = thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(upstream).unwrap();
        let pump = |mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>| {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            log.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            })
        };
        let a = pump(client.try_clone().unwrap(), server.try_clone().unwrap(), l.clone());
        let b = pump(server, client, l);
        a.join().unwrap();
        b.join().unwrap();
    });
    (addr, log, relay)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_sniffed_transcript_never_contains_the_secret_and_cannot_be_replayed() {
    let (_running, addr) = secret_server();
    let (relay_addr, transcript, relay) = sniffing_relay(addr);
    let conn = Builder::default().shared_secret(SECRET.to_vec()).connect_tcp(relay_addr).unwrap();
    let root = conn.root().unwrap();
    assert_eq!(
        root.call_method::<String>("echo", ("hello through the relay",)).unwrap(),
        "hello through the relay"
    );
    conn.close();
    drop(root);
    relay.join().unwrap();
    let transcript = transcript.lock().unwrap().clone();
    assert!(contains(&transcript, b"netref-auth/1\n"), "the relay saw the exchange");
    assert!(contains(&transcript, b"hello through the relay"), "the relay saw the calls");
    assert!(!contains(&transcript, SECRET), "the secret crossed the wire");
    assert!(!contains(&transcript, &SECRET[..16]), "part of the secret crossed the wire");

    // Replaying the client's recorded answer to a fresh challenge fails.
    let challenge_len = b"netref-auth/1\n".len() + 32;
    let recorded_answer = transcript[challenge_len..challenge_len + 64].to_vec();
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut challenge = vec![0u8; challenge_len];
    raw.read_exact(&mut challenge).unwrap();
    raw.write_all(&recorded_answer).unwrap();
    let mut verdict = [0u8; 1];
    raw.read_exact(&mut verdict).unwrap();
    assert_eq!(verdict[0], 1, "a replayed answer is rejected");
}

// ---- out of file descriptors ---------------------------------------------------------

const CHILD_ENV: &str = "NETREF_AUTH_TEST_CHILD";
const CHILD_DONE: &str = "CHILD: challenge sent with no descriptor free";

/// A server out of file descriptors still challenges a client it has
/// accepted: the nonce comes from a system call, not from a file opened per
/// handshake (which failed with EMFILE). The limit is per process, so the
/// check runs in a child (`out_of_descriptors_child`).
#[test]
fn a_challenge_needs_no_file_descriptor() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["out_of_descriptors_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(CHILD_DONE), "the child did not run the check:\n{stdout}\n{stderr}");
}

#[test]
#[ignore = "run in a child process by a_challenge_needs_no_file_descriptor"]
fn out_of_descriptors_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid rlimit struct for the duration of the calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = 0;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    let no_fd = std::fs::File::open("/dev/null").expect_err("no descriptor is free");
    assert_eq!(no_fd.raw_os_error(), Some(libc::EMFILE), "{no_fd}");
    let server = thread::spawn(move || {
        let mut stream = Stream::Unix(ours);
        SharedSecret::new(SECRET.to_vec()).authenticate(&mut AuthStream::new(&mut stream, PATIENCE))
    });
    let mut challenge = [0u8; 14 + 32];
    theirs.read_exact(&mut challenge).expect("the server sent its challenge");
    assert!(challenge.starts_with(b"netref-auth/1\n"));
    drop(theirs);
    let err = server.join().unwrap().unwrap_err();
    assert!(matches!(&err, Error::Auth(AuthError::PeerClosed(_))), "{err}");
    println!("{CHILD_DONE}");
}
