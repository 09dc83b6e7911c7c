//! A memory budget shared by a server's connections: peers that flood
//! requests without reading the replies are closed, the one holding the
//! most first, once the bytes buffered by all of them pass the budget;
//! the server and a well-behaved client go on. Over real sockets, with a
//! `ThreadedServer` (each connection on a thread of its own, so the
//! budget is spent and enforced from many threads).

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use netref::wire::Cbor;

use netref::error::LimitError;
use netref::{Builder, CloseReason, MemoryBudget, ObjectBuilder, Service, ThreadedServer};

mod rawpeer;

/// How long a wait may take before the test fails (a bound on a hang, not
/// a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);

/// Most calls a flooder sends, each with a 64 KiB argument echoed back
/// (256 MiB): far more than the socket buffers between the two sides
/// hold, so the replies queue on the server.
const MAX_CALLS: u64 = 4096;
const FLOODERS: usize = 3;

#[test]
fn flooders_past_a_shared_memory_budget_are_closed_and_the_server_goes_on() {
    let budget = MemoryBudget::new(8 << 20);
    let (ended_tx, ended) = mpsc::channel();
    let ended_tx = Mutex::new(ended_tx);
    let echo = ObjectBuilder::new("Echo")
        .method("echo", |s: String| s)
        .method("add", |a: i64, b: i64| a + b)
        .build();
    let service = Service::object(echo).on_disconnect(move |conn| {
        let _ = ended_tx.lock().unwrap().send(conn.close_reason());
    });
    let builder = Builder::default().service(service).memory_budget(&budget);
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", builder).unwrap();
    let addr = server.local_addr().unwrap();
    let serving = server.spawn();

    // Each flooder writes calls as fast as the server reads them and never
    // reads a reply, until the server cuts it off (or it has sent 256 MiB).
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            thread::spawn(move || {
                let mut raw = rawpeer::RawPeer::new(TcpStream::connect(addr).unwrap());
                let root = raw.handshake();
                let payload = Cbor::Text("x".repeat(64 << 10));
                (2..MAX_CALLS + 2)
                    .take_while(|&seq| {
                        let call = rawpeer::call_method(seq, root, "echo", vec![payload.clone()]);
                        raw.stream.write_all(&rawpeer::frame(&call)).is_ok()
                    })
                    .count()
            })
        })
        .collect();

    for _ in 0..FLOODERS {
        let reason = ended.recv_timeout(PATIENCE).expect("a flooder was disconnected");
        match reason {
            Some(CloseReason::Limit(LimitError::MemoryBudgetSpent { buffered, used, max })) => {
                assert_eq!(max, 8 << 20);
                assert!(used > max && buffered > 0 && buffered <= used, "{buffered} of {used}");
            }
            other => panic!("expected the memory budget to end the flooder, got {other:?}"),
        }
    }
    // Closed connections count for nothing: the budget is whole again.
    assert_eq!(budget.used(), 0);

    // The server goes on for a client that reads its replies.
    let good = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(good.root().unwrap().call_method::<i64>("add", (2, 3)).unwrap(), 5);
    for flooder in flooders {
        let sent = flooder.join().unwrap();
        assert!(sent < MAX_CALLS as usize, "cut off before it sent all it had");
    }
    good.close();
    server.close();
    serving.join().unwrap();
}
