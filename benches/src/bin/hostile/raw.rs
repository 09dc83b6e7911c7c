//! A peer writing netref's frames by hand, for attacks no well-behaved
//! client would make.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use netref::wire::{self, Cbor, FrameDecoder, Message, WireRequest, FEATURES, VERSION};

/// The bytes of one frame holding `msg`.
pub(crate) fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_frame(&msg.to_cbor(), &mut out, usize::MAX).expect("encodable");
    out
}

/// Our hello.
pub(crate) fn hello() -> Vec<u8> {
    frame(&Message::Hello { version: VERSION, features: FEATURES })
}

/// A call of `name` on the peer's object `target`.
pub(crate) fn call(seq: u64, target: u64, name: &str, args: Vec<Cbor>) -> Vec<u8> {
    let request = WireRequest::CallMethod { target, name: name.into(), args: Cbor::Array(args) };
    frame(&Message::Request { seq, request })
}

/// Cancels the request `seq` (a one-way request).
pub(crate) fn cancel(seq: u64) -> Vec<u8> {
    frame(&Message::Request { seq: 0, request: WireRequest::Cancel(seq) })
}

/// A connection past its handshake, with the id of the server's root.
pub(crate) struct RawClient {
    pub(crate) stream: TcpStream,
    pub(crate) root: u64,
    decoder: FrameDecoder,
}

impl RawClient {
    /// Connects, says hello and asks for the root.
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<RawClient> {
        let mut stream = TcpStream::connect(addr)?;
        stream.write_all(&hello())?;
        stream.write_all(&frame(&Message::Request { seq: 1, request: WireRequest::Root }))?;
        let mut client = RawClient { stream, root: 0, decoder: FrameDecoder::new() };
        loop {
            match client.recv()? {
                Message::Reply { seq: 1, value: Cbor::Tag(_, id) } => {
                    client.root = id.as_integer().and_then(|i| u64::try_from(i).ok()).unwrap_or(0);
                    return Ok(client);
                }
                Message::Hello { .. } => continue,
                other => return Err(io::Error::other(format!("expected the root, got {other:?}"))),
            }
        }
    }

    /// The next message.
    pub(crate) fn recv(&mut self) -> io::Result<Message> {
        loop {
            if let Some(body) = self.decoder.next_frame(usize::MAX).map_err(io::Error::other)? {
                let item = wire::decode_cbor(body, 256).map_err(io::Error::other)?;
                return Message::from_cbor(item).map_err(io::Error::other);
            }
            let mut buf = [0u8; 64 << 10];
            match self.stream.read(&mut buf)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => self.decoder.push(&buf[..n]).map_err(io::Error::other)?,
            }
        }
    }
}
