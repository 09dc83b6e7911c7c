//! rustls's errors in the user's terms ([`TlsError`]).

use rustls::{CertificateError, Error as Rustls, InvalidMessage};

use crate::error::{TlsError, TlsPeer};

/// What `e` means for this connection: `peer` is the other end,
/// `server_name` the name a server's certificate must be valid for (client
/// side), `handshaking` whether the handshake was still going on.
pub(crate) fn from_rustls(
    e: &Rustls,
    peer: TlsPeer,
    server_name: Option<&str>,
    handshaking: bool,
) -> TlsError {
    match e {
        // The first bytes were not a TLS record: a plaintext peer.
        Rustls::InvalidMessage(
            InvalidMessage::InvalidContentType
            | InvalidMessage::UnknownProtocolVersion
            | InvalidMessage::MessageTooLarge,
        ) if handshaking => TlsError::NotTls { peer },
        Rustls::InvalidCertificate(why) => {
            TlsError::Certificate { peer, reason: certificate_reason(why, server_name) }
        }
        Rustls::NoCertificatesPresented => TlsError::NoClientCertificate,
        Rustls::AlertReceived(alert) => TlsError::Refused { peer, alert: format!("{alert:?}") },
        other => TlsError::Other(other.to_string()),
    }
}

/// Why a certificate was refused, as the end of a sentence that starts
/// "the server's certificate ...".
fn certificate_reason(why: &CertificateError, server_name: Option<&str>) -> String {
    match why {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            match server_name {
                Some(name) => format!("is not valid for {name:?}"),
                None => "is not valid for the name asked for".into(),
            }
        }
        CertificateError::UnknownIssuer => "is not signed by a trusted root".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "has expired".into(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet".into()
        }
        CertificateError::Revoked => "is revoked".into(),
        CertificateError::BadEncoding => "is not a well-formed certificate".into(),
        CertificateError::BadSignature => "has a bad signature".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not meant for this use (its extended key usage)".into()
        }
        other => format!("was refused ({other:?})"),
    }
}
