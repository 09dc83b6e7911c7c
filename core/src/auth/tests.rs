//! The shared-secret exchange byte for byte, with fixed nonces.

use std::io::{self, Cursor, Read, Write};

use super::*;

const SECRET: &[u8] = b"netref pinned exchange secret";

fn server_nonce() -> [u8; NONCE_LEN] {
    std::array::from_fn(|i| i as u8)
}

fn client_nonce() -> [u8; NONCE_LEN] {
    std::array::from_fn(|i| 0xff - i as u8)
}

/// HMAC(SECRET, "netref-auth client" || Ns || Nc) and
/// HMAC(SECRET, "netref-auth server" || Nc || Ns) for the nonces above, as
/// the hand-written SHA-256 computed them (and Python's `hmac` agrees), so
/// a change of MAC implementation cannot change the wire.
const CLIENT_MAC: &str = "664ceeee7ba22508e4b9f2dfdff0a33cab155d0edba7208e26622cb021e7c151";
const SERVER_MAC: &str = "0aff3b2de79a8e85651150339bcadc0e7b7ed7bcb831164d020a929de14ff2d5";

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// A peer that has already said everything it will say (`input`) and
/// records what it is told.
struct Scripted {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Scripted {
    fn saying(input: Vec<u8>) -> Self {
        Scripted { input: Cursor::new(input), output: Vec::new() }
    }
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn secret() -> Secret {
    Secret::new(SECRET.to_vec())
}

#[test]
fn the_server_sends_exactly_the_pinned_challenge_and_proof() {
    let mut client = Scripted::saying(concat(&[&client_nonce(), &unhex(CLIENT_MAC)]));
    let creds = challenge(&mut client, &secret(), server_nonce()).unwrap();
    assert_eq!(creds, Credentials::new("shared-secret"));
    let want = concat(&[b"netref-auth/1\n", &server_nonce(), &[0x00], &unhex(SERVER_MAC)]);
    assert_eq!(client.output, want);
}

#[test]
fn the_client_sends_exactly_the_pinned_answer() {
    let mut server =
        Scripted::saying(concat(&[b"netref-auth/1\n", &server_nonce(), &[0x00], &unhex(SERVER_MAC)]));
    let creds = answer(&mut server, &secret(), client_nonce()).unwrap();
    assert_eq!(creds, Credentials::new("shared-secret"));
    assert_eq!(server.output, concat(&[&client_nonce(), &unhex(CLIENT_MAC)]));
}

#[test]
fn the_server_rejects_an_answer_one_bit_off() {
    let mut mac = unhex(CLIENT_MAC);
    mac[31] ^= 1;
    let mut client = Scripted::saying(concat(&[&client_nonce(), &mac]));
    let err = challenge(&mut client, &secret(), server_nonce()).unwrap_err();
    assert!(matches!(err, crate::Error::Auth(AuthError::WrongAnswer)), "{err}");
    assert_eq!(client.output, concat(&[b"netref-auth/1\n", &server_nonce(), &[0x01]]));
}

#[test]
fn the_client_rejects_a_proof_one_bit_off() {
    let mut proof = unhex(SERVER_MAC);
    proof[0] ^= 0x80;
    let mut server = Scripted::saying(concat(&[b"netref-auth/1\n", &server_nonce(), &[0x00], &proof]));
    let err = answer(&mut server, &secret(), client_nonce()).unwrap_err();
    assert!(matches!(err, crate::Error::Auth(AuthError::ServerUnproven)), "{err}");
}
