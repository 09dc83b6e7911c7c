//! The tarpc baseline: `add(a, b)` over tarpc's serde transport (bincode,
//! length-delimited frames), TCP_NODELAY, a current-thread tokio runtime on
//! both sides.

#![allow(unreachable_pub, missing_docs)]

use futures::stream::StreamExt;
use std::io;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tarpc::{client, context};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::common::{self, Opts};
use crate::raw::Addr;
use crate::tokio_side::{accept_forever, runtime};

/// The benchmark service.
#[tarpc::service]
pub trait Bench {
    /// Adds two numbers.
    async fn add(a: i64, b: i64) -> i64;
}

#[derive(Clone)]
struct BenchServer;

impl Bench for BenchServer {
    async fn add(self, _: context::Context, a: i64, b: i64) -> i64 {
        a + b
    }
}

fn serve<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S) {
    let transport =
        tarpc::serde_transport::new(Framed::new(stream, LengthDelimitedCodec::new()), Bincode::default());
    let channel = BaseChannel::with_defaults(transport);
    tokio::spawn(channel.execute(BenchServer.serve()).for_each(|call| async move {
        tokio::spawn(call);
    }));
}

/// Runs the tarpc server until killed.
pub(crate) fn server(opts: &Opts) -> io::Result<()> {
    runtime()?.block_on(accept_forever(opts, serve, serve))
}

/// Runs a tarpc client scenario (`latency` or `pipelined`).
pub(crate) fn client(opts: &Opts) -> io::Result<()> {
    runtime()?.block_on(async {
        let client = match Addr::parse(opts.str("addr")) {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                connect(s)
            }
            Addr::Unix(p) => connect(UnixStream::connect(p).await?),
        };
        match opts.str("scenario") {
            "latency" => latency(opts, &client).await,
            "pipelined" => pipelined(opts, &client).await,
            other => panic!("tarpc: no scenario {other}"),
        }
        Ok(())
    })
}

fn connect<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S) -> BenchClient {
    let transport =
        tarpc::serde_transport::new(Framed::new(stream, LengthDelimitedCodec::new()), Bincode::default());
    BenchClient::new(client::Config::default(), transport).spawn()
}

async fn latency(opts: &Opts, client: &BenchClient) {
    common::measure_latency_async(opts, || async {
        client.add(context::current(), 1, 2).await.expect("add");
    })
    .await
}

async fn pipelined(opts: &Opts, client: &BenchClient) {
    common::pipelined_async(opts, || {
        let call = client.add(context::current(), 1, 1);
        async move {
            call.await.expect("add");
        }
    })
    .await
}
