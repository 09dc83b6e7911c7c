//! Two protocols, A and B, in memory on a virtual clock, driven by a fuzzed
//! sequence of operations: calls (with objects and deadlines), replies,
//! proxy drops, partial deliveries, timeouts, closes, and raw garbage fed to
//! A. Nothing may panic. While no garbage or EOF was injected, neither side
//! may see a protocol error, and once every proxy is dropped and all traffic
//! has settled no object may stay exported.
//!
//! The body of the `protocol` target (netref's dialect) and of the
//! `rpyc_protocol` target (both sides speaking RPyC 6's: its references,
//! refcounted DELs and unanswered requests must keep the same books).
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use netref::protocol::{self, Call, Event, Protocol, Request};
use netref::{
    CloseReason, Config, Dialect, LocalObject, ObjectBuilder, ObjectRef, RemoteError, RemoteObject, Value,
};

#[derive(Arbitrary, Debug, Clone)]
enum Arg {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Local(u8),
    Remote(u8),
    Nested(u8, Box<Arg>),
    List(Vec<Arg>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Who {
    A,
    B,
}

#[derive(Arbitrary, Debug)]
enum Target {
    Root,
    Proxy(u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Call { who: Who, target: Target, method: bool, args: Vec<Arg>, deadline_ms: Option<u16> },
    GetAttr { who: Who, target: u8 },
    Ping { who: Who, arg: Arg, deadline_ms: Option<u16> },
    Serve { who: Who, pick: u8, reply: Reply },
    Deliver { who: Who, max: u16 },
    DropProxy { who: Who, pick: u8 },
    SetDeadline { who: Who, pick: u8, ms: Option<u16> },
    Advance { ms: u16 },
    Close { who: Who },
    Eof { who: Who },
    Garbage(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Reply {
    EchoArgs,
    Value(Arg),
    Error(String),
}

/// A fuzz input: a sequence of operations.
#[derive(Arbitrary, Debug)]
pub struct Input {
    ops: Vec<Op>,
}

struct Side {
    p: Protocol,
    locals: Vec<LocalObject>,
    proxies: Vec<RemoteObject>,
    held: Vec<(u64, Request)>,
    pending: Vec<u64>,
    error: Option<CloseReason>,
}

/// Small limits, so that the fuzzer reaches them. The handshake and frame
/// deadlines are off: virtual time here advances by up to a minute a step
/// whether or not the network delivers, so they would end connections of
/// well-behaved peers on a slow network (tests/protocol.rs covers them).
/// The most items one generated value holds (see `Side::value`): eight
/// arguments of this many, in a call's array, stay under 256.
const MAX_VALUE_ITEMS: usize = 24;

/// How many CBOR items `v` is (an array counts itself and its items).
fn items(v: &Value) -> usize {
    match v {
        Value::Array(vs) => 1 + vs.iter().map(items).sum::<usize>(),
        Value::Map(kvs) => 1 + kvs.iter().map(|(k, v)| items(k) + items(v)).sum::<usize>(),
        // An object reference is a tag around an id.
        Value::Object(_) => 2,
        _ => 1,
    }
}

fn config(dialect: Dialect) -> Config {
    // RPyC boxes every value inside a reference-holding tuple with a
    // label: up to three brine items for each CBOR item.
    let items = if dialect == Dialect::Rpyc { 768 } else { 256 };
    Config::default()
        .dialect(dialect)
        .handshake_timeout(None)
        .frame_timeout(None)
        .max_pending(8)
        .max_exported(8)
        .max_imported(8)
        .max_frame_len(4096)
        .max_depth(8)
        .max_frame_items(items)
}

impl Side {
    fn new(now: Instant, tag: &str, dialect: Dialect) -> Side {
        let locals: Vec<LocalObject> =
            (0..4).map(|i| ObjectBuilder::new(format!("{tag}{i}")).build()).collect();
        let pool = netref::wire::BufferPool::with_placement(netref::wire::Placement::InPlace);
        let p = Protocol::with_pool(config(dialect), now, pool);
        Side { p, locals, proxies: Vec::new(), held: Vec::new(), pending: Vec::new(), error: None }
    }

    /// The value `arg` describes, kept to at most [`MAX_VALUE_ITEMS`]
    /// items (bigger is `Null`): a call's eight arguments, or an echo of
    /// them, then stay within the config's `max_frame_items`, so a
    /// well-behaved side never sends a frame the limit refuses.
    fn value(&self, arg: &Arg, depth: u32) -> Value {
        let v = self.build(arg, depth);
        if items(&v) > MAX_VALUE_ITEMS {
            return Value::Null;
        }
        v
    }

    fn build(&self, arg: &Arg, depth: u32) -> Value {
        if depth > 12 {
            return Value::Null;
        }
        match arg {
            Arg::Null => Value::Null,
            Arg::Int(i) => Value::from(*i),
            Arg::Text(s) => Value::Text(s.clone()),
            Arg::Bytes(b) => Value::Bytes(b.clone()),
            Arg::Local(i) => Value::from(self.locals[usize::from(*i) % self.locals.len()].clone()),
            Arg::Remote(i) if !self.proxies.is_empty() => {
                Value::from(self.proxies[usize::from(*i) % self.proxies.len()].clone())
            }
            Arg::Remote(_) => Value::Null,
            Arg::Nested(n, inner) => {
                let mut v = self.build(inner, depth + 1);
                for _ in 0..(n % 12) {
                    v = Value::Array(vec![v]);
                }
                v
            }
            Arg::List(items) => {
                Value::Array(items.iter().take(8).map(|a| self.build(a, depth + 1)).collect())
            }
        }
    }

    fn keep_proxies(&mut self, v: &Value) {
        match v {
            Value::Object(ObjectRef::Remote(r)) => self.proxies.push(r.clone()),
            Value::Array(items) => items.iter().for_each(|i| self.keep_proxies(i)),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                self.keep_proxies(k);
                self.keep_proxies(v)
            }),
            _ => {}
        }
    }

    fn process(&mut self) {
        while let Some(ev) = self.p.poll_event() {
            match ev {
                // Answered at once, as a connection answers them (its
                // root is `locals[0]`).
                Event::Request { seq, request: Request::Root } => {
                    self.p.send_reply(seq, Ok(Value::from(self.locals[0].clone())))
                }
                Event::Request { seq, request: Request::Ping(payload) } => {
                    self.p.send_reply(seq, Ok(payload))
                }
                Event::Request { seq, request } => {
                    if let Request::Call { args, .. } | Request::CallMethod { args, .. } = &request {
                        if args.len() % 2 == 1 {
                            // Keep some of the peer's objects for later.
                            args.iter().for_each(|a| self.keep_proxies(a));
                        }
                    }
                    self.held.push((seq, request));
                }
                Event::Reply { seq, result } => {
                    assert!(self.pending.contains(&seq), "reply to {seq}, not pending");
                    self.pending.retain(|&s| s != seq);
                    if let Ok(v) = result {
                        self.keep_proxies(&v);
                    }
                }
                Event::Expired { seq } => {
                    assert!(self.pending.contains(&seq), "expired {seq}, not pending");
                    self.pending.retain(|&s| s != seq);
                }
                Event::Cancelled { .. } => {}
                Event::Closed { reason } => {
                    assert!(self.error.is_none(), "closed twice");
                    self.error = Some(reason);
                    self.pending.clear();
                }
            }
        }
        self.proxies.truncate(64);
        self.check();
    }

    fn check(&self) {
        let c = self.p.config();
        assert!(self.p.pending_count() <= c.max_pending);
        assert!(self.p.exported_count() <= c.max_exported);
        assert_eq!(self.p.pending_count(), self.pending.len());
        if self.p.is_closed() {
            assert_eq!(self.p.pending_count(), 0);
            assert_eq!(self.p.exported_count(), 0);
            assert_eq!(self.p.imported_count(), 0);
            assert!(self.p.poll_timeout().is_none());
        }
    }

    fn send(&mut self, call: Call, deadline: Option<Instant>) {
        if let Ok(seq) = self.p.send_request(call, deadline) {
            self.pending.push(seq);
        }
    }

    fn serve(&mut self, pick: u8, reply: &Reply) {
        if self.held.is_empty() {
            return;
        }
        let (seq, request) = self.held.remove(usize::from(pick) % self.held.len());
        let result = match (reply, request) {
            (_, Request::Invalid(e)) => Err(e),
            (Reply::EchoArgs, Request::Call { args, .. } | Request::CallMethod { args, .. }) => {
                Ok(Value::Array(args))
            }
            (Reply::EchoArgs, Request::GetAttr { target, .. } | Request::Dir { target }) => {
                Ok(Value::from(target))
            }
            (Reply::EchoArgs, Request::Root) => Ok(Value::from(self.locals[0].clone())),
            (Reply::EchoArgs, Request::Ping(payload)) => Ok(payload),
            (Reply::Value(arg), _) => Ok(self.value(arg, 0)),
            (Reply::Error(m), _) => Err(RemoteError::new("FuzzError", m.clone())),
        };
        self.p.send_reply(seq, result);
    }
}

/// A peer's socket that takes up to `room` bytes, then would block.
struct Room<'a> {
    into: &'a mut Vec<u8>,
    room: usize,
}

impl std::io::Write for Room<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.into.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Delivers up to `max` bytes (all when `None`) from one side to the other.
fn deliver(from: &mut Side, to: &mut Side, max: Option<usize>, now: Instant) -> bool {
    let mut chunk = Vec::new();
    let n =
        from.p.write_to(&mut Room { into: &mut chunk, room: max.unwrap_or(usize::MAX) }).expect("written");
    if n == 0 {
        return false;
    }
    let _ = to.p.handle_input(now, protocol::Input::Receive(&chunk));
    true
}

fn pair<'a>(who: Who, a: &'a mut Side, b: &'a mut Side) -> (&'a mut Side, &'a mut Side) {
    match who {
        Who::A => (a, b),
        Who::B => (b, a),
    }
}

/// One fuzz input, both sides speaking `dialect`: the operations, then
/// the settling checks.
pub fn run_speaking(input: Input, dialect: Dialect) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Side::new(now, "a", dialect);
    let mut b = Side::new(now, "b", dialect);
    let mut tainted = false;
    let ms = |m: u16| Duration::from_millis(u64::from(m));

