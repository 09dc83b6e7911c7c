//! Brine, RPyC's encoding of the values it passes by value (rpyc 6.0.x,
//! `rpyc/core/brine.py`; byte by byte in `RPYC-WIRE.md` §2).
//!
//! One tag byte, then what the tag says. Numbers are big-endian; an
//! integer outside −48..159 is its decimal text; a `str` is tag 0x08
//! followed by a whole bytes value holding its UTF-8. Encoding makes the
//! choices Python's dumper makes (the shortest tag for each length), so
//! what Python sends, decoded and encoded again, is the same bytes.
//!
//! Decoding is sans-IO and bounded: a length or count is checked against
//! the bytes that remain before anything is allocated for it, nesting
//! stops at a depth limit, and every refusal names the byte offset and
//! what was wrong there.

use crate::error::{DecodeError, LimitError, Result};

/// A value brine carries (Python's `simple_types`, tuples, frozensets and
/// slices of them).
#[derive(Clone, Debug, PartialEq)]
pub enum Brine {
    /// `None`.
    None,
    /// `True` or `False` (tags 0x03 / 0x04: never an integer).
    Bool(bool),
    /// An `int`. Python's are unbounded; one beyond 128 bits is refused
    /// when decoded.
    Int(i128),
    /// A `float`.
    Float(f64),
    /// A `complex`: real, imaginary.
    Complex(f64, f64),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A `str`.
    Str(String),
    /// A `tuple`.
    Tuple(Vec<Brine>),
    /// A `frozenset`, its items in the order they arrived.
    FrozenSet(Vec<Brine>),
    /// A `slice(start, stop, step)`.
    Slice(Box<[Brine; 3]>),
    /// `NotImplemented`.
    NotImplemented,
    /// `Ellipsis` (`...`).
    Ellipsis,
}

// Tags, as brine.py names them (lines 24-52).
const NONE: u8 = 0x00;
const EMPTY_BYTES: u8 = 0x01;
const EMPTY_TUPLE: u8 = 0x02;
const TRUE: u8 = 0x03;
const FALSE: u8 = 0x04;
const NOT_IMPLEMENTED: u8 = 0x05;
const ELLIPSIS: u8 = 0x06;
const UNICODE: u8 = 0x08;
const BYTES1: u8 = 0x0a; // ..= 0x0d: 1 to 4 bytes
const BYTES_L1: u8 = 0x0e;
const BYTES_L4: u8 = 0x0f;
const TUPLE1: u8 = 0x10; // ..= 0x13: 1 to 4 items
const TUPLE_L1: u8 = 0x14;
const TUPLE_L4: u8 = 0x15;
const INT_L1: u8 = 0x16;
const INT_L4: u8 = 0x17;
const FLOAT: u8 = 0x18;
const SLICE: u8 = 0x19;
const FROZENSET: u8 = 0x1a;
const COMPLEX: u8 = 0x1b;
/// Tags 0x20..=0xEF are the integers −48..=159 themselves.
const IMMEDIATE_FIRST: u8 = 0x20;
const IMMEDIATE_LAST: u8 = 0xef;
/// The tag of the integer 0.
const IMMEDIATE_ZERO: i128 = 0x50;

/// How deeply tuples, frozensets and slices may nest in one value.
pub const MAX_DEPTH: usize = 64;

