//! The soak run against the core's `ThreadedServer` (one thread per
//! connection). `NETREF_SOAK=full` runs the full size; see
//! [`netref_conformance::SoakSize`].

use std::thread;

use netref::ThreadedServer;
use netref_conformance::{check_soak_memory, print_soak, soak_with, RunningServer, SoakSize};

struct Running {
    server: ThreadedServer,
    thread: thread::JoinHandle<()>,
}

impl RunningServer for Running {
    fn connection_count(&self) -> usize {
        self.server.connection_count()
    }
    fn stop(self: Box<Self>) {
        // Every client has left: nothing is open any more.
        assert_eq!(self.server.connection_count(), 0, "connections still open after every client left");
        self.server.close();
        self.thread.join().unwrap();
    }
}

#[test]
fn soak_threaded_server_many_clients_mixed_calls() {
    let report = soak_with(SoakSize::from_env(), |builder| {
        let server = ThreadedServer::bind_tcp("127.0.0.1:0", builder).unwrap();
        let addr = server.local_addr().unwrap();
        let thread = server.spawn();
        (addr, Box::new(Running { server, thread }))
    });
    print_soak("ThreadedServer", &report);
    check_soak_memory(&report);
}
