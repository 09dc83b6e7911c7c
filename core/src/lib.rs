//! # netref
//!
//! RPyC's model of remote objects for Rust programs that run an event loop.
//! Two processes hold a connection; each side exposes a service; either side
//! calls the other's objects synchronously or asynchronously, and passes its
//! own objects and closures as arguments so the peer can call back (events).
//!
//! ## Start here
//!
//! ```toml
//! [dependencies]
//! netref = "0.1"
//! # one of, for a program that runs an event loop:
//! netref-glib = "0.1"     # GTK and GLib applications
//! netref-calloop = "0.1"  # calloop, smithay-client-toolkit (Wayland) tools
//! netref-mio = "0.1"      # mio 1.x loops
//! netref-polling = "0.1"  # polling 3.x loops
//! ```
//!
//! RPyC's FileMonitor, server and client in one program: the server calls the
//! client's closure (an event) each time the watched file changes.
//!
#![doc = concat!("```\n", include_str!("../examples/filemonitor.rs"), "```")]
//!
//! Which crate, how to put a connection on your loop, and how to await a
//! result there (`root` is `conn.root()?`; [`async_`]`(&root).call_method(..)`
//! returns an [`AsyncResult`], and [`typed`](AsyncResult::typed)`::<T>()`
//! makes its `.await` give a `T`):
//!
//! | program | crate | put a connection on the loop | `.await` |
//! |---|---|---|---|
//! | no loop (threads) | `netref` | [`BgServingThread::new`]`(&conn)` | from any executor, e.g. `block_on(async_(&root).call_method("add", (1, 2)).typed::<i64>())` |
//! | GTK / GLib | [netref-glib] | [`netref_glib::attach`]`(&conn, &MainContext::default())` | `glib::spawn_future_local(async move { async_(&root).call_method("add", (1, 2)).typed::<i64>().await })` |
//! | calloop (Wayland) | [netref-calloop] | [`netref_calloop::attach`]`(&event_loop.handle(), &conn)` | on calloop's executor: `scheduler.schedule(async move { .. .await })` |
//! | mio | [netref-mio] | [`netref_mio::attach`]`(&conn, registry, token, &doorbell)`, then `drive` on its events | no executor in mio: [`AsyncResult::add_callback`] runs on the loop; a future awaited elsewhere is woken by it |
//! | polling | [netref-polling] | [`netref_polling::attach`]`(&conn, &doorbell, key)`, then `drive` on its events | as for mio |
//!
//! Awaiting a result of a connection that nobody serves fails at once with
//! [`Misuse::Unserved`], whose text names these
//! fixes, instead of hanging.
//!
//! [netref-glib]: https://docs.rs/netref-glib
//! [netref-calloop]: https://docs.rs/netref-calloop
//! [netref-mio]: https://docs.rs/netref-mio
//! [netref-polling]: https://docs.rs/netref-polling
//! [`netref_glib::attach`]: https://docs.rs/netref-glib/latest/netref_glib/fn.attach.html
//! [`netref_calloop::attach`]: https://docs.rs/netref-calloop/latest/netref_calloop/fn.attach.html
//! [`netref_mio::attach`]: https://docs.rs/netref-mio/latest/netref_mio/fn.attach.html
//! [`netref_polling::attach`]: https://docs.rs/netref-polling/latest/netref_polling/fn.attach.html
//!
//! ## What crosses the wire
//!
//! Arguments and results are any serde types; [`RemoteObject`]s (proxies)
//! and [`LocalObject`]s (this side's objects, closures made with
//! [`callback`]) inside them travel by reference. Synchronous calls block
//! while serving the connection, so callbacks nest to any depth; a remote
//! failure is an [`Error::Remote`] printed the way RPyC prints it. For tests
//! of your own services, [`testing::Pair`] runs two connections in memory on
//! a virtual clock.
//!
//! ## Layers, inside out
//!
//! | folder | job |
//! |---|---|
//! | [`value`] | what crosses the wire: [`Value`] (plain data, any serde type, plus object references), the local [`Object`]s a side exposes ([`object`]), and the handles of the peer's objects ([`RemoteObject`] as data: an id and its connection) |
//! | [`wire`] | frames (4-byte length + one CBOR item) and message shapes, with hard limits |
//! | [`protocol`] | the sans-IO state machine, str0m's model: one [`Input`](protocol::Input) in, [`Event`](protocol::Event)s and bytes out; sequence numbers, pending table, object tables by id, deadlines as data |
//! | [`connection`] | [`Connection`]: the protocol driven over a [`Transport`]; what [`RemoteObject`]s do (synchronous calls, relays), [`AsyncResult`], serving, [`BgServingThread`]; the [`Driver`] event-loop backends step, and [`thread_callback`] for callbacks bound to a loop's thread |
//! | [`transport`] | the byte streams a connection runs over (TCP, Unix sockets, in-memory) |
//! | [`server`] | the [`Listener`] every server accepts on (a refused client vs a failed listener: [`Accepted`]); [`ThreadedServer`] and [`OneShotServer`]; the event-loop server's half every backend shares ([`server::LoopServer`], [`server::LoopListener`], [`server::Doorbell`], [`DeadlineIndex`]) |
//! | [`auth`] | authenticators run before the handshake: Unix peer credentials, a shared-secret challenge-response |
//! | [`testing`] | a deterministic in-memory [`Pair`](testing::Pair) on a virtual clock |
//!
//! Data flows one way: a transport hands bytes to the connection, the
//! connection feeds the protocol, the protocol yields events, the connection
//! dispatches each one (runs a local method and queues the reply, or
//! completes an `AsyncResult` and runs its callbacks). Nothing below
//! `connection` imports from it or knows about threads, sockets or clocks.

// The macro's expansion names `::netref`, which the crate's own tests and
// doctests then find too.
extern crate self as netref;

pub mod auth;
pub mod clock;
pub mod config;
pub mod connection;
pub mod error;
pub mod protocol;
pub mod server;
pub mod testing;
pub mod transport;
pub mod typed;
pub mod value;
pub use value::object;
pub mod wire;

pub use auth::{AuthStream, Authenticator, Credentials};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use config::Config;
pub use connection::async_result::AsyncResult;
pub use connection::budget::{MemoryBudget, DEFAULT_MEMORY_BUDGET};
pub use connection::driver::{Driver, LoopConnection, Step};
pub use connection::loop_data::{lend_loop_data, loop_data_callback};
pub use connection::loop_thread::{thread_callback, thread_callback_at, thread_handler, Job, LoopHome};
pub use connection::remote::{async_, timed, Async, IntoArgs, RemoteObject};
pub use connection::{batch, connect, BgServingThread, Builder, Connection, Service, WeakConnection};
pub use error::{AuthError, CloseReason, ConvertError, Error, Misuse, Place, RemoteError, Result};
pub use server::DeadlineIndex;
pub use server::{Accepted, Listener};
pub use server::{OneShotServer, ThreadedServer};
pub use transport::{SocketTransport, Stream, Transport};
pub use value::object::{callback, Invoke, InvokeWith, LocalObject, Method, Object, ObjectBuilder};
pub use value::{from_value, to_value, ObjectRef, Value};

pub use netref_macros::service;

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
