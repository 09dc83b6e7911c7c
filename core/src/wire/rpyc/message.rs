//! RPyC 6's messages (`rpyc/core/protocol.py`, `vinegar.py`;
//! `RPYC-WIRE.md` §3 and §5): a payload is one byte naming the message,
//! then the brine of `(seq, body)`. Values inside are *boxed*: labelled as
//! a plain value, a tuple holding references, or a reference to an object
//! of the receiver (label 3) or of the sender (label 4), each named by an
//! [`IdPack`]. Errors travel as vinegar, unboxed.
//!
//! This module knows the shapes; the protocol gives the id packs their
//! meaning.

use super::Brine;
use crate::error::{DecodeError, ProtocolError, RemoteError, Result};

const MSG_REQUEST: u8 = 1;
const MSG_REPLY: u8 = 2;
const MSG_EXCEPTION: u8 = 3;

/// What RPyC 5's payloads start with (a brine 3-tuple): told apart to say
/// which version the peer speaks instead of misreading it.
const RPYC5_PAYLOAD: u8 = 0x12;

/// RPyC's handler numbers (`rpyc/core/consts.py`).
pub(crate) mod handler {
    pub(crate) const PING: u64 = 1;
    pub(crate) const CLOSE: u64 = 2;
    pub(crate) const GETROOT: u64 = 3;
    pub(crate) const GETATTR: u64 = 4;
    pub(crate) const DELATTR: u64 = 5;
    pub(crate) const SETATTR: u64 = 6;
    pub(crate) const CALL: u64 = 7;
    pub(crate) const CALLATTR: u64 = 8;
    pub(crate) const REPR: u64 = 9;
    pub(crate) const STR: u64 = 10;
    pub(crate) const CMP: u64 = 11;
    pub(crate) const HASH: u64 = 12;
    pub(crate) const DIR: u64 = 13;
    pub(crate) const PICKLE: u64 = 14;
    pub(crate) const DEL: u64 = 15;
    pub(crate) const INSPECT: u64 = 16;
    pub(crate) const BUFFITER: u64 = 17;
    pub(crate) const OLDSLICING: u64 = 18;
    pub(crate) const CTXEXIT: u64 = 19;
    pub(crate) const INSTANCECHECK: u64 = 20;
}

/// How RPyC names an object: `(name_pack, class_id, instance_id)`, where
/// `name_pack` is `"<module>.<class>"` and an `instance_id` of 0 means the
/// object is a class. Python keys its tables by the whole pack, so one
/// handed back must be the same three values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdPack {
    /// `"<module>.<class>"`.
    pub name: String,
    /// The class's id.
    pub class_id: i128,
    /// The object's id (0 for a class).
    pub instance_id: i128,
}

impl IdPack {
    fn to_brine(&self) -> Brine {
        Brine::Tuple(vec![
            Brine::Str(self.name.clone()),
            Brine::Int(self.class_id),
            Brine::Int(self.instance_id),
        ])
    }

    /// Reads an id pack. Python applies `str()` to its name, so a name
    /// sent as bytes is refused rather than guessed at.
    pub(crate) fn from_brine(value: Brine) -> Result<IdPack> {
        match value {
            Brine::Tuple(items) => match <[Brine; 3]>::try_from(items) {
                Ok([Brine::Str(name), Brine::Int(class_id), Brine::Int(instance_id)]) => {
                    Ok(IdPack { name, class_id, instance_id })
                }
                _ => {
                    Err(malformed("an object reference must be (name: str, class id: int, instance id: int)"))
                }
            },
            _ => Err(malformed("an object reference must be a tuple (name, class id, instance id)")),
        }
    }
}

/// A value as RPyC boxes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Boxed {
    /// Label 1: a value brine carries whole.
    Value(Brine),
    /// Label 2: a tuple holding at least one reference, its items boxed.
    Tuple(Vec<Boxed>),
    /// Label 3: an object of the receiver's, handed back.
    ReceiverObject(IdPack),
    /// Label 4: an object of the sender's.
    SenderObject(IdPack),
}

