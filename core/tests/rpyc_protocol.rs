//! RPyC 6's dialect driven directly: frames a Python peer would send, fed
//! to a `Protocol` on explicit instants, and what it answers. Nothing here
//! opens a socket (`rpyc_interop.rs` runs the real rpyc against sockets).

use std::time::Instant;

use netref::protocol::{Event, Input, Protocol, Request};
use netref::wire::rpyc::{Boxed, Brine, IdPack, Packet, Vinegar};
use netref::{Config, Dialect, LocalObject, ObjectBuilder, ObjectRef, Value};

fn rpyc(dialect: Dialect) -> (Protocol, Instant) {
    let now = Instant::now();
    (Protocol::new(Config::default().dialect(dialect), now), now)
}

/// A frame holding `packet`, as Python's channel writes it.
fn frame(packet: Packet) -> Vec<u8> {
    let mut payload = Vec::new();
    packet.encode(&mut payload);
    raw_frame(0, &payload)
}

fn raw_frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.push(flag);
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

/// The messages `p` has to send.
fn sent(p: &mut Protocol) -> Vec<Packet> {
    let mut out = Vec::new();
    p.write_to(&mut out).unwrap();
    let mut packets = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert_eq!((rest[4], rest[5 + len]), (0, b'\n'), "an uncompressed frame ending in a newline");
        packets.push(Packet::decode(&rest[5..5 + len], usize::MAX).unwrap());
        rest = &rest[6 + len..];
    }
    packets
}

fn events(p: &mut Protocol) -> Vec<Event> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn request(seq: u64, handler: u64, args: Vec<Boxed>) -> Vec<u8> {
    frame(Packet::Request { seq, handler, args: Boxed::tuple(args) })
}

fn value(v: Brine) -> Boxed {
    Boxed::Value(v)
}

fn text(s: &str) -> Brine {
    Brine::Str(s.into())
}

fn calc() -> LocalObject {
    ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build()
}

/// Answers the requests `p` reports as a connection would, with `root`.
fn serve(p: &mut Protocol, root: &LocalObject) {
    for event in events(p) {
        let Event::Request { seq, request } = event else { panic!("{event:?}") };
        let result = match request {
            Request::Root => Ok(Value::Object(ObjectRef::Local(root.clone()))),
            Request::CallMethod { target, name, args } => target.object().call_method(&name, args),
            Request::Invalid(e) => Err(e),
            other => panic!("{other:?}"),
        };
        p.send_reply(seq, result);
    }
}

/// Sends `c.root` and returns the id pack the root arrived as.
fn root_pack(p: &mut Protocol, now: Instant, root: &LocalObject) -> IdPack {
    p.handle_input(now, Input::Receive(&request(0, 3, vec![]))).unwrap();
    serve(p, root);
    let [Packet::Reply { seq: 0, value: Boxed::SenderObject(pack) }] = &sent(p)[..] else { panic!() };
    pack.clone()
}

