//! The shared conformance suite, run against the glib backend. Each test
//! runs under its own private thread-default `MainContext`, so tests run in
//! parallel and need no display.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use glib::{ControlFlow, MainContext, Priority};
use netref::{Builder, Connection};
use netref_conformance::{Backend, LocalFuture, RunningServer, TestLoop};
use netref_glib::{Attached, Server};

struct GlibLoop {
    ctx: MainContext,
    conns: HashMap<usize, Attached>,
    next: usize,
}

impl TestLoop for GlibLoop {
    fn attach(&mut self, conn: &Connection) -> usize {
        let key = self.next;
        self.next += 1;
        self.conns.insert(key, netref_glib::attach(conn, &self.ctx).unwrap());
        key
    }

    fn is_attached(&self, key: usize) -> bool {
        self.conns.get(&key).is_some_and(Attached::is_attached)
    }

    fn detach(&mut self, key: usize) {
        if let Some(c) = self.conns.remove(&key) {
            c.detach();
        }
    }

    fn turn(&mut self, max_wait: Duration) {
        let limit = glib::timeout_source_new(max_wait, None, Priority::DEFAULT, || ControlFlow::Break);
        limit.attach(Some(&self.ctx));
        self.ctx.iteration(true);
        limit.destroy();
    }

    fn notifier(&self) -> Arc<dyn Fn() + Send + Sync> {
        let ctx = self.ctx.clone();
        Arc::new(move || ctx.wakeup())
    }

    fn spawn_local(&mut self, fut: LocalFuture) -> Result<(), LocalFuture> {
        // What a GTK application does: `glib::spawn_future_local`.
        self.ctx.spawn_local(fut);
        Ok(())
    }
}

struct Running {
    server: Server,
    ctx: MainContext,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl RunningServer for Running {
    fn connection_count(&self) -> usize {
        self.server.connection_count()
    }
    fn stop(self: Box<Self>) {
        self.stop.store(true, Ordering::Release);
        self.ctx.wakeup();
        self.thread.join().unwrap();
    }
}

struct Glib;

impl Backend for Glib {
    type Loop = GlibLoop;

    fn new_loop() -> GlibLoop {
        let ctx = MainContext::thread_default().expect("run_test set a thread-default context");
        GlibLoop { ctx, conns: HashMap::new(), next: 0 }
    }

    fn make_server(listener: TcpListener, builder: Builder) -> std::io::Result<()> {
        Server::from_listener(listener, builder).map(|server| server.close())
    }

    fn spawn_server(listener: TcpListener, builder: Builder) -> Box<dyn RunningServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let ctx = MainContext::new();
            ctx.with_thread_default(|| {
                let server = Server::from_listener(listener, builder).unwrap();
                server.attach(&ctx).unwrap();
                tx.send((server.clone(), ctx.clone())).unwrap();
                while !flag.load(Ordering::Acquire) {
                    ctx.iteration(true);
                }
                server.close();
            })
            .unwrap();
        });
        let (server, ctx) = rx.recv().unwrap();
        Box::new(Running { server, ctx, stop, thread })
    }

    fn run_test(test: &dyn Fn()) {
        MainContext::new().with_thread_default(test).unwrap();
    }
}

netref_conformance::conformance_tests!(Glib);
