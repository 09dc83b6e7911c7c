//! Our use of RustCrypto's HMAC-SHA256 against RFC 4231, and the
//! shared-secret exchange byte for byte with fixed nonces.

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
/// netref's former hand-written SHA-256 computed them (and Python's `hmac`
/// agrees), so a change of MAC implementation cannot change the wire.
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 4231, test cases 1-4, 6 and 7 (5 is a truncated output), through
/// [`mac`] exactly as the exchange uses it: the secret as the key, the
/// message in three parts (label and two nonces there).
#[test]
fn rfc_4231_vectors() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            (1..=25).collect(),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
                .to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (key, data, want) in cases {
        let key = Secret::new(key);
        let (label, rest) = data.split_at(data.len() / 3);
        let (first, second) = rest.split_at(rest.len() / 2);
        assert_eq!(hex(&mac(&key, label, first, second, &[]).finalize().into_bytes()), want);
        // However the message is split, the MAC is the same (the channel
        // binding is its last part).
        assert_eq!(hex(&mac(&key, label, first, &[], second).finalize().into_bytes()), want);
        assert_eq!(hex(&mac(&key, &data, &[], &[], &[]).finalize().into_bytes()), want);
        assert_eq!(hex(&mac(&key, &[], &[], &[], &data).finalize().into_bytes()), want);
        // verify_slice takes the right tag and refuses a changed or truncated one.
        let tag = unhex(want);
        assert!(mac(&key, label, first, second, &[]).verify_slice(&tag).is_ok());
        let mut changed = tag.clone();
        changed[17] ^= 0x04;
        assert!(mac(&key, label, first, second, &[]).verify_slice(&changed).is_err());
        assert!(mac(&key, label, first, second, &[]).verify_slice(&tag[..16]).is_err());
        assert!(mac(&key, label, first, second, &[]).verify_slice(&[]).is_err());
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
    let creds = challenge(&mut client, &secret(), server_nonce(), None).unwrap();
    assert_eq!(creds, Credentials::new("shared-secret"));
    let want = concat(&[b"netref-auth/1\n", &server_nonce(), &[0x00], &unhex(SERVER_MAC)]);
    assert_eq!(client.output, want);
}

#[test]
fn the_client_sends_exactly_the_pinned_answer() {
    let mut server =
        Scripted::saying(concat(&[b"netref-auth/1\n", &server_nonce(), &[0x00], &unhex(SERVER_MAC)]));
    let creds = answer(&mut server, &secret(), client_nonce(), None).unwrap();
    assert_eq!(creds, Credentials::new("shared-secret"));
    assert_eq!(server.output, concat(&[&client_nonce(), &unhex(CLIENT_MAC)]));
}

#[test]
fn the_server_rejects_an_answer_one_bit_off() {
    let mut mac = unhex(CLIENT_MAC);
    mac[31] ^= 1;
    let mut client = Scripted::saying(concat(&[&client_nonce(), &mac]));
    let err = challenge(&mut client, &secret(), server_nonce(), None).unwrap_err();
    assert!(matches!(err, crate::Error::Auth(AuthError::WrongAnswer)), "{err}");
    assert_eq!(client.output, concat(&[b"netref-auth/1\n", &server_nonce(), &[0x01]]));
}

#[test]
fn the_client_rejects_a_proof_one_bit_off() {
    let mut proof = unhex(SERVER_MAC);
    proof[0] ^= 0x80;
    let mut server = Scripted::saying(concat(&[b"netref-auth/1\n", &server_nonce(), &[0x00], &proof]));
    let err = answer(&mut server, &secret(), client_nonce(), None).unwrap_err();
    assert!(matches!(err, crate::Error::Auth(AuthError::ServerUnproven)), "{err}");
}