#[test]
fn a_python_clients_calls_and_releases() {
    let (mut p, now) = rpyc(Dialect::Rpyc);
    // RPyC has no greeting: nothing is said before the peer asks.
    assert!(sent(&mut p).is_empty());
    let root = calc();
    let pack = root_pack(&mut p, now, &root);
    assert_eq!((pack.name.as_str(), pack.instance_id), ("netref.Calc", 1));

    // INSPECT, as Python asks for a class it does not know: callable.
    p.handle_input(
        now,
        Input::Receive(&request(
            1,
            16,
            vec![value(Brine::Tuple(vec![text("netref.Calc"), Brine::Int(1), Brine::Int(1)]))],
        )),
    )
    .unwrap();
    let call = Brine::Tuple(vec![text("__call__"), Brine::None]);
    assert_eq!(sent(&mut p), [Packet::Reply { seq: 1, value: value(Brine::Tuple(vec![call])) }]);

    // One CALLATTR, served by the object, answered with Python's seq.
    let args = vec![
        Boxed::ReceiverObject(pack.clone()),
        value(text("add")),
        value(Brine::Tuple(vec![Brine::Int(1), Brine::Int(2)])),
        value(Brine::Tuple(vec![])),
    ];
    p.handle_input(now, Input::Receive(&request(2, 8, args))).unwrap();
    serve(&mut p, &root);
    assert_eq!(sent(&mut p), [Packet::Reply { seq: 2, value: value(Brine::Int(3)) }]);

    // Equality and hash are answered here; a str, too.
    let eq =
        vec![Boxed::ReceiverObject(pack.clone()), Boxed::ReceiverObject(pack.clone()), value(text("__eq__"))];
    p.handle_input(now, Input::Receive(&request(3, 11, eq))).unwrap();
    p.handle_input(now, Input::Receive(&request(4, 12, vec![Boxed::ReceiverObject(pack.clone())]))).unwrap();
    p.handle_input(now, Input::Receive(&request(5, 10, vec![Boxed::ReceiverObject(pack.clone())]))).unwrap();
    assert_eq!(
        sent(&mut p),
        [
            Packet::Reply { seq: 3, value: value(Brine::Bool(true)) },
            Packet::Reply { seq: 4, value: value(Brine::Int(1)) },
            Packet::Reply { seq: 5, value: value(text("<netref.Calc object, netref id 1>")) },
        ]
    );

    // DEL with the count of sends frees the export, and is acknowledged.
    assert_eq!(p.exported_count(), 1);
    p.handle_input(
        now,
        Input::Receive(&request(6, 15, vec![Boxed::ReceiverObject(pack), value(Brine::Int(1))])),
    )
    .unwrap();
    assert_eq!(sent(&mut p), [Packet::Reply { seq: 6, value: value(Brine::None) }]);
    assert_eq!(p.exported_count(), 0);
    assert_eq!(p.take_released_objects().len(), 1);
}

#[test]
fn requests_this_side_refuses_get_python_exceptions() {
    let (mut p, now) = rpyc(Dialect::Rpyc);
    let root = calc();
    let pack = root_pack(&mut p, now, &root);
    let stranger = IdPack { instance_id: 77, ..pack.clone() };
    let me = || Boxed::ReceiverObject(pack.clone());
    let cases: Vec<(u64, Vec<Boxed>, &str, &str)> = vec![
        (
            8,
            vec![
                Boxed::ReceiverObject(stranger),
                value(text("add")),
                value(Brine::Tuple(vec![])),
                value(Brine::Tuple(vec![])),
            ],
            "ReferenceError",
            "no object with id 77",
        ),
        (
            8,
            vec![
                me(),
                value(text("add")),
                value(Brine::Tuple(vec![Brine::Int(1)])),
                value(Brine::Tuple(vec![Brine::Tuple(vec![text("b"), Brine::Int(2)])])),
            ],
            "TypeError",
            "positional arguments only",
        ),
        (14, vec![me(), value(Brine::Int(4))], "ValueError", "pickling is disabled"),
        (6, vec![me(), value(text("x")), value(Brine::Int(1))], "AttributeError", "read-only"),
        (17, vec![me(), value(Brine::Int(10))], "TypeError", "not iterable"),
        (
            8,
            vec![me(), value(text("__class__")), value(Brine::Tuple(vec![])), value(Brine::Tuple(vec![]))],
            "AttributeError",
            "no exposed attribute '__class__'",
        ),
    ];
    for (seq, (handler, args, class, message)) in (10..).zip(cases) {
        p.handle_input(now, Input::Receive(&request(seq, handler, args))).unwrap();
        serve(&mut p, &root);
        let [Packet::Exception { seq: answered, exception: Vinegar::Raised { module, class: got, args, .. } }] =
            &sent(&mut p)[..]
        else {
            panic!("handler {handler}: not one exception")
        };
        assert_eq!((*answered, module.as_str(), got.as_str()), (seq, "builtins", class), "handler {handler}");
        let [Brine::Str(text)] = &args[..] else { panic!() };
        assert!(text.contains(message), "handler {handler}: {text}");
    }
    // The connection goes on.
    assert!(!p.is_closed());
}

