//! What a `ThreadedServer` spends in file descriptors per connection, and
//! that they all come back. Alone in its binary: it counts the process's
//! open descriptors, which any test running beside it would change.

mod rawpeer;

use std::net::TcpStream;
use std::time::Duration;

use netref::{Builder, ObjectBuilder, Service, ThreadedServer};

const CLIENTS: usize = 50;
const PATIENCE: Duration = Duration::from_secs(20);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Each connection of a `ThreadedServer` costs its socket and the eventfd
/// its thread waits on beside it (to be woken by other threads): two
/// descriptors, and no more. Once the clients are gone and the server is
/// closed, the process holds what it held before.
#[test]
fn a_threaded_server_spends_two_descriptors_per_connection_and_returns_them() {
    let before = open_fds();
    let calc = ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build();
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(calc))).unwrap();
    let addr = server.local_addr().unwrap();
    let accept = server.spawn();
    let listening = open_fds();
    // Raw clients (one descriptor each): hello and the root request, then
    // its reply, so every connection's thread is serving and has waited.
    let clients: Vec<rawpeer::RawPeer<TcpStream>> = (0..CLIENTS)
        .map(|i| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut raw = rawpeer::RawPeer::new(stream);
            raw.send(&rawpeer::hello()).unwrap();
            raw.send(&rawpeer::root(1 + i as u64)).unwrap();
            raw.answer_to(1 + i as u64);
            raw
        })
        .collect();
    let serving = open_fds();
    let per_connection = (serving - listening) as f64 / CLIENTS as f64 - 1.0;
    println!("descriptors per server connection: {per_connection}");
    assert!(per_connection <= 2.0, "{per_connection} descriptors per connection on the server");
    drop(clients);
    server.close();
    accept.join().unwrap();
    drop(server);
    assert_eq!(open_fds(), before, "every descriptor came back");
}
