//! The shared conformance suite, run against the calloop backend.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use calloop::ping::{make_ping, Ping};
use calloop::{EventLoop, LoopSignal, RegistrationToken};
use netref::{Builder, Connection};
use netref_calloop::{ConnectionEvent, ConnectionSource, ListenerSource};
use netref_conformance::{Backend, RunningServer, TestLoop};

struct CalloopLoop {
    event_loop: EventLoop<'static, ()>,
    tokens: HashMap<usize, RegistrationToken>,
    closed: Rc<RefCell<HashSet<usize>>>,
    notify: Ping,
    next: usize,
}

impl TestLoop for CalloopLoop {
    fn attach(&mut self, conn: &Connection) -> usize {
        let key = self.next;
        self.next += 1;
        let closed = self.closed.clone();
        let token = self
            .event_loop
            .handle()
            .insert_source(ConnectionSource::new(conn).unwrap(), move |event, _, _| {
                if let ConnectionEvent::Closed(_) = event {
                    closed.borrow_mut().insert(key);
                }
            })
            .map_err(|e| e.error)
            .unwrap();
        self.tokens.insert(key, token);
        key
    }

    fn is_attached(&self, key: usize) -> bool {
        self.tokens.contains_key(&key) && !self.closed.borrow().contains(&key)
    }

    fn detach(&mut self, key: usize) {
        if let Some(token) = self.tokens.remove(&key) {
            if !self.closed.borrow().contains(&key) {
                self.event_loop.handle().remove(token);
            }
        }
    }

    fn turn(&mut self, max_wait: Duration) {
        self.event_loop.dispatch(Some(max_wait), &mut ()).unwrap();
    }

    fn notifier(&self) -> Arc<dyn Fn() + Send + Sync> {
        let ping = self.notify.clone();
        Arc::new(move || ping.ping())
    }
}

struct Running {
    signal: LoopSignal,
    count: Arc<AtomicUsize>,
    thread: thread::JoinHandle<()>,
}

impl RunningServer for Running {
    fn connection_count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
    fn stop(self: Box<Self>) {
        self.signal.stop();
        self.signal.wakeup();
        self.thread.join().unwrap();
    }
}

struct Calloop;

impl Backend for Calloop {
    type Loop = CalloopLoop;

    fn new_loop() -> CalloopLoop {
        let event_loop = EventLoop::try_new().unwrap();
        let (notify, source) = make_ping().unwrap();
        event_loop.handle().insert_source(source, |_, _, _| {}).unwrap();
        CalloopLoop { event_loop, tokens: HashMap::new(), closed: Rc::default(), notify, next: 0 }
    }

    fn make_server(listener: TcpListener, builder: Builder) -> std::io::Result<()> {
        ListenerSource::tcp(listener, builder).map(drop)
    }

    fn spawn_server(listener: TcpListener, builder: Builder) -> Box<dyn RunningServer> {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut event_loop: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
            tx.send(event_loop.get_signal()).unwrap();
            let handle = event_loop.handle();
            let h = handle.clone();
            handle
                .insert_source(ListenerSource::tcp(listener, builder).unwrap(), move |conn, _, _| {
                    counter.fetch_add(1, Ordering::AcqRel);
                    let c = counter.clone();
                    h.insert_source(ConnectionSource::new(&conn).unwrap(), move |_, _, _| {
                        c.fetch_sub(1, Ordering::AcqRel);
                    })
                    .map_err(|e| e.error)
                    .unwrap();
                })
                .map_err(|e| e.error)
                .unwrap();
            event_loop.run(None, &mut (), |_| {}).unwrap();
        });
        let signal = rx.recv().unwrap();
        Box::new(Running { signal, count, thread })
    }
}

netref_conformance::conformance_tests!(Calloop);
