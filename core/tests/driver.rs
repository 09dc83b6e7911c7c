//! What event-loop backends build on: `Connection::on_close` and the
//! servers' `from_listener`, over real sockets.

use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use netref::{Builder, ObjectBuilder, OneShotServer, Service, ThreadedServer};

const PATIENCE: Duration = Duration::from_secs(20);

fn calc() -> Builder {
    Builder::default()
        .service(Service::object(ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build()))
}

// ---- on_close ----------------------------------------------------------------

#[test]
fn on_close_runs_once_after_pending_calls_failed_on_the_thread_that_noticed() {
    let (client, server) = Builder::default().pair(calc()).unwrap();
    let root = {
        let bg = netref::BgServingThread::new(&server);
        let root = client.root().unwrap();
        bg.stop().unwrap();
        root
    };
    // Nobody serves the server now: this call stays pending.
    let pending = netref::async_(&root).call_method("add", (1, 2));
    let runs = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let r = runs.clone();
    let p = pending.clone();
    client.on_close(move |why| {
        r.fetch_add(1, Ordering::AcqRel);
        let _ = tx.send((why.to_string(), p.ready() && p.error(), thread::current().id()));
    });
    server.close();
    // This thread notices the close while it serves.
    assert!(client.serve(PATIENCE).is_err() || client.is_closed());
    let (why, pending_failed, on) = rx.recv_timeout(PATIENCE).expect("the handler ran");
    assert!(why.contains("closed"), "{why}");
    assert!(pending_failed, "pending calls had failed before the handler ran");
    assert_eq!(on, thread::current().id());
    client.close(); // closing again runs nothing again
    assert_eq!(runs.load(Ordering::Acquire), 1);
}

#[test]
fn on_close_of_a_closed_connection_runs_at_once() {
    let (client, _server) = Builder::default().pair(Builder::default()).unwrap();
    client.close();
    let (tx, rx) = mpsc::channel();
    client.on_close(move |why| tx.send(why.to_string()).unwrap());
    let why = rx.try_recv().expect("ran before on_close returned");
    assert!(why.contains("closed by this side"), "{why}");
}

#[test]
fn on_close_runs_when_the_last_handle_goes() {
    let (client, _server) = Builder::default().pair(Builder::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    client.on_close(move |why| tx.send(why.to_string()).unwrap());
    drop(client);
    let why = rx.try_recv().expect("the drop closed the connection and ran the handler");
    assert!(why.contains("dropped"), "{why}");
}

// ---- from_listener -----------------------------------------------------------------

#[test]
fn threaded_server_from_listener_serves_a_bound_unix_listener() {
    let dir = std::env::temp_dir().join(format!("netref-driver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("threaded.sock");
    let _ = std::fs::remove_file(&path);
    let server = ThreadedServer::from_listener(UnixListener::bind(&path).unwrap(), calc()).unwrap();
    let accept = server.spawn();
    let conn = Builder::default().connect_unix(&path).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (2, 3)).unwrap(), 5);
    conn.close();
    server.close();
    accept.join().unwrap();
    assert!(path.exists(), "a listener bound elsewhere keeps its socket file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_shot_server_from_listener_serves_one_tcp_client() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = OneShotServer::from_listener(listener, calc()).unwrap();
    let serving = thread::spawn(move || server.start());
    let conn = Builder::default().connect_tcp(addr).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (20, 22)).unwrap(), 42);
    conn.close();
    serving.join().unwrap().unwrap();
}
