//! A hand-driven peer speaking raw netref frames over a socket, for tests
//! that need a peer misbehaving in one precise way.
#![allow(dead_code)]

use std::io::{Read, Write};

use netref::wire::Cbor;
use netref::wire::{self, FrameDecoder, Message, WireRequest, FEATURES, VERSION};

/// The bytes of one frame holding `msg`.
pub(crate) fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_frame(&msg.to_cbor(), &mut out, usize::MAX).unwrap();
    out
}

/// Our hello.
pub(crate) fn hello() -> Message {
    Message::Hello { version: VERSION, features: FEATURES }
}

/// A request for the peer's root object.
pub(crate) fn root(seq: u64) -> Message {
    Message::Request { seq, request: WireRequest::Root }
}

/// A method call on the peer's object `target`.
pub(crate) fn call_method(seq: u64, target: u64, name: &str, args: Vec<Cbor>) -> Message {
    Message::Request {
        seq,
        request: WireRequest::CallMethod { target, name: name.into(), args: Cbor::Array(args) },
    }
}

/// A peer over any blocking stream.
pub(crate) struct RawPeer<S> {
    pub(crate) stream: S,
    decoder: FrameDecoder,
}

impl<S: Read + Write> RawPeer<S> {
    pub(crate) fn new(stream: S) -> Self {
        RawPeer { stream, decoder: FrameDecoder::new() }
    }

    pub(crate) fn send(&mut self, msg: &Message) -> std::io::Result<()> {
        self.stream.write_all(&frame(msg))
    }

    /// The next message from the peer; `None` at end of stream.
    pub(crate) fn recv(&mut self) -> Option<Message> {
        loop {
            if let Some(body) = self.decoder.next_frame(usize::MAX).unwrap() {
                let item = wire::decode_cbor(body, 256).unwrap();
                return Some(Message::from_cbor(item).unwrap());
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.push(&buf[..n]).expect("memory for the frame"),
            }
        }
    }

    /// Says hello and asks for the root (request 1), with the peer serving
    /// meanwhile; the root's id.
    pub(crate) fn handshake(&mut self) -> u64 {
        self.send(&hello()).unwrap();
        self.send(&root(1)).unwrap();
        match self.answer_to(1) {
            Message::Reply { value: Cbor::Tag(_, id), .. } => {
                id.as_integer().and_then(|i| u64::try_from(i).ok()).expect("an object id")
            }
            other => panic!("expected the root, got {other:?}"),
        }
    }

    /// Skips messages until the reply or error to `seq`.
    pub(crate) fn answer_to(&mut self, seq: u64) -> Message {
        loop {
            match self.recv() {
                Some(m @ (Message::Reply { seq: s, .. } | Message::Error { seq: s, .. })) if s == seq => {
                    return m
                }
                Some(_) => continue,
                None => panic!("the peer closed before answering request {seq}"),
            }
        }
    }
}
