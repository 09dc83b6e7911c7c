//! `Reconnecting` with each connection on the loop: the link dials again
//! when the server goes away and comes back, and the loop serves the new
//! connection it is handed.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use netref::{Builder, Connection, LinkState, ObjectBuilder, Reconnecting, Service, ThreadedServer};

use crate::{run_until, Backend, Cell, TestLoop, PATIENCE};

/// A server whose `which()` says which one it is.
fn server(at: &str, which: i64) -> (ThreadedServer, SocketAddr) {
    let root = ObjectBuilder::new("Calc").method("which", move || which).build();
    let server = ThreadedServer::bind_tcp(at, Builder::default().service(Service::object(root))).unwrap();
    server.spawn();
    let addr = server.local_addr().unwrap();
    (server, addr)
}

/// The link's connections served by the loop (`serve_in_background(false)`,
/// each new one handed to the loop's thread from `on_back`): calls on the
/// loop, the loss seen by the loop (it lets go of the connection) and told
/// by the link, and calls on the loop again once the server is back.
pub fn reconnect_on_the_loop<B: Backend>() {
    let (first, addr) = server("127.0.0.1:0", 1);
    let (lost_tx, lost) = mpsc::channel();
    let (back_tx, back) = mpsc::channel::<Connection>();
    let link = Reconnecting::builder(move || netref::connect(addr))
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .serve_in_background(false)
        .on_lost(move |why| lost_tx.send(why.to_string()).unwrap())
        // On the link's thread: the loop's thread attaches it.
        .on_back(move |conn| back_tx.send(conn.clone()).unwrap())
        .start()
        .unwrap();
    let mut lp = B::new_loop();
    let conn = link.connection().unwrap();
    let key = lp.attach(&conn);
    let which = |lp: &mut B::Loop| {
        let got: Cell<i64> = Cell::default();
        let g = got.clone();
        let root = link.root().unwrap();
        netref::async_(&root)
            .call_method("which", ())
            .add_callback(move |r| g.put(r.value_as::<i64>().unwrap()));
        run_until(lp, "the server's answer", |_| got.is_set());
        got.get().unwrap()
    };
    assert_eq!(which(&mut lp), 1);

    first.close();
    run_until(&mut lp, "the loop to let go of the lost connection", |lp| !lp.is_attached(key));
    assert!(!lost.recv_timeout(PATIENCE).unwrap().is_empty(), "the link told of the loss");
    assert!(matches!(link.state(), LinkState::Down { .. }));

    let (_second, _) = server(&addr.to_string(), 2);
    let conn = back.recv_timeout(PATIENCE).expect("the link is back");
    lp.attach(&conn);
    assert_eq!(which(&mut lp), 2, "the new connection's root, served by the loop");
    link.close();
}