impl Brine {
    /// The value's brine encoding, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Brine::None => out.push(NONE),
            Brine::Bool(true) => out.push(TRUE),
            Brine::Bool(false) => out.push(FALSE),
            Brine::NotImplemented => out.push(NOT_IMPLEMENTED),
            Brine::Ellipsis => out.push(ELLIPSIS),
            Brine::Int(n) => encode_int(*n, out),
            Brine::Float(f) => {
                out.push(FLOAT);
                out.extend_from_slice(&f.to_be_bytes());
            }
            Brine::Complex(re, im) => {
                out.push(COMPLEX);
                out.extend_from_slice(&re.to_be_bytes());
                out.extend_from_slice(&im.to_be_bytes());
            }
            Brine::Bytes(b) => encode_bytes(b, out),
            Brine::Str(s) => {
                out.push(UNICODE);
                encode_bytes(s.as_bytes(), out);
            }
            Brine::Tuple(items) => encode_tuple(items, out),
            Brine::FrozenSet(items) => {
                out.push(FROZENSET);
                encode_tuple(items, out);
            }
            Brine::Slice(parts) => {
                out.push(SLICE);
                encode_tuple(&parts[..], out);
            }
        }
    }

    /// The value's brine encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one value that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Brine> {
        Self::decode_within(bytes, usize::MAX)
    }

    /// Like [`decode`](Self::decode), refusing values of more than
    /// `max_items` items (every tag counts one): a value decoded takes tens
    /// of bytes per item, so a frame of one-byte items would otherwise
    /// take many times its size.
    pub fn decode_within(bytes: &[u8], max_items: usize) -> Result<Brine> {
        let mut reader = Reader { bytes, at: 0, items_left: max_items, max_items };
        let value = reader.value(0)?;
        if reader.at != bytes.len() {
            return Err(reader.fail(format!("{} bytes left after the value", bytes.len() - reader.at)));
        }
        Ok(value)
    }
}

fn encode_int(n: i128, out: &mut Vec<u8>) {
    if (-48..=159).contains(&n) {
        // In range, so the sum is a byte.
        out.push((n + IMMEDIATE_ZERO) as u8);
        return;
    }
    let digits = n.to_string();
    // An i128 has at most 40 characters: always the one-byte length.
    out.push(INT_L1);
    out.push(digits.len() as u8);
    out.extend_from_slice(digits.as_bytes());
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    if b.is_empty() {
        out.push(EMPTY_BYTES);
    } else {
        encode_length(b.len(), [BYTES1, BYTES_L1, BYTES_L4], out);
    }
    out.extend_from_slice(b);
}

fn encode_tuple(items: &[Brine], out: &mut Vec<u8>) {
    if items.is_empty() {
        out.push(EMPTY_TUPLE);
    } else {
        encode_length(items.len(), [TUPLE1, TUPLE_L1, TUPLE_L4], out);
    }
    for item in items {
        item.encode(out);
    }
}

/// The tag of a non-empty bytes or tuple of `n`, as Python's dumper picks
/// it: `[one, l1, l4]` are its tags for 1 (to 4, in the tag), up to 255
/// (a length byte follows) and longer (four length bytes follow).
fn encode_length(n: usize, [one, l1, l4]: [u8; 3], out: &mut Vec<u8>) {
    match n {
        1..=4 => out.push(one + (n as u8 - 1)),
        5..=255 => out.extend_from_slice(&[l1, n as u8]),
        _ => {
            out.push(l4);
            out.extend_from_slice(&length_u32(n).to_be_bytes());
        }
    }
}

/// A length for a four-byte field. Nothing netref sends comes near 4 GiB
/// (frames are limited far below it), so a longer one is a bug here.
fn length_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a brine length beyond 4 GiB: frames are limited far below it")
}

