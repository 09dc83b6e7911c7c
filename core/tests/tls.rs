//! TLS (feature `tls`) over real sockets: calls and callbacks through it,
//! each kind of bad peer refused with an error saying which, client
//! certificates as the service's credentials, and the relay attack on a
//! shared secret, which works over plain TCP and fails over TLS.
//! Certificates are made here (rcgen), never committed.

use netref_logcap as logcap;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use netref::auth::SharedSecret;
use netref::error::{TlsError, TlsPeer};
use netref::tls::{TlsAcceptor, TlsConnector};
use netref::{Builder, Error, ObjectBuilder, RemoteObject, Service, ThreadedServer};

#[path = "common/certs.rs"]
mod certs;

use certs::{Ca, Leaf};

const PATIENCE: Duration = Duration::from_secs(10);
const SECRET: &[u8] = b"netref-tls-test-secret: 2b9e correct horse";

/// The calculator every server here serves; `whoami` names the client
/// certificate the connection proved, if any.
fn calc_service() -> Service {
    Service::new(|conn| {
        let alice = conn.credentials().is_some_and(|c| c.certificate_is_valid_for("alice.clients.test"));
        let method = conn.credentials().map(|c| c.method.clone());
        ObjectBuilder::new("Calculator")
            .method("add", |a: i64, b: i64| a + b)
            .method("echo", |b: netref::Value| b)
            .try_method("apply", |f: RemoteObject, x: i64| f.call::<i64>((x,)))
            .method("whoami", move || (alice, method.clone()))
            .build()
    })
}

