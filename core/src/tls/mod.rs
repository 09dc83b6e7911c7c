//! TLS with rustls (feature `tls`): RPyC's `ssl_connect` and its SSL
//! authenticator, between the socket and the protocol on every backend.
//!
//! A client connects with [`Builder::connect_tls`](crate::Builder::connect_tls)
//! and a [`TlsConnector`] (the roots it trusts, and its own certificate for
//! mutual TLS); a server serves TLS when its builder has a [`TlsAcceptor`]
//! ([`Builder::tls`](crate::Builder::tls)): [`ThreadedServer`](crate::ThreadedServer)
//! and every event-loop server, whose loop runs each handshake without
//! blocking (the connection's reads drive it, and its service starts once
//! it is over). A client certificate the server required is in the
//! connection's [`Credentials`]: the chain, and
//! [`certificate_is_valid_for`](Credentials::certificate_is_valid_for) to
//! authorise by name.
//!
//! A bad certificate, a wrong name, a plaintext peer, or a handshake that
//! does not end within [`auth_timeout`](crate::Builder::auth_timeout) (on a
//! loop: [`Config::handshake_timeout`](crate::Config)) ends that connection
//! with a [`TlsError`] saying which.
//!
//! Over TLS, a [shared secret](crate::auth::SharedSecret) is bound to the TLS
//! session (both sides mix its keying-material exporter into their answers),
//! so a relay that terminates TLS on each side cannot pass the exchange on.
//!
//! ```no_run
//! use netref::tls::{TlsAcceptor, TlsConnector};
//! use netref::{Builder, ObjectBuilder, Service, ThreadedServer};
//!
//! # fn main() -> netref::Result<()> {
//! # let (cert_pem, key_pem, ca_pem) = (Vec::new(), Vec::new(), Vec::new());
//! // Server: its certificate chain and key (PEM).
//! let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
//! let acceptor = TlsAcceptor::new(&cert_pem, &key_pem)?;
//! let server = ThreadedServer::bind_tcp("0.0.0.0:18812", Builder::default().service(Service::object(calc)).tls(acceptor))?;
//! std::thread::spawn(move || server.start());
//!
//! // Client: the roots it trusts (or TlsConnector::with_system_roots()).
//! let connector = TlsConnector::with_roots(&ca_pem)?;
//! let conn = Builder::default().connect_tls(&connector, "calc.example.org", 18812)?;
//! assert_eq!(conn.root()?.call_method::<i64>("add", (40, 2))?, 42);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use crate::auth::Credentials;
use crate::error::{Result, TlsError, TlsPeer};
use crate::transport::Stream;

mod errors;
mod transport;

pub(crate) use transport::TlsTransport;

/// The crypto of every session: rustls's default provider, aws-lc-rs
/// (with post-quantum key exchange).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn config_error(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(format!("{what}: {e}"))
}

/// The certificates in `pem`, at least one.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(&format!("reading the {what} (PEM)"), e))?;
    if certs.is_empty() {
        return Err(TlsError::Config(format!(
            "the {what} has no certificate (expected PEM \"BEGIN CERTIFICATE\")"
        )));
    }
    Ok(certs)
}

/// The private key in `pem`.
fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| config_error("reading the private key (PEM)", e))
}

/// A root store holding the certificates in `pem`.
fn roots(pem: &[u8], what: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(pem, what)? {
        store.add(cert).map_err(|e| config_error(&format!("a certificate of the {what}"), e))?;
    }
    Ok(store)
}