/// The bytes of one value being decoded, and where decoding is.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Items the value may still hold, of `max_items`.
    items_left: usize,
    max_items: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, problem: impl Into<String>) -> crate::Error {
        DecodeError::BadBrine { offset: self.at, problem: problem.into() }.into()
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(self.fail(format!("{what} needs {n} bytes, {left} left")));
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn u8(&mut self, what: &str) -> Result<usize> {
        Ok(usize::from(self.take(1, what)?[0]))
    }

    fn u32(&mut self, what: &str) -> Result<usize> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn f64(&mut self, what: &str) -> Result<f64> {
        let b = self.take(8, what)?;
        Ok(f64::from_be_bytes(b.try_into().expect("took 8 bytes")))
    }

    fn value(&mut self, depth: usize) -> Result<Brine> {
        let Some(left) = self.items_left.checked_sub(1) else {
            return Err(LimitError::TooManyItems { len: self.bytes.len(), max: self.max_items }.into());
        };
        self.items_left = left;
        let tag = self.u8("a tag")? as u8;
        Ok(match tag {
            NONE => Brine::None,
            EMPTY_BYTES => Brine::Bytes(Vec::new()),
            EMPTY_TUPLE => Brine::Tuple(Vec::new()),
            TRUE => Brine::Bool(true),
            FALSE => Brine::Bool(false),
            NOT_IMPLEMENTED => Brine::NotImplemented,
            ELLIPSIS => Brine::Ellipsis,
            UNICODE => {
                let start = self.at;
                // Read here, not by recursing: a run of str tags must not
                // nest without bound.
                let tag = self.u8("a str's bytes")? as u8;
                let Some(bytes) = self.bytes_after(tag)? else {
                    self.at = start;
                    return Err(self.fail(format!("a str holds bytes, not tag 0x{tag:02x}")));
                };
                match String::from_utf8(bytes) {
                    Ok(s) => Brine::Str(s),
                    Err(e) => {
                        self.at = start;
                        return Err(self.fail(format!("a str that is not UTF-8 ({e})")));
                    }
                }
            }
            BYTES1..=BYTES_L4 => Brine::Bytes(self.bytes_after(tag)?.expect("a bytes tag")),
            TUPLE1..=0x13 => Brine::Tuple(self.items(usize::from(tag - TUPLE1) + 1, depth)?),
            TUPLE_L1 => {
                let n = self.u8("a tuple's length")?;
                Brine::Tuple(self.items(n, depth)?)
            }
            TUPLE_L4 => {
                let n = self.u32("a tuple's length")?;
                Brine::Tuple(self.items(n, depth)?)
            }
            INT_L1 => {
                let n = self.u8("an int's length")?;
                self.int(n)?
            }
            INT_L4 => {
                let n = self.u32("an int's length")?;
                self.int(n)?
            }
            FLOAT => Brine::Float(self.f64("a float")?),
            COMPLEX => Brine::Complex(self.f64("a complex")?, self.f64("a complex")?),
            SLICE => match self.nested(depth, "a slice")? {
                Brine::Tuple(parts) if parts.len() == 3 => {
                    let [a, b, c]: [Brine; 3] = parts.try_into().expect("three parts");
                    Brine::Slice(Box::new([a, b, c]))
                }
                other => return Err(self.fail(format!("a slice holds a 3-tuple, not {}", kind(&other)))),
            },
            FROZENSET => match self.nested(depth, "a frozenset")? {
                Brine::Tuple(items) => Brine::FrozenSet(items),
                other => return Err(self.fail(format!("a frozenset holds a tuple, not {}", kind(&other)))),
            },
            IMMEDIATE_FIRST..=IMMEDIATE_LAST => Brine::Int(i128::from(tag) - IMMEDIATE_ZERO),
            other => {
                self.at -= 1;
                return Err(self.fail(format!("unknown tag 0x{other:02x}")));
            }
        })
    }

    /// The bytes that follow a bytes tag (what a `str` holds, too); `None`
    /// when `tag` is not one.
    fn bytes_after(&mut self, tag: u8) -> Result<Option<Vec<u8>>> {
        let n = match tag {
            EMPTY_BYTES => 0,
            BYTES1..=0x0d => usize::from(tag - BYTES1) + 1,
            BYTES_L1 => self.u8("a bytes length")?,
            BYTES_L4 => self.u32("a bytes length")?,
            _ => return Ok(None),
        };
        Ok(Some(self.take(n, "bytes")?.to_vec()))
    }

    /// The value inside a slice or frozenset, one level deeper.
    fn nested(&mut self, depth: usize, what: &str) -> Result<Brine> {
        if depth + 1 > MAX_DEPTH {
            return Err(self.fail(format!("{what} nested more than {MAX_DEPTH} deep")));
        }
        self.value(depth + 1)
    }

    fn items(&mut self, n: usize, depth: usize) -> Result<Vec<Brine>> {
        if depth + 1 > MAX_DEPTH {
            return Err(self.fail(format!("tuples nested more than {MAX_DEPTH} deep")));
        }
        let left = self.bytes.len() - self.at;
        // Each item takes a byte at least: a longer count is a lie, refused
        // before anything is allocated for it.
        if n > left {
            return Err(self.fail(format!("a tuple of {n} items in {left} bytes")));
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(items)
    }

    fn int(&mut self, n: usize) -> Result<Brine> {
        let start = self.at;
        let digits = self.take(n, "an int's digits")?;
        let text = std::str::from_utf8(digits).ok().filter(|t| {
            let unsigned = t.strip_prefix('-').unwrap_or(t);
            !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit())
        });
        let Some(text) = text else {
            self.at = start;
            return Err(
                self.fail(format!("an int's digits are not decimal: {:?}", String::from_utf8_lossy(digits)))
            );
        };
        match text.parse::<i128>() {
            Ok(v) => Ok(Brine::Int(v)),
            Err(_) => {
                self.at = start;
                Err(self.fail(format!("an int of {} digits, beyond the 128 bits netref reads", text.len())))
            }
        }
    }
}

