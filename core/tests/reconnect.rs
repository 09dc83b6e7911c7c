//! `Reconnecting` against a real server that goes away and comes back on
//! the same port: the loss and the return are told, calls made while the
//! link is down fail at once with the reason, and calls resume on the new
//! connection's root. Synchronised on the link's own hooks.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use netref::{Builder, Error, LinkState, ObjectBuilder, Reconnecting, Service, ThreadedServer};

/// A server whose `add` also says which server it is.
fn server(at: &str, which: i64) -> (ThreadedServer, SocketAddr) {
    let root = ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).attr("which", which).build();
    let server = ThreadedServer::bind_tcp(at, Builder::default().service(Service::object(root))).unwrap();
    server.spawn();
    let addr = server.local_addr().unwrap();
    (server, addr)
}

#[derive(Debug, PartialEq)]
enum Told {
    Lost,
    Back,
}

#[test]
fn calls_resume_after_the_server_restarts() {
    let (first, addr) = server("127.0.0.1:0", 1);
    let (tx, told) = mpsc::channel();
    let (lost, back) = (tx.clone(), tx);
    let link = Reconnecting::builder(move || netref::connect(addr))
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .on_lost(move |_| lost.send(Told::Lost).unwrap())
        .on_back(move |_| back.send(Told::Back).unwrap())
        .start()
        .unwrap();
    let old_root = link.root().unwrap();
    assert_eq!(old_root.call_method::<i64>("add", (1, 2)).unwrap(), 3);
    assert_eq!(old_root.getattr::<i64>("which").unwrap(), 1);
    assert!(matches!(link.state(), LinkState::Up));

    // The server goes away: the link says so, and calls fail at once.
    first.close();
    assert_eq!(told.recv().unwrap(), Told::Lost);
    assert!(matches!(link.state(), LinkState::Down { .. }));
    assert!(matches!(link.root(), Err(Error::Closed(_))));
    assert!(matches!(old_root.call_method::<i64>("add", (1, 2)), Err(Error::Closed(_))));

    // Back on the same port: the link dials again and fetches the new root.
    let (_second, _) = server(&addr.to_string(), 2);
    assert_eq!(told.recv().unwrap(), Told::Back);
    let root = link.root().unwrap();
    assert_eq!(root.getattr::<i64>("which").unwrap(), 2);
    assert_eq!(root.call_method::<i64>("add", (40, 2)).unwrap(), 42);
    // The old connection's proxies stay dead.
    assert!(matches!(old_root.call_method::<i64>("add", (1, 2)), Err(Error::Closed(_))));

    link.close();
    assert!(matches!(link.state(), LinkState::Closed));
    assert!(matches!(link.root(), Err(Error::Closed(_))));
}

#[test]
fn the_first_dial_fails_plainly() {
    // A port nobody listens on: bind one, learn it, let it go.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let e = Reconnecting::builder(move || netref::connect(addr)).start().err().expect("nobody listens");
    assert!(e.to_string().contains("refused"), "{e}");
}