struct Running {
    server: ThreadedServer,
    thread: Option<thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl Running {
    fn start(server: ThreadedServer) -> Running {
        let addr = server.local_addr().unwrap();
        let thread = Some(server.spawn());
        Running { server, thread, addr }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.close();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// The authority every test's peers trust, and a server certificate for
/// `localhost` and 127.0.0.1 it signed.
struct World {
    ca: Ca,
    server: Leaf,
}

fn world() -> World {
    let ca = Ca::new("netref test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    World { ca, server }
}

impl World {
    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::new(&self.server.chain_pem, &self.server.key_pem).unwrap()
    }
    fn connector(&self) -> TlsConnector {
        TlsConnector::with_roots(&self.ca.pem()).unwrap()
    }
    fn serve(&self, builder: Builder) -> Running {
        Running::start(ThreadedServer::bind_tcp("127.0.0.1:0", builder).unwrap())
    }
    /// The calculator over TLS, for clients that know [`SECRET`].
    fn serve_with_secret(&self) -> Running {
        let secret = SharedSecret::new(SECRET.to_vec());
        self.serve(Builder::default().service(calc_service()).tls(self.acceptor()).authenticator(secret))
    }
}

fn tls_error(e: Error) -> TlsError {
    match e {
        Error::Tls(why) => why,
        other => panic!("expected a TLS error, got {other:?}: {other}"),
    }
}

#[test]
fn calls_callbacks_and_a_megabyte_through_tls() {
    let w = world();
    let server = w.serve(Builder::default().service(calc_service()).tls(w.acceptor()));
    let conn = Builder::default().connect_tls(&w.connector(), "localhost", server.addr.port()).unwrap();
    let root = conn.root().unwrap();
    assert_eq!(root.call_method::<i64>("add", (40, 2)).unwrap(), 42);
    // The server calls back into this side while it serves our call.
    let double = netref::callback(|x: i64| x * 2);
    assert_eq!(root.call_method::<i64>("apply", (double, 21)).unwrap(), 42);
    // More than the socket and TLS's buffers take at once, both ways.
    let big = netref::Value::Bytes((0..1 << 20).map(|i| (i % 251) as u8).collect());
    assert_eq!(root.call_method::<netref::Value>("echo", (big.clone(),)).unwrap(), big);
    // No client certificate: the server knows nothing of this client.
    assert_eq!(root.call_method::<(bool, Option<String>)>("whoami", ()).unwrap(), (false, None));
    conn.close();
}

#[test]
fn a_certificate_for_another_name_is_refused_naming_it() {
    let w = world();
    let server = w.serve(Builder::default().service(calc_service()).tls(w.acceptor()));
    let stream = TcpStream::connect(server.addr).unwrap();
    let err = Builder::default().over_tls_stream(&w.connector(), "calc.example.org", stream).unwrap_err();
    let why = tls_error(err.clone());
    assert_eq!(
        why,
        TlsError::Certificate {
            peer: TlsPeer::Server,
            reason: "is not valid for \"calc.example.org\"".into()
        }
    );
    assert_eq!(err.to_string(), "TLS: the server's certificate is not valid for \"calc.example.org\"");
}

#[test]
fn a_certificate_from_an_untrusted_authority_is_refused() {
    let w = world();
    let server = w.serve(Builder::default().service(calc_service()).tls(w.acceptor()));
    let stranger = TlsConnector::with_roots(&Ca::new("someone else").pem()).unwrap();
    let err = Builder::default().connect_tls(&stranger, "localhost", server.addr.port()).unwrap_err();
    assert_eq!(err.to_string(), "TLS: the server's certificate is not signed by a trusted root");
}

#[test]
fn a_plaintext_server_is_named_as_one() {
    let w = world();
    let server = w.serve(Builder::default().service(calc_service()));
    let err = Builder::default().connect_tls(&w.connector(), "localhost", server.addr.port()).unwrap_err();
    assert_eq!(tls_error(err), TlsError::NotTls { peer: TlsPeer::Server });
}

#[test]
fn a_plaintext_client_is_refused_and_logged_and_the_server_goes_on() {
    logcap::install();
    let w = world();
    let server = w.serve(Builder::default().service(calc_service()).tls(w.acceptor()));
    let plain = netref::connect(server.addr).unwrap();
    let err = plain.root().unwrap_err();
    assert!(err.to_string().contains("the peer speaks TLS: connect with Builder::connect_tls"), "{err}");
    logcap::wait_for(&["refused", "TLS: the client does not speak TLS"], PATIENCE);
    let conn = Builder::default().connect_tls(&w.connector(), "localhost", server.addr.port()).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (1, 1)).unwrap(), 2);
}

#[test]
fn a_client_that_never_finishes_the_handshake_is_dropped_at_auth_timeout() {
    logcap::install();
    let w = world();
    let server = w.serve(
        Builder::default().service(calc_service()).tls(w.acceptor()).auth_timeout(Duration::from_millis(200)),
    );
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    logcap::wait_for(
        &["refused", "TLS: the handshake did not complete within 200ms (auth_timeout)"],
        PATIENCE,
    );
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).expect("the server closed the silent client's socket");
    assert!(rest.is_empty(), "a TLS server says nothing before the client's hello");
}

#[test]
fn client_certificates_are_the_services_credentials() {
    let w = world();
    let acceptor = w.acceptor().require_client_certificates(&w.ca.pem()).unwrap();
    let server = w.serve(Builder::default().service(calc_service()).tls(acceptor));
    let alice = w.ca.client("alice.clients.test");
    let connector = w.connector().with_client_certificate(&alice.chain_pem, &alice.key_pem).unwrap();
    let conn = Builder::default().connect_tls(&connector, "localhost", server.addr.port()).unwrap();
    let who: (bool, Option<String>) = conn.root().unwrap().call_method("whoami", ()).unwrap();
    assert_eq!(who, (true, Some("tls-certificate".to_string())));

    // Another name from the same authority is not alice.
    let bob = w.ca.client("bob.clients.test");
    let connector = w.connector().with_client_certificate(&bob.chain_pem, &bob.key_pem).unwrap();
    let conn = Builder::default().connect_tls(&connector, "localhost", server.addr.port()).unwrap();
    let who: (bool, Option<String>) = conn.root().unwrap().call_method("whoami", ()).unwrap();
    assert!(!who.0, "bob is not alice");

    // No certificate at all: refused at connect, naming the server's alert
    // (TLS 1.3 ends the client's side of the handshake before the server
    // checks; connect_tls waits for the server's verdict).
    let err = Builder::default().connect_tls(&w.connector(), "localhost", server.addr.port()).unwrap_err();
    assert_eq!(
        tls_error(err),
        TlsError::Refused { peer: TlsPeer::Server, alert: "CertificateRequired".into() }
    );
}

