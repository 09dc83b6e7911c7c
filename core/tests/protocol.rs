//! The sans-IO protocol driven directly: two `Protocol`s back to back in
//! memory, on explicit (virtual) instants, plus raw hostile frames fed to one.
//!
//! Nothing here sleeps or opens a socket; time is an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use netref::error::{DecodeError, LimitError, ProtocolError};
use netref::protocol::{Call, Event, Input, Phase, Protocol, Request};
use netref::wire::Cbor;
use netref::wire::{
    self, FrameDecoder, Message, WireRequest, FEATURES, MAGIC, TAG_RECEIVER_OBJECT, TAG_SENDER_OBJECT,
    VERSION,
};
use netref::{
    CloseReason, Config, Error, LocalObject, ObjectBuilder, ObjectRef, RemoteError, RemoteObject, Value,
};

// ---- harness ---------------------------------------------------------------

/// Everything `p` has to send.
fn written(p: &mut Protocol) -> Vec<u8> {
    let mut out = Vec::new();
    p.write_to(&mut out).expect("a Vec takes everything");
    out
}

/// Runs one request on its local object (or answers it from `root`), the
/// way a connection would.
fn serve(request: Request, root: Option<&LocalObject>) -> Result<Value, RemoteError> {
    match request {
        Request::Root => root
            .map(|r| Value::Object(ObjectRef::Local(r.clone())))
            .ok_or_else(|| RemoteError::new("AttributeError", "the peer exposes no service")),
        Request::Ping(payload) => Ok(payload),
        Request::Call { target, args } => target.object().call(args),
        Request::CallMethod { target, name, args } => target.object().call_method(&name, args),
        Request::GetAttr { target, name } => target.object().getattr(&name),
        Request::Dir { target } => Ok(netref::to_value(&target.object().dir()).unwrap()),
        Request::Invalid(e) => Err(e),
    }
}

/// One side: its protocol, the events it saw that were not requests, and (when
/// it does not answer requests by itself) the requests it holds.
struct Side {
    p: Protocol,
    events: VecDeque<Event>,
    held: VecDeque<(u64, Request)>,
    auto_serve: bool,
    /// What the peer's root requests get.
    root: Option<LocalObject>,
    /// Bytes written and not yet delivered (the socket's buffer).
    wire: Vec<u8>,
}

impl Side {
    fn new(config: Config, root: Option<LocalObject>, now: Instant) -> Side {
        Side {
            p: Protocol::new(config, now),
            events: VecDeque::new(),
            held: VecDeque::new(),
            auto_serve: true,
            root,
            wire: Vec::new(),
        }
    }

    /// Takes every event: answers requests (or holds them), keeps the rest.
    fn process(&mut self) {
        while let Some(ev) = self.p.poll_event() {
            match ev {
                Event::Request { seq, request } if self.auto_serve => {
                    let result = serve(request, self.root.as_ref());
                    self.p.send_reply(seq, result);
                }
                Event::Request { seq, request } => self.held.push_back((seq, request)),
                other => self.events.push_back(other),
            }
        }
    }

    /// Delivers everything this side has to send to `to`; false if there was nothing.
    fn send_to(&mut self, to: &mut Side, now: Instant) -> bool {
        self.p.write_to(&mut self.wire).expect("a Vec takes everything");
        let out = std::mem::take(&mut self.wire);
        if out.is_empty() {
            return false;
        }
        to.p.handle_input(now, Input::Receive(&out)).expect("the peer accepts well-formed input");
        true
    }

    /// The messages this side would send now, without sending them.
    fn peek_output(&mut self) -> Vec<Message> {
        self.p.write_to(&mut self.wire).expect("a Vec takes everything");
        decode_all(&self.wire)
    }

    /// The reply (or remote error) to our request `seq`.
    fn take_reply(&mut self, seq: u64) -> Result<Value, RemoteError> {
        let at = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Reply { seq: s, .. } if *s == seq))
            .unwrap_or_else(|| panic!("no reply to {seq}; events: {:?}", self.events));
        match self.events.remove(at) {
            Some(Event::Reply { result, .. }) => result,
            _ => unreachable!(),
        }
    }

    fn call(&mut self, call: Call) -> u64 {
        self.p.send_request(call, None).expect("request is sent")
    }
}

/// Shuttles bytes both ways and answers requests until both sides are quiet.
fn settle(a: &mut Side, b: &mut Side, now: Instant) {
    for _ in 0..1000 {
        a.process();
        b.process();
        let moved_ab = a.send_to(b, now);
        let moved_ba = b.send_to(a, now);
        if !moved_ab && !moved_ba {
            a.process();
            b.process();
            return;
        }
    }
    panic!("the two sides did not settle");
}

/// Decodes every whole frame in `bytes`.
fn decode_all(bytes: &[u8]) -> Vec<Message> {
    let mut d = FrameDecoder::new();
    d.push(bytes).unwrap();
    let mut out = Vec::new();
    while let Some(body) = d.next_frame(usize::MAX).unwrap() {
        out.push(Message::from_cbor(wire::decode_cbor(body, 256).unwrap()).unwrap());
    }
    d.finish().unwrap();
    out
}

fn frame(item: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_frame(item, &mut out, usize::MAX).unwrap();
    out
}

fn frame_msg(msg: &Message) -> Vec<u8> {
    frame(&msg.to_cbor())
}

