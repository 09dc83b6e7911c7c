//! What errors say: conversion errors name the place, what was expected and
//! what was found, in the user's words; every way a connection closes has its
//! [`CloseReason`]; I/O errors keep their `io::Error` and reach the peer
//! under Python's names.
//!
//! Everything runs on the in-memory [`Pair`]; the close reasons that need a
//! misbehaving peer or a real transport use a socket.

mod rawpeer;

use std::error::Error as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netref::error::{DecodeError, LimitError, ProtocolError};
use netref::testing::Pair;
use netref::wire::Cbor;
use netref::wire::{self, Message};
use netref::{
    async_, Builder, CloseReason, Config, ConvertError, Error, LocalObject, ObjectBuilder, Place,
    RemoteError, RemoteObject, Service, Value,
};
use rawpeer::RawPeer;

/// A file monitor as the demos have it: `watch(path, callback)` returns a
/// handle (an object); `open(path)` fails with the `io::Error` it got.
fn file_monitor() -> Service {
    Service::object(
        ObjectBuilder::new("FileMonitor")
            .method("watch", |_path: String, _on_change: RemoteObject| -> LocalObject {
                ObjectBuilder::new("Watch").method("stop", || ()).build()
            })
            .try_method("open", |path: String| std::fs::File::open(path).map(|_| ()))
            .try_method("notify", |cb: RemoteObject, what: String| cb.call::<Value>((what,)))
            .attr("version", "1.0")
            .build(),
    )
}

fn calc() -> Service {
    Service::object(ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build())
}

