//! The shared conformance suite, run against the mio backend.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mio::{Events, Poll, Token};
use netref::{Builder, Connection};
use netref_conformance::{Backend, RunningServer, TestLoop};
use netref_mio::{Attached, Doorbell, Server, ServerHandle};

const DOORBELL: Token = Token(usize::MAX);

struct MioLoop {
    poll: Poll,
    events: Events,
    doorbell: Arc<Doorbell>,
    conns: HashMap<usize, Attached>,
    next: usize,
}

impl TestLoop for MioLoop {
    fn attach(&mut self, conn: &Connection) -> usize {
        let key = self.next;
        self.next += 1;
        let c = netref_mio::attach(conn, self.poll.registry(), Token(key), &self.doorbell).unwrap();
        self.conns.insert(key, c);
        key
    }

    fn is_attached(&self, key: usize) -> bool {
        self.conns.contains_key(&key)
    }

    fn detach(&mut self, key: usize) {
        if let Some(c) = self.conns.remove(&key) {
            c.detach(self.poll.registry()).unwrap();
        }
    }

    fn turn(&mut self, max_wait: Duration) {
        let deadline = self.conns.values().filter_map(Attached::next_deadline).min();
        let wait = netref_mio::timeout(deadline).map_or(max_wait, |d| d.min(max_wait));
        self.poll.poll(&mut self.events, Some(wait)).unwrap();
        let mut ready: Vec<usize> =
            self.events.iter().map(|e| e.token().0).filter(|&k| k != DOORBELL.0).collect();
        ready.extend(self.doorbell.take().into_iter().map(|t| t.0));
        ready.extend(self.conns.iter().filter(|(_, c)| c.is_due()).map(|(&k, _)| k));
        let registry = self.poll.registry();
        for k in ready {
            if let Some(c) = self.conns.get_mut(&k) {
                if !c.drive(registry).unwrap() {
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

struct Mio;

impl Backend for Mio {
    type Loop = MioLoop;

    fn new_loop() -> MioLoop {
        let poll = Poll::new().unwrap();
        let doorbell = Doorbell::new(poll.registry(), DOORBELL).unwrap();
        MioLoop { poll, events: Events::with_capacity(256), doorbell, conns: HashMap::new(), next: 0 }
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

netref_conformance::conformance_tests!(Mio);