#[test]
fn a_shared_secret_over_tls_passes() {
    let w = world();
    let server = w.serve_with_secret();
    let conn = Builder::default()
        .shared_secret(SECRET.to_vec())
        .connect_tls(&w.connector(), "localhost", server.addr.port())
        .unwrap();
    let who: (bool, Option<String>) = conn.root().unwrap().call_method("whoami", ()).unwrap();
    assert_eq!(who, (false, Some("shared-secret".to_string())));
}

/// The relay's part of the shared-secret exchange: passes the server's
/// challenge to the victim and the victim's answer to the server, and
/// returns the server's verdict byte (0: accepted), proof included.
fn relay_exchange(victim: &mut impl ReadWrite, server: &mut impl ReadWrite) -> u8 {
    let mut challenge = [0u8; 14 + 32];
    server.read_exact(&mut challenge).unwrap();
    victim.write_all(&challenge).unwrap();
    victim.flush().unwrap();
    let mut answer = [0u8; 64];
    victim.read_exact(&mut answer).unwrap();
    server.write_all(&answer).unwrap();
    server.flush().unwrap();
    let mut verdict = [0u8; 1];
    server.read_exact(&mut verdict).unwrap();
    verdict[0]
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Over plain TCP, a relay that does not know the secret passes the
/// exchange between a real client and the server, then calls the server
/// on the connection the client's answer authenticated. This is what the
/// docs of `SharedSecret` warn of.
#[test]
fn over_plain_tcp_a_relay_hijacks_a_shared_secret_exchange() {
    let server = Running::start(
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(calc_service()))
            .unwrap()
            .authenticator(SharedSecret::new(SECRET.to_vec())),
    );
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let victim =
        thread::spawn(move || Builder::default().shared_secret(SECRET.to_vec()).connect_tcp(relay_addr));
    let (mut from_victim, _) = relay.accept().unwrap();
    let mut upstream = TcpStream::connect(server.addr).unwrap();
    assert_eq!(relay_exchange(&mut from_victim, &mut upstream), 0, "the server accepted the relayed answer");
    let mut proof = [0u8; 32];
    upstream.read_exact(&mut proof).unwrap();
    drop(from_victim);
    let _ = victim.join();
    // The relay's own calls, authenticated by the victim's answer.
    let hijacked = Builder::default().over_stream(upstream).unwrap();
    assert_eq!(hijacked.root().unwrap().call_method::<i64>("add", (40, 2)).unwrap(), 42);
}