    for op in input.ops.iter().take(256) {
        match op {
            Op::Call { who, target, method, args, deadline_ms } => {
                let (s, _) = pair(*who, &mut a, &mut b);
                let call = match target {
                    Target::Proxy(i) if !s.proxies.is_empty() => {
                        let target = s.proxies[usize::from(*i) % s.proxies.len()].id();
                        let args = args.iter().take(8).map(|x| s.value(x, 0)).collect();
                        if *method {
                            Call::CallMethod { target, name: "m".into(), args }
                        } else {
                            Call::Call { target, args }
                        }
                    }
                    _ => Call::Root,
                };
                s.send(call, deadline_ms.map(|d| now + ms(d)));
            }
            Op::GetAttr { who, target } => {
                let (s, _) = pair(*who, &mut a, &mut b);
                if !s.proxies.is_empty() {
                    let target = s.proxies[usize::from(*target) % s.proxies.len()].id();
                    s.send(Call::GetAttr { target, name: "x".into() }, None);
                }
            }
            Op::Ping { who, arg, deadline_ms } => {
                let (s, _) = pair(*who, &mut a, &mut b);
                let v = s.value(arg, 0);
                s.send(Call::Ping(v), deadline_ms.map(|d| now + ms(d)));
            }
            Op::Serve { who, pick, reply } => pair(*who, &mut a, &mut b).0.serve(*pick, reply),
            Op::Deliver { who, max } => {
                let (s, o) = pair(*who, &mut a, &mut b);
                deliver(s, o, Some(usize::from(*max)), now);
            }
            Op::DropProxy { who, pick } => {
                let s = pair(*who, &mut a, &mut b).0;
                if !s.proxies.is_empty() {
                    let i = usize::from(*pick) % s.proxies.len();
                    s.proxies.swap_remove(i);
                }
            }
            Op::SetDeadline { who, pick, ms: d } => {
                let s = pair(*who, &mut a, &mut b).0;
                if !s.pending.is_empty() {
                    let seq = s.pending[usize::from(*pick) % s.pending.len()];
                    s.p.set_deadline(seq, d.map(|d| now + ms(d)));
                }
            }
            Op::Advance { ms: d } => {
                now += ms(*d);
                a.p.handle_input(now, protocol::Input::Timeout).unwrap();
                b.p.handle_input(now, protocol::Input::Timeout).unwrap();
            }
            Op::Close { who } => {
                // A local close fails nothing: the caller owns its requests.
                let s = pair(*who, &mut a, &mut b).0;
                s.p.close("fuzz");
                s.pending.clear();
            }
            Op::Eof { who } => {
                tainted = true;
                pair(*who, &mut a, &mut b).0.p.handle_input(now, protocol::Input::Eof).unwrap();
            }
            Op::Garbage(bytes) => {
                tainted = true;
                let _ = a.p.handle_input(now, protocol::Input::Receive(bytes));
            }
        }
        a.process();
        b.process();
    }