fn remote(err: Error) -> RemoteError {
    match err {
        Error::Remote(r) => r,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

fn convert(err: Error) -> ConvertError {
    match err {
        Error::Convert(c) => c,
        other => panic!("expected a conversion error, got {other:?}"),
    }
}

/// No error text may leak serde's or CBOR's wording.
fn in_user_words(text: &str) {
    for leak in ["invalid type", "required tag", "Custom(", "tag not found", "CBOR", "(big)int"] {
        assert!(!text.contains(leak), "{text:?} leaks {leak:?}");
    }
}

// ---- conversions ------------------------------------------------------------------------

#[test]
fn an_integer_where_a_callback_belongs_names_the_argument_and_the_method() {
    let pair = Pair::new(Service::none(), file_monitor());
    let root = pair.client.root().unwrap();
    let err = remote(root.call_method::<Value>("watch", ("/tmp/watched", 1)).unwrap_err());
    assert_eq!(err.type_name, "TypeError");
    assert_eq!(
        err.message,
        "argument 2 of `FileMonitor.watch`: expected a callback (a remote object), got the integer 1"
    );
    in_user_words(&err.message);
}

#[test]
fn unit_asked_of_a_method_that_returns_an_object_names_the_method() {
    let pair = Pair::new(Service::none(), file_monitor());
    let root = pair.client.root().unwrap();
    let on_change = netref::callback(|_path: String| ());
    let err = convert(root.call_method::<()>("watch", ("/tmp/watched", on_change.clone())).unwrap_err());
    assert_eq!(err.to_string(), "the result of `watch`: expected nothing (`()`), got a remote object");
    assert_eq!(err.place(), &Place::Result { method: Some("watch".into()) });
    assert_eq!(err.expected(), Some("nothing (`()`)"));
    assert_eq!(err.got(), Some("a remote object"));

    // The same through an AsyncResult.
    let res = async_(&root).call_method("watch", ("/tmp/watched", on_change));
    let err = res.value_as::<()>().unwrap_err();
    assert_eq!(err.to_string(), "the result of `watch`: expected nothing (`()`), got a remote object");
    // The value itself is still there, for another type.
    assert!(res.value_as::<RemoteObject>().is_ok());
}

#[test]
fn a_non_object_where_a_remote_object_is_expected_in_a_result() {
    let pair = Pair::new(Service::none(), calc());
    let root = pair.client.root().unwrap();
    let err = root.call_method::<RemoteObject>("add", (1, 2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the result of `add`: expected a remote object (a callback or proxy), got the integer 3"
    );
}

#[test]
fn wrong_arity_reads_as_python_says_it() {
    let pair = Pair::new(Service::none(), calc());
    let root = pair.client.root().unwrap();
    let err = remote(root.call_method::<i64>("add", (1, 2, 3)).unwrap_err());
    assert_eq!(
        (err.type_name.as_str(), err.message.as_str()),
        ("TypeError", "`Calc.add` takes 2 arguments but 3 were given")
    );
    let err = remote(root.call_method::<i64>("add", (1,)).unwrap_err());
    assert_eq!(err.message, "`Calc.add` takes 2 arguments but 1 was given");
}

#[test]
fn a_callback_called_with_the_wrong_type_names_itself() {
    let pair = Pair::new(Service::none(), file_monitor());
    let root = pair.client.root().unwrap();
    let on_count = netref::callback(|n: i64| n + 1);
    // The server calls the client's callback with a string; the client's
    // TypeError travels back through the server's call.
    let err = remote(root.call_method::<Value>("notify", (on_count, "changed")).unwrap_err());
    assert_eq!(err.type_name, "TypeError");
    assert_eq!(err.message, "argument 1 of `callback()`: expected an integer, got the string \"changed\"");
}

#[test]
fn attributes_and_plain_values_say_where_they_were() {
    let pair = Pair::new(Service::none(), file_monitor());
    let root = pair.client.root().unwrap();
    let err = root.getattr::<i64>("version").unwrap_err();
    assert_eq!(err.to_string(), "the attribute `version`: expected an integer, got the string \"1.0\"");

    let err = convert(netref::from_value::<(i64, String)>(Value::Array(vec![1.into()])).unwrap_err());
    assert_eq!(err.to_string(), "cannot convert a value: expected a list of 2 items, got a list of 1 item");
    assert_eq!(err.place(), &Place::Value);
}

#[test]
fn mismatches_are_worded_for_people() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct FileInfo {
        path: String,
        size: u64,
    }
    #[derive(Debug, serde::Deserialize)]
    enum Mode {
        Read,
    }
    let map = |entries: Vec<(&str, Value)>| {
        Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
    };
    let cases: Vec<(Error, &str)> = vec![
        (
            netref::from_value::<u8>(300.into()).unwrap_err(),
            "expected an integer from 0 to 255 (`u8`), got the integer 300",
        ),
        (netref::from_value::<bool>(Value::Null).unwrap_err(), "expected a boolean, got nothing (`()`)"),
        (
            netref::from_value::<String>(Value::Bytes(vec![1, 2])).unwrap_err(),
            "expected a string, got a byte string of 2 bytes",
        ),
        (netref::from_value::<Vec<i64>>(map(vec![])).unwrap_err(), "expected a list, got an empty map"),
        (
            netref::from_value::<FileInfo>(7.into()).unwrap_err(),
            "expected a `FileInfo` (a map of its fields), got the integer 7",
        ),
        (
            netref::from_value::<FileInfo>(map(vec![("path", "/tmp".into())])).unwrap_err(),
            "the field `size` is missing",
        ),
        (
            netref::from_value::<FileInfo>(map(vec![("path", "/tmp".into()), ("size", (-1).into())]))
                .unwrap_err(),
            "expected an integer from 0 to 18446744073709551615 (`u64`), got the integer -1",
        ),
        (
            netref::from_value::<Mode>("Write".into()).unwrap_err(),
            "expected one of `Read`, got the variant `Write`",
        ),
    ];
    for (err, words) in cases {
        let err = convert(err);
        assert_eq!(err.problem(), words);
        in_user_words(&err.to_string());
    }
    // A value holding an object where the type has no place for one.
    let pair = Pair::new(Service::none(), file_monitor());
    let proxy = Value::from(pair.client.root().unwrap());
    let err = convert(netref::from_value::<Vec<i64>>(Value::Array(vec![proxy])).unwrap_err());
    assert_eq!(err.problem(), "expected an integer, got a remote object");
}

// ---- remote errors from Rust errors --------------------------------------------------------

#[test]
fn an_io_error_returned_by_a_method_arrives_under_pythons_name() {
    let pair = Pair::new(Service::none(), file_monitor());
    let root = pair.client.root().unwrap();
    let err = remote(root.call_method::<()>("open", ("/nonexistent/netref-test",)).unwrap_err());
    assert_eq!(err.type_name, "FileNotFoundError");
    assert_eq!(err.message, "No such file or directory (os error 2)");
}

// ---- why a connection closed ------------------------------------------------------------

#[test]
fn closed_by_this_side_fails_pending_calls_with_the_reason() {
    let pair = Pair::new(Service::none(), calc());
    let root = pair.client.root().unwrap();
    let pending = async_(&root).call_method("add", (1, 2));
    pair.client.close();
    assert_eq!(pair.client.close_reason(), Some(CloseReason::ByThisSide));
    let err = pending.value().unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::ByThisSide));
    assert_eq!(err.to_string(), "connection closed by this side");
    assert!(err.is_closed());
    // Later calls fail the same way.
    assert_eq!(root.call_method::<i64>("add", (1, 2)).unwrap_err(), Error::Closed(CloseReason::ByThisSide));
}

#[test]
fn closed_by_the_peer() {
    let pair = Pair::new(Service::none(), calc());
    let root = pair.client.root().unwrap();
    pair.server.close();
    pair.settle();
    assert_eq!(pair.client.close_reason(), Some(CloseReason::ByPeer));
    let err = root.call_method::<i64>("add", (1, 2)).unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::ByPeer));
    assert_eq!(err.to_string(), "connection closed by the peer");
    assert!(err.close_reason().is_some_and(CloseReason::is_orderly));
}

#[test]
fn closed_by_the_idle_timeout() {
    let idle = Duration::from_secs(10);
    let pair = Pair::with_builders(
        Builder::default().config(Config::default().idle_timeout(Some(idle))),
        Builder::default().service(calc()),
    );
    pair.settle(); // the hellos: the last input, at 0 s
                   // Not a moment early: still open one nanosecond before the deadline.
    pair.advance(idle - Duration::from_nanos(1));
    assert_eq!(pair.client.close_reason(), None, "closed before its idle timeout");
    pair.advance(Duration::from_nanos(1));
    let reason = pair.client.close_reason().expect("closed");
    assert_eq!(reason, CloseReason::IdleTimeout(idle));
    assert_eq!(reason.to_string(), "connection closed: nothing received for 10s (idle_timeout)");
    // The server was told.
    assert_eq!(pair.server.close_reason(), Some(CloseReason::ByPeer));
}

