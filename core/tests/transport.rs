//! `SocketTransport` over real sockets.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use netref::{SocketTransport, Transport};

/// A transport whose peer sent `data` and the end of its stream in one
/// segment (corked), both already received.
fn data_then_eof(data: &[u8]) -> SocketTransport {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    rustix::net::sockopt::set_tcp_cork(&peer, true).unwrap();
    peer.write_all(data).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let t = SocketTransport::new(ours).unwrap();
    // A level-triggered wait: readable once the segment is in.
    t.wait(false, Some(Duration::from_secs(30))).unwrap();
    t
}

/// Under an event loop (which may be edge-triggered: it signals once for
/// data and an end of stream that arrive together), the read after a short
/// one is made and reports the end of the stream. Skipping it, as the
/// transport does for its own level-triggered waits, hid the end of the
/// stream: a mio server kept such connections in CLOSE_WAIT for good.
#[test]
fn under_an_event_loop_the_end_of_the_stream_after_a_short_read_is_seen() {
    let t = data_then_eof(b"hello");
    t.set_loop_driven(true);
    let mut buf = [0u8; 64];
    assert_eq!(t.read(&mut buf).unwrap(), 5, "a short read");
    assert_eq!(t.read(&mut buf).unwrap(), 0, "the end of the stream, not WouldBlock");
}

/// Served by its own threads, the transport skips the read after a short
/// one (a syscall per round trip); its level-triggered wait reports the end
/// of the stream next.
#[test]
fn on_its_own_the_transport_skips_the_read_after_a_short_one() {
    let t = data_then_eof(b"hello");
    let mut buf = [0u8; 64];
    assert_eq!(t.read(&mut buf).unwrap(), 5);
    assert_eq!(t.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    t.wait(false, Some(Duration::from_secs(30))).unwrap();
    assert_eq!(t.read(&mut buf).unwrap(), 0, "the wait saw the end of the stream");
}