fn uint(n: u64) -> Cbor {
    Cbor::Integer(n.into())
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

fn hello() -> Vec<u8> {
    frame_msg(&Message::Hello { version: VERSION, features: FEATURES })
}

/// The service each side exposes in these tests, and the object `x` that its
/// `get_x` method hands out again and again.
fn service(x: LocalObject) -> LocalObject {
    ObjectBuilder::new("Svc")
        .method("add", |a: i64, b: i64| a + b)
        .method("echo", |v: Value| v)
        .method("get_x", move || x.clone())
        .method("repeat", |s: String, n: usize| s.repeat(n))
        .try_method("int", |s: String| s.parse::<i64>())
        .attr("version", "1.0")
        .callable(|n: i64| n * 2)
        .build()
}

fn x_object() -> LocalObject {
    ObjectBuilder::new("X").method("hello", || "hi from x").build()
}

struct Net {
    a: Side,
    b: Side,
    /// A's object `x`, handed to B by A's `get_x`.
    x: LocalObject,
    now: Instant,
}

/// A (the "server", exporting `x`) and B (the "client"), handshake done.
fn net_with(config_a: Config, config_b: Config) -> Net {
    let now = Instant::now();
    let x = x_object();
    let mut a = Side::new(config_a, Some(service(x.clone())), now);
    let mut b = Side::new(config_b, Some(service(x_object())), now);
    settle(&mut a, &mut b, now);
    assert_eq!(a.p.phase(), Phase::Open);
    assert_eq!(b.p.phase(), Phase::Open);
    Net { a, b, x, now }
}

fn net() -> Net {
    net_with(Config::default(), Config::default())
}

impl Net {
    fn settle(&mut self) {
        settle(&mut self.a, &mut self.b, self.now);
    }

    /// B's proxy for A's root.
    fn root_of_a(&mut self) -> RemoteObject {
        let seq = self.b.call(Call::Root);
        self.settle();
        self.b.take_reply(seq).unwrap().as_remote().expect("root is a remote object").clone()
    }

    /// B calls `target.name(args)` on A and waits (in memory) for the result.
    fn b_calls(&mut self, target: &RemoteObject, name: &str, args: Vec<Value>) -> Result<Value, RemoteError> {
        let seq = self.b.call(Call::CallMethod { target: target.id(), name: name.into(), args });
        self.settle();
        self.b.take_reply(seq)
    }
}

// ---- handshake -----------------------------------------------------------------

#[test]
fn handshake_opens_both_sides() {
    let now = Instant::now();
    let mut a = Side::new(Config::default(), None, now);
    let mut b = Side::new(Config::default(), None, now);
    assert_eq!(a.p.phase(), Phase::ExpectHello);
    // Each side queued its hello at creation.
    assert!(a.p.wants_write());
    assert_eq!(a.peek_output(), vec![Message::Hello { version: VERSION, features: FEATURES }]);
    settle(&mut a, &mut b, now);
    assert_eq!(a.p.phase(), Phase::Open);
    assert_eq!(b.p.phase(), Phase::Open);
    assert!(!a.p.wants_write());
    assert!(a.events.is_empty() && b.events.is_empty());
}

#[test]
fn handshake_byte_by_byte() {
    let now = Instant::now();
    let mut a = Side::new(Config::default(), Some(x_object()), now);
    let mut b = Side::new(Config::default(), None, now);
    let seq = b.call(Call::Root);
    let out = written(&mut b.p);
    for byte in &out {
        a.p.handle_input(now, Input::Receive(std::slice::from_ref(byte))).unwrap();
    }
    assert_eq!(a.p.phase(), Phase::Open);
    settle(&mut a, &mut b, now);
    assert!(b.take_reply(seq).unwrap().as_remote().is_some());
}

/// The peer's hello must arrive within `handshake_timeout` (virtual time:
/// the deadline is reported, and passing it ends the connection); once it
/// has arrived, no handshake deadline is left.
#[test]
fn a_hello_that_never_comes_ends_the_connection_at_its_deadline() {
    let now = Instant::now();
    let limit = Duration::from_secs(10);
    let mut p = Protocol::new(Config::default(), now);
    assert_eq!(p.poll_timeout(), Some(now + limit), "on by default");
    p.handle_input(now + limit - Duration::from_millis(1), Input::Timeout).unwrap();
    assert!(!p.is_closed(), "not before the deadline");
    p.handle_input(now + limit, Input::Timeout).unwrap();
    match p.poll_event() {
        Some(Event::Closed { reason: CloseReason::Protocol(ProtocolError::Handshake(m)) }) => {
            assert!(m.contains("within 10s (handshake_timeout)"), "{m}")
        }
        other => panic!("expected a handshake failure, got {other:?}"),
    }
    let mut n = net();
    n.settle();
    assert_eq!(n.a.p.poll_timeout(), None, "no deadline once the hello is in");
}

#[test]
fn version_mismatch_names_both_versions() {
    let now = Instant::now();
    let mut p = Protocol::new(Config::default(), now);
    let bad = frame_msg(&Message::Hello { version: VERSION + 6, features: 0 });
    let err = p.handle_input(now, Input::Receive(&bad)).unwrap_err();
    assert!(matches!(err, Error::Closed(CloseReason::Protocol(ProtocolError::Handshake(_)))), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("handshake failed"), "{msg}");
    assert!(msg.contains(&format!("version {}", VERSION + 6)), "{msg}");
    assert!(msg.contains(&format!("speaks {VERSION}")), "{msg}");
    assert!(p.is_closed());
    match p.poll_event() {
        Some(Event::Closed { reason }) => assert_eq!(Error::Closed(reason), err),
        other => panic!("expected Closed, got {other:?}"),
    }
    // Later input is ignored, not re-reported.
    p.handle_input(now, Input::Receive(&hello())).unwrap();
    assert!(p.poll_event().is_none());
}

#[test]
fn first_message_must_be_hello() {
    let now = Instant::now();
    let mut p = Protocol::new(Config::default(), now);
    let ping = frame_msg(&Message::Request { seq: 1, request: WireRequest::Ping(uint(1)) });
    let err = p.handle_input(now, Input::Receive(&ping)).unwrap_err();
    assert!(matches!(err, Error::Closed(CloseReason::Protocol(ProtocolError::Handshake(_)))), "{err:?}");
    assert!(err.to_string().contains("expected the peer's hello first, got a request"), "{err}");
    assert!(p.is_closed());
}

#[test]
fn wrong_magic_is_named() {
    let now = Instant::now();
    let mut p = Protocol::new(Config::default(), now);
    let bad = frame(&Cbor::Array(vec![uint(0), text("rpyc"), uint(VERSION), uint(0)]));
    let err = p.handle_input(now, Input::Receive(&bad)).unwrap_err();
    // Before the hello, a bad greeting is a handshake failure that quotes
    // what the peer sent and keeps the decoder's own explanation.
    assert!(matches!(err, Error::Closed(CloseReason::Protocol(ProtocolError::Handshake(_)))), "{err:?}");
    assert!(err.to_string().contains("\"rpyc\"") && err.to_string().contains(MAGIC), "{err}");
}

#[test]
fn second_hello_is_fatal() {
    let mut n = net();
    let err = n.a.p.handle_input(n.now, Input::Receive(&hello())).unwrap_err();
    assert!(matches!(err, Error::Closed(CloseReason::Protocol(ProtocolError::Unexpected(_)))), "{err:?}");
    assert!(err.to_string().contains("second hello"), "{err}");
}

// ---- requests ----------------------------------------------------------------------

#[test]
fn root_call_method_getattr_dir_call() {
    let mut n = net();
    let root = n.root_of_a();
    assert_eq!(n.b.p.imported_count(), 1);
    assert_eq!(n.a.p.exported_count(), 1);

    assert_eq!(n.b_calls(&root, "add", vec![2.into(), 3.into()]).unwrap(), Value::Integer(5));

    let err = n.b_calls(&root, "int", vec!["nope".into()]).unwrap_err();
    assert_eq!(err.type_name, "ParseIntError");
    let err = n.b_calls(&root, "missing", vec![]).unwrap_err();
    assert_eq!(err.type_name, "AttributeError");
    assert!(err.message.contains("missing"), "{err}");

    let seq = n.b.call(Call::GetAttr { target: root.id(), name: "version".into() });
    n.settle();
    assert_eq!(n.b.take_reply(seq).unwrap(), Value::Text("1.0".into()));

    let seq = n.b.call(Call::Dir { target: root.id() });
    n.settle();
    let names: Vec<String> = netref::from_value(n.b.take_reply(seq).unwrap()).unwrap();
    assert_eq!(names, ["add", "echo", "get_x", "int", "repeat", "version"]);

    let seq = n.b.call(Call::Call { target: root.id(), args: vec![21.into()] });
    n.settle();
    assert_eq!(n.b.take_reply(seq).unwrap(), Value::Integer(42));

    // A method read as an attribute is a callable bound method.
    let seq = n.b.call(Call::GetAttr { target: root.id(), name: "add".into() });
    n.settle();
    let bound = n.b.take_reply(seq).unwrap().as_remote().unwrap().clone();
    assert!(!bound.same_as(&root));
    let seq = n.b.call(Call::Call { target: bound.id(), args: vec![40.into(), 2.into()] });
    n.settle();
    assert_eq!(n.b.take_reply(seq).unwrap(), Value::Integer(42));
    assert_eq!(n.a.p.exported_count(), 2);
    drop(bound);
    n.settle();
    assert_eq!(n.a.p.exported_count(), 1);
    assert_eq!(n.b.p.pending_count(), 0);
    assert!(n.a.events.is_empty() && n.b.events.is_empty());
}

#[test]
fn root_without_service_is_an_attribute_error() {
    let now = Instant::now();
    let mut a = Side::new(Config::default(), None, now);
    let mut b = Side::new(Config::default(), None, now);
    let seq = b.call(Call::Root);
    settle(&mut a, &mut b, now);
    let err = b.take_reply(seq).unwrap_err();
    assert_eq!(err.type_name, "AttributeError");
    assert!(err.message.contains("no service"), "{err}");
}

#[test]
fn ping_echoes_payload_and_hands_objects_back() {
    let mut n = net();
    let payload = Value::Array(vec![
        Value::Null,
        Value::Bool(true),
        Value::Integer(-(1i128 << 64)),
        Value::Integer((1i128 << 64) - 1),
        Value::Float(1.5),
        Value::Bytes(vec![0, 255]),
        Value::Map(vec![(Value::Text("k".into()), Value::Array(vec![]))]),
    ]);
    let seq = n.b.call(Call::Ping(payload.clone()));
    n.settle();
    assert_eq!(n.b.take_reply(seq).unwrap(), payload);

    // A local object pinged comes back as the same local object, and the
    // peer's transient proxy is released again.
    let mine = x_object();
    let seq = n.b.call(Call::Ping(Value::from(mine.clone())));
    assert_eq!(n.b.p.exported_count(), 1);
    n.settle();
    match n.b.take_reply(seq).unwrap() {
        Value::Object(ObjectRef::Local(back)) => assert!(back.same_as(&mine)),
        other => panic!("expected the local object back, got {other:?}"),
    }
    assert_eq!(n.a.p.imported_count(), 0);
    assert_eq!(n.b.p.exported_count(), 0);
    let released = n.b.p.take_released_objects();
    assert!(released.iter().any(|o| o.same_as(&mine)));
}

#[test]
fn sequence_numbers_count_up_and_replies_match_in_any_order() {
    let mut n = net();
    let root = n.root_of_a();
    n.a.auto_serve = false;
    let s1 =
        n.b.call(Call::CallMethod { target: root.id(), name: "add".into(), args: vec![1.into(), 1.into()] });
    let s2 =
        n.b.call(Call::CallMethod { target: root.id(), name: "add".into(), args: vec![2.into(), 2.into()] });
    assert_eq!(s2, s1 + 1);
    assert_eq!(n.b.p.pending_count(), 2);
    n.settle();
    assert_eq!(n.a.held.len(), 2);
    // Answer the second first.
    let (q2, r2) = n.a.held.pop_back().unwrap();
    let (q1, r1) = n.a.held.pop_back().unwrap();
    n.a.p.send_reply(q2, serve(r2, None));
    n.settle();
    assert_eq!(n.b.take_reply(s2).unwrap(), Value::Integer(4));
    assert_eq!(n.b.p.pending_count(), 1);
    n.a.p.send_reply(q1, serve(r1, None));
    n.settle();
    assert_eq!(n.b.take_reply(s1).unwrap(), Value::Integer(2));
    assert_eq!(n.b.p.pending_count(), 0);
}

#[test]
fn reply_to_unknown_sequence_is_fatal() {
    let mut n = net();
    let forged = frame_msg(&Message::Reply { seq: 4242, value: Cbor::Null });
    let err = n.b.p.handle_input(n.now, Input::Receive(&forged)).unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::Protocol(ProtocolError::UnknownSequence(4242))));
    assert!(err.to_string().contains("unknown sequence number 4242"), "{err}");
    assert!(n.b.p.is_closed());

    // The same for an error message, and for a reply delivered twice.
    let mut n = net();
    let forged = frame_msg(&Message::Error { seq: 7, error: RemoteError::new("E", "m") });
    let err = n.b.p.handle_input(n.now, Input::Receive(&forged)).unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::Protocol(ProtocolError::UnknownSequence(7))));

    let mut n = net();
    let seq = n.b.call(Call::Ping(Value::Null));
    n.settle();
    n.b.take_reply(seq).unwrap();
    let again = frame_msg(&Message::Reply { seq, value: Cbor::Null });
    let err = n.b.p.handle_input(n.now, Input::Receive(&again)).unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::Protocol(ProtocolError::UnknownSequence(seq))));
}

