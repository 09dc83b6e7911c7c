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
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;
pub mod typed;
pub mod value;
pub use value::object;
pub mod wire;

pub use auth::{AuthStream, Authenticator, Credentials};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use config::{Config, Dialect};
pub use connection::async_result::AsyncResult;
pub use connection::budget::{MemoryBudget, DEFAULT_MEMORY_BUDGET};
pub use connection::driver::{Driver, LoopConnection, Step};
pub use connection::loop_data::{lend_loop_data, loop_data_callback};
pub use connection::loop_thread::{thread_callback, thread_callback_at, thread_handler, Job, LoopHome};
pub use connection::remote::{async_, timed, Async, IntoArgs, RemoteObject};
pub use connection::{
    batch, connect, BgServingThread, Builder, Connection, LinkState, ReconnectBuilder, Reconnecting, Service,
    WeakConnection,
};
pub use error::{AuthError, CloseReason, ConvertError, Error, Misuse, Place, RemoteError, Result, TlsError};
pub use server::DeadlineIndex;
pub use server::{Accepted, Listener};
pub use server::{OneShotServer, ThreadedServer};
pub use transport::{PipeTransport, SocketTransport, Stream, Transport};
pub use value::object::{callback, Invoke, InvokeWith, LocalObject, Method, Object, ObjectBuilder};
pub use value::{from_value, to_value, ObjectRef, Value};

