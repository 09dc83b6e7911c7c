//! `connect_subproc` of this test binary itself: the parent starts it again
//! as a child serving a worker over its stdin (`connect_stdpipes`), or over
//! its stdin and stdout as two pipes (`connect_pipes` in the parent). A
//! test with a main of its own (`harness = false`), so that the child does
//! nothing but serve.

use std::process::{Command, Stdio};

use netref::{Builder, CloseReason, Error, ObjectBuilder, RemoteObject, Service};

/// What the child does, named by this variable.
const ROLE: &str = "NETREF_SUBPROC_ROLE";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("worker") => return worker(),
        Ok("stdin-not-a-socket") => return stdin_not_a_socket(),
        _ => {}
    }
    let tests: [(&str, fn()); 4] = [
        ("calls_and_callbacks_over_a_child", calls_and_callbacks_over_a_child),
        ("the_childs_exit_ends_the_connection", the_childs_exit_ends_the_connection),
        ("a_child_over_two_pipes", a_child_over_two_pipes),
        ("stdpipes_refuses_a_stdin_that_is_not_a_socket", stdpipes_refuses_a_stdin_that_is_not_a_socket),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
}

/// The child: a worker served over its stdio until the parent closes.
fn worker() {
    let root = ObjectBuilder::new("Worker")
        .method("add", |a: i64, b: i64| a + b)
        .try_method("call_me", |cb: RemoteObject, x: i64| cb.call::<i64>((x,)))
        // Stdout is the child's own, not the connection's (or, over two
        // pipes, it writes to stderr).
        .method("say", || println!("worker: a stray println"))
        .method("quit", || -> () { std::process::exit(3) })
        .build();
    let conn =
        Builder::default().service(Service::object(root)).connect_stdpipes().expect("stdin is the socket");
    let _ = conn.serve_all();
}

fn stdin_not_a_socket() {
    match Builder::default().connect_stdpipes() {
        Ok(_) => println!("connected"),
        Err(e) => println!("{e}"),
    }
}

fn child(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("this test's binary"));
    command.env(ROLE, role).stdout(Stdio::null());
    command
}

fn calls_and_callbacks_over_a_child() {
    let (conn, mut child) = Builder::default().connect_subproc(&mut child("worker")).unwrap();
    let root = conn.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);
    root.call_method::<()>("say", ()).unwrap();
    assert_eq!(
        root.call_method::<i64>("add", (2, 2)).unwrap(),
        4,
        "the println did not reach the connection"
    );
    let tenfold = netref::callback(|x: i64| x * 10);
    assert_eq!(root.call_method::<i64>("call_me", (tenfold, 4)).unwrap(), 40);
    conn.close();
    assert!(child.wait().unwrap().success(), "the child ends when its connection does");
}

fn the_childs_exit_ends_the_connection() {
    let (conn, mut child) = Builder::default().connect_subproc(&mut child("worker")).unwrap();
    let root = conn.root().unwrap();
    let e = root.call_method::<()>("quit", ()).unwrap_err();
    assert!(matches!(e, Error::Closed(CloseReason::ByPeer)), "{e}");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert!(conn.is_closed());
    assert!(matches!(root.call_method::<i64>("add", (1, 1)), Err(Error::Closed(_))));
}

/// RPyC's way: the child's stdin and stdout are two pipes. Its stray
/// `println!` goes to its stderr, and its exit ends the connection.
fn a_child_over_two_pipes() {
    let mut command = child("worker");
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let (to_child, from_child) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let conn = Builder::default().connect_pipes(from_child, to_child).unwrap();
    let root = conn.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap(), 3);
    root.call_method::<()>("say", ()).unwrap();
    let tenfold = netref::callback(|x: i64| x * 10);
    assert_eq!(root.call_method::<i64>("call_me", (tenfold, 4)).unwrap(), 40);
    let e = root.call_method::<()>("quit", ()).unwrap_err();
    assert!(matches!(e, Error::Closed(CloseReason::ByPeer)), "{e}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("worker: a stray println"), "the println went to stderr: {said:?}");
}

fn stdpipes_refuses_a_stdin_that_is_not_a_socket() {
    let out = child("stdin-not-a-socket").stdin(Stdio::null()).stdout(Stdio::piped()).output().unwrap();
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("connect_stdpipes needs stdin to be a socket"), "{said}");
}