/// How a client runs TLS: the roots it trusts to sign servers'
/// certificates, and optionally its own certificate (mutual TLS). Cheap to
/// clone; one serves any number of connections.
#[derive(Clone)]
pub struct TlsConnector {
    /// The roots it was made with (`None` from a configuration of the
    /// user's own).
    roots: Option<Arc<RootCertStore>>,
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    /// Trusts the operating system's root certificates (as a browser does):
    /// for servers with certificates from a public authority.
    pub fn with_system_roots() -> Result<Self> {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found.errors.first().map_or_else(|| "none found".to_string(), |e| e.to_string());
            return Err(TlsError::Config(format!("no usable system root certificates ({why})")).into());
        }
        Self::from_roots(store)
    }

    /// Trusts the certificates in `ca_pem` (PEM), and only those: for a
    /// private authority, or a server's self-signed certificate.
    pub fn with_roots(ca_pem: &[u8]) -> Result<Self> {
        Self::from_roots(roots(ca_pem, "root certificates")?)
    }

    fn from_roots(store: RootCertStore) -> Result<Self> {
        let roots = Arc::new(store);
        let config = Self::builder(&roots)?.with_no_client_auth();
        Ok(TlsConnector { roots: Some(roots), config: Arc::new(config) })
    }

    fn builder(
        roots: &Arc<RootCertStore>,
    ) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
        Ok(ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("the protocol versions", e))?
            .with_root_certificates(roots.clone()))
    }

    /// Presents the certificate chain in `chain_pem` (this client's own
    /// first) with its private key `key_pem` to servers that ask for one.
    pub fn with_client_certificate(self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let Some(roots) = &self.roots else {
            let why =
                "with_client_certificate on TlsConnector::from_config: set the certificate in that config";
            return Err(TlsError::Config(why.into()).into());
        };
        let chain = certificates(chain_pem, "client certificate chain")?;
        let config = Self::builder(roots)?
            .with_client_auth_cert(chain, private_key(key_pem)?)
            .map_err(|e| config_error("the client certificate and key", e))?;
        Ok(TlsConnector { roots: self.roots.clone(), config: Arc::new(config) })
    }

    /// Uses a rustls configuration of your own as it is (its roots,
    /// verifier, versions and certificates).
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        TlsConnector { roots: None, config }
    }

    /// A client session with the server named `server_name` over `stream`.
    pub(crate) fn transport(&self, stream: Stream, server_name: &str) -> Result<TlsTransport> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
            TlsError::Config(format!("{server_name:?} is not a server name (a DNS name or an IP address)"))
        })?;
        let session =
            ClientConnection::new(self.config.clone(), name).map_err(|e| config_error("starting", e))?;
        Ok(TlsTransport::new(stream, session.into(), TlsPeer::Server, Some(server_name.to_string()))?)
    }
}

/// How a server runs TLS: its certificate chain and private key, and
/// optionally the roots whose client certificates it requires (mutual
/// TLS). Cheap to clone; set it on a server's builder with
/// [`Builder::tls`](crate::Builder::tls).
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    /// The certificate chain and key it was made with (`None` from a
    /// configuration of the user's own).
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl TlsAcceptor {
    /// Serves the certificate chain in `chain_pem` (the server's own
    /// first, then any intermediates) with its private key `key_pem`.
    pub fn new(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let chain = certificates(chain_pem, "server certificate chain")?;
        let key = private_key(key_pem)?;
        let config = Self::builder()?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| config_error("the server certificate and key", e))?;
        Ok(TlsAcceptor { config: Arc::new(config), identity: Some((chain, Arc::new(key))) })
    }

    fn builder() -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>> {
        Ok(ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("the protocol versions", e))?)
    }

    /// Requires every client to present a certificate signed by one of
    /// `ca_pem`'s (PEM); a client without one is refused at the handshake.
    /// The chain it presented is in the connection's
    /// [`Credentials::certificates`].
    pub fn require_client_certificates(self, ca_pem: &[u8]) -> Result<Self> {
        let Some((chain, key)) = &self.identity else {
            let why = "require_client_certificates on TlsAcceptor::from_config: set the client verifier in that config";
            return Err(TlsError::Config(why.into()).into());
        };
        let store = Arc::new(roots(ca_pem, "client roots")?);
        let verifier = WebPkiClientVerifier::builder_with_provider(store, provider())
            .build()
            .map_err(|e| config_error("the client roots", e))?;
        let config = Self::builder()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| config_error("the server certificate and key", e))?;
        Ok(TlsAcceptor { config: Arc::new(config), identity: self.identity })
    }

    /// Uses a rustls configuration of your own as it is.
    pub fn from_config(config: Arc<ServerConfig>) -> Self {
        TlsAcceptor { config, identity: None }
    }

    /// A server session over the accepted `stream`.
    pub(crate) fn transport(&self, stream: Stream) -> Result<TlsTransport> {
        let session = ServerConnection::new(self.config.clone()).map_err(|e| config_error("starting", e))?;
        Ok(TlsTransport::new(stream, session.into(), TlsPeer::Client, None)?)
    }
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots = self.roots.as_ref().map(|r| r.len());
        f.debug_struct("TlsConnector").field("roots", &roots).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        let chain = self.identity.as_ref().map(|(chain, _)| chain.len());
        f.debug_struct("TlsAcceptor").field("chain", &chain).finish_non_exhaustive()
    }
}

impl Credentials {
    /// True when the peer's TLS certificate (the first of
    /// [`certificates`](Self::certificates)) is valid for `name`, a DNS
    /// name or an IP address among its subject alternative names: how a
    /// service authorises a client by the name its certificate proves.
    /// False without a certificate. The chain itself was verified at the
    /// handshake.
    pub fn certificate_is_valid_for(&self, name: &str) -> bool {
        let (Some(first), Ok(name)) = (self.certificates.first(), ServerName::try_from(name)) else {
            return false;
        };
        let der = CertificateDer::from(first.as_slice());
        webpki::EndEntityCert::try_from(&der)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
    }
}
