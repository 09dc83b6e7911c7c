//! The capnp-rpc baseline: the capability RPC a Rust user would pick
//! instead, on its own single-thread executor (tokio's current-thread
//! runtime and `LocalSet`, as capnp-rpc's examples run it) on both sides,
//! TCP_NODELAY. `add(a, b)` for latency and pipelining; events are calls
//! of a capability the client passes to `emit`, as netref's callbacks are.

#![allow(unreachable_pub, missing_docs)]

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use capnp_rpc::{rpc_twoparty_capnp, twoparty, RpcSystem};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::AsyncReadExt;
use tokio::net::{TcpStream, UnixStream};
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::common::{self, Opts, WINDOW};
use crate::raw::Addr;
use crate::tokio_side::{accept_forever, runtime};

capnp::generated_code!(mod bench_capnp);
use bench_capnp::{bench, callback};

struct BenchImpl;

impl bench::Server for BenchImpl {
    async fn add(
        self: Rc<Self>,
        params: bench::AddParams,
        mut results: bench::AddResults,
    ) -> capnp::Result<()> {
        let p = params.get()?;
        results.get().set_sum(p.get_a() + p.get_b());
        Ok(())
    }

    async fn emit(
        self: Rc<Self>,
        params: bench::EmitParams,
        mut results: bench::EmitResults,
    ) -> capnp::Result<()> {
        let p = params.get()?;
        let (cb, n, window) = (p.get_callback()?, p.get_n(), p.get_window().max(1) as usize);
        let mut pending = FuturesUnordered::new();
        for i in 0..n {
            if pending.len() >= window {
                pending.next().await.expect("in flight")?;
            }
            let mut request = cb.call_request();
            request.get().set_i(i);
            let reply = request.send().promise;
            pending.push(async move { reply.await.map(drop) });
        }
        while let Some(done) = pending.next().await {
            done?;
        }
        results.get().set_n(n);
        Ok(())
    }
}

/// Counts the events the server calls in.
struct Counter(Rc<Cell<u64>>);

impl callback::Server for Counter {
    async fn call(self: Rc<Self>, _: callback::CallParams, _: callback::CallResults) -> capnp::Result<()> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

/// The RPC system of one connection, `side` of it.
fn rpc_system<S>(
    stream: S,
    side: rpc_twoparty_capnp::Side,
    bootstrap: Option<capnp::capability::Client>,
) -> RpcSystem<rpc_twoparty_capnp::Side>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = stream.compat().split();
    let network = twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        side,
        Default::default(),
    );
    RpcSystem::new(Box::new(network), bootstrap)
}

/// Runs the capnp-rpc server until killed.
pub(crate) fn server(opts: &Opts) -> io::Result<()> {
    let local = tokio::task::LocalSet::new();
    runtime()?.block_on(local.run_until(async {
        let bench: bench::Client = capnp_rpc::new_client(BenchImpl);
        let serve = |system: RpcSystem<_>| drop(tokio::task::spawn_local(system));
        let root = || Some(bench.clone().client);
        accept_forever(
            opts,
            |s| serve(rpc_system(s, rpc_twoparty_capnp::Side::Server, root())),
            |s| serve(rpc_system(s, rpc_twoparty_capnp::Side::Server, root())),
        )
        .await
    }))
}

/// Runs a capnp-rpc client scenario (`latency`, `pipelined` or `events`).
pub(crate) fn client(opts: &Opts) -> io::Result<()> {
    let local = tokio::task::LocalSet::new();
    runtime()?.block_on(local.run_until(async {
        let mut system = match Addr::parse(opts.str("addr")) {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                rpc_system(s, rpc_twoparty_capnp::Side::Client, None)
            }
            Addr::Unix(p) => {
                rpc_system(UnixStream::connect(p).await?, rpc_twoparty_capnp::Side::Client, None)
            }
        };
        let bench: bench::Client = system.bootstrap(rpc_twoparty_capnp::Side::Server);
        drop(tokio::task::spawn_local(system));
        let add = |a: i64, b: i64| {
            let mut request = bench.add_request();
            request.get().set_a(a);
            request.get().set_b(b);
            let reply = request.send().promise;
            async move {
                let sum = reply.await.expect("add").get().expect("add's results").get_sum();
                debug_assert_eq!(sum, a + b);
            }
        };
        match opts.str("scenario") {
            "latency" => common::measure_latency_async(opts, || add(1, 2)).await,
            "pipelined" => common::pipelined_async(opts, || add(1, 1)).await,
            "events" => events(opts, &bench).await,
            other => panic!("capnp-rpc: no scenario {other}"),
        }
        Ok(())
    }))
}

/// Rounds of `batch` events (the server's calls of our capability, at most
/// [`WINDOW`] in flight), as netref's and RPyC's events scenarios run.
async fn events(opts: &Opts, bench: &bench::Client) {
    let secs = opts.secs();
    let batch: u64 = opts.num("batch", 20_000);
    let count = Rc::new(Cell::new(0));
    let callback: callback::Client = capnp_rpc::new_client(Counter(count.clone()));
    let round = |k: u64| {
        let mut request = bench.emit_request();
        request.get().set_callback(callback.clone());
        request.get().set_n(k);
        request.get().set_window(WINDOW as u32);
        let reply = request.send().promise;
        async move {
            reply.await.expect("emit");
        }
    };
    round((batch / 10).max(1)).await;
    let before = count.get();
    let start = Instant::now();
    while start.elapsed() < secs {
        round(batch).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total = count.get() - before;
    common::result(&[("events_per_s", total as f64 / elapsed), ("events", total as f64)]);
}