#[test]
fn close_fails_nothing_twice_and_peer_sees_reason() {
    let mut n = net();
    let root = n.root_of_a();
    n.a.auto_serve = false;
    let seq =
        n.b.call(Call::CallMethod { target: root.id(), name: "add".into(), args: vec![1.into(), 1.into()] });
    n.settle();
    n.a.p.close("shutting down");
    assert!(n.a.p.is_closed());
    assert_eq!(n.a.p.close_reason(), Some(&CloseReason::ByThisSide));
    assert_eq!(n.a.p.exported_count(), 0);
    // The close message carries the reason (the peer logs it).
    let bye = Message::Request { seq: 0, request: WireRequest::Close("shutting down".into()) };
    assert_eq!(n.a.peek_output().last(), Some(&bye));
    n.a.send_to(&mut n.b, n.now);
    n.b.process();
    assert!(n.b.p.is_closed());
    assert_eq!(n.b.p.pending_count(), 0, "pending calls fail at once");
    match n.b.events.pop_front() {
        Some(Event::Closed { reason: CloseReason::ByPeer }) => {}
        other => panic!("expected Closed by the peer, got {other:?}"),
    }
    let err = n.b.p.send_request(Call::Ping(Value::Null), None).unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::ByPeer));
    let _ = seq;
}