/// A connection over one end of a socket pair, and a raw peer on the other
/// that has sent its hello.
fn raw_pair(config: Config) -> (netref::Connection, RawPeer<UnixStream>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn = Builder::default().config(config).over_stream(ours).unwrap();
    let mut peer = RawPeer::new(theirs);
    peer.send(&rawpeer::hello()).unwrap();
    (conn, peer)
}

#[test]
fn closed_because_the_peer_sent_garbage() {
    let (conn, mut peer) = raw_pair(Config::default());
    let mut bytes = Vec::new();
    wire::encode_frame(&Cbor::Array(vec![Cbor::Integer(9.into())]), &mut bytes, usize::MAX).unwrap();
    peer.stream.write_all(&bytes).unwrap();
    let err = conn.serve_all().unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::Decode(DecodeError::UnknownMessage(9))));
    assert_eq!(
        err.to_string(),
        "connection closed: the peer sent an invalid message: unknown message kind 9"
    );
    assert_eq!(conn.close_reason(), Some(CloseReason::Decode(DecodeError::UnknownMessage(9))));
}

#[test]
fn closed_because_the_peer_broke_the_protocol() {
    let (conn, mut peer) = raw_pair(Config::default());
    peer.send(&Message::Reply { seq: 4242, value: Cbor::Null }).unwrap();
    let err = conn.serve_all().unwrap_err();
    assert_eq!(err, Error::Closed(CloseReason::Protocol(ProtocolError::UnknownSequence(4242))));
    assert_eq!(
        err.to_string(),
        "connection closed: the peer broke the protocol: reply to unknown sequence number 4242"
    );
}

#[test]
fn closed_because_the_peer_went_past_a_limit() {
    let (conn, mut peer) = raw_pair(Config::default().max_frame_len(1024));
    peer.stream.write_all(&1_000_000u32.to_be_bytes()).unwrap();
    let err = conn.serve_all().unwrap_err();
    let limit = LimitError::FrameTooLarge { len: 1_000_000, max: 1024 };
    assert_eq!(err, Error::Closed(CloseReason::Limit(limit)));
    assert_eq!(
        err.to_string(),
        "connection closed: limit exceeded: frame of 1000000 bytes exceeds max_frame_len (1024)"
    );
}

#[test]
fn a_peer_that_closes_before_its_hello_fails_the_handshake() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn = Builder::default().over_stream(ours).unwrap();
    // It reads our hello (unread data would make closing a reset), says nothing.
    let mut peer = RawPeer::new(theirs);
    assert!(matches!(peer.recv(), Some(Message::Hello { .. })));
    drop(peer);
    let err = conn.serve_all().unwrap_err();
    assert!(matches!(err, Error::Closed(CloseReason::Protocol(ProtocolError::Handshake(_)))), "{err:?}");
    assert!(err.to_string().contains("closed the connection before its hello"), "{err}");
}

#[test]
fn a_reset_connection_is_lost_with_its_io_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = Builder::default().connect_tcp(listener.local_addr().unwrap()).unwrap();
    let (mut theirs, _) = listener.accept().unwrap();
    let mut hello = [0u8; 4];
    theirs.read_exact(&mut hello).unwrap(); // our hello reached the peer
    reset_on_close(&theirs);
    drop(theirs);
    let err = conn.serve_all().unwrap_err();
    let Error::Closed(CloseReason::Lost(io)) = &err else {
        panic!("expected a lost connection, got {err:?}")
    };
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(
        err.to_string(),
        format!("connection lost: {}", io::Error::from(rustix::io::Errno::CONNRESET))
    );
    // source() is the io::Error, from the error and from the reason.
    let source = err.source().and_then(|s| s.downcast_ref::<io::Error>()).expect("an io::Error source");
    assert_eq!(source.kind(), io::ErrorKind::ConnectionReset);
    let reason = conn.close_reason().unwrap();
    assert!(reason.source().and_then(|s| s.downcast_ref::<io::Error>()).is_some());
    assert!(!reason.is_orderly());
}

/// Makes closing `s` send a reset instead of a FIN (`SO_LINGER` of zero).
fn reset_on_close(s: &TcpStream) {
    rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO)).expect("setsockopt(SO_LINGER)");
}

#[test]
fn an_io_error_keeps_the_io_error_as_its_source() {
    let err = Builder::default().connect_unix("/nonexistent/netref.sock").unwrap_err();
    let Error::Io(io) = &err else { panic!("expected an I/O error, got {err:?}") };
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
    let source = err.source().and_then(|s| s.downcast_ref::<io::Error>()).expect("an io::Error source");
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
    assert!(!err.is_closed());
    // Errors stay Clone, and compare I/O errors by kind and message.
    assert_eq!(err.clone(), err);
}
