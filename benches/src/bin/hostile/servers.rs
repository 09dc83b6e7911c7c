//! Every server kind netref ships, run in this process on a thread of its
//! own, serving the attacks' target service.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use netref::{async_, Builder, Error, ObjectBuilder, RemoteObject, Service};

/// The server kinds, as named on the command line and in the report.
pub(crate) const KINDS: [&str; 5] = ["threaded", "mio", "polling", "calloop", "glib"];

/// The service every attack targets: `add`, `echo`, and `ask`, which
/// awaits the caller's callback (an asynchronous method).
pub(crate) fn builder() -> Builder {
    let root = ObjectBuilder::new("Target")
        .method("add", |a: i64, b: i64| a + b)
        .method("echo", |s: String| s)
        .async_method("ask", |cb: RemoteObject, x: i64| async move {
            let answer: i64 = async_(&cb).call((x,)).typed().await?;
            Ok::<_, Error>(answer)
        })
        .build();
    Builder::default().service(Service::object(root))
}

/// A server running on its thread; [`stop`](Self::stop) ends it.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: Box<dyn FnOnce() + Send>,
    thread: thread::JoinHandle<()>,
}

impl Running {
    pub(crate) fn stop(self) {
        (self.stop)();
        let _ = self.thread.join();
    }
}

/// Starts a server of `kind` on a free loopback port.
pub(crate) fn spawn(kind: &str) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    match kind {
        "threaded" => {
            drop(listener);
            let server = netref::ThreadedServer::bind_tcp(addr, builder()).expect("bind again");
            let thread = server.spawn();
            Running { addr, stop: Box::new(move || server.close()), thread }
        }
        "mio" => {
            let mut server = netref_mio::Server::from_listener(listener, builder()).expect("mio server");
            let handle = server.handle();
            let thread = thread::spawn(move || server.run().expect("mio server runs"));
            Running { addr, stop: Box::new(move || handle.close()), thread }
        }
        "polling" => {
            let mut server =
                netref_polling::Server::from_listener(listener, builder()).expect("polling server");
            let handle = server.handle();
            let thread = thread::spawn(move || server.run().expect("polling server runs"));
            Running { addr, stop: Box::new(move || handle.close()), thread }
        }
        "calloop" => {
            let (tx, rx) = mpsc::channel();
            let thread = thread::spawn(move || {
                let mut event_loop: calloop::EventLoop<'static, ()> = calloop::EventLoop::try_new().unwrap();
                let server =
                    netref_calloop::Server::from_listener(listener, builder()).expect("calloop server");
                server.attach(&event_loop.handle()).expect("attach");
                tx.send(event_loop.get_signal()).unwrap();
                event_loop.run(None, &mut (), |_| {}).expect("calloop runs");
            });
            let signal = rx.recv().expect("the loop started");
            let stop = move || {
                signal.stop();
                signal.wakeup();
            };
            Running { addr, stop: Box::new(stop), thread }
        }
        "glib" => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let (tx, rx) = mpsc::channel();
            let thread = thread::spawn(move || {
                let ctx = glib::MainContext::new();
                ctx.with_thread_default(|| {
                    let server =
                        netref_glib::Server::from_listener(listener, builder()).expect("glib server");
                    server.attach(&ctx).expect("attach");
                    tx.send(ctx.clone()).unwrap();
                    while !flag.load(Ordering::Acquire) {
                        ctx.iteration(true);
                    }
                    server.close();
                })
                .expect("the context is free");
            });
            let ctx = rx.recv().expect("the context started");
            let stop = move || {
                stop.store(true, Ordering::Release);
                ctx.wakeup();
            };
            Running { addr, stop: Box::new(stop), thread }
        }
        other => panic!("no server kind {other}: one of {KINDS:?}"),
    }
}
