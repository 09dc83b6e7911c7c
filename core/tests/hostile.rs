//! Hostile peers on the in-memory `Pair`: what a peer can make this side
//! hold or do. (The inbox's O(1) cancel is checked beside it, in
//! `connection/inbox.rs`.)

use netref::testing::Pair;
use netref::{ObjectBuilder, RemoteObject, Service};

fn calculator() -> Service {
    Service::object(ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build())
}

/// Reading a method as an attribute again and again returns one bound
/// method: the lookups cannot fill the export table, and the proxies the
/// client holds are one proxy.
#[test]
fn repeated_method_lookups_export_one_object() {
    let pair = Pair::new(Service::none(), calculator());
    let root = pair.client.root().unwrap();
    let held: Vec<RemoteObject> = (0..1_000).map(|_| root.getattr("add").unwrap()).collect();
    assert_eq!(pair.server.exported_count(), 2, "the root and its one bound method");
    assert!(held.iter().all(|m| m.same_as(&held[0])));
    assert_eq!(held[0].call::<i64>((40, 2)).unwrap(), 42);
    drop(held);
    pair.settle();
    assert_eq!(pair.server.exported_count(), 1, "the bound method is released with its last proxy");
    // Read again after its release, it is exported again under a new id.
    let again: RemoteObject = root.getattr("add").unwrap();
    assert_eq!(again.call::<i64>((1, 2)).unwrap(), 3);
}

/// What a peer costs that announces the largest frame allowed and then
/// sends a few bytes: 100 such peers (half announcing a plain frame, half a
/// frame holding a 100 MiB byte string) under a 2 GiB address-space limit.
/// Reserving the announced length aborted the process after about a
/// dozen; now a plain frame reserves nothing until its bytes come, and a
/// large string reserves a first window of 4 MiB. The limit is set in a
/// child process (this test binary again), so the other tests keep theirs.
#[test]
fn forged_lengths_under_an_address_space_limit_do_not_abort() {
    in_a_child("forged_lengths_under_an_address_space_limit_do_not_abort", forged_lengths_in_this_process);
}

/// Runs `body` in a child process (this test binary again, running only
/// the test `name`), so that the limits it sets stay out of the other
/// tests; fails when the child does not end well.
fn in_a_child(name: &str, body: fn()) {
    const CHILD: &str = "NETREF_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return body();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child died ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn forged_lengths_in_this_process() {
    use netref::protocol::{Input, Protocol};
    use netref::Config;
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = 2 << 30;
    let old = getrlimit(Resource::As);
    setrlimit(Resource::As, Rlimit { current: Some(limit), maximum: old.maximum }).unwrap();
    let now = std::time::Instant::now();
    let max = Config::default().max_frame_len;
    let mut hello = Vec::new();
    Protocol::new(Config::default(), now).write_to(&mut hello).unwrap();
    let mut peers = Vec::new();
    for i in 0..100 {
        let mut p = Protocol::new(Config::default(), now);
        p.handle_input(now, Input::Receive(&hello)).unwrap();
        let forged = if i % 2 == 0 {
            // A plain frame: its header, then a few bytes of its body.
            let mut f = (max as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&[0x84, 0x01, 0x07, 0x05, 0x80]);
            f
        } else {
            // A ping whose payload is a byte string of 100 MiB.
            let len: u32 = 100 << 20;
            let mut body = vec![0x84, 0x01, 0x07, 0x05, 0x5a];
            body.extend_from_slice(&len.to_be_bytes());
            let mut f = ((body.len() as u32) + len).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f.extend_from_slice(&[7; 1000]);
            f
        };
        p.handle_input(now, Input::Receive(&forged)).expect("the peer may announce this much");
        assert!(!p.is_closed());
        peers.push(p);
    }
}

/// A frame of 64 MiB holding 64 million one-byte integers: decoded whole,
/// 2 GiB of items (32 bytes each) and more as values, which aborted a
/// process with a 2 GiB address-space limit. The item budget
/// (`max_frame_items`, counted on the bytes first) ends that one
/// connection with an error naming the limit, and the process goes on. In
/// a child process, as above.
#[test]
fn a_frame_of_small_integers_under_an_address_space_limit_does_not_abort() {
    in_a_child(
        "a_frame_of_small_integers_under_an_address_space_limit_does_not_abort",
        small_integers_in_this_process,
    );
}

/// A frame holding a ping (`[1, 7, 5, payload]`) whose payload is an
/// array of `count` ones: one byte on the wire per item.
fn small_integers(count: u32) -> Vec<u8> {
    let mut frame = Vec::with_capacity(count as usize + 13);
    frame.extend_from_slice(&(count + 9).to_be_bytes());
    frame.extend_from_slice(&[0x84, 0x01, 0x07, 0x05, 0x9a]);
    frame.extend_from_slice(&count.to_be_bytes());
    frame.resize(frame.len() + count as usize, 0x01);
    frame
}

fn small_integers_in_this_process() {
    use netref::error::LimitError;
    use netref::protocol::{Input, Protocol};
    use netref::{CloseReason, Config};
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let frame = small_integers(64 << 20);
    let limit = 2 << 30;
    let old = getrlimit(Resource::As);
    setrlimit(Resource::As, Rlimit { current: Some(limit), maximum: old.maximum }).unwrap();
    let now = std::time::Instant::now();
    let mut hello = Vec::new();
    Protocol::new(Config::default(), now).write_to(&mut hello).unwrap();
    let mut p = Protocol::new(Config::default(), now);
    p.handle_input(now, Input::Receive(&hello)).unwrap();
    assert!(frame.len() <= Config::default().max_frame_len, "within the frame limit");
    let err = p.handle_input(now, Input::Receive(&frame)).expect_err("over the item budget");
    let max = Config::default().max_frame_items;
    match p.close_reason() {
        Some(CloseReason::Limit(LimitError::TooManyItems { max: m, .. })) => assert_eq!(*m, max),
        other => panic!("expected TooManyItems, got {other:?} ({err})"),
    }
    assert!(err.to_string().contains("max_frame_items (1000000)"), "{err}");
    // The process goes on: another connection is served.
    let mut q = Protocol::new(Config::default(), now);
    q.handle_input(now, Input::Receive(&hello)).unwrap();
    assert!(!q.is_closed());
}

/// A frame of small integers arriving in pieces is refused as soon as its
/// first pieces hold more items than `max_frame_items`, not once all of it
/// has come: 16 MiB of them, fed 64 KiB at a time, end the connection
/// within the first 1 MiB and a piece (the whole frame used to be read,
/// then counted in one go: 13 ms on a loop server's thread).
#[test]
fn a_frame_of_small_integers_is_refused_while_it_arrives() {
    use netref::error::LimitError;
    use netref::protocol::{Input, Protocol};
    use netref::{CloseReason, Config};
    let frame = small_integers(16 << 20);
    let now = std::time::Instant::now();
    let mut hello = Vec::new();
    Protocol::new(Config::default(), now).write_to(&mut hello).unwrap();
    let mut p = Protocol::new(Config::default(), now);
    p.handle_input(now, Input::Receive(&hello)).unwrap();
    let piece = 64 << 10;
    let fed = frame
        .chunks(piece)
        .position(|chunk| p.handle_input(now, Input::Receive(chunk)).is_err())
        .map(|i| (i + 1) * piece)
        .expect("refused before the end");
    let max = Config::default().max_frame_items;
    assert!(fed <= max + piece + 16, "refused after {fed} bytes");
    assert!(matches!(p.close_reason(), Some(CloseReason::Limit(LimitError::TooManyItems { .. }))));
}