/// Declares a typed service: a trait served by its implementations and
/// called through a generated typed proxy. The layer it writes sits on the
/// dynamic API ([`ObjectBuilder`], [`RemoteObject`]), which stays
/// underneath: a typed client calls a dynamic server exposing the same
/// methods, and the other way round.
///
/// ```
/// use netref::testing::Pair;
/// use netref::typed::{CallError, Callback, Obj};
/// use netref::Service;
///
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// pub struct Overdrawn { pub left: i64 }
/// # impl std::fmt::Display for Overdrawn {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{} left", self.left) }
/// # }
///
/// #[netref::service]
/// pub trait Account {
///     /// Pays in; the balance.
///     fn deposit(&self, amount: i64) -> i64;
///     /// Takes out, unless that overdraws.
///     fn withdraw(&self, amount: i64) -> Result<i64, Overdrawn>;
///     /// Asks `approve(amount)`, without blocking the serving thread.
///     async fn ask(&self, amount: i64, approve: Callback<(i64,), bool>) -> bool;
/// }
///
/// #[derive(Default)]
/// struct Bank(std::sync::atomic::AtomicI64);
///
/// impl Account for Bank {
///     fn deposit(&self, amount: i64) -> i64 {
///         self.0.fetch_add(amount, std::sync::atomic::Ordering::SeqCst) + amount
///     }
///     fn withdraw(&self, amount: i64) -> Result<i64, Overdrawn> {
///         let left = self.0.load(std::sync::atomic::Ordering::SeqCst);
///         if amount > left { return Err(Overdrawn { left }) }
///         Ok(self.0.fetch_sub(amount, std::sync::atomic::Ordering::SeqCst) - amount)
///     }
///     async fn ask(&self, amount: i64, approve: Callback<(i64,), bool>) -> bool {
///         approve.call_async((amount,)).await.unwrap_or(false)
///     }
/// }
///
/// let pair = Pair::new(Service::none(), Service::typed::<dyn Account>(Bank::default()));
/// let account = AccountProxy::root(&pair.client)?;
/// assert_eq!(account.deposit(10)?, 10);
/// assert_eq!(account.withdraw(15), Err(CallError::App(Overdrawn { left: 10 })));
/// assert!(account.ask(3, |amount: i64| amount < 5)?);
/// let later = account.async_().deposit(1); // an AsyncResult<i64>, also a Future
/// assert_eq!(later.value()?, 11);
/// # Ok::<(), netref::Error>(())
/// ```
///
/// # What it writes
///
/// - **The trait**, with `Send + Sync + 'static` added (one object serves
///   every caller and thread) and each `async fn` a method returning a
///   `Send` future (not `Send` when marked `#[netref(local)]`, below);
///   implementations still write `async fn`.
/// - **`impl Interface for dyn Trait`** and **`impl<T: Trait> ServedBy<T>`**
///   ([`typed::Interface`], [`typed::ServedBy`]): serve an implementation
///   with [`Service::typed::<dyn Trait>(imp)`](Service::typed), hand one out
///   as an [`Obj<dyn Trait>`](typed::Obj), or make its object with
///   [`typed::export`]. Only the trait's methods are reachable.
/// - **`TraitProxy`**: the trait's methods, each blocking until its result
///   is here while serving the connection, so callbacks into this side run
///   meanwhile. `TraitProxy::root(&conn)` checks that the peer's root
///   exposes the trait's methods (one round trip) and fails with
///   [`Misuse::WrongInterface`] naming what it lacks.
/// - **`TraitAsync`**, from `proxy.async_()` and `proxy.timed(d)`: the same
///   methods returning [`AsyncResult`]s (RPyC's `async_` and `timed`), which
///   are also futures for glib, calloop or any executor.
///
/// # Types
///
/// - Arguments and results are serde types, [`Obj<dyn OtherTrait>`](typed::Obj)
///   (an object: this side's or the peer's; one handed back is the
///   original), or [`Callback<(A, ..), R>`](typed::Callback) (the proxy takes
///   any closure `Fn(A, ..) -> R`; the method calls it blocking, async or
///   one-way). Up to eight arguments, by value.
/// - A method returning `Result<T, E>` (`E`: serde and `Display`) gives the
///   client `Result<T, CallError<E>>`: [`CallError::App(e)`](typed::CallError)
///   is the method's own error, `CallError::Rpc` a call that failed on the
///   way (the peer's panic with its traceback, a timeout, a closed
///   connection). Any other method gives `Result<T, netref::Error>`.
///
/// # Events
///
/// A method marked `#[netref(event)]`, taking no arguments and returning
/// [`Event<T>`](typed::Event), is an event: the server emits to the
/// `Event<T>` it returns, and the proxy's method of the same name gives
/// the peer's event, which a client subscribes to with a closure, a
/// stream or an iterator, choosing its queue's size and what happens when
/// it is full ([`Subscribe`](typed::Subscribe)). See [`typed::Event`].
///
/// # Futures that are not `Send`
///
/// An `async fn` marked `#[netref(local)]` may hold values that are not
/// `Send` across its awaits (an `Rc`, a GTK widget): its future is polled
/// only on the thread that started it, the one serving the connection
/// when the call arrived (an event loop's, or a `ThreadedServer`
/// connection's thread). Served by several threads at once (a
/// `BgServingThread` and a thread waiting on a call), a poll elsewhere
/// fails that call with a `RuntimeError` instead of touching the future.
///
/// # Generic traits
///
/// A trait's type parameters get the bounds they need to cross the wire
/// (`Serialize + DeserializeOwned + Send + Sync + 'static`), and the proxy
/// is generic too: `#[netref::service] trait Store<V> { .. }` is served as
/// `Service::typed::<dyn Store<String>>(..)` and called through
/// `StoreProxy::<String>::root(&conn)`. An implementation for every `V`
/// states those bounds in its `impl`.
///
/// # Evolution
///
/// An argument marked `#[netref(default)]` (trailing, `T: Default`) may be
/// left out by older callers; a method added later is checked only by
/// newer clients. A method the peer lacks is an ordinary remote error, and
/// the connection goes on.
///
/// # Refused at compile time
///
/// What cannot cross the wire is an error at the offending token naming
/// the fix: `&mut self`, no or a by-value receiver, generic methods,
/// lifetime or const parameters of the trait, reference, `impl Trait`, pattern or `Self` arguments, more than
/// eight arguments, a type serde cannot carry (reported at the type),
/// names the proxy uses itself (`root`, `from_remote`, `async_`, `timed`,
/// `clone`), associated types and supertraits, event methods with
/// arguments, `async` or not returning an `Event`, an `Event` returned
/// without `#[netref(event)]`, and `#[netref(local)]` on a method that is
/// not `async` (see `core/tests/ui/`).
pub use netref_macros::service;

/// Declares a typed proxy alone, for a trait whose server side is built
/// otherwise (an [`ObjectBuilder`] object, a Python peer): dynamic
/// servers, typed clients. It writes what `#[netref::service]` writes
/// except the serving side, so the trait has no implementations to serve
/// and [`Obj<dyn Trait>`](typed::Obj) holds the peer's objects only. The
/// rules for the trait are [`service`]'s.
///
/// ```
/// use netref::testing::Pair;
/// use netref::{ObjectBuilder, Service};
///
/// #[netref::proxy]
/// pub trait Calculator {
///     fn add(&self, a: i64, b: i64) -> i64;
/// }
///
/// let calc = ObjectBuilder::new("Calculator").method("add", |a: i64, b: i64| a + b).build();
/// let pair = Pair::new(Service::none(), Service::object(calc));
/// let calc = CalculatorProxy::root(&pair.client)?;
/// assert_eq!(calc.add(40, 2)?, 42);
/// # Ok::<(), netref::Error>(())
/// ```
pub use netref_macros::proxy;

// The README's example is compiled and run as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
