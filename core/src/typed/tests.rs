use serde::{Deserialize, Serialize};

use super::export::{Args, Arity};
use super::CallError;
use crate::error::{Error, RemoteError};
use crate::wire::Message;
use crate::Value;

#[derive(Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
enum Refused {
    #[error("too big: {0} bytes")]
    TooBig(u64),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Other {
    code: String,
}

fn args(values: Vec<Value>, required: usize, total: usize) -> Result<Args, RemoteError> {
    Args::new("Files.put".into(), values, Arity { required, total })
}

#[test]
fn arity_errors_speak_python() {
    let err = |given: usize, required, total| match args(vec![Value::Null; given], required, total) {
        Err(e) => e.to_string(),
        Ok(_) => "accepted".into(),
    };
    assert_eq!(err(2, 1, 1), "TypeError: `Files.put` takes 1 argument but 2 were given");
    assert_eq!(err(0, 2, 2), "TypeError: `Files.put` takes 2 arguments but 0 were given");
    assert_eq!(err(3, 1, 2), "TypeError: `Files.put` takes from 1 to 2 arguments but 3 were given");
    assert_eq!(err(1, 1, 2), "accepted");
    assert_eq!(err(2, 1, 2), "accepted");
}

#[test]
fn a_left_out_argument_defaults_and_a_wrong_one_names_its_place() {
    let mut a = args(vec![Value::from("x")], 1, 2).unwrap();
    assert_eq!(a.take::<String>().unwrap(), "x");
    assert_eq!(a.take_or_default::<u32>().unwrap(), 0);

    let mut a = args(vec![Value::from("x"), Value::from("seven")], 1, 2).unwrap();
    let _: String = a.take().unwrap();
    let e = a.take_or_default::<u32>().unwrap_err();
    assert_eq!(e.type_name, "TypeError");
    assert!(e.message.starts_with("argument 2 of `Files.put`: expected"), "{}", e.message);
}

#[test]
fn a_typed_error_crosses_the_wire_and_comes_back_as_itself() {
    let sent = RemoteError::typed(&Refused::TooBig(9));
    assert_eq!(sent.type_name, "Refused");
    assert_eq!(sent.message, "too big: 9 bytes");
    let cbor = Message::Error { seq: 4, error: sent.clone() }.into_cbor();
    let Message::Error { error: got, .. } = Message::from_cbor(cbor).unwrap() else { panic!("not an error") };
    assert_eq!(got, sent);
    assert_eq!(CallError::<Refused>::from(Error::Remote(got.clone())), CallError::App(Refused::TooBig(9)));
    // Read as another type, it stays the peer's error, whole.
    assert_eq!(CallError::<Other>::from(Error::Remote(got.clone())), CallError::Rpc(Error::Remote(got)));
}

#[test]
fn errors_without_a_value_keep_five_fields_and_stay_failed_calls() {
    let plain = RemoteError::value_error("no");
    let crate::wire::Cbor::Array(fields) = Message::Error { seq: 1, error: plain.clone() }.into_cbor() else {
        panic!("not an array")
    };
    assert_eq!(fields.len(), 5);
    let e = CallError::<Refused>::from(Error::Remote(plain.clone()));
    assert_eq!(e.remote(), Some(&plain));
    assert!(!e.is_timeout() && !e.is_closed());
    assert!(CallError::<Refused>::from(Error::Timeout(std::time::Duration::from_secs(1))).is_timeout());
}

#[test]
fn an_error_value_that_is_not_bytes_is_malformed() {
    use crate::wire::Cbor;
    let cbor = Cbor::Array(vec![
        Cbor::Integer(3),
        Cbor::Integer(1),
        Cbor::Text("E".into()),
        Cbor::Text("m".into()),
        Cbor::Array(vec![]),
        Cbor::Text("not bytes".into()),
    ]);
    let e = Message::from_cbor(cbor).unwrap_err();
    assert!(e.to_string().contains("an error's value must be a byte string of CBOR"), "{e}");
}
