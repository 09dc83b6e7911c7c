//! The shared conformance suite, run against the polling backend.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use netref::{Builder, Connection};
use netref_conformance::{Backend, RunningServer, TestLoop};
use netref_polling::{Attached, Doorbell, Server, ServerHandle};
use polling::{Events, Poller};

struct PollingLoop {
    doorbell: Arc<Doorbell>,
    events: Events,
    conns: HashMap<usize, Attached>,
    next: usize,
}

impl TestLoop for PollingLoop {
    fn attach(&mut self, conn: &Connection) -> usize {
        let key = self.next;
        self.next += 1;
        self.conns.insert(key, netref_polling::attach(conn, &self.doorbell, key).unwrap());
        key
    }

    fn is_attached(&self, key: usize) -> bool {
        self.conns.contains_key(&key)
    }

    fn detach(&mut self, key: usize) {
        self.conns.remove(&key);
    }

    fn turn(&mut self, max_wait: Duration) {
        let deadline = self.conns.values().filter_map(Attached::next_deadline).min();
        let wait = netref_polling::timeout(deadline).map_or(max_wait, |d| d.min(max_wait));
        self.events.clear();
        self.doorbell.poller().wait(&mut self.events, Some(wait)).unwrap();
        let mut ready: Vec<usize> = self.events.iter().map(|e| e.key).collect();
        ready.extend(self.doorbell.take());
        ready.extend(self.conns.iter().filter(|(_, c)| c.is_due()).map(|(&k, _)| k));
        for k in ready {
            if let Some(c) = self.conns.get_mut(&k) {
                if !c.drive().unwrap() {
                    self.conns.remove(&k);
                }
            }
        }
    }

    fn notifier(&self) -> Arc<dyn Fn() + Send + Sync> {
        let bell = self.doorbell.clone();
        Arc::new(move || bell.wake())
    }
}

struct Running {
    handle: ServerHandle,
    thread: thread::JoinHandle<()>,
}

impl RunningServer for Running {
    fn connection_count(&self) -> usize {
        self.handle.connection_count()
    }
    fn stop(self: Box<Self>) {
        self.handle.close();
        self.thread.join().unwrap();
    }
}

struct PollingBackend;

impl Backend for PollingBackend {
    type Loop = PollingLoop;

    fn new_loop() -> PollingLoop {
        let doorbell = Doorbell::new(Arc::new(Poller::new().unwrap()));
        PollingLoop { doorbell, events: Events::new(), conns: HashMap::new(), next: 0 }
    }

    fn make_server(listener: TcpListener, builder: Builder) -> std::io::Result<()> {
        Server::from_listener(listener, builder).map(drop)
    }

    fn spawn_server(listener: TcpListener, builder: Builder) -> Box<dyn RunningServer> {
        let mut server = Server::from_listener(listener, builder).unwrap();
        let handle = server.handle();
        let thread = thread::spawn(move || server.run().unwrap());
        Box::new(Running { handle, thread })
    }
}

netref_conformance::conformance_tests!(PollingBackend);