#[test]
fn eof_closes_and_fails_pending() {
    let mut n = net();
    n.b.call(Call::Ping(Value::Null));
    n.b.p.handle_input(Instant::now(), Input::Eof).unwrap();
    assert!(n.b.p.is_closed());
    assert_eq!(n.b.p.pending_count(), 0);
    assert!(n.b.p.poll_timeout().is_none());
    match n.b.p.poll_event() {
        Some(Event::Closed { reason }) => {
            assert_eq!(reason, CloseReason::ByPeer);
            assert_eq!(reason.to_string(), "connection closed by the peer");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
}

// ---- deadlines -------------------------------------------------------------------

#[test]
fn deadline_expires_sends_cancel_and_drops_late_reply() {
    let mut n = net();
    let t0 = n.now;
    let seq =
        n.b.p
            .send_request(Call::Ping(Value::Text("late".into())), Some(t0 + Duration::from_secs(5)))
            .unwrap();
    let other = n.b.p.send_request(Call::Ping(Value::Null), Some(t0 + Duration::from_secs(9))).unwrap();
    assert_eq!(n.b.p.poll_timeout(), Some(t0 + Duration::from_secs(5)));

    // Not yet.
    n.b.p.handle_input(t0 + Duration::from_millis(4999), Input::Timeout).unwrap();
    assert!(n.b.p.poll_event().is_none());
    assert_eq!(n.b.p.pending_count(), 2);

    // The requests are still in B's output; A has not seen them.
    n.b.p.handle_input(t0 + Duration::from_secs(5), Input::Timeout).unwrap();
    n.b.process();
    assert!(matches!(n.b.events.pop_front(), Some(Event::Expired { seq: s }) if s == seq));
    assert!(n.b.events.is_empty());
    assert_eq!(n.b.p.pending_count(), 1);
    assert_eq!(n.b.p.poll_timeout(), Some(t0 + Duration::from_secs(9)));
    let out = n.b.peek_output();
    assert_eq!(out.last(), Some(&Message::Request { seq: 0, request: WireRequest::Cancel(seq) }));

    // A answers the ping (pings are answered by the protocol), then reads the
    // cancel; B drops the late reply without a word and gets the other.
    n.now = t0 + Duration::from_secs(6);
    n.settle();
    assert!(matches!(n.a.events.pop_front(), Some(Event::Cancelled { seq: s }) if s == seq));
    assert_eq!(n.b.take_reply(other).unwrap(), Value::Null);
    assert!(n.b.events.is_empty(), "late reply must be dropped: {:?}", n.b.events);
    assert!(!n.b.p.is_closed());
    assert_eq!(n.b.p.poll_timeout(), None, "an answered request leaves no deadline");

    // A second reply to the same expired request is a protocol error.
    let again = frame_msg(&Message::Reply { seq, value: Cbor::Null });
    assert_eq!(
        n.b.p.handle_input(n.now, Input::Receive(&again)).unwrap_err(),
        Error::Closed(CloseReason::Protocol(ProtocolError::UnknownSequence(seq)))
    );
}

#[test]
fn late_reply_with_objects_is_released() {
    let mut n = net();
    let root = n.root_of_a();
    let t0 = n.now;
    n.a.auto_serve = false;
    let seq =
        n.b.p
            .send_request(
                Call::CallMethod { target: root.id(), name: "get_x".into(), args: vec![] },
                Some(t0 + Duration::from_secs(1)),
            )
            .unwrap();
    n.settle();
    n.b.p.handle_input(t0 + Duration::from_secs(1), Input::Timeout).unwrap();
    n.b.process();
    assert!(matches!(n.b.events.pop_front(), Some(Event::Expired { .. })));
    let (q, r) = n.a.held.pop_front().unwrap();
    n.a.p.send_reply(q, serve(r, None));
    assert_eq!(n.a.p.exported_count(), 2, "root and x");
    n.settle();
    assert!(n.b.events.is_empty());
    // B never gave anyone a proxy for x, so it released it at once.
    assert_eq!(n.b.p.imported_count(), 1);
    assert_eq!(n.a.p.exported_count(), 1);
    assert!(n.a.p.take_released_objects().iter().any(|o| o.same_as(&n.x)));
    assert!(matches!(n.a.events.pop_front(), Some(Event::Cancelled { seq: s }) if s == seq));
}

#[test]
fn set_deadline_moves_and_removes_the_deadline() {
    let mut n = net();
    let t0 = n.now;
    let seq = n.b.p.send_request(Call::Ping(Value::Null), None).unwrap();
    assert_eq!(n.b.p.poll_timeout(), None);
    n.b.p.set_deadline(seq, Some(t0 + Duration::from_secs(1)));
    assert_eq!(n.b.p.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    n.b.p.set_deadline(seq, Some(t0 + Duration::from_secs(10)));
    assert_eq!(n.b.p.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    n.b.p.handle_input(t0 + Duration::from_secs(5), Input::Timeout).unwrap();
    assert!(n.b.p.poll_event().is_none(), "the old deadline is gone");
    n.b.p.set_deadline(seq, None);
    assert_eq!(n.b.p.poll_timeout(), None);
    n.b.p.handle_input(t0 + Duration::from_secs(3600), Input::Timeout).unwrap();
    assert!(n.b.p.poll_event().is_none());
    // Shortening it makes it expire.
    n.b.p.set_deadline(seq, Some(t0 + Duration::from_secs(2)));
    n.b.p.handle_input(t0 + Duration::from_secs(3600), Input::Timeout).unwrap();
    assert!(matches!(n.b.p.poll_event(), Some(Event::Expired { seq: s }) if s == seq));
    // Unknown or finished sequence numbers are ignored.
    n.b.p.set_deadline(seq, Some(t0));
    n.b.p.set_deadline(9999, Some(t0));
    assert_eq!(n.b.p.poll_timeout(), None);
}

#[test]
fn deadlines_fire_in_order() {
    let mut n = net();
    let t0 = n.now;
    let s3 = n.b.p.send_request(Call::Ping(Value::Null), Some(t0 + Duration::from_secs(3))).unwrap();
    let s1 = n.b.p.send_request(Call::Ping(Value::Null), Some(t0 + Duration::from_secs(1))).unwrap();
    let s2 = n.b.p.send_request(Call::Ping(Value::Null), Some(t0 + Duration::from_secs(1))).unwrap();
    n.b.p.handle_input(t0 + Duration::from_secs(10), Input::Timeout).unwrap();
    let expired: Vec<u64> = std::iter::from_fn(|| match n.b.p.poll_event() {
        Some(Event::Expired { seq }) => Some(seq),
        _ => None,
    })
    .collect();
    assert_eq!(expired, [s1, s2, s3]);
}

#[test]
fn idle_timeout_closes() {
    let cfg = Config::default().idle_timeout(Some(Duration::from_secs(10)));
    let mut n = net_with(Config::default(), cfg);
    let t0 = n.now;
    assert_eq!(n.b.p.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    // Input moves the idle deadline.
    let t1 = t0 + Duration::from_secs(8);
    n.now = t1;
    let seq = n.a.call(Call::Ping(Value::Null));
    n.settle();
    n.a.take_reply(seq).unwrap();
    assert_eq!(n.b.p.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    n.b.p.handle_input(t1 + Duration::from_secs(9), Input::Timeout).unwrap();
    assert!(!n.b.p.is_closed());
    n.b.p.handle_input(t1 + Duration::from_secs(10), Input::Timeout).unwrap();
    assert!(n.b.p.is_closed());
    match n.b.p.poll_event() {
        Some(Event::Closed { reason }) => {
            assert_eq!(reason, CloseReason::IdleTimeout(Duration::from_secs(10)));
            assert!(reason.to_string().contains("idle_timeout"), "{reason}");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        n.b.peek_output().last(),
        Some(Message::Request { request: WireRequest::Close(_), .. })
    ));
}

/// The decoding budget, `max_frame_items`: a frame holding up to the limit
/// of items (the message's own included) is served; one more ends the
/// connection with an error naming the limit, before anything is decoded.
/// Frames no longer than the limit cannot exceed it and are not counted.
#[test]
fn a_frame_over_the_item_budget_ends_the_connection() {
    let max = 1000;
    assert_eq!(Config::default().max_frame_items, 1_000_000, "the default");
    let ping = |ints: usize| {
        let payload = Cbor::Array(vec![uint(1); ints]);
        frame_msg(&Message::Request { seq: 9, request: WireRequest::Ping(payload) })
    };
    // [1, 9, kind, [ints...]]: five items besides the integers.
    let mut n = net_with(Config::default(), Config::default().max_frame_items(max));
    let fits = ping(max - 5);
    assert!(fits.len() > max, "long enough to be counted");
    n.b.p.handle_input(n.now, Input::Receive(&fits)).unwrap();
    assert!(!n.b.p.is_closed(), "exactly at the limit");
    let over = ping(max - 4);
    let err = n.b.p.handle_input(n.now, Input::Receive(&over)).unwrap_err();
    assert!(
        matches!(n.b.p.close_reason(), Some(CloseReason::Limit(LimitError::TooManyItems { max: m, .. })) if *m == max),
        "{err:?}"
    );
    assert!(err.to_string().contains("holds more than max_frame_items (1000) values"), "{err}");
}

/// The budget holds for a frame received around a large byte string
/// (straight into the string's own buffer): the items before and after
/// the string count.
#[test]
fn a_frame_with_a_large_string_is_held_to_the_item_budget_too() {
    let max = 1000;
    let payload = Cbor::Array(vec![Cbor::Bytes(vec![7; 100 << 10]), Cbor::Array(vec![uint(1); max])]);
    let bytes = frame_msg(&Message::Request { seq: 9, request: WireRequest::Ping(payload) });
    let mut n = net_with(Config::default(), Config::default().max_frame_items(max));
    // In pieces, so that the string goes to its own buffer.
    for piece in bytes.chunks(16 << 10) {
        if n.b.p.handle_input(n.now, Input::Receive(piece)).is_err() {
            break;
        }
    }
    assert!(
        matches!(n.b.p.close_reason(), Some(CloseReason::Limit(LimitError::TooManyItems { .. }))),
        "{:?}",
        n.b.p.close_reason()
    );
    // Within the budget, the same shape is served.
    let payload = Cbor::Array(vec![Cbor::Bytes(vec![7; 100 << 10]), Cbor::Array(vec![uint(1); 10])]);
    let bytes = frame_msg(&Message::Request { seq: 9, request: WireRequest::Ping(payload) });
    let mut n = net_with(Config::default(), Config::default().max_frame_items(max));
    for piece in bytes.chunks(16 << 10) {
        n.b.p.handle_input(n.now, Input::Receive(piece)).unwrap();
    }
    assert!(!n.b.p.is_closed());
}

/// A frame must be whole within `frame_timeout` of its first bytes (on by
/// default): a peer that dribbles a frame one byte at a time keeps resetting
/// the idle clock, but not this one.
#[test]
fn a_dribbled_frame_ends_the_connection_at_its_deadline() {
    let limit = Duration::from_secs(60);
    assert_eq!(Config::default().frame_timeout, Some(limit), "on by default");
    let idle = Duration::from_secs(10);
    let mut n = net_with(Config::default(), Config::default().idle_timeout(Some(idle)));
    let t0 = n.now;
    assert_eq!(n.b.p.poll_timeout(), Some(t0 + idle), "no frame is partial: only the idle deadline");
    let ping = frame_msg(&Message::Request { seq: 7, request: WireRequest::Ping(text(&"x".repeat(40))) });
    // A whole frame and the first byte of the next, in one read.
    let mut bytes = ping.clone();
    bytes.push(ping[0]);
    n.b.p.handle_input(t0, Input::Receive(&bytes)).unwrap();
    assert_eq!(n.b.p.poll_timeout(), Some(t0 + idle));
    // Then a byte every 5 s: the idle deadline moves with each, the frame's
    // does not, and it passes long before the frame could be whole.
    let mut t = t0;
    for (i, byte) in ping[1..].iter().enumerate() {
        t += Duration::from_secs(5);
        if t >= t0 + limit {
            assert!(i + 2 < ping.len(), "the frame is still partial at its deadline");
            break;
        }
        n.b.p.handle_input(t, Input::Receive(std::slice::from_ref(byte))).unwrap();
        let idle_at = t + idle;
        assert_eq!(n.b.p.poll_timeout(), Some(idle_at.min(t0 + limit)), "at {t:?}");
        n.b.p.handle_input(t, Input::Timeout).unwrap();
        assert!(!n.b.p.is_closed(), "open before the deadline");
    }
    let received = 1 + ((limit.as_secs() / 5) as usize - 1);
    n.b.p.handle_input(t0 + limit, Input::Timeout).unwrap();
    assert!(n.b.p.is_closed());
    let reason = n.b.p.close_reason().expect("closed").clone();
    assert!(
        matches!(&reason, CloseReason::Limit(LimitError::FrameTimedOut { received: r, timeout })
            if *timeout == limit && *r == received),
        "{reason:?}"
    );
    assert!(
        reason.to_string().contains(&format!("(frame_timeout): {received} bytes of it came")),
        "{reason}"
    );
}

/// The clock of a partial frame restarts with each frame: frames that each
/// arrive in time never reach the deadline, however long the connection lives.
#[test]
fn frames_each_arriving_in_time_never_reach_the_frame_deadline() {
    let limit = Duration::from_secs(60);
    let mut n = net();
    let ping = frame_msg(&Message::Request { seq: 7, request: WireRequest::Ping(uint(1)) });
    let mut t = n.now;
    for _ in 0..10 {
        n.b.p.handle_input(t, Input::Receive(&ping[..2])).unwrap();
        assert_eq!(n.b.p.poll_timeout(), Some(t + limit));
        t += limit - Duration::from_secs(1);
        n.b.p.handle_input(t, Input::Receive(&ping[2..])).unwrap();
        assert_eq!(n.b.p.poll_timeout(), None, "a whole frame leaves no deadline");
        n.b.p.handle_input(t, Input::Timeout).unwrap();
    }
    assert!(!n.b.p.is_closed());
}

// ---- references and release counting ----------------------------------------------

/// RPyC #137/#153/#558: B drops its proxy for `x` (the release is queued but
/// not yet sent) while A hands `x` out again. A must keep `x`; only when B
/// drops the proxy it got the second time does A free it.
#[test]
fn release_queued_while_object_is_sent_again() {
    let mut n = net();
    let root = n.root_of_a();
    let px1 = n.b_calls(&root, "get_x", vec![]).unwrap().as_remote().unwrap().clone();
    let x_id = px1.id();
    assert_eq!(n.a.p.exported_count(), 2);

    // B asks for x again; A answers, but the answer is still on the wire.
    let seq = n.b.call(Call::CallMethod { target: root.id(), name: "get_x".into(), args: vec![] });
    n.b.send_to(&mut n.a, n.now);
    n.a.process();
    // Meanwhile B drops its proxy: the release is queued in B.
    drop(px1);
    assert!(n.b.p.wants_write());
    // The answer (x again) reaches B before B sends its release.
    n.a.send_to(&mut n.b, n.now);
    n.b.process();
    let px2 = n.b.take_reply(seq).unwrap().as_remote().unwrap().clone();
    assert_eq!(px2.id(), x_id);
    // B's pending release is void now: nothing about x leaves B.
    let out = n.b.peek_output();
    assert!(
        !out.iter().any(|m| matches!(m, Message::Request { request: WireRequest::Release(_), .. })),
        "{out:?}"
    );
    n.settle();
    assert_eq!(n.a.p.exported_count(), 2, "A must not free x while B holds a proxy");
    assert!(n.a.p.take_released_objects().is_empty());

    // The proxy still works.
    assert_eq!(n.b_calls(&px2, "hello", vec![]).unwrap(), Value::Text("hi from x".into()));

    drop(px2);
    let out = n.b.peek_output();
    assert_eq!(
        out,
        vec![Message::Request { seq: 0, request: WireRequest::Release(vec![(x_id, 2)]) }],
        "one release covering both references"
    );
    n.settle();
    assert_eq!(n.a.p.exported_count(), 1);
    assert!(n.a.p.take_released_objects().iter().any(|o| o.same_as(&n.x)));
    assert_eq!(n.b.p.imported_count(), 1);
}

/// The other interleaving: B's release is already on its way to A when A
/// sends `x` again. A's count covers the second send, so it keeps `x`.
#[test]
fn release_in_flight_while_object_is_sent_again() {
    let mut n = net();
    let root = n.root_of_a();
    let px1 = n.b_calls(&root, "get_x", vec![]).unwrap().as_remote().unwrap().clone();
    let x_id = px1.id();

    let seq = n.b.call(Call::CallMethod { target: root.id(), name: "get_x".into(), args: vec![] });
    n.b.send_to(&mut n.a, n.now);
    n.a.process(); // A's answer (x, second reference) is queued in A
    drop(px1);
    // B sends its release (for one reference) before it sees A's answer.
    let out = n.b.peek_output();
    assert_eq!(out, vec![Message::Request { seq: 0, request: WireRequest::Release(vec![(x_id, 1)]) }]);
    n.b.send_to(&mut n.a, n.now);
    n.a.process();
    assert_eq!(n.a.p.exported_count(), 2, "one reference is still in flight");
    assert!(n.a.p.take_released_objects().is_empty());

    n.a.send_to(&mut n.b, n.now);
    n.b.process();
    let px2 = n.b.take_reply(seq).unwrap().as_remote().unwrap().clone();
    assert_eq!(px2.id(), x_id);
    assert_eq!(n.b_calls(&px2, "hello", vec![]).unwrap(), Value::Text("hi from x".into()));
    assert_eq!(n.a.p.exported_count(), 2);

    drop(px2);
    n.settle();
    assert_eq!(n.a.p.exported_count(), 1);
    assert!(n.a.p.take_released_objects().iter().any(|o| o.same_as(&n.x)));
}

#[test]
fn same_remote_id_same_proxy_while_one_lives() {
    let mut n = net();
    let root = n.root_of_a();
    let p1 = n.b_calls(&root, "get_x", vec![]).unwrap().as_remote().unwrap().clone();
    let p2 = n.b_calls(&root, "get_x", vec![]).unwrap().as_remote().unwrap().clone();
    assert!(p1.same_as(&p2));
    assert!(!p1.same_as(&root));
    assert_eq!(n.b.p.imported_count(), 2);
    let root2 = n.root_of_a();
    assert!(root2.same_as(&root));

    drop(p1);
    n.settle();
    assert_eq!(n.a.p.exported_count(), 2, "p2 is the same proxy and still alive");
    drop(p2);
    assert_eq!(
        n.b.peek_output(),
        vec![Message::Request { seq: 0, request: WireRequest::Release(vec![(n.x_id_for_test(), 2)]) }]
    );
    n.settle();
    assert_eq!(n.a.p.exported_count(), 1);
    assert_eq!(n.b.p.imported_count(), 1);

    // After the release, x is exported afresh (under a new id) the next time.
    let p3 = n.b_calls(&root, "get_x", vec![]).unwrap().as_remote().unwrap().clone();
    assert_ne!(p3.id(), n.x_id_for_test());
    assert_eq!(n.a.p.exported_count(), 2);
}

impl Net {
    /// The id A gave `x` in these tests: the root is exported first (1), x second.
    fn x_id_for_test(&self) -> u64 {
        2
    }
}

#[test]
fn object_handed_back_arrives_as_the_same_local_object() {
    let mut n = net();
    let root = n.root_of_a();
    let px = n.b_calls(&root, "get_x", vec![]).unwrap().as_remote().unwrap().clone();

    // B passes A's own object back as an argument: A sees its LocalObject.
    n.a.auto_serve = false;
    let seq =
        n.b.call(Call::CallMethod { target: root.id(), name: "echo".into(), args: vec![px.clone().into()] });
    n.settle();
    let (q, request) = n.a.held.pop_front().unwrap();
    match &request {
        Request::CallMethod { name, args, .. } => {
            assert_eq!(name, "echo");
            match &args[..] {
                [Value::Object(ObjectRef::Local(l))] => assert!(l.same_as(&n.x)),
                other => panic!("expected x handed back, got {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    // Handing an object back does not count as a new reference.
    assert_eq!(n.a.p.exported_count(), 2);
    n.a.p.send_reply(q, serve(request, None));
    n.settle();
    // ... and echoing it sends it out again: B gets the same proxy.
    let back = n.b.take_reply(seq).unwrap().as_remote().unwrap().clone();
    assert!(back.same_as(&px));
    drop((px, back));
    n.settle();
    assert_eq!(n.a.p.exported_count(), 1);
}

#[test]
fn objects_passed_as_arguments_are_exported_and_freed() {
    let mut n = net();
    let root = n.root_of_a();
    let cb = netref::callback(|v: i64| v + 1);
    n.a.auto_serve = false;
    let seq =
        n.b.call(Call::CallMethod { target: root.id(), name: "echo".into(), args: vec![cb.clone().into()] });
    assert_eq!(n.b.p.exported_count(), 1);
    n.settle();
    let (q, request) = n.a.held.pop_front().unwrap();
    let Request::CallMethod { args, .. } = request else { panic!() };
    let proxy = args[0].as_remote().expect("a proxy for B's callback").clone();
    assert_eq!(n.a.p.imported_count(), 1);
    // A calls the callback back on B before answering (a nested call).
    let inner = n.a.call(Call::Call { target: proxy.id(), args: vec![41.into()] });
    n.settle();
    assert_eq!(n.a.take_reply(inner).unwrap(), Value::Integer(42));
    drop((proxy, args));
    n.a.p.send_reply(q, Ok(Value::Null));
    n.settle();
    assert_eq!(n.b.take_reply(seq).unwrap(), Value::Null);
    assert_eq!(n.a.p.imported_count(), 0);
    assert_eq!(n.b.p.exported_count(), 0);
    assert!(n.b.p.take_released_objects().iter().any(|o| o.same_as(&cb)));
}

/// A proxy of another protocol passed as a value must be relayed, and a
/// bare protocol has no connection to relay through: the request is refused
/// before anything is sent (relays between connections: `tests/relay.rs`).
#[test]
fn proxy_of_another_bare_protocol_cannot_be_passed_on() {
    let mut n = net();
    let mut m = net();
    let foreign = m.root_of_a();
    let before = n.b.p.pending_output_len();
    let err =
        n.b.p
            .send_request(Call::Ping(Value::Array(vec![1.into(), foreign.clone().into()])), None)
            .unwrap_err();
    assert_eq!(err, Error::Misuse(netref::Misuse::ForeignObject { id: foreign.id() }));
    assert!(err.to_string().contains("bare Protocol"), "{err}");
    assert_eq!(n.b.p.pending_count(), 0);
    assert_eq!(n.b.p.exported_count(), 0);
    assert_eq!(n.b.p.pending_output_len(), before);
    // The connection goes on.
    let seq = n.b.call(Call::Ping(Value::Null));
    n.settle();
    assert_eq!(n.b.take_reply(seq).unwrap(), Value::Null);
}

// ---- limits --------------------------------------------------------------------------

#[test]
fn max_pending() {
    let mut n = net_with(Config::default(), Config::default().max_pending(2));
    let s1 = n.b.call(Call::Ping(Value::Null));
    n.b.call(Call::Ping(Value::Null));
    let err = n.b.p.send_request(Call::Ping(Value::Null), None).unwrap_err();
    assert_eq!(err, Error::Limit(LimitError::TooManyPending { max: 2 }));
    assert!(err.to_string().contains("max_pending (2)"), "{err}");
    n.settle();
    n.b.take_reply(s1).unwrap();
    n.b.call(Call::Ping(Value::Null));
}

#[test]
fn max_exported_leaves_nothing_half_exported() {
    let mut n = net_with(Config::default(), Config::default().max_exported(2));
    let root = n.root_of_a();
    let (o1, o2, o3) = (x_object(), x_object(), x_object());
    let err =
        n.b.p
            .send_request(
                Call::CallMethod {
                    target: root.id(),
                    name: "echo".into(),
                    args: vec![Value::Array(vec![o1.clone().into(), o2.clone().into(), o3.clone().into()])],
                },
                None,
            )
            .unwrap_err();
    assert_eq!(err, Error::Limit(LimitError::TooManyExported { max: 2 }));
    assert!(err.to_string().contains("max_exported (2)"), "{err}");
    assert_eq!(n.b.p.exported_count(), 0);
    assert_eq!(n.b.p.pending_count(), 0);
    assert!(n.b.peek_output().is_empty());
    // Two objects (one of them twice) fit.
    let seq = n.b.call(Call::CallMethod {
        target: root.id(),
        name: "echo".into(),
        args: vec![Value::Array(vec![o1.clone().into(), o2.clone().into(), o1.clone().into()])],
    });
    assert_eq!(n.b.p.exported_count(), 2);
    n.settle();
    match n.b.take_reply(seq).unwrap() {
        Value::Array(items) => {
            assert_eq!(items.len(), 3);
            assert!(matches!(&items[0], Value::Object(ObjectRef::Local(l)) if l.same_as(&o1)));
            assert!(matches!(&items[2], Value::Object(ObjectRef::Local(l)) if l.same_as(&o1)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(n.b.p.exported_count(), 0, "A released both");

    // A reply that would export too much becomes an error reply.
    let mut n = net_with(Config::default().max_exported(1), Config::default());
    let root = n.root_of_a(); // A's one export
    let err = n.b_calls(&root, "get_x", vec![]).unwrap_err();
    assert_eq!(err.type_name, "ReplyError");
    assert!(err.message.contains("max_exported (1)"), "{err}");
    assert_eq!(n.a.p.exported_count(), 1);
}

#[test]
fn max_frame_len_on_send() {
    let mut n = net_with(Config::default(), Config::default().max_frame_len(200));
    let root = n.root_of_a();
    let before = n.b.p.pending_output_len();
    let obj = x_object();
    let err =
        n.b.p
            .send_request(
                Call::CallMethod {
                    target: root.id(),
                    name: "echo".into(),
                    args: vec![Value::Array(vec![obj.clone().into(), Value::Text("x".repeat(500))])],
                },
                None,
            )
            .unwrap_err();
    assert!(matches!(err, Error::Limit(LimitError::FrameTooLarge { max: 200, .. })), "{err:?}");
    assert!(err.to_string().contains("max_frame_len (200)"), "{err}");
    assert_eq!(n.b.p.exported_count(), 0, "nothing left half-exported");
    assert_eq!(n.b.p.pending_count(), 0);
    assert_eq!(n.b.p.pending_output_len(), before, "nothing half-written");
    assert!(n.b.p.take_released_objects().iter().any(|o| o.same_as(&obj)));
    // The connection is fine and the next call gets the next free seq.
    assert_eq!(n.b_calls(&root, "add", vec![1.into(), 2.into()]).unwrap(), Value::Integer(3));

    // A reply too large for the replier's limit becomes an error reply.
    let mut n = net_with(Config::default().max_frame_len(200), Config::default());
    let root = n.root_of_a();
    let err = n.b_calls(&root, "repeat", vec!["y".into(), 500.into()]).unwrap_err();
    assert_eq!(err.type_name, "ReplyError");
    assert!(err.message.contains("max_frame_len (200)"), "{err}");
}

#[test]
fn max_imported_refuses_the_request() {
    let mut raw = Raw::with(Config::default().max_imported(1));
    let sender = |id: u64| Cbor::Tag(TAG_SENDER_OBJECT, Box::new(uint(id)));
    let item = raw.call_method(2, "echo", vec![sender(10), sender(11)]);
    raw.send(&item).unwrap();
    let Some(Event::Request { seq: 2, request: Request::Invalid(err) }) = raw.p.poll_event() else {
        panic!()
    };
    assert_eq!(err.type_name, "TypeError");
    assert!(err.message.contains("max_imported (1)"), "{err}");
    assert_eq!(raw.p.imported_count(), 1);
    raw.p.send_reply(2, Err(err.clone()));
    // The one reference it did take is handed back at once.
    assert_eq!(
        raw.output(),
        vec![
            Message::Request { seq: 0, request: WireRequest::Release(vec![(10, 1)]) },
            Message::Error { seq: 2, error: err }
        ]
    );
    assert_eq!(raw.p.imported_count(), 0);
    raw.assert_alive();
}

fn nested(depth: usize) -> Value {
    let mut v = Value::Null;
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

#[test]
fn max_depth_on_send_and_receive() {
    let mut n = net_with(Config::default().max_depth(8), Config::default().max_depth(8));
    // Each argument, a ping payload and a reply may nest max_depth levels
    // below their outermost value; sender and receiver agree on that.
    let root = n.root_of_a();
    assert_eq!(n.b_calls(&root, "echo", vec![nested(8)]).unwrap(), nested(8));
    let err =
        n.b.p
            .send_request(
                Call::CallMethod { target: root.id(), name: "echo".into(), args: vec![nested(9)] },
                None,
            )
            .unwrap_err();
    assert_eq!(err, Error::Limit(LimitError::TooDeep { max: 8 }));
    assert!(err.to_string().contains("max_depth (8)"), "{err}");
    assert_eq!(n.b.p.pending_count(), 0);
    let seq = n.b.call(Call::Ping(nested(8)));
    n.settle();
    assert_eq!(n.b.take_reply(seq).unwrap(), nested(8));
    let err = n.b.p.send_request(Call::Ping(nested(9)), None).unwrap_err();
    assert_eq!(err, Error::Limit(LimitError::TooDeep { max: 8 }));

    // A side with a larger limit sends what the other refuses: the call fails
    // with an error naming the limit, the connection lives on.
    let mut n = net_with(Config::default().max_depth(8), Config::default().max_depth(12));
    let root = n.root_of_a();
    let err = n.b_calls(&root, "echo", vec![nested(9)]).unwrap_err();
    assert_eq!(err.type_name, "TypeError");
    assert!(err.message.contains("max_depth (8)"), "{err}");
    let seq = n.b.call(Call::Ping(nested(10)));
    n.settle();
    let err = n.b.take_reply(seq).unwrap_err();
    assert!(err.message.contains("max_depth (8)"), "{err}");
    assert!(!n.a.p.is_closed());
    // And a reply too deep for the receiver fails that call only.
    let mut n = net_with(Config::default().max_depth(12), Config::default().max_depth(8));
    let root = n.root_of_a();
    let seq = n.b.call(Call::CallMethod { target: root.id(), name: "echo".into(), args: vec![nested(8)] });
    n.a.auto_serve = false;
    n.settle();
    let (q, _) = n.a.held.pop_front().unwrap();
    n.a.p.send_reply(q, Ok(nested(11)));
    n.settle();
    let err = n.b.take_reply(seq).unwrap_err();
    assert_eq!(err.type_name, "InvalidReply");
    assert!(err.message.contains("max_depth (8)"), "{err}");
    assert!(!n.b.p.is_closed());
}

// ---- malformed input ---------------------------------------------------------------

/// A protocol under test, fed raw frames by hand after a valid hello and a
/// root request; `root` is the id it gave its root object.
struct Raw {
    p: Protocol,
    now: Instant,
    root: u64,
}

impl Raw {
    fn new() -> Raw {
        Raw::with(Config::default())
    }

    fn with(config: Config) -> Raw {
        let now = Instant::now();
        let mut p = Protocol::new(config, now);
        p.handle_input(now, Input::Receive(&hello())).unwrap();
        let mut raw = Raw { p, now, root: 0 };
        assert_eq!(raw.output(), vec![Message::Hello { version: VERSION, features: FEATURES }]);
        raw.send(&Cbor::Array(vec![uint(1), uint(1), uint(0)])).unwrap();
        let Some(Event::Request { seq: 1, request }) = raw.p.poll_event() else { panic!("no root request") };
        raw.p.send_reply(1, serve(request, Some(&service(x_object()))));
        match &raw.output()[..] {
            [Message::Reply { seq: 1, value: Cbor::Tag(TAG_SENDER_OBJECT, id) }] => {
                raw.root = u64::try_from(id.as_integer().unwrap()).unwrap();
            }
            other => panic!("unexpected root reply {other:?}"),
        }
        raw
    }

    fn feed(&mut self, bytes: &[u8]) -> netref::Result<()> {
        self.p.handle_input(self.now, Input::Receive(bytes))
    }

    fn send(&mut self, item: &Cbor) -> netref::Result<()> {
        self.feed(&frame(item))
    }

    /// Everything the protocol sent since the last call, after answering
    /// the requests it reported (as a connection would).
    fn output(&mut self) -> Vec<Message> {
        while let Some(event) = self.p.poll_event() {
            match event {
                Event::Request { seq, request } => self.p.send_reply(seq, serve(request, None)),
                other => panic!("unexpected event {other:?}"),
            }
        }
        decode_all(&written(&mut self.p))
    }

    /// Feeds a fatal input; checks that the returned error and the `Closed`
    /// event agree and that the message names `needle`; returns why it closed.
    fn fatal(&mut self, bytes: &[u8], needle: &str) -> CloseReason {
        let err = self.feed(bytes).expect_err("input must be rejected");
        assert!(err.to_string().contains(needle), "error {err:?} ({err}) does not name {needle:?}");
        let Error::Closed(reason) = err else { panic!("a fatal input closes the connection: {err:?}") };
        self.check_closed(&reason);
        reason
    }

    fn check_closed(&mut self, reason: &CloseReason) {
        assert!(self.p.is_closed());
        assert_eq!(self.p.close_reason(), Some(reason));
        let mut closed = None;
        while let Some(ev) = self.p.poll_event() {
            if let Event::Closed { reason } = ev {
                assert!(closed.is_none(), "closed twice");
                closed = Some(reason);
            }
        }
        assert_eq!(closed.as_ref(), Some(reason));
        // Nothing more is accepted or reported.
        self.feed(&frame(&Cbor::Array(vec![uint(1), uint(9), uint(5), Cbor::Null]))).unwrap();
        assert!(self.p.poll_event().is_none());
    }

    /// Feeds a request that must be refused with an error reply; returns it.
    fn refused(&mut self, item: &Cbor, seq: u64) -> RemoteError {
        self.send(item).expect("the connection survives");
        let invalid = match self.p.poll_event() {
            Some(Event::Request { seq: s, request: Request::Invalid(e) }) if s == seq => e,
            other => panic!("expected an invalid request, got {other:?}"),
        };
        self.p.send_reply(seq, Err(invalid.clone()));
        match &self.output()[..] {
            [Message::Error { seq: s, error }] if *s == seq => assert_eq!(error, &invalid),
            other => panic!("expected an error reply, got {other:?}"),
        }
        self.assert_alive();
        invalid
    }

    fn assert_alive(&mut self) {
        assert_eq!(self.p.phase(), Phase::Open);
        self.send(&Cbor::Array(vec![uint(1), uint(777), uint(5), text("still here")])).unwrap();
        assert_eq!(self.output(), vec![Message::Reply { seq: 777, value: text("still here") }]);
    }

    fn call_method(&self, seq: u64, name: &str, args: Vec<Cbor>) -> Cbor {
        Cbor::Array(vec![uint(1), uint(seq), uint(2), uint(self.root), text(name), Cbor::Array(args)])
    }
}

fn header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

#[test]
fn raw_peer_baseline_works() {
    let mut raw = Raw::new();
    raw.send(&raw.call_method(2, "add", vec![uint(2), uint(3)])).unwrap();
    let Some(Event::Request { seq: 2, request }) = raw.p.poll_event() else { panic!() };
    raw.p.send_reply(2, serve(request, None));
    assert_eq!(raw.output(), vec![Message::Reply { seq: 2, value: uint(5) }]);
    raw.assert_alive();
}

#[test]
fn truncated_frame_then_eof() {
    let mut raw = Raw::new();
    let whole = frame(&raw.call_method(2, "add", vec![uint(2), uint(3)]));
    raw.feed(&whole[..whole.len() - 3]).unwrap();
    assert!(raw.p.poll_event().is_none());
    raw.p.handle_input(Instant::now(), Input::Eof).unwrap();
    let Some(Event::Closed { reason: error }) = raw.p.poll_event() else { panic!("expected Closed") };
    assert_eq!(
        error,
        CloseReason::Decode(DecodeError::Truncated { expected: whole.len(), got: whole.len() - 3 })
    );
    assert!(error.to_string().contains("truncated frame"), "{error}");

    // A header cut short is truncated too.
    let mut raw = Raw::new();
    raw.feed(&[0, 0]).unwrap();
    raw.p.handle_input(Instant::now(), Input::Eof).unwrap();
    let Some(Event::Closed { reason: error }) = raw.p.poll_event() else { panic!("expected Closed") };
    assert!(matches!(error, CloseReason::Decode(DecodeError::Truncated { got: 2, .. })), "{error:?}");
}

#[test]
fn oversized_length_prefix_fails_on_the_header() {
    let mut raw = Raw::new();
    // Only the header arrives: the limit is checked before any body is buffered.
    let err = raw.fatal(&header(u32::MAX), "exceeds max_frame_len");
    assert_eq!(err, CloseReason::Limit(LimitError::FrameTooLarge { len: u32::MAX as usize, max: 128 << 20 }));

    let mut raw = Raw::with(Config::default().max_frame_len(64));
    let err = raw.fatal(&header(65), "max_frame_len (64)");
    assert!(matches!(err, CloseReason::Limit(LimitError::FrameTooLarge { len: 65, max: 64 })), "{err:?}");
    // Exactly at the limit is fine (it is waiting for the body).
    let mut raw = Raw::with(Config::default().max_frame_len(64));
    raw.feed(&header(64)).unwrap();
    assert!(!raw.p.is_closed());
}

#[test]
fn bad_cbor() {
    // 0x1c: reserved additional information; 0xff: a break outside any
    // indefinite item; 0x62 'a': a text string cut short; invalid UTF-8.
    for body in [&[0x1c][..], &[0xff], &[0x62, b'a'], &[0x82, 0x01], &[0x61, 0xff], &[]] {
        let mut raw = Raw::new();
        let mut bytes = header(body.len() as u32).to_vec();
        bytes.extend_from_slice(body);
        let err = raw.fatal(&bytes, "invalid CBOR");
        assert!(matches!(err, CloseReason::Decode(DecodeError::BadCbor(_))), "{body:?}: {err:?}");
    }
}

#[test]
fn huge_declared_lengths_fail_without_allocating() {
    // An array, a map, a byte string and a text string each declaring 2^64-1
    // items inside a 9-byte frame.
    for major in [0x9b, 0xbb, 0x5b, 0x7b] {
        let mut raw = Raw::new();
        let mut body = vec![major];
        body.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut bytes = header(body.len() as u32).to_vec();
        bytes.extend_from_slice(&body);
        let err = raw.fatal(&bytes, "invalid CBOR");
        assert!(matches!(err, CloseReason::Decode(DecodeError::BadCbor(_))), "{major:#x}: {err:?}");
    }
}

#[test]
fn trailing_bytes_after_the_item() {
    let mut raw = Raw::new();
    let mut body =
        frame(&Cbor::Array(vec![uint(1), uint(2), uint(5), Cbor::Null])).split_off(wire::HEADER_LEN);
    body.extend_from_slice(&[0x00, 0x00, 0x00]);
    let mut bytes = header(body.len() as u32).to_vec();
    bytes.extend_from_slice(&body);
    let err = raw.fatal(&bytes, "3 trailing bytes");
    assert_eq!(err, CloseReason::Decode(DecodeError::TrailingBytes(3)));
}

#[test]
fn unknown_message_kind() {
    let mut raw = Raw::new();
    let err = raw.fatal(&frame(&Cbor::Array(vec![uint(9), uint(1)])), "unknown message kind 9");
    assert_eq!(err, CloseReason::Decode(DecodeError::UnknownMessage(9)));
}

#[test]
fn malformed_message_shapes() {
    let cases: Vec<(Cbor, &str)> = vec![
        (uint(1), "must be a CBOR array"),
        (Cbor::Array(vec![]), "missing its message kind"),
        (Cbor::Array(vec![text("1")]), "message kind must be an unsigned integer"),
        (Cbor::Array(vec![Cbor::Integer((-1).into())]), "message kind must be an unsigned integer"),
        (Cbor::Array(vec![uint(1), uint(3), uint(3), uint(1)]), "request is missing its attribute name"),
        (
            Cbor::Array(vec![uint(1), uint(3), uint(1), uint(1), Cbor::Map(vec![])]),
            "arguments must be an array",
        ),
        (Cbor::Array(vec![uint(1), uint(3), uint(4), uint(1), uint(0)]), "1 unexpected extra fields"),
        (Cbor::Array(vec![uint(1), uint(0), uint(5), Cbor::Null]), "nonzero"),
        (Cbor::Array(vec![uint(1), uint(5), uint(7), uint(1)]), "one-way requests zero"),
        (
            Cbor::Array(vec![uint(1), uint(0), uint(6), Cbor::Array(vec![uint(1)])]),
            "release entry must be [id, count]",
        ),
        (Cbor::Array(vec![uint(2), uint(1)]), "reply is missing"),
        (
            Cbor::Array(vec![uint(3), uint(1), text("E"), text("m"), Cbor::Array(vec![uint(1)])]),
            "traceback entries must be text",
        ),
    ];
    for (item, needle) in cases {
        let mut raw = Raw::new();
        let err = raw.fatal(&frame(&item), needle);
        assert!(matches!(err, CloseReason::Decode(DecodeError::Malformed(_))), "{item:?}: {err:?}");
        assert!(err.to_string().contains("malformed message"), "{err}");
    }
}

#[test]
fn unknown_request_kind_gets_an_error_reply() {
    let mut raw = Raw::new();
    let err = raw.refused(&Cbor::Array(vec![uint(1), uint(5), uint(99), text("whatever"), uint(1)]), 5);
    assert!(err.message.contains("unknown request kind 99"), "{err}");

    // A one-way request of an unknown kind cannot be answered: fatal.
    let mut raw = Raw::new();
    let err = raw.fatal(&frame(&Cbor::Array(vec![uint(1), uint(0), uint(99)])), "unknown request kind 99");
    assert_eq!(err, CloseReason::Decode(DecodeError::UnknownRequest(99)));
}

#[test]
fn unknown_tag_in_arguments() {
    let mut raw = Raw::new();
    let item = raw.call_method(2, "echo", vec![Cbor::Tag(99, Box::new(uint(1)))]);
    let err = raw.refused(&item, 2);
    assert_eq!(err.type_name, "TypeError");
    assert!(err.message.contains("unknown CBOR tag 99"), "{err}");

    // Whatever the tag wraps.
    let item = raw.call_method(3, "echo", vec![Cbor::Array(vec![Cbor::Tag(99, Box::new(text("no id")))])]);
    let err = raw.refused(&item, 3);
    assert!(err.message.contains("unknown CBOR tag 99"), "{err}");

    // The conversion stash's private tag never travels.
    let stash = 0x7465_7468;
    let item = raw.call_method(4, "echo", vec![Cbor::Tag(stash, Box::new(uint(0)))]);
    let err = raw.refused(&item, 4);
    assert!(err.message.contains(&format!("unknown CBOR tag {stash}")), "{err}");

    // An object tag around something that is not an id.
    let item = raw.call_method(5, "echo", vec![Cbor::Tag(TAG_SENDER_OBJECT, Box::new(text("x")))]);
    let err = raw.refused(&item, 5);
    assert!(err.message.contains("must wrap an object id"), "{err}");

    // In a ping payload: the ping is refused with an error naming the tag.
    raw.send(&Cbor::Array(vec![uint(1), uint(6), uint(5), Cbor::Tag(99, Box::new(uint(1)))])).unwrap();
    match &raw.output()[..] {
        [Message::Error { seq: 6, error }] => {
            assert!(error.message.contains("unknown CBOR tag 99"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    raw.assert_alive();
}

#[test]
fn reference_to_unknown_object() {
    let mut raw = Raw::new();
    // As an argument: the peer hands back an object we never gave it.
    let item = raw.call_method(2, "echo", vec![Cbor::Tag(TAG_RECEIVER_OBJECT, Box::new(uint(999)))]);
    let err = raw.refused(&item, 2);
    assert_eq!(err.type_name, "ReferenceError");
    assert!(err.message.contains("999"), "{err}");

    // As a target.
    for (seq, item) in [
        (3, Cbor::Array(vec![uint(1), uint(3), uint(1), uint(999), Cbor::Array(vec![])])),
        (4, Cbor::Array(vec![uint(1), uint(4), uint(2), uint(999), text("m"), Cbor::Array(vec![])])),
        (5, Cbor::Array(vec![uint(1), uint(5), uint(3), uint(999), text("a")])),
        (6, Cbor::Array(vec![uint(1), uint(6), uint(4), uint(999)])),
    ] {
        let err = raw.refused(&item, seq);
        assert_eq!(err.type_name, "ReferenceError");
        assert!(err.message.contains("no object with id 999"), "{err}");
    }

    // A release of an object never handed out is fatal.
    let release = |id: u64, n: u64| {
        frame(&Cbor::Array(vec![
            uint(1),
            uint(0),
            uint(6),
            Cbor::Array(vec![Cbor::Array(vec![uint(id), uint(n)])]),
        ]))
    };
    let err = raw.fatal(&release(999, 1), "unknown object id 999");
    assert_eq!(err, CloseReason::Protocol(ProtocolError::UnknownObject(999)));

    // So is releasing more references than were handed out, or none.
    let mut raw = Raw::new();
    let root = raw.root;
    let err = raw.fatal(&release(root, 2), "released 2 references");
    assert_eq!(err, CloseReason::Protocol(ProtocolError::OverRelease { id: root, released: 2, held: 1 }));
    let mut raw = Raw::new();
    let root = raw.root;
    raw.fatal(&release(root, 0), "released 0 references");

    // A released object can no longer be used.
    let mut raw = Raw::new();
    let root = raw.root;
    raw.feed(&release(root, 1)).unwrap();
    assert_eq!(raw.p.exported_count(), 0);
    let item = raw.call_method(2, "add", vec![uint(1), uint(2)]);
    let err = raw.refused(&item, 2);
    assert_eq!(err.type_name, "ReferenceError");
}

#[test]
fn reference_to_unknown_object_in_a_reply() {
    let mut raw = Raw::new();
    let seq = raw.p.send_request(Call::Ping(Value::Null), None).unwrap();
    raw.output();
    raw.send(&Cbor::Array(vec![uint(2), uint(seq), Cbor::Tag(TAG_RECEIVER_OBJECT, Box::new(uint(555)))]))
        .unwrap();
    match raw.p.poll_event() {
        Some(Event::Reply { seq: s, result: Err(e) }) if s == seq => {
            assert_eq!(e.type_name, "InvalidReply");
            assert!(e.message.contains("unknown object id 555"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    raw.assert_alive();
}

/// A ping whose payload is `depth` nested one-element arrays, built by hand
/// (a `Cbor` item that deep would itself overflow the stack).
fn deep_ping(seq: u8, depth: usize, open: u8) -> Vec<u8> {
    let mut body = vec![0x84, 0x01, seq, 0x05];
    body.extend(std::iter::repeat_n(open, depth));
    body.push(0x80);
    let mut bytes = header(body.len() as u32).to_vec();
    bytes.extend_from_slice(&body);
    bytes
}

#[test]
fn excessive_nesting() {
    let mut raw = Raw::new(); // max_depth 64
    assert_eq!(raw.p.config().max_depth, 64);
    // 64 levels inside the payload: fine.
    raw.feed(&deep_ping(2, 64, 0x81)).unwrap();
    match &raw.output()[..] {
        [Message::Reply { seq: 2, .. }] => {}
        other => panic!("{other:?}"),
    }
    // A little deeper than max_depth: that request is refused.
    raw.feed(&deep_ping(3, 66, 0x81)).unwrap();
    match &raw.output()[..] {
        [Message::Error { seq: 3, error }] => assert!(error.message.contains("max_depth (64)"), "{error}"),
        other => panic!("{other:?}"),
    }
    raw.assert_alive();

    // Far deeper: the frame is refused while decoding, which ends the connection.
    for (depth, open) in [(200, 0x81), (100_000, 0x81), (100_000, 0xc6), (100_000, 0xa1)] {
        let mut raw = Raw::new();
        let mut bytes = deep_ping(2, depth, open);
        if open == 0xa1 {
            // Maps need a value for each key: [{[...]: null}] — close every level.
            bytes.extend(std::iter::repeat_n(0xf6, depth));
            let len = (bytes.len() - 4) as u32;
            bytes[..4].copy_from_slice(&len.to_be_bytes());
        }
        let err = raw.fatal(&bytes, "max_depth (64)");
        assert_eq!(err, CloseReason::Limit(LimitError::TooDeep { max: 64 }), "depth {depth}, byte {open:#x}");
    }
}

#[test]
fn deep_nesting_in_a_small_thread_stack() {
    // The limit must hold on a 256 KiB stack too (a backend's thread).
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let mut raw = Raw::new();
            raw.fatal(&deep_ping(2, 100_000, 0x81), "max_depth");
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn garbage_after_close_is_ignored_and_errors_reported_once() {
    let mut raw = Raw::new();
    raw.fatal(&frame(&Cbor::Array(vec![uint(42)])), "unknown message kind 42");
    assert!(raw.p.handle_input(raw.now, Input::Receive(&[0xff; 64])).is_ok());
    raw.p.handle_input(Instant::now(), Input::Eof).unwrap();
    raw.p.handle_input(raw.now + Duration::from_secs(1_000_000), Input::Timeout).unwrap();
    assert!(raw.p.poll_event().is_none());
    assert!(!raw.p.wants_write());
}

#[test]
fn one_bad_frame_among_good_ones() {
    // Good frames before the bad one are handled; nothing after it is.
    let mut raw = Raw::new();
    let mut bytes = frame(&Cbor::Array(vec![uint(1), uint(2), uint(5), text("a")]));
    bytes.extend(frame(&Cbor::Array(vec![uint(7)])));
    bytes.extend(frame(&Cbor::Array(vec![uint(1), uint(3), uint(5), text("b")])));
    let err = raw.feed(&bytes).unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::Decode(DecodeError::UnknownMessage(7))));
    let events: Vec<Event> = std::iter::from_fn(|| raw.p.poll_event()).collect();
    match &events[..] {
        [Event::Request { seq: 2, request: Request::Ping(Value::Text(a)) }, Event::Closed { .. }]
            if a == "a" => {}
        other => panic!("expected the first ping, then the close: {other:?}"),
    }
}

#[test]
fn released_exports_are_handed_to_the_driver() {
    // A freed export is handed to the driver to drop, not dropped inside.
    let mut raw = Raw::new();
    assert!(raw.p.take_released_objects().is_empty());
    let root = raw.root;
    raw.feed(&frame(&Cbor::Array(vec![
        uint(1),
        uint(0),
        uint(6),
        Cbor::Array(vec![Cbor::Array(vec![uint(root), uint(1)])]),
    ])))
    .unwrap();
    let released = raw.p.take_released_objects();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].type_name(), "Svc");
    assert!(raw.p.take_released_objects().is_empty());
}