/// What a value is, for errors.
fn kind(value: &Brine) -> &'static str {
    match value {
        Brine::None => "None",
        Brine::Bool(_) => "a bool",
        Brine::Int(_) => "an int",
        Brine::Float(_) => "a float",
        Brine::Complex(..) => "a complex",
        Brine::Bytes(_) => "bytes",
        Brine::Str(_) => "a str",
        Brine::Tuple(_) => "a tuple",
        Brine::FrozenSet(_) => "a frozenset",
        Brine::Slice(_) => "a slice",
        Brine::NotImplemented => "NotImplemented",
        Brine::Ellipsis => "Ellipsis",
    }
}

#[cfg(test)]
mod tests {
    use super::Brine::*;
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn the_references_examples_byte_for_byte() {
        // RPYC-WIRE.md §2: `(0, (3, (1, ())))` and `"add"`, checked against rpyc 6.0.2.
        let nested = Tuple(vec![Int(0), Tuple(vec![Int(3), Tuple(vec![Int(1), Tuple(vec![])])])]);
        assert_eq!(hex(&nested.to_bytes()), "11 50 11 53 11 51 02");
        assert_eq!(hex(&Str("add".into()).to_bytes()), "08 0c 61 64 64");
        assert_eq!(Brine::decode(&[0x11, 0x50, 0x11, 0x53, 0x11, 0x51, 0x02]).unwrap(), nested);
    }

