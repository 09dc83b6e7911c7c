//! A connection to a child process (`connect_subproc`) on the loop: the
//! child is this test binary again, running only [`subprocess_worker`].

use std::process::{Command, Stdio};
use std::thread;

use netref::{Builder, CloseReason, ObjectBuilder, RemoteObject, Service};

use crate::{run_until, Backend, TestLoop};

/// Set in the child [`subprocess_on_the_loop`] starts.
const ROLE: &str = "NETREF_CONFORMANCE_SUBPROCESS_WORKER";

/// The child's entry point, not a check: in the child that
/// [`subprocess_on_the_loop`] starts (libtest running only this test), it
/// serves a worker over stdin until the parent lets go; anywhere else it
/// returns at once.
pub fn subprocess_worker<B: Backend>() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    let root = ObjectBuilder::new("Worker")
        .method("add", |a: i64, b: i64| a + b)
        .try_method("call_me", |cb: RemoteObject, x: i64| cb.call::<i64>((x,)))
        .method("quit", || -> () { std::process::exit(3) })
        .build();
    let conn =
        Builder::default().service(Service::object(root)).connect_stdpipes().expect("stdin is the socket");
    let _ = conn.serve_all();
}

/// A child process's connection on the loop: its replies and its calls of
/// our callback arrive on the loop's thread, and its exit ends the
/// connection, which the backend lets go of.
pub fn subprocess_on_the_loop<B: Backend>() {
    let mut worker = Command::new(std::env::current_exe().expect("this test's binary"));
    worker.args(["--exact", "subprocess_worker", "--test-threads=1"]).env(ROLE, "1").stdout(Stdio::null());
    let (conn, mut child) = Builder::default().connect_subproc(&mut worker).unwrap();
    let mut lp = B::new_loop();
    let key = lp.attach(&conn);
    let root = conn.root().unwrap();
    let me = thread::current().id();

    let sum = netref::async_(&root).call_method("add", (40, 2));
    let (tenfold, called_on) = crate::tenfold_recording_its_thread();
    let back = netref::async_(&root).call_method("call_me", (tenfold, 4));
    run_until(&mut lp, "the child's replies", |_| sum.ready() && back.ready());
    assert_eq!(sum.value_as::<i64>().unwrap(), 42);
    assert_eq!(back.value_as::<i64>().unwrap(), 40);
    assert_eq!(called_on.get(), Some(me), "the child's call ran on the loop's thread");

    let bye = netref::async_(&root).call_method("quit", ());
    run_until(&mut lp, "the child's exit to end the connection", |lp| !lp.is_attached(key));
    assert!(matches!(conn.close_reason(), Some(CloseReason::ByPeer)), "{:?}", conn.close_reason());
    assert!(bye.error());
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

/// A connection over two pipes (`connect_pipes`) on the loop, its peer
/// served by a thread of this process: calls, a callback, and a megabyte
/// each way, more than a pipe holds, so writes wait for the loop to see
/// the pipe writable; then the loop sleeps. Closing it ends the peer's
/// side too.
pub fn pipes_on_the_loop<B: Backend>() {
    let (from_peer, to_us) = std::io::pipe().unwrap();
    let (from_us, to_peer) = std::io::pipe().unwrap();
    let root = ObjectBuilder::new("Worker")
        .method("echo", |v: netref::Value| v)
        .try_method("call_me", |cb: RemoteObject, x: i64| cb.call::<i64>((x,)))
        .build();
    let peer = Builder::default().service(Service::object(root)).connect_pipes(from_us, to_us).unwrap();
    let serving = thread::spawn(move || peer.serve_all());
    let conn = Builder::default().connect_pipes(from_peer, to_peer).unwrap();
    let mut lp = B::new_loop();
    let key = crate::callback_and_megabyte_on_the_loop(&mut lp, &conn, 40);
    // Both pipes drained and the write end no longer watched: the loop
    // sleeps (a level-triggered loop would spin on a stale readiness).
    crate::assert_idle(&mut lp, &conn);
    lp.detach(key);
    conn.close();
    assert!(serving.join().unwrap().is_ok(), "the peer saw the connection end");
}
