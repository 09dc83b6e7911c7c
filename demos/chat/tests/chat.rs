//! Runs `chat server` and several `chat client`s as separate processes and
//! follows a conversation: joins, messages broadcast to everyone, a client
//! that leaves cleanly and one that is killed, both dropped from the room.

use demo_testkit::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_chat");

fn client(addr: &str, name: &str) -> Proc {
    Proc::spawn(name, BIN, &["client", "--addr", addr, "--name", name])
}

#[test]
fn messages_reach_every_client_and_leavers_are_dropped() {
    let mut server = Proc::spawn("server", BIN, &["server", "--addr", "127.0.0.1:0"]);
    let addr = server.listening_addr();

    let mut alice = client(&addr, "alice");
    alice.expect_exact("joined as alice; nobody else is here");
    server.expect_exact("alice joined; 1 in the room");

    let mut bob = client(&addr, "bob");
    bob.expect_exact("joined as bob; here: alice");
    alice.expect_exact("* bob joined");
    server.expect_exact("bob joined; 2 in the room");

    let mut carol = client(&addr, "carol");
    carol.expect_exact("joined as carol; here: alice, bob");
    alice.expect_exact("* carol joined");
    bob.expect_exact("* carol joined");
    server.expect_exact("carol joined; 3 in the room");

    // Everyone hears every message, the sender included (its receipt).
    alice.send("hello");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect_exact("<alice> hello");
    }
    bob.send("hi alice");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect_exact("<bob> hi alice");
    }

    // Carol leaves cleanly (end of input): the others are told.
    carol.close_stdin();
    carol.expect_exact("bye");
    carol.finish_ok();
    server.expect_exact("carol left (disconnected); 2 in the room");
    alice.expect_exact("* carol left");
    bob.expect_exact("* carol left");

    // Dave is killed outright: the server still notices and drops him.
    let mut dave = client(&addr, "dave");
    dave.expect_exact("joined as dave; here: alice, bob");
    alice.expect_exact("* dave joined");
    bob.expect_exact("* dave joined");
    server.expect_exact("dave joined; 3 in the room");
    dave.kill();
    server.expect_exact("dave left (disconnected); 2 in the room");
    alice.expect_exact("* dave left");
    bob.expect_exact("* dave left");

    // The room still works for those who stayed.
    alice.send("still here?");
    alice.expect_exact("<alice> still here?");
    bob.expect_exact("<alice> still here?");

    alice.close_stdin();
    alice.expect_exact("bye");
    alice.finish_ok();
    server.expect_exact("alice left (disconnected); 1 in the room");
    bob.expect_exact("* alice left");
    bob.close_stdin();
    bob.expect_exact("bye");
    bob.finish_ok();
    server.expect_exact("bob left (disconnected); 0 in the room");
}

/// The room over TLS (`make-certs`, then `--tls DIR` on both sides): the
/// conversation goes through, and a plaintext client is refused.
#[test]
fn the_room_over_tls() {
    let dir = std::env::temp_dir().join(format!("chat-tls-test-{}", std::process::id()));
    let dir_arg = dir.to_str().unwrap();
    let mut certs = Proc::spawn("make-certs", BIN, &["make-certs", dir_arg]);
    certs.expect("wrote ca.pem, server.pem and server.key");
    certs.finish_ok();

    let mut server = Proc::spawn("server", BIN, &["server", "--addr", "127.0.0.1:0", "--tls", dir_arg]);
    let line = server.expect("listening on ");
    assert!(line.ends_with(" (TLS)"), "{line}");
    let addr = line.trim_end_matches(" (TLS)").rsplit(' ').next().unwrap().to_string();
    let tls_client =
        |name: &str| Proc::spawn(name, BIN, &["client", "--addr", &addr, "--tls", dir_arg, "--name", name]);

    let mut alice = tls_client("alice");
    alice.expect_exact("joined as alice; nobody else is here");
    let mut bob = tls_client("bob");
    bob.expect_exact("joined as bob; here: alice");
    alice.expect_exact("* bob joined");
    bob.send("hello over TLS");
    for c in [&mut alice, &mut bob] {
        c.expect_exact("<bob> hello over TLS");
    }

    // A client without --tls reaches nobody.
    let plain =
        std::process::Command::new(BIN).args(["client", "--addr", &addr, "--name", "eve"]).output().unwrap();
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");
    assert!(String::from_utf8_lossy(&plain.stdout).is_empty(), "{plain:?}");

    for c in [&mut alice, &mut bob] {
        c.close_stdin();
        c.expect("bye");
        c.finish_ok();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