    #[test]
    fn each_length_takes_the_tag_pythons_dumper_takes() {
        assert_eq!(Int(-48).to_bytes(), [0x20]);
        assert_eq!(Int(159).to_bytes(), [0xef]);
        assert_eq!(Int(160).to_bytes(), [0x16, 3, b'1', b'6', b'0']);
        assert_eq!(Int(-49).to_bytes(), [0x16, 3, b'-', b'4', b'9']);
        assert_eq!(Bool(true).to_bytes(), [0x03], "a bool is never an int");
        assert_eq!(Bytes(vec![]).to_bytes(), [0x01]);
        assert_eq!(Bytes(vec![7; 4]).to_bytes()[0], 0x0d);
        assert_eq!(Bytes(vec![7; 5]).to_bytes()[..2], [0x0e, 5]);
        assert_eq!(Bytes(vec![7; 256]).to_bytes()[..5], [0x0f, 0, 0, 1, 0]);
        assert_eq!(Tuple(vec![None; 4]).to_bytes()[0], 0x13);
        assert_eq!(Tuple(vec![None; 5]).to_bytes()[..2], [0x14, 5]);
        assert_eq!(Tuple(vec![None; 256]).to_bytes()[..5], [0x15, 0, 0, 1, 0]);
        assert_eq!(Slice(Box::new([None, Int(3), None])).to_bytes(), [0x19, 0x12, 0x00, 0x53, 0x00]);
        assert_eq!(FrozenSet(vec![Int(1)]).to_bytes(), [0x1a, 0x10, 0x51]);
        assert_eq!(Float(1.5).to_bytes(), [0x18, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_kind_round_trips() {
        let all = Tuple(vec![
            None,
            Bool(false),
            Int(i128::MIN),
            Int(140_000_000_000_000),
            Float(-0.25),
            Complex(1.0, -2.0),
            Bytes(vec![0, 255]),
            Str("é, ünïcode".into()),
            FrozenSet(vec![Str("a".into()), Int(2)]),
            Slice(Box::new([Int(1), None, Int(-1)])),
            NotImplemented,
            Ellipsis,
            Tuple((0..300).map(Int).collect()),
        ]);
        assert_eq!(Brine::decode(&all.to_bytes()).unwrap(), all);
    }

    fn refusal(bytes: &[u8]) -> String {
        Brine::decode(bytes).unwrap_err().to_string()
    }

    #[test]
    fn bad_input_is_refused_with_its_offset_and_what_was_wrong() {
        assert_eq!(
            refusal(&[0x07]),
            "decode error: invalid brine (RPyC's encoding) at byte 0: unknown tag 0x07"
        );
        assert!(
            refusal(&[0x10, 0x09]).contains("at byte 1: unknown tag 0x09"),
            "6.x cannot load TAG_LONG either"
        );
        assert!(refusal(&[0xf0]).contains("unknown tag 0xf0"));
        assert!(refusal(&[0x0f, 0xff, 0xff, 0xff, 0xff, 1]).contains("bytes needs 4294967295 bytes, 1 left"));
        assert!(refusal(&[0x15, 0xff, 0xff, 0xff, 0xff]).contains("a tuple of 4294967295 items in 0 bytes"));
        assert!(refusal(&[0x08, 0x0b, 0xff, 0xfe]).contains("at byte 1: a str that is not UTF-8"));
        assert!(refusal(&[0x08, 0x50]).contains("at byte 1: a str holds bytes, not tag 0x50"));
        assert!(refusal(&[0x08; 100_000]).contains("a str holds bytes, not tag 0x08"), "no recursion");
        assert!(refusal(&[0x16, 2, b'1', b'x']).contains("an int's digits are not decimal: \"1x\""));
        assert!(refusal(&[0x16, 1, b'-']).contains("not decimal"));
        let huge = [&[0x16u8, 50][..], &[b'9'; 50][..]].concat();
        assert!(refusal(&huge).contains("an int of 50 digits, beyond the 128 bits"));
        assert!(refusal(&[0x19, 0x11, 0x00, 0x00]).contains("a slice holds a 3-tuple, not a tuple"));
        assert!(refusal(&[0x00, 0x00]).contains("at byte 1: 1 bytes left after the value"));
        assert!(refusal(&[0x11, 0x00]).contains("at byte 1: a tuple of 2 items in 1 bytes"));
        assert!(refusal(&[]).contains("at byte 0: a tag needs 1 bytes, 0 left"));
    }

    /// Any value: leaves of every kind, nested tuples, frozensets, slices.
    fn any_brine() -> impl proptest::strategy::Strategy<Value = Brine> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(None),
            Just(NotImplemented),
            Just(Ellipsis),
            any::<bool>().prop_map(Bool),
            any::<i128>().prop_map(Int),
            (-60i128..170).prop_map(Int),
            any::<f64>().prop_map(Float),
            (any::<f64>(), any::<f64>()).prop_map(|(a, b)| Complex(a, b)),
            vec(any::<u8>(), 0..300).prop_map(Bytes),
            ".{0,8}".prop_map(Str),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..8).prop_map(Tuple),
                vec(inner.clone(), 0..4).prop_map(FrozenSet),
                (inner.clone(), inner.clone(), inner).prop_map(|(a, b, c)| Slice(Box::new([a, b, c]))),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_value_round_trips_byte_for_byte(value in any_brine()) {
            let bytes = value.to_bytes();
            // Bytes, not values: a NaN is not equal to itself.
            proptest::prop_assert_eq!(Brine::decode(&bytes).unwrap().to_bytes(), bytes);
        }
    }

    #[test]
    fn nesting_stops_at_the_depth_limit() {
        let mut deep = vec![0x10; MAX_DEPTH + 1];
        deep.push(0x00);
        assert!(refusal(&deep).contains(&format!("tuples nested more than {MAX_DEPTH} deep")));
        let mut ok = vec![0x10; MAX_DEPTH];
        ok.push(0x00);
        assert!(Brine::decode(&ok).is_ok());
        let sets = [0x1a; 200];
        assert!(refusal(&sets).contains("nested more than"));
    }
}