impl Boxed {
    /// A tuple of boxed items: one value when none holds a reference (as
    /// Python boxes it), a labelled tuple otherwise.
    pub fn tuple(items: Vec<Boxed>) -> Boxed {
        if items.iter().all(|i| matches!(i, Boxed::Value(_))) {
            let values = items
                .into_iter()
                .map(|i| match i {
                    Boxed::Value(v) => v,
                    _ => unreachable!("checked"),
                })
                .collect();
            Boxed::Value(Brine::Tuple(values))
        } else {
            Boxed::Tuple(items)
        }
    }

    fn into_brine(self) -> Brine {
        let (label, payload) = match self {
            Boxed::Value(v) => (1, v),
            Boxed::Tuple(items) => (2, Brine::Tuple(items.into_iter().map(Boxed::into_brine).collect())),
            Boxed::ReceiverObject(pack) => (3, pack.to_brine()),
            Boxed::SenderObject(pack) => (4, pack.to_brine()),
        };
        Brine::Tuple(vec![Brine::Int(label), payload])
    }

    fn from_brine(value: Brine) -> Result<Boxed> {
        let Brine::Tuple(items) = value else {
            return Err(malformed("a boxed value must be a tuple (label, payload)"));
        };
        let Ok([Brine::Int(label), payload]) = <[Brine; 2]>::try_from(items) else {
            return Err(malformed("a boxed value must be a tuple (label: int, payload)"));
        };
        Ok(match label {
            1 => Boxed::Value(payload),
            2 => match payload {
                Brine::Tuple(items) => {
                    Boxed::Tuple(items.into_iter().map(Boxed::from_brine).collect::<Result<_>>()?)
                }
                _ => return Err(malformed("a boxed tuple (label 2) must hold a tuple of boxed items")),
            },
            3 => Boxed::ReceiverObject(IdPack::from_brine(payload)?),
            4 => Boxed::SenderObject(IdPack::from_brine(payload)?),
            other => return Err(malformed(&format!("unknown boxing label {other} (RPyC 6 uses 1 to 4)"))),
        })
    }

    /// The items of a boxed tuple (a request's arguments), each boxed.
    pub fn into_items(self) -> Result<Vec<Boxed>> {
        match self {
            Boxed::Value(Brine::Tuple(items)) => Ok(items.into_iter().map(Boxed::Value).collect()),
            Boxed::Tuple(items) => Ok(items),
            _ => Err(malformed("a request's arguments must be a tuple")),
        }
    }
}

/// An exception as RPyC sends it (vinegar).
#[derive(Clone, Debug, PartialEq)]
pub enum Vinegar {
    /// `StopIteration`, sent as the bare integer 1.
    StopIteration,
    /// Any other exception.
    Raised {
        /// The class's module (`"builtins"` for Python's own).
        module: String,
        /// The class's name.
        class: String,
        /// `exc.args`, each item as is if brine carries it, else its repr.
        args: Vec<Brine>,
        /// Public attributes, likewise.
        attrs: Vec<(String, Brine)>,
        /// The formatted traceback.
        traceback: String,
    },
}

/// The exceptions Python has built in that a netref error may be raised
/// as by name (the rest are raised as `RuntimeError`).
const PYTHON_BUILTIN_ERRORS: &[&str] = &[
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "EOFError",
    "FileExistsError",
    "FileNotFoundError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "LookupError",
    "MemoryError",
    "NotADirectoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "ReferenceError",
    "RuntimeError",
    "StopIteration",
    "TimeoutError",
    "TypeError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
];

impl Vinegar {
    /// The exception Python raises for `error`: the builtin of its name
    /// when Python has one, else `RuntimeError` with the name in the
    /// message. The traceback goes as the remote traceback Python prints.
    pub fn from_remote_error(error: &RemoteError) -> Vinegar {
        let (class, message) = if PYTHON_BUILTIN_ERRORS.contains(&error.type_name.as_str()) {
            (error.type_name.clone(), error.message.clone())
        } else {
            ("RuntimeError".to_string(), format!("{}: {}", error.type_name, error.message))
        };
        Vinegar::Raised {
            module: "builtins".into(),
            class,
            args: vec![Brine::Str(message)],
            attrs: Vec::new(),
            traceback: error.traceback.join("\n"),
        }
    }

