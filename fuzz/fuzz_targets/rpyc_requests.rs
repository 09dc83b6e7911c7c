//! A hostile RPyC peer: a fuzzed stream of RPyC 6 frames (requests of every
//! handler number with arbitrary boxed arguments, replies and exceptions to
//! requests never made, compressed frames, raw bytes) fed to a server
//! protocol speaking RPyC's dialect, whose requests are served by a small
//! object as a connection would. Nothing may panic; everything this side
//! writes must be valid RPyC (each frame decodes as a message); a closed
//! connection holds nothing.
//!
//! The body is [`run`], which `core/tests/fuzz_corpus.rs` also calls on every
//! committed corpus file, so the corpus is a regression test in `cargo test`.
#![cfg_attr(fuzzing, no_main)]

use std::io::Write;
use std::time::Instant;

use arbitrary::Arbitrary;
use netref::protocol::{Event, Input as ProtocolInput, Protocol, Request};
use netref::wire::rpyc::{Boxed, Brine, IdPack, Packet};
use netref::{Config, Dialect, ObjectBuilder, ObjectRef, RemoteObject, Value};

/// A boxed value, as a peer might send one.
#[derive(Arbitrary, Debug)]
enum Item {
    None,
    Bool(bool),
    Int(i64),
    Big(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Complex,
    Tuple(Vec<Item>),
    /// Label 3: one of this side's ids (0..8), under some name.
    Ours {
        id: u8,
        named_right: bool,
    },
    /// Label 4: an object of the peer's.
    Theirs(u8),
    /// An id pack passed by value (INSPECT's argument).
    Pack(u8),
    /// `n` tuples deep.
    Deep(u8),
}

#[derive(Arbitrary, Debug)]
enum Frame {
    Request { seq: u16, handler: u8, args: Vec<Item> },
    Reply { seq: u16, value: Item },
    Exception { seq: u16, stop_iteration: bool },
    Compressed { seq: u16, handler: u8, args: Vec<Item> },
    Raw(Vec<u8>),
}

/// A fuzz input: frames, each delivered in chunks of `split` bytes.
#[derive(Arbitrary, Debug)]
pub struct Input {
    frames: Vec<Frame>,
    split: u8,
}

fn pack(id: u8, named_right: bool) -> IdPack {
    let name = if named_right { "netref.Calc" } else { "elsewhere.Thing" };
    IdPack { name: name.into(), class_id: 1, instance_id: i128::from(id % 8) }
}

fn brine(item: &Item, depth: u32) -> Option<Brine> {
    Some(match item {
        Item::None => Brine::None,
        Item::Bool(b) => Brine::Bool(*b),
        Item::Int(i) => Brine::Int((*i).into()),
        Item::Big(i) => Brine::Int(*i),
        Item::Float(f) => Brine::Float(*f),
        Item::Str(s) => Brine::Str(s.clone()),
        Item::Bytes(b) => Brine::Bytes(b.clone()),
        Item::Complex => Brine::Complex(1.0, -1.0),
        Item::Tuple(items) if depth < 8 => {
            Brine::Tuple(items.iter().take(8).map(|i| brine(i, depth + 1)).collect::<Option<_>>()?)
        }
        Item::Pack(id) => {
            Brine::Tuple(vec![Brine::Str("netref.Calc".into()), Brine::Int(1), Brine::Int((*id).into())])
        }
        Item::Deep(n) => (0..*n).fold(Brine::None, |v, _| Brine::Tuple(vec![v])),
        _ => return None,
    })
}

fn boxed(item: &Item, depth: u32) -> Boxed {
    match item {
        Item::Ours { id, named_right } => Boxed::ReceiverObject(pack(*id, *named_right)),
        Item::Theirs(id) => Boxed::SenderObject(IdPack {
            name: "builtins.function".into(),
            class_id: 9,
            instance_id: (*id).into(),
        }),
        Item::Tuple(items) if depth < 8 => {
            Boxed::tuple(items.iter().take(8).map(|i| boxed(i, depth + 1)).collect())
        }
        other => Boxed::Value(brine(other, depth).unwrap_or(Brine::None)),
    }
}

fn payload(packet: Packet) -> Vec<u8> {
    let mut out = Vec::new();
    packet.encode(&mut out);
    out
}

fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.push(flag);
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

fn bytes(f: &Frame) -> Vec<u8> {
    let request = |seq: u16, handler: u8, args: &[Item]| Packet::Request {
        seq: seq.into(),
        handler: handler.into(),
        args: Boxed::tuple(args.iter().take(8).map(|a| boxed(a, 0)).collect()),
    };
    match f {
        Frame::Request { seq, handler, args } => frame(0, &payload(request(*seq, *handler, args))),
        Frame::Reply { seq, value } => {
            frame(0, &payload(Packet::Reply { seq: (*seq).into(), value: boxed(value, 0) }))
        }
        Frame::Exception { seq, stop_iteration } => {
            let exception = if *stop_iteration {
                netref::wire::rpyc::Vinegar::StopIteration
            } else {
                netref::wire::rpyc::Vinegar::from_remote_error(&netref::RemoteError::new(
                    "ValueError",
                    "fuzz",
                ))
            };
            frame(0, &payload(Packet::Exception { seq: (*seq).into(), exception }))
        }
        Frame::Compressed { seq, handler, args } => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&payload(request(*seq, *handler, args))).unwrap();
            frame(1, &z.finish().unwrap())
        }
        Frame::Raw(b) => b.clone(),
    }
}

/// Everything `p` wrote must be RPyC 6 frames holding valid messages.
fn check_output(p: &mut Protocol) {
    let mut out = Vec::new();
    p.write_to(&mut out).unwrap();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert_eq!((rest[4], rest[5 + len]), (0, b'\n'));
        Packet::decode(&rest[5..5 + len], usize::MAX).expect("this side writes valid RPyC messages");
        rest = &rest[6 + len..];
    }
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|input: Input| run(input));

/// One fuzz input: the frames fed in, each request served.
pub fn run(input: Input) {
    let now = Instant::now();
    let config = Config::default()
        .dialect(Dialect::Rpyc)
        .max_frame_len(1 << 16)
        .max_frame_items(512)
        .max_depth(8)
        .max_exported(8)
        .max_imported(8);
    let mut p = Protocol::new(config, now);
    let root = ObjectBuilder::new("Calc")
        .method("add", |a: i64, b: i64| a.wrapping_add(b))
        .method("echo", |v: Value| v)
        .method("keep", |cb: RemoteObject| cb.id())
        .attr("version", "1")
        .build();
    let split = usize::from(input.split.max(1));
    for f in input.frames.iter().take(64) {
        for chunk in bytes(f).chunks(split) {
            let _ = p.handle_input(now, ProtocolInput::Receive(chunk));
        }
        while let Some(event) = p.poll_event() {
            let Event::Request { seq, request } = event else { continue };
            let result = match request {
                Request::Root => Ok(Value::Object(ObjectRef::Local(root.clone()))),
                Request::Ping(v) => Ok(v),
                Request::Call { target, args } => target.object().call(args),
                Request::CallMethod { target, name, args } => target.object().call_method(&name, args),
                Request::GetAttr { target, name } => target.object().getattr(&name),
                Request::Dir { target } => Ok(netref::to_value(&target.object().dir()).unwrap()),
                Request::Invalid(e) => Err(e),
            };
            p.send_reply(seq, result);
        }
        check_output(&mut p);
        if p.is_closed() {
            assert_eq!(p.exported_count(), 0);
            assert_eq!(p.imported_count(), 0);
            break;
        }
    }
}
