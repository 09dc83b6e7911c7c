//! Brine, RPyC's value encoding, against the real thing: Python's rpyc
//! 6.0.2 loads what netref encodes and dumps it again to the same bytes,
//! and netref decodes what Python dumps to the values Python meant.
//!
//! `scripts/test.sh` makes a venv with rpyc 6.0.2 from PyPI under
//! `target/rpyc-venv` and names its python in `NETREF_RPYC_PYTHON`;
//! without it the tests say so and check nothing else.

#[path = "common/python.rs"]
mod python;

use netref::wire::rpyc::Brine::{self, *};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// One of each kind, and each length's tag boundary.
fn samples() -> Vec<Brine> {
    let mut all = vec![
        None,
        Bool(true),
        Bool(false),
        NotImplemented,
        Ellipsis,
        Float(-2.5),
        Float(f64::INFINITY),
        Complex(1.0, -0.5),
        Str(String::new()),
        Str("add".into()),
        Str("é, ünïcode, 猫".into()),
        FrozenSet(vec![Int(7)]),
        Slice(Box::new([Int(1), None, Int(-2)])),
        Tuple(vec![Int(0), Tuple(vec![Int(3), Tuple(vec![Int(1), Tuple(vec![])])])]),
        Int(140_234_567_890_123),
        Int(i128::MAX),
        Int(i128::MIN),
    ];
    all.extend([-49, -48, 0, 159, 160].map(Int));
    all.extend([0, 1, 4, 5, 255, 256, 70_000].map(|n| Bytes(vec![b'x'; n])));
    all.extend([1, 4, 5, 255, 256].map(|n| Tuple((0..n).map(|i| Int(i as i128)).collect())));
    all
}

#[test]
fn python_loads_what_netref_encodes_and_dumps_the_same_bytes() {
    let Some(python) = python::python("the brine interop checks") else { return };
    let script = r#"
import sys
from rpyc.core import brine
for line in sys.stdin:
    obj = brine.load(bytes.fromhex(line.strip()))
    print(brine.dump(obj).hex())
"#;
    let values = samples();
    let input: String = values.iter().map(|v| hex(&v.to_bytes()) + "\n").collect();
    let back = python::run(&python, script, &[], &input);
    assert_eq!(back.len(), values.len());
    for (value, dumped) in values.iter().zip(&back) {
        assert_eq!(*dumped, hex(&value.to_bytes()), "Python re-dumps {value:?} otherwise");
    }
}

#[test]
fn netref_decodes_what_python_dumps() {
    let Some(python) = python::python("the brine interop checks") else { return };
    let script = r#"
from rpyc.core import brine
values = [None, True, False, NotImplemented, ..., -49, -48, 159, 160, 2**100, -2**100,
          1.5, complex(0, 1), b"", b"abcd", b"abcde", b"y" * 300, "", "str", "é",
          (), (1,), tuple(range(6)), tuple(range(300)), frozenset([5]), slice(1, None, 2),
          (("nested", (1, (2.0,))),)]
for v in values:
    print(brine.dump(v).hex())
"#;
    let expected = [
        None,
        Bool(true),
        Bool(false),
        NotImplemented,
        Ellipsis,
        Int(-49),
        Int(-48),
        Int(159),
        Int(160),
        Int(1 << 100),
        Int(-(1 << 100)),
        Float(1.5),
        Complex(0.0, 1.0),
        Bytes(vec![]),
        Bytes(b"abcd".to_vec()),
        Bytes(b"abcde".to_vec()),
        Bytes(vec![b'y'; 300]),
        Str(String::new()),
        Str("str".into()),
        Str("é".into()),
        Tuple(vec![]),
        Tuple(vec![Int(1)]),
        Tuple((0..6).map(Int).collect()),
        Tuple((0..300).map(Int).collect()),
        FrozenSet(vec![Int(5)]),
        Slice(Box::new([Int(1), None, Int(2)])),
        Tuple(vec![Tuple(vec![Str("nested".into()), Tuple(vec![Int(1), Tuple(vec![Float(2.0)])])])]),
    ];
    let dumps = python::run(&python, script, &[], "");
    assert_eq!(dumps.len(), expected.len());
    for (dump, want) in dumps.iter().zip(&expected) {
        let bytes = unhex(dump);
        assert_eq!(&Brine::decode(&bytes).unwrap(), want, "Python's {dump}");
        assert_eq!(hex(&want.to_bytes()), *dump, "netref encodes {want:?} as Python does");
    }

    // What netref cannot hold is refused in its terms, not misread.
    let big = python::run(&python, "from rpyc.core import brine; print(brine.dump(10**60).hex())", &[], "");
    let err = Brine::decode(&unhex(&big[0])).unwrap_err();
    assert!(err.to_string().contains("an int of 61 digits, beyond the 128 bits"), "{err}");
}
