//! # netref
//!
//! RPyC's model of remote objects for Rust programs that run an event loop.
//! Two processes hold a connection; each side exposes a service; either side
//! calls the other's objects synchronously or asynchronously, and passes its
//! own objects and closures as arguments so the peer can call back (events).
//!
//! ## Layers, inside out
//!
//! | module | job |
//! |---|---|
//! | [`value`], [`object`] | what crosses the wire: [`Value`] (plain data, any serde type, plus object references) and the local [`Object`]s a side exposes |
//! | [`wire`] | frames (4-byte length + one CBOR item) and message shapes, with hard limits |
//! | [`protocol`] | the sans-IO state machine: bytes in, [`Event`](protocol::Event)s out; sequence numbers, pending table, object tables, deadlines as data |
//! | [`connection`] | [`Connection`]: the protocol driven over a [`Transport`]; synchronous calls, [`AsyncResult`], serving, [`BgServingThread`]; the [`Driver`] event-loop backends step, and [`thread_callback`] for callbacks bound to a loop's thread |
//! | [`listener`], [`server`] | the [`Listener`] every server accepts on (a refused client vs a failed listener: [`Accepted`]); [`ThreadedServer`] and [`OneShotServer`] |
//! | [`deadlines`] | [`DeadlineIndex`]: many connections' deadlines for one event-loop server |
//! | [`auth`] | authenticators run before the handshake: Unix peer credentials, a shared-secret challenge-response |
//! | [`testing`] | a deterministic in-memory [`Pair`](testing::Pair) on a virtual clock |
//!
//! Data flows one way: a transport hands bytes to the connection, the
//! connection feeds the protocol, the protocol yields events, the connection
//! dispatches each one (runs a local method and queues the reply, or
//! completes an `AsyncResult` and runs its callbacks). Nothing below
//! `connection` knows about threads, sockets or clocks.
//!
//! ## Example
//!
//! A server exposes a calculator; the client calls it synchronously, then
//! asynchronously, and sees a remote error the way RPyC prints one.
//!
//! ```
//! use netref::testing::Pair;
//! use netref::{ObjectBuilder, Service};
//!
//! let calc = ObjectBuilder::new("Calculator")
//!     .method("add", |a: i64, b: i64| a + b)
//!     .try_method("int", |s: String| s.parse::<i64>())
//!     .build();
//! let pair = Pair::new(Service::none(), Service::object(calc));
//! let root = pair.client.root()?;
//!
//! let sum: i64 = root.call_method("add", (1, 2))?;
//! assert_eq!(sum, 3);
//!
//! let res = netref::async_(&root).call_method("int", ("8",));
//! assert_eq!(res.value_as::<i64>()?, 8);
//!
//! let bad = netref::async_(&root).call_method("int", ("this is not a valid number",));
//! bad.wait()?; // the reply (an error) has arrived
//! assert!(bad.ready() && bad.error());
//! let err = bad.value().unwrap_err();
//! assert!(err.to_string().starts_with("ParseIntError: invalid digit found in string"));
//! # Ok::<(), netref::Error>(())
//! ```

pub mod async_result;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connection;
pub mod deadlines;
pub mod error;
pub mod listener;
mod loop_thread;
pub mod object;
pub mod protocol;
pub mod remote;
mod seq_hash;
pub mod server;
pub mod testing;
pub mod transport;
pub mod value;
pub mod wire;

pub use async_result::AsyncResult;
pub use auth::{Authenticator, Credentials};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use config::Config;
pub use connection::driver::{Driver, Step};
pub use connection::{batch, connect, BgServingThread, Builder, Connection, Service, WeakConnection};
pub use deadlines::DeadlineIndex;
pub use error::{AuthError, CloseReason, ConvertError, Error, Misuse, Place, RemoteError, Result};
pub use listener::{Accepted, Listener};
pub use loop_thread::thread_callback;
pub use object::{callback, Invoke, InvokeWith, LocalObject, Method, Object, ObjectBuilder};
pub use remote::{async_, timed, Async, IntoArgs, RemoteObject};
pub use server::{OneShotServer, ThreadedServer};
pub use transport::{SocketTransport, Stream, Transport};
pub use value::{from_value, to_value, ObjectRef, Value};

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
