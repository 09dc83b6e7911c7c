//! `SO_PEERCRED` across pid namespaces: a server in its own pid namespace
//! (`unshare --pid`) sees a client on the host as pid 0, the kernel's
//! answer for a process it cannot name there. `peer_cred` must report that
//! as pid 0, with the real uid and gid, and `UnixPeerCred` must still judge
//! the peer by its uid. (rustix's `socket_peercred` is undefined behaviour
//! here: its pid type is non-zero; see `netref::auth::peer_cred`.)
//!
//! The server is this test binary re-run under `unshare --pid --fork` with
//! `NETREF_PEERCRED_CHILD` set to the socket path, running the ignored test
//! `peercred_child_entry`; it reports through lines on stdout. Where
//! `unshare` cannot make a pid namespace (not root, no util-linux), the
//! test says so and passes.

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use netref::auth::{peer_cred, AuthStream, Authenticator, UnixPeerCred};
use netref::transport::Stream;

const CHILD_ENV: &str = "NETREF_PEERCRED_CHILD";
const PATIENCE: Duration = Duration::from_secs(10);

/// The server side, in the new pid namespace (ignored in normal runs).
#[test]
#[ignore = "the child-process side of the peercred test; run by it"]
fn peercred_child_entry() {
    let path = std::env::var(CHILD_ENV).expect("run by the peercred test only");
    let listener = UnixListener::bind(&path).unwrap();
    println!("READY");
    let (sock, _) = listener.accept().unwrap();
    let mut stream = Stream::Unix(sock);
    let peer = peer_cred(&stream).unwrap();
    let uid = rustix::process::getuid().as_raw();
    let judged = UnixPeerCred::allow_uids([uid])
        .authenticate(&mut AuthStream::new(&mut stream, PATIENCE))
        .map(|c| c.peer);
    println!("PEER {} {} {} {:?}", peer.pid, peer.uid, peer.gid, judged.ok().flatten());
}

#[test]
fn a_peer_outside_the_pid_namespace_is_pid_0_with_its_uid_and_gid() {
    let path = std::env::temp_dir().join(format!("netref-peercred-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let spawned = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(std::env::current_exe().unwrap())
        .args(["peercred_child_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("skipped: no `unshare` to make a pid namespace with");
        return;
    };
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // libtest may print "test peercred_child_entry ... " on the same line.
    let next = |what: &str, tag: &str| loop {
        match lines.recv_timeout(PATIENCE) {
            Ok(line) if line.contains(tag) => {
                return Some(line[line.find(tag).unwrap() + tag.len()..].to_string())
            }
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(e) => panic!("the child never printed {what}: {e}"),
        }
    };
    if next("that it listens", "READY").is_none() {
        let status = child.wait().unwrap();
        eprintln!("skipped: `unshare --pid --fork` could not run the server ({status})");
        return;
    }
    let _client = UnixStream::connect(&path).unwrap();
    let line = next("the peer it saw", "PEER ").expect("the child died before reporting its peer");
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);

    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[..3], ["0".to_string(), uid.to_string(), gid.to_string()], "{line}");
    let judged = fields[3..].join(" ");
    assert_eq!(judged, format!("Some(PeerCred {{ pid: 0, uid: {uid}, gid: {gid} }})"), "{line}");
}