    // Settle: answer everything, drop every proxy, deliver until quiet.
    for _ in 0..64 {
        a.process();
        b.process();
        while !a.held.is_empty() {
            a.serve(0, &Reply::Value(Arg::Null));
        }
        while !b.held.is_empty() {
            b.serve(0, &Reply::Value(Arg::Null));
        }
        a.proxies.clear();
        b.proxies.clear();
        let moved_ab = deliver(&mut a, &mut b, None, now);
        let moved_ba = deliver(&mut b, &mut a, None, now);
        if !moved_ab && !moved_ba && a.held.is_empty() && b.held.is_empty() {
            break;
        }
    }
    a.process();
    b.process();
    if tainted {
        return;
    }
    for s in [&a, &b] {
        if let Some(e) = &s.error {
            assert!(e.is_orderly(), "well-behaved peers failed: {e}");
        }
    }
    if !a.p.is_closed() && !b.p.is_closed() {
        assert!(a.held.is_empty() && b.held.is_empty());
        assert_eq!(a.p.imported_count(), 0, "A still imports objects");
        assert_eq!(b.p.imported_count(), 0, "B still imports objects");
        assert_eq!(a.p.exported_count(), 0, "A still exports objects");
        assert_eq!(b.p.exported_count(), 0, "B still exports objects");
    }
}
