//! What the two tokio baselines (tarpc, capnp-rpc) share: a current-thread
//! runtime and the server's accept loop.

use std::io;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::common::{self, Opts};

/// A current-thread runtime, as both baselines run on each side.
pub(crate) fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Listens on the transport `opts` names, announces it, and hands every
/// accepted connection to `tcp` (TCP_NODELAY set) or `unix`, forever.
pub(crate) async fn accept_forever(
    opts: &Opts,
    mut tcp: impl FnMut(TcpStream),
    mut unix: impl FnMut(UnixStream),
) -> io::Result<()> {
    match opts.str("transport") {
        "tcp" => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            common::ready(&format!("tcp:{}", listener.local_addr()?));
            loop {
                let (s, _) = listener.accept().await?;
                s.set_nodelay(true)?;
                tcp(s);
            }
        }
        _ => {
            let path = opts.str("path");
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path)?;
            common::ready(&format!("unix:{path}"));
            loop {
                let (s, _) = listener.accept().await?;
                unix(s);
            }
        }
    }
}