#[test]
fn bad_input_ends_the_connection_with_an_error_naming_it() {
    let bomb = {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&vec![0; 4 << 20]).unwrap();
        raw_frame(1, &z.finish().unwrap())
    };
    let pack = IdPack { name: "netref.Calc".into(), class_id: 1, instance_id: 5 };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // RPyC 5's payload is brine((msg, seq, args)).
        (raw_frame(0, &[0x12, 0x51, 0x50, 0x02]), "peer speaks RPyC < 6"),
        (bomb, "inflates past max_frame_len (1048576)"),
        (request(0, 99, vec![]), "unknown handler 99"),
        (raw_frame(0, &[7, 0x12, 0x50, 0x02]), "unknown message kind 7"),
        (raw_frame(0, &[1, 0x11, 0x50, 0x07]), "unknown tag 0x07"),
        (vec![0, 0, 0, 1, 0, 1, b'x'], "must end with a newline"),
        (request(0, 15, vec![Boxed::ReceiverObject(pack), value(Brine::Int(1))]), "unknown object id 5"),
        (vec![0xff, 0, 0, 0, 0], "exceeds max_frame_len"),
    ];
    for (bytes, named) in cases {
        let now = Instant::now();
        let mut p = Protocol::new(Config::default().dialect(Dialect::Rpyc).max_frame_len(1 << 20), now);
        let e = p.handle_input(now, Input::Receive(&bytes)).unwrap_err();
        assert!(e.to_string().contains(named), "{named}: {e}");
        assert!(p.is_closed());
        let closed = events(&mut p);
        assert!(matches!(&closed[..], [Event::Closed { .. }]), "{closed:?}");
    }
}

#[test]
fn either_dialect_is_told_by_the_first_bytes() {
    // A netref hello: answered with ours.
    let now = Instant::now();
    let mut client = Protocol::new(Config::default(), now);
    let mut hello = Vec::new();
    client.write_to(&mut hello).unwrap();
    let (mut p, now) = rpyc(Dialect::Either);
    let mut nothing = Vec::new();
    p.write_to(&mut nothing).unwrap();
    assert!(nothing.is_empty(), "this side waits for the peer to speak first");
    // Split before the telling byte: nothing is decided yet.
    p.handle_input(now, Input::Receive(&hello[..3])).unwrap();
    p.handle_input(now, Input::Receive(&hello[3..])).unwrap();
    let mut ours = Vec::new();
    p.write_to(&mut ours).unwrap();
    assert_eq!(ours, hello);

    // An RPyC frame: RPyC's answers.
    let (mut p, now) = rpyc(Dialect::Either);
    let root = calc();
    root_pack(&mut p, now, &root);

    // Neither: refused, naming what came.
    let (mut p, now) = rpyc(Dialect::Either);
    let e = p.handle_input(now, Input::Receive(b"GET / HTTP/1.1\r\n")).unwrap_err();
    assert!(
        e.to_string().contains("speaks neither netref nor RPyC: its first bytes are \"GET / HTTP/1.1..\""),
        "{e}"
    );
}

#[test]
fn a_server_that_closes_without_a_word_is_named_as_rpyc_older_than_6() {
    // An RPyC 5 server cannot read RPyC 6's first request and closes.
    let (mut p, now) = rpyc(Dialect::Rpyc);
    p.send_request(netref::protocol::Call::Root, None).unwrap();
    assert!(!sent(&mut p).is_empty());
    p.handle_input(now, Input::Eof).unwrap();
    let reason = p.close_reason().unwrap().to_string();
    assert!(reason.contains("a server speaking RPyC < 6"), "{reason}");

    // One that answered once and then closed simply closed.
    let (mut p, now) = rpyc(Dialect::Rpyc);
    let root = calc();
    root_pack(&mut p, now, &root);
    p.send_request(netref::protocol::Call::Root, None).unwrap();
    p.handle_input(now, Input::Eof).unwrap();
    assert_eq!(p.close_reason().unwrap().to_string(), "connection closed by the peer");
}
