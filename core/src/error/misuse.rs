//! Which API was misused, and how to fix it: [`Misuse`].

/// A way of using the API that it does not support; each says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// An [`AsyncResult`](crate::AsyncResult) was awaited on a connection
    /// that nobody serves, so its reply would never be read (see
    /// [Awaiting](crate::AsyncResult#awaiting)).
    #[error(
        "awaited a result of a connection that nobody serves: attach the connection to an \
         event loop (netref-glib, netref-calloop, netref-mio, netref-polling) or start a \
         BgServingThread, or call value() to serve it from this thread"
    )]
    Unserved,
    /// An event loop was asked to watch a connection whose transport has
    /// no file descriptor.
    #[error("the connection's transport has no file descriptor, so no event loop can watch it")]
    NoFileDescriptor,
    /// A connection was attached to an event loop while it already was.
    #[error(
        "the connection is already attached to an event loop: detach it (drop its \
         `Attached`) before attaching it again"
    )]
    AlreadyAttached,
    /// A proxy from a bare [`Protocol`](crate::protocol::Protocol) was
    /// passed (as an argument or result) to another protocol. A
    /// connection's proxy passed on is relayed through its connection; a
    /// bare protocol has none to relay through.
    #[error(
        "remote object {id} comes from a bare Protocol and cannot be passed to another one: \
         only a Connection's proxies can be relayed to a third party"
    )]
    ForeignObject {
        /// The peer's id of the object.
        id: u64,
    },
    /// A call was made on a proxy from a bare [`Protocol`](crate::protocol::Protocol),
    /// which has no connection to send it on.
    #[error(
        "this proxy comes from a bare Protocol, which has no connection to call through: \
         send requests with Protocol::send_request, or use a Connection"
    )]
    NoConnection,
    /// Bytes were fed to a [`Protocol`](crate::protocol::Protocol) while
    /// its input buffer was lent out.
    #[error(
        "bytes were received while the input buffer is lent out: give it back as \
         Input::Filled first"
    )]
    InputBufferLent,
    /// A wait could never end: the transport reports that nothing can
    /// arrive (an in-memory [`Pair`](crate::testing::Pair) with neither side
    /// able to act).
    #[error("{detail}: the wait could never end (give the call a timeout, or let the peer act first)")]
    WaitsForever {
        /// What the transport said.
        detail: String,
    },
    /// The thread serving the connection panicked: a result callback or a
    /// service hook it ran panicked.
    #[error("the serving thread panicked: a result callback or a service hook it ran panicked")]
    ServingThreadPanicked,
    /// A method served by an event-loop server waited for a reply (a
    /// synchronous call, a callback called synchronously, `value()` or
    /// `wait()` on a result not yet here). Waiting would stop the loop
    /// serving its other connections until the reply came, so the wait
    /// fails at once instead.
    #[error(
        "a method served by an event-loop server waited for a reply, which would stop the loop \
         serving its other connections: make the method asynchronous \
         (ObjectBuilder::async_method) and await the call \
         (netref::async_(&proxy).call_method(..).await)"
    )]
    BlocksLoopServer,
    /// A typed proxy was asked for an object that does not serve its
    /// interface (a `#[netref::service]` trait): the object lacks some of
    /// the trait's methods.
    #[error(
        "the peer's `{object}` object does not serve `{interface}`: it has no {}; it exposes {}",
        list(missing),
        if exposed.is_empty() { "nothing".to_string() } else { list(exposed) }
    )]
    WrongInterface {
        /// The trait asked for.
        interface: &'static str,
        /// What the object calls itself (its `repr`-like name), or
        /// `root` for a connection's root.
        object: String,
        /// The trait's methods the object lacks.
        missing: Vec<String>,
        /// The names the object exposes.
        exposed: Vec<String>,
    },
    /// [`Event::emit`](crate::typed::Event::emit) was called on the
    /// peer's event (one a proxy gave): only the side that owns an event
    /// emits it.
    #[error("`{event}` is the peer's event: only the side serving it emits it; subscribe to it here")]
    EmitsPeerEvent {
        /// The event, `Trait.method`.
        event: String,
    },
    /// [`Event::emit`](crate::typed::Event::emit) had to wait for room
    /// in a `block` subscription while stepping an event-loop server:
    /// waiting would stop the loop, and with it the subscriber's pulls.
    #[error(
        "emit() had to wait for a full `block` subscription on an event-loop server, which would \
         stop the loop serving its connections (and the subscriber's pulls): await \
         emit_async(..) instead"
    )]
    EmitBlocksLoopServer,
}

/// `a`, `b`, `c`.
fn list(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}
