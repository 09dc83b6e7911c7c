//! The shared conformance suite, run against the calloop backend.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use calloop::futures::Scheduler;
use calloop::ping::{make_ping, Ping};
use calloop::{EventLoop, LoopSignal};
use netref::{Builder, Connection};
use netref_calloop::{Attached, ConnectionSource, Server};
use netref_conformance::{Backend, LocalFuture, RunningServer, TestLoop};

struct CalloopLoop {
    event_loop: EventLoop<'static, ()>,
    conns: HashMap<usize, Attached<'static, ()>>,
    notify: Ping,
    /// calloop's executor, a source of the loop: what a calloop program
    /// awaits netref results with.
    scheduler: Scheduler<()>,
    next: usize,
}

impl TestLoop for CalloopLoop {
    fn attach(&mut self, conn: &Connection) -> usize {
        let key = self.next;
        self.next += 1;
        self.conns.insert(key, netref_calloop::attach(&self.event_loop.handle(), conn).unwrap());
        key
    }

    fn is_attached(&self, key: usize) -> bool {
        self.conns.get(&key).is_some_and(Attached::is_attached)
    }

    fn detach(&mut self, key: usize) {
        if let Some(attached) = self.conns.remove(&key) {
            attached.detach();
        }
    }

    fn turn(&mut self, max_wait: Duration) {
        self.event_loop.dispatch(Some(max_wait), &mut ()).unwrap();
    }

    fn notifier(&self) -> Arc<dyn Fn() + Send + Sync> {
        let ping = self.notify.clone();
        Arc::new(move || ping.ping())
    }

    fn spawn_local(&mut self, fut: LocalFuture) -> Result<(), LocalFuture> {
        self.scheduler.schedule(fut).expect("the executor is in the loop");
        Ok(())
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
        let (executor, scheduler) = calloop::futures::executor().unwrap();
        event_loop.handle().insert_source(executor, |(), _, _| {}).unwrap();
        CalloopLoop { event_loop, conns: HashMap::new(), notify, scheduler, next: 0 }
    }

    fn make_server(listener: TcpListener, builder: Builder) -> std::io::Result<()> {
        Server::from_listener(listener, builder).map(drop)
    }

    /// The server source inserted by hand (as a program composing its own
    /// sources would), so the suite can count connections: each is attached
    /// as a `ConnectionSource` and counted off by `Connection::on_close`.
    /// (`Server::attach` is exercised in tests/calloop.rs.)
    fn spawn_server(listener: TcpListener, builder: Builder) -> Box<dyn RunningServer> {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut event_loop: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
            tx.send(event_loop.get_signal()).unwrap();
            let handle = event_loop.handle();
            let h = handle.clone();
            let server = Server::from_listener(listener, builder).unwrap();
            handle
                .insert_source(server, move |conn, _, _| {
                    counter.fetch_add(1, Ordering::AcqRel);
                    let c = counter.clone();
                    conn.on_close(move |_| {
                        c.fetch_sub(1, Ordering::AcqRel);
                    });
                    let source = ConnectionSource::new(&conn).unwrap();
                    h.insert_source(source, |(), serve, data| serve.lending(data))
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
