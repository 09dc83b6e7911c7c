//! TLS (netref's `tls` feature) on every loop: the backend's server runs
//! each handshake without blocking its loop and starts the service once it
//! is over (so the service sees the client's certificate), and a client
//! connection over TLS on the loop, its records flowing both ways.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use netref::error::{TlsError, TlsPeer};
use netref::tls::{TlsAcceptor, TlsConnector};
use netref::{Builder, Error, ObjectBuilder, RemoteObject, Service, ThreadedServer, Value};

use crate::{Backend, TestLoop, PATIENCE};

#[path = "../../../core/tests/common/certs.rs"]
mod certs;

use certs::Ca;

/// A calculator whose `whoami` says whether the connection's client
/// certificate proves `alice.clients.test`, read when the service starts.
fn service() -> Service {
    Service::new(|conn| {
        let alice = conn.credentials().is_some_and(|c| c.certificate_is_valid_for("alice.clients.test"));
        ObjectBuilder::new("Calculator")
            .method("add", |a: i64, b: i64| a + b)
            .method("echo", |v: Value| v)
            .async_method("call_me", |cb: RemoteObject, x: i64| async move {
                netref::async_(&cb).call((x,)).typed::<i64>().await.map(|v| v + 1)
            })
            .method("whoami", move || alice)
            .build()
    })
}

/// The backend's server over TLS, requiring client certificates: a client
/// with one is served (the service saw its name), one without is refused
/// naming why, a plaintext client and a silent one are dropped, and the
/// loop goes on serving through all of them.
pub fn tls_server_on_the_loop<B: Backend>() {
    let ca = Ca::new("netref conformance CA");
    let cert = ca.server(&["localhost"]);
    let acceptor = TlsAcceptor::new(&cert.chain_pem, &cert.key_pem)
        .and_then(|a| a.require_client_certificates(&ca.pem()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A handshake that does not end within handshake_timeout ends that
    // connection (the loop has no thread to block).
    let config = netref::Config::default().handshake_timeout(Some(Duration::from_millis(200)));
    let server =
        B::spawn_server(listener, Builder::default().service(service()).config(config).tls(acceptor));
    let anonymous = TlsConnector::with_roots(&ca.pem()).unwrap();
    let alice = ca.client("alice.clients.test");
    let connector = anonymous.clone().with_client_certificate(&alice.chain_pem, &alice.key_pem).unwrap();

    // A plaintext client first: the loop drops it and serves the others.
    let plain = netref::connect(("127.0.0.1", port)).unwrap();
    assert!(plain.root().unwrap_err().is_closed());
    // A client that never says anything: dropped at handshake_timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();

    let conn = Builder::default().connect_tls(&connector, "localhost", port).unwrap();
    let root = conn.root().unwrap();
    assert!(root.call_method::<bool>("whoami", ()).unwrap(), "the service saw alice's certificate");
    assert_eq!(root.call_method::<i64>("call_me", (netref::callback(|x: i64| x * 10), 4)).unwrap(), 41);

    let refused = Builder::default().connect_tls(&anonymous, "localhost", port).unwrap_err();
    let Error::Tls(why) = refused else { panic!("expected a TLS error, got {refused}") };
    assert_eq!(why, TlsError::Refused { peer: TlsPeer::Server, alert: "CertificateRequired".into() });
    assert_eq!(root.call_method::<i64>("add", (40, 2)).unwrap(), 42, "the first client is still served");
    let mut nothing = Vec::new();
    silent.read_to_end(&mut nothing).expect("the server closed the silent client");
    // At most a TLS alert (its close_notify): never netref's hello in the clear.
    assert!(nothing.is_empty() || nothing[0] == 0x15, "{nothing:?}");
    conn.close();
    server.stop();
}

/// A client connection over TLS on the loop: calls, a callback the server
/// makes while serving ours (on the loop's thread), and a megabyte each
/// way, more than the socket takes at once, so TLS records wait for the
/// loop to see the socket writable.
pub fn tls_client_on_the_loop<B: Backend>() {
    let ca = Ca::new("netref conformance CA");
    let cert = ca.server(&["localhost"]);
    let acceptor = TlsAcceptor::new(&cert.chain_pem, &cert.key_pem).unwrap();
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service()).tls(acceptor)).unwrap();
    let port = server.local_addr().unwrap().port();
    let serving = server.spawn();
    let connector = TlsConnector::with_roots(&ca.pem()).unwrap();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let conn = Builder::default().over_tls_stream(&connector, "localhost", stream).unwrap();
    let mut lp = B::new_loop();
    let key = crate::callback_and_megabyte_on_the_loop(&mut lp, &conn, 41);
    lp.detach(key);
    conn.close();
    server.close();
    serving.join().unwrap();
}