/// The same relay over TLS, even holding a certificate the client trusts
/// (one misissued by its authority): the client's answer is bound to its
/// TLS session with the relay, the server checks it against its own
/// session with the relay, and refuses it.
#[test]
fn over_tls_the_relayed_exchange_is_refused() {
    logcap::install();
    let w = world();
    let server = w.serve_with_secret();
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let connector = w.connector();
    let victim = thread::spawn(move || {
        Builder::default().shared_secret(SECRET.to_vec()).connect_tls(&connector, "localhost", relay_port)
    });

    // The relay: a TLS server to the victim with the misissued certificate,
    // a TLS client of the real server.
    let misissued = w.ca.server(&["localhost"]);
    let relay_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(pem_certs(&misissued.chain_pem), pem_key(&misissued.key_pem))
        .unwrap();
    let (socket, _) = relay.accept().unwrap();
    let mut from_victim =
        rustls::StreamOwned::new(rustls::ServerConnection::new(Arc::new(relay_config)).unwrap(), socket);
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(pem_certs(&w.ca.pem()));
    let client_config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut upstream = rustls::StreamOwned::new(
        rustls::ClientConnection::new(Arc::new(client_config), name).unwrap(),
        TcpStream::connect(server.addr).unwrap(),
    );
    assert_eq!(relay_exchange(&mut from_victim, &mut upstream), 1, "the server refused the relayed answer");
    logcap::wait_for(&["refused", "does not know the shared secret"], PATIENCE);
    drop(from_victim);
    assert!(victim.join().unwrap().is_err(), "the victim was not authenticated either");
}

fn pem_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().unwrap()
}

fn pem_key(pem: &[u8]) -> rustls::pki_types::PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).unwrap()
}

#[test]
fn bad_certificates_and_keys_are_named_when_given() {
    let err = TlsAcceptor::new(b"not a certificate", b"nor a key").unwrap_err();
    assert_eq!(
        err.to_string(),
        "TLS: the server certificate chain has no certificate (expected PEM \"BEGIN CERTIFICATE\")"
    );
    let w = world();
    let err = TlsAcceptor::new(
        &w.server.chain_pem,
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("TLS: the server certificate and key:"), "{err}");
    let stream = TcpStream::connect(w.serve(Builder::default()).addr).unwrap();
    let err = Builder::default().over_tls_stream(&w.connector(), "not a name!", stream).unwrap_err();
    assert_eq!(err.to_string(), "TLS: \"not a name!\" is not a server name (a DNS name or an IP address)");
}

/// `with_system_roots` reads the system's store, which `SSL_CERT_FILE`
/// names when set (as OpenSSL's does): pointed at the test authority, it
/// trusts the test server. (The only test of this binary that sets it.)
#[test]
fn system_roots_are_the_store_ssl_cert_file_names() {
    let w = world();
    let server = w.serve(Builder::default().service(calc_service()).tls(w.acceptor()));
    let store = std::env::temp_dir().join(format!("netref-tls-roots-{}.pem", std::process::id()));
    std::fs::write(&store, w.ca.pem()).unwrap();
    std::env::set_var("SSL_CERT_FILE", &store);
    let connector = TlsConnector::with_system_roots();
    std::env::remove_var("SSL_CERT_FILE");
    let _ = std::fs::remove_file(&store);
    let conn = Builder::default().connect_tls(&connector.unwrap(), "localhost", server.addr.port()).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (2, 2)).unwrap(), 4);
}

/// rustls configurations of the user's own, used as they are; the
/// conveniences that would rebuild them say so instead.
#[test]
fn rustls_configs_of_ones_own() {
    let w = world();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(pem_certs(&w.server.chain_pem), pem_key(&w.server.key_pem))
        .unwrap();
    let acceptor = TlsAcceptor::from_config(Arc::new(server_config));
    let server = w.serve(Builder::default().service(calc_service()).tls(acceptor.clone()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(pem_certs(&w.ca.pem()));
    let client_config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = TlsConnector::from_config(Arc::new(client_config));
    let conn = Builder::default().connect_tls(&connector, "localhost", server.addr.port()).unwrap();
    assert_eq!(conn.root().unwrap().call_method::<i64>("add", (3, 4)).unwrap(), 7);

    let leaf = w.ca.client("alice.clients.test");
    let err = connector.with_client_certificate(&leaf.chain_pem, &leaf.key_pem).unwrap_err();
    assert!(err.to_string().contains("set the certificate in that config"), "{err}");
    let err = acceptor.require_client_certificates(&w.ca.pem()).unwrap_err();
    assert!(err.to_string().contains("set the client verifier in that config"), "{err}");
}