    /// The error a Rust caller sees: Python's builtins by their own name,
    /// other classes as `module.Class`; the message from the arguments as
    /// Python's `str(exc)` words them; the traceback as one section.
    pub fn into_remote_error(self) -> RemoteError {
        match self {
            Vinegar::StopIteration => RemoteError::new("StopIteration", ""),
            Vinegar::Raised { module, class, args, attrs: _, traceback } => {
                let type_name = if module == "builtins" { class } else { format!("{module}.{class}") };
                let message = match args.as_slice() {
                    [Brine::Str(s)] => s.clone(),
                    [one] => python_repr(one),
                    many => format!("({})", many.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
                };
                let mut error = RemoteError::new(type_name, message);
                if !traceback.is_empty() {
                    error.traceback.push(traceback);
                }
                error
            }
        }
    }

    fn into_brine(self) -> Brine {
        match self {
            Vinegar::StopIteration => Brine::Int(1),
            Vinegar::Raised { module, class, args, attrs, traceback } => Brine::Tuple(vec![
                Brine::Tuple(vec![Brine::Str(module), Brine::Str(class)]),
                Brine::Tuple(args),
                Brine::Tuple(attrs.into_iter().map(|(k, v)| Brine::Tuple(vec![Brine::Str(k), v])).collect()),
                Brine::Str(traceback),
            ]),
        }
    }

    fn from_brine(value: Brine) -> Result<Vinegar> {
        const SHAPE: &str = "an exception must be ((module, class), args, attributes, traceback) or 1";
        match value {
            Brine::Int(1) => Ok(Vinegar::StopIteration),
            Brine::Tuple(items) => {
                let Ok([Brine::Tuple(name), Brine::Tuple(args), Brine::Tuple(attrs), Brine::Str(traceback)]) =
                    <[Brine; 4]>::try_from(items)
                else {
                    return Err(malformed(SHAPE));
                };
                let Ok([Brine::Str(module), Brine::Str(class)]) = <[Brine; 2]>::try_from(name) else {
                    return Err(malformed("an exception's class must be (module: str, name: str)"));
                };
                let attrs = attrs
                    .into_iter()
                    .map(|a| match a {
                        Brine::Tuple(pair) => match <[Brine; 2]>::try_from(pair) {
                            Ok([Brine::Str(k), v]) => Ok((k, v)),
                            _ => Err(malformed("an exception's attribute must be (name: str, value)")),
                        },
                        _ => Err(malformed("an exception's attribute must be (name: str, value)")),
                    })
                    .collect::<Result<_>>()?;
                Ok(Vinegar::Raised { module, class, args, attrs, traceback })
            }
            _ => Err(malformed(SHAPE)),
        }
    }
}

/// Python's `repr` of a value brine carries, for error messages.
fn python_repr(value: &Brine) -> String {
    match value {
        Brine::None => "None".into(),
        Brine::Bool(true) => "True".into(),
        Brine::Bool(false) => "False".into(),
        Brine::Int(i) => i.to_string(),
        Brine::Float(f) => format!("{f:?}"),
        Brine::Complex(re, im) => format!("({re:?}{im:+?}j)"),
        Brine::Bytes(b) => format!("b{:?}", String::from_utf8_lossy(b)),
        Brine::Str(s) => format!("{s:?}"),
        Brine::Tuple(items) if items.len() == 1 => format!("({},)", python_repr(&items[0])),
        Brine::Tuple(items) => format!("({})", items.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
        Brine::FrozenSet(items) => {
            format!("frozenset({{{}}})", items.iter().map(python_repr).collect::<Vec<_>>().join(", "))
        }
        Brine::Slice(parts) => {
            format!(
                "slice({}, {}, {})",
                python_repr(&parts[0]),
                python_repr(&parts[1]),
                python_repr(&parts[2])
            )
        }
        Brine::NotImplemented => "NotImplemented".into(),
        Brine::Ellipsis => "Ellipsis".into(),
    }
}

/// One message.
#[derive(Clone, Debug, PartialEq)]
pub enum Packet {
    /// Run handler `handler` with `args` (a boxed tuple).
    Request {
        /// The sender's sequence number, which the reply carries.
        seq: u64,
        /// The handler number (RPyC's `consts.HANDLE_*`: 1 is PING, 3 GETROOT, 8 CALLATTR...).
        handler: u64,
        /// The handler's arguments.
        args: Boxed,
    },
    /// The result of the request `seq`.
    Reply {
        /// The request's sequence number.
        seq: u64,
        /// The result.
        value: Boxed,
    },
    /// The request `seq` raised.
    Exception {
        /// The request's sequence number.
        seq: u64,
        /// What it raised.
        exception: Vinegar,
    },
}

impl Packet {
    /// The payload of the frame that carries this message.
    pub fn encode(self, out: &mut Vec<u8>) {
        let (kind, seq, body) = match self {
            Packet::Request { seq, handler, args } => {
                (MSG_REQUEST, seq, Brine::Tuple(vec![Brine::Int(handler.into()), args.into_brine()]))
            }
            Packet::Reply { seq, value } => (MSG_REPLY, seq, value.into_brine()),
            Packet::Exception { seq, exception } => (MSG_EXCEPTION, seq, exception.into_brine()),
        };
        out.push(kind);
        Brine::Tuple(vec![Brine::Int(seq.into()), body]).encode(out);
    }

    /// Reads the message in a frame's payload, which may hold at most
    /// `max_items` brine items.
    pub fn decode(payload: &[u8], max_items: usize) -> Result<Packet> {
        let Some((&kind, rest)) = payload.split_first() else {
            return Err(malformed("an RPyC frame with an empty payload"));
        };
        if !(MSG_REQUEST..=MSG_EXCEPTION).contains(&kind) {
            if kind == RPYC5_PAYLOAD {
                return Err(ProtocolError::OldRpyc.into());
            }
            return Err(DecodeError::UnknownMessage(kind.into()).into());
        }
        let Brine::Tuple(items) = Brine::decode_within(rest, max_items)? else {
            return Err(malformed("an RPyC message must be (seq, body)"));
        };
        let Ok([Brine::Int(seq), body]) = <[Brine; 2]>::try_from(items) else {
            return Err(malformed("an RPyC message must be (seq: int, body)"));
        };
        let seq =
            u64::try_from(seq).map_err(|_| malformed(&format!("sequence number {seq} is out of range")))?;
        Ok(match kind {
            MSG_REQUEST => {
                let Brine::Tuple(items) = body else {
                    return Err(malformed("an RPyC request must be (handler, arguments)"));
                };
                let Ok([Brine::Int(handler), args]) = <[Brine; 2]>::try_from(items) else {
                    return Err(malformed("an RPyC request must be (handler: int, arguments)"));
                };
                let handler = u64::try_from(handler).map_err(|_| ProtocolError::UnknownHandler(0))?;
                Packet::Request { seq, handler, args: Boxed::from_brine(args)? }
            }
            MSG_REPLY => Packet::Reply { seq, value: Boxed::from_brine(body)? },
            _ => Packet::Exception { seq, exception: Vinegar::from_brine(body)? },
        })
    }
}

fn malformed(what: &str) -> crate::Error {
    DecodeError::Malformed(what.to_string()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str(s: &str) -> Brine {
        Brine::Str(s.into())
    }

    #[test]
    fn python_getroot_request_decodes() {
        // `REQ 0 (3, (1, ()))` (RPYC-WIRE.md §4).
        let payload = [0x01, 0x11, 0x50, 0x11, 0x53, 0x11, 0x51, 0x02];
        let packet = Packet::decode(&payload, 100).unwrap();
        assert_eq!(
            packet,
            Packet::Request { seq: 0, handler: handler::GETROOT, args: Boxed::Value(Brine::Tuple(vec![])) }
        );
        let mut out = Vec::new();
        packet.encode(&mut out);
        assert_eq!(out, payload);
    }

    #[test]
    fn tuples_holding_references_are_labelled() {
        let pack = IdPack { name: "rustsvc.Root".into(), class_id: 1, instance_id: 1000 };
        let args = Boxed::tuple(vec![Boxed::ReceiverObject(pack.clone()), Boxed::Value(str("add"))]);
        assert!(matches!(args, Boxed::Tuple(_)));
        let packet = Packet::Request { seq: 7, handler: handler::GETATTR, args };
        let mut out = Vec::new();
        packet.clone().encode(&mut out);
        assert_eq!(Packet::decode(&out, 100).unwrap(), packet);
        let plain = Boxed::tuple(vec![Boxed::Value(Brine::Int(1)), Boxed::Value(Brine::Int(2))]);
        assert_eq!(plain, Boxed::Value(Brine::Tuple(vec![Brine::Int(1), Brine::Int(2)])));
    }

    #[test]
    fn exceptions_round_trip_and_become_remote_errors() {
        let raised = Vinegar::Raised {
            module: "builtins".into(),
            class: "ValueError".into(),
            args: vec![str("bad"), Brine::Int(42)],
            attrs: vec![("code".into(), Brine::Int(7))],
            traceback: "Traceback (most recent call last):\n...".into(),
        };
        for exception in [raised.clone(), Vinegar::StopIteration] {
            let packet = Packet::Exception { seq: 3, exception };
            let mut out = Vec::new();
            packet.clone().encode(&mut out);
            assert_eq!(Packet::decode(&out, 100).unwrap(), packet);
        }
        let e = raised.into_remote_error();
        assert_eq!((e.type_name.as_str(), e.message.as_str()), ("ValueError", "(\"bad\", 42)"));
        assert_eq!(e.traceback.len(), 1);
        let custom = Vinegar::Raised {
            module: "myapp".into(),
            class: "Oops".into(),
            args: vec![str("no")],
            attrs: vec![],
            traceback: String::new(),
        };
        let e = custom.into_remote_error();
        assert_eq!((e.type_name.as_str(), e.message.as_str()), ("myapp.Oops", "no"));
        assert!(e.traceback.is_empty());
    }

    #[test]
    fn rust_errors_become_fitting_builtins() {
        let Vinegar::Raised { class, args, .. } =
            Vinegar::from_remote_error(&RemoteError::new("KeyError", "k"))
        else {
            panic!()
        };
        assert_eq!((class.as_str(), args), ("KeyError", vec![str("k")]));
        let Vinegar::Raised { class, args, .. } =
            Vinegar::from_remote_error(&RemoteError::new("ParseIntError", "invalid digit"))
        else {
            panic!()
        };
        assert_eq!((class.as_str(), args), ("RuntimeError", vec![str("ParseIntError: invalid digit")]));
    }

    #[test]
    fn other_versions_and_kinds_are_named() {
        // RPyC 5's payload: brine((msg, seq, args)), a 3-tuple.
        let e = Packet::decode(&[0x12, 0x51, 0x50, 0x02], 100).unwrap_err();
        assert!(e.to_string().contains("peer speaks RPyC < 6"), "{e}");
        let e = Packet::decode(&[9, 0x02], 100).unwrap_err();
        assert!(e.to_string().contains("unknown message kind 9"), "{e}");
        let e = Packet::decode(&[1, 0x11, 0x50, 0x11, 0x53, 0x11, 0x59, 0x02], 100).unwrap_err();
        assert!(e.to_string().contains("unknown boxing label 9"), "{e}");
        let e = Packet::decode(&[1, 0x11, 0x50, 0x11, 0x53, 0x11, 0x51, 0x02], 3).unwrap_err();
        assert!(e.to_string().contains("max_frame_items (3)"), "{e}");
    }
}
