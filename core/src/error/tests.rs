use super::remote::short_type_name;
use super::*;

#[test]
fn remote_error_prints_like_rpyc() {
    let mut e = RemoteError::value_error("invalid literal for int() with base 10: 'foo'");
    e.traceback.push("Traceback (most recent call last):\n  in Service.int\nValueError: invalid literal for int() with base 10: 'foo'".into());
    let text = Error::Remote(e).to_string();
    assert!(text.starts_with("ValueError: invalid literal for int() with base 10: 'foo'\n\n========= Remote Traceback (1) ========="));
    assert!(text.contains("in Service.int"));
}

#[test]
fn short_names() {
    assert_eq!(short_type_name::<std::num::ParseIntError>(), "ParseIntError");
    assert_eq!(short_type_name::<Vec<std::string::String>>(), "Vec<String>");
    let e: std::num::ParseIntError = "x".parse::<i32>().unwrap_err();
    assert_eq!(RemoteError::from_error(&e).type_name, "ParseIntError");
}

#[test]
fn a_type_called_just_error_keeps_its_module() {
    assert_eq!(RemoteError::from_error(&fmt::Error).type_name, "fmt::Error");
    mod serde_like {
        pub(super) mod error {
            #[derive(Debug)]
            pub(crate) struct Error;
            impl std::fmt::Display for Error {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bad input")
                }
            }
        }
    }
    // `serde_json::error::Error` reads `serde_json::Error`: a module
    // called `error` is skipped.
    let e = RemoteError::from_error(&serde_like::error::Error);
    assert_eq!((e.type_name.as_str(), e.message.as_str()), ("serde_like::Error", "bad input"));
}

#[test]
fn misuse_names_the_fix() {
    assert_eq!(
        Error::from(Misuse::Unserved).to_string(),
        "awaited a result of a connection that nobody serves: attach the connection to an event loop \
         (netref-glib, netref-calloop, netref-mio, netref-polling) or start a BgServingThread, or call \
         value() to serve it from this thread"
    );
    assert_eq!(
        Misuse::NoFileDescriptor.to_string(),
        "the connection's transport has no file descriptor, so no event loop can watch it"
    );
}

#[test]
fn io_errors_are_named_as_python_names_them() {
    let named = |kind: io::ErrorKind| RemoteError::from_error(&io::Error::from(kind)).type_name;
    assert_eq!(named(io::ErrorKind::NotFound), "FileNotFoundError");
    assert_eq!(named(io::ErrorKind::PermissionDenied), "PermissionError");
    assert_eq!(named(io::ErrorKind::ConnectionReset), "ConnectionResetError");
    assert_eq!(named(io::ErrorKind::InvalidData), "OSError");
    // Also when it reaches the peer inside a netref::Error.
    let wrapped = Error::from(io::Error::from(io::ErrorKind::NotFound));
    assert_eq!(RemoteError::from_error(&wrapped).type_name, "FileNotFoundError");
}
