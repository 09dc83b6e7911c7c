//! Limits and settings of one connection.

use std::time::Duration;

/// Every limit of a connection, each with a safe default.
///
/// | field | default | what happens past it |
/// |---|---|---|
/// | `max_frame_len` | 128 MiB | incoming: the connection ends with `LimitError::FrameTooLarge` (checked on the header, before buffering); outgoing: that call fails |
/// | `max_depth` | 64 | incoming: a request (or reply) nested up to 8 levels deeper is refused with an error naming the limit and the connection goes on; a frame nested deeper still cannot be decoded and ends the connection with `LimitError::TooDeep`; outgoing: that call fails |
/// | `max_frame_items` | 1,000,000 | incoming: a frame holding more values than this ends the connection with `LimitError::TooManyItems`, counted on the frame's bytes before anything is decoded (so no frame costs more memory than its bytes plus about 64 bytes per item allowed) |
/// | `max_pending` | 100,000 | new calls fail with `LimitError::TooManyPending` |
/// | `max_exported` | 1,000,000 | the call or reply that would export one more object fails |
/// | `max_imported` | 1,000,000 | references past it are refused (that call or reply fails) |
/// | `max_output_buffer` | 256 MiB | new calls (sync and async) fail with `LimitError::OutputBufferFull` (the peer is not reading); a peer that keeps sending requests while not reading the replies is disconnected with that error |
/// | `sync_request_timeout` | 30 s | a synchronous call fails with `Error::Timeout` (RPyC's default) |
/// | `handshake_timeout` | 10 s | a peer whose hello has not arrived this long after the connection opened is disconnected with a handshake error naming the limit (a peer that connects and sends nothing, or dribbles, cannot hold a connection open) |
/// | `frame_timeout` | 60 s | a frame not whole this long after its first bytes arrived ends the connection with `LimitError::FrameTimedOut` (a peer that dribbles a frame, or a partial header, cannot hold a connection open by seeming busy); raise it for frames of many MiB over slow links |
/// | `idle_timeout` | none | a connection that receives nothing for this long is closed ([`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout)) |
/// | `include_traceback` | true | when false, remote errors carry no traceback (RPyC's `include_local_traceback`) |
/// | `max_nesting` | 128 | a call that would nest deeper fails with `LimitError::TooDeeplyNested`, on the side where the stack would grow (see the field) |
/// | `max_async_calls` | 10,000 | the peer's call of an asynchronous method past it is refused with `LimitError::TooManyAsyncCalls` and the connection goes on (a peer cannot pile up futures that wait on it) |
/// | `batch_replies` | false | when true, replies to requests that arrived together are written together once the last of them is served (see the field) |
/// | `coalesce` | 50 µs | how long an asynchronous call or a reply may wait to leave in one write with the messages made right after it (see the field); none: each leaves at once |
/// | `dialect` | `Dialect::Netref` | the wire protocol spoken: netref's, RPyC 6's, or (for servers) either, told by the peer's first bytes; a peer speaking another is disconnected with a handshake error naming what it sent |
///
/// Outgoing limits fail only the call concerned; incoming violations end
/// that one connection with an error naming the limit. Authentication has
/// its own deadline for the whole exchange, [`Builder::auth_timeout`](crate::Builder::auth_timeout)
/// (10 s), and the bytes many connections buffer together have a cap of
/// their own, [`Builder::memory_budget`](crate::Builder::memory_budget)
/// (1 GiB for a builder's connections). `tests/limits.rs` checks that this table names every field and
/// that each limit is enforced over a real socket.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame, in bytes, sent or accepted.
    pub max_frame_len: usize,
    /// Most items (values, containers, tags) one incoming frame may hold:
    /// the decoding budget. A small integer is one byte on the wire and
    /// tens of bytes decoded; this bounds what a frame can make the
    /// receiver allocate to about 64 bytes per item allowed, plus its bytes.
    pub max_frame_items: usize,
    /// Deepest nesting of values sent or accepted.
    pub max_depth: usize,
    /// Most requests awaiting replies at once.
    pub max_pending: usize,
    /// Most local objects the peer may hold references to at once.
    pub max_exported: usize,
    /// Most distinct peer objects this side may hold proxies for at once.
    pub max_imported: usize,
    /// Most bytes of unsent output before new calls are refused.
    pub max_output_buffer: usize,
    /// Default timeout of synchronous calls; `None` waits forever.
    pub sync_request_timeout: Option<Duration>,
    /// Close the connection when the peer's hello has not arrived this long
    /// after it opened; `None` waits forever.
    pub handshake_timeout: Option<Duration>,
    /// Close the connection when a frame is not whole this long after its
    /// first bytes arrived; `None` waits forever. Unlike `idle_timeout`,
    /// bytes arriving do not reset it: it bounds the whole frame.
    pub frame_timeout: Option<Duration>,
    /// Close the connection after this long without receiving anything.
    pub idle_timeout: Option<Duration>,
    /// Send tracebacks with errors raised while serving the peer.
    pub include_traceback: bool,
    /// Most calls from the peer served one inside another on one thread.
    ///
    /// A callback that calls the peer, which calls back, and so on, runs
    /// each level deeper on the serving thread's stack; unbounded, it
    /// overflows the stack and aborts the process. Past this depth a
    /// synchronous call fails at once with
    /// [`LimitError::TooDeeplyNested`](crate::error::LimitError::TooDeeplyNested)
    /// (before anything is sent), and a request that arrives is answered
    /// with that error instead of being run; the caller at the top gets it
    /// as the error of its call (from the peer, as a `LimitError`
    /// [`RemoteError`](crate::RemoteError)). The default, 128, fits in a
    /// 2 MiB thread stack (std's default, and
    /// [`ThreadedServer`](crate::ThreadedServer)'s) in a debug build with
    /// room for the methods' own frames; for deeper nesting, raise it with
    /// [`ThreadedServer::stack_size`](crate::ThreadedServer::stack_size).
    pub max_nesting: usize,
    /// Most of the peer's calls of asynchronous methods
    /// ([`ObjectBuilder::async_method`](crate::ObjectBuilder::async_method))
    /// running at once on the connection. Each keeps its future until it
    /// is ready; one that waits on the peer (its callback's reply) is the
    /// peer's to end, so a hostile peer could otherwise pile them up.
    pub max_async_calls: usize,
    /// Write the replies to requests that arrived together (in one read
    /// from the transport) in one write, after the last of them is served,
    /// instead of one write per reply.
    ///
    /// A peer that pipelines many calls (async calls, events) then costs
    /// one system call per batch instead of one per call. The price: a
    /// reply waits for the requests queued behind it, so a slow method
    /// delays the replies to the fast requests that arrived just before it.
    /// Off by default: [`coalesce`](Self::coalesce) already holds a reply
    /// while requests wait behind it, for at most its window; this holds it
    /// until they are served, however long they take. At most 64 KiB of
    /// replies are held back, and nothing is ever held while the connection
    /// waits for the peer.
    pub batch_replies: bool,
    /// How long a message may wait to leave in one write with the ones its
    /// thread makes right after it (default 50 µs; `None`: each message
    /// leaves as soon as it is made, as in RPyC).
    ///
    /// An asynchronous call, and a reply while more requests wait to be
    /// served, are held back while their thread goes on. They leave when
    /// that thread waits for anything (a synchronous call, `wait`, `value`,
    /// `ready`, a serving loop about to sleep), when its serving pass or a
    /// loop's step ends, once 64 KiB are held, or at the latest after this
    /// long: a flusher thread writes what is still held then, so a thread
    /// that goes on with work of its own (or a slow method) delays nothing
    /// longer. On an event loop the loop writes it, in the same turn. A
    /// synchronous call leaves at once.
    pub coalesce: Option<Duration>,
    /// The wire protocol the connection speaks (see [`Dialect`]).
    pub dialect: Dialect,
}

/// The wire protocol a connection speaks. The API above it is the same:
/// roots, calls, proxies, callbacks, `async_`, `timed`, errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// netref's own: CBOR frames after a hello (the default).
    #[default]
    Netref,
    /// RPyC 6.0's, as Python's `rpyc` speaks it: to connect to a Python
    /// RPyC service, or to serve Python's `rpyc.connect` (see the
    /// [`wire::rpyc`](crate::wire::rpyc) module for what it supports).
    Rpyc,
    /// Either, told by the peer's first bytes (a netref hello, or an RPyC
    /// frame): for servers, so that one port serves netref and Python
    /// peers. This side says nothing until the peer has spoken, so two
    /// sides that both wait would wait until `handshake_timeout`: clients
    /// choose [`Netref`](Self::Netref) or [`Rpyc`](Self::Rpyc). A Python
    /// client sends its first bytes when it first uses `c.root`, and must
    /// do so within `handshake_timeout`.
    Either,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_len: 128 << 20,
            max_frame_items: 1_000_000,
            max_depth: 64,
            max_pending: 100_000,
            max_exported: 1_000_000,
            max_imported: 1_000_000,
            max_output_buffer: 256 << 20,
            sync_request_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Some(Duration::from_secs(10)),
            frame_timeout: Some(Duration::from_secs(60)),
            idle_timeout: None,
            include_traceback: true,
            max_nesting: 128,
            max_async_calls: 10_000,
            batch_replies: false,
            coalesce: Some(Duration::from_micros(50)),
            dialect: Dialect::Netref,
        }
    }
}

impl Config {
    /// Sets `max_frame_len`.
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }
    /// Sets `max_frame_items`.
    pub fn max_frame_items(mut self, items: usize) -> Self {
        self.max_frame_items = items;
        self
    }
    /// Sets `max_depth`.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }
    /// Sets `max_pending`.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }
    /// Sets `max_exported`.
    pub fn max_exported(mut self, n: usize) -> Self {
        self.max_exported = n;
        self
    }
    /// Sets `max_imported`.
    pub fn max_imported(mut self, n: usize) -> Self {
        self.max_imported = n;
        self
    }
    /// Sets `max_output_buffer`.
    pub fn max_output_buffer(mut self, bytes: usize) -> Self {
        self.max_output_buffer = bytes;
        self
    }
    /// Sets `sync_request_timeout`.
    pub fn sync_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.sync_request_timeout = timeout;
        self
    }
    /// Sets `handshake_timeout`.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets `frame_timeout`.
    pub fn frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frame_timeout = timeout;
        self
    }

    /// Sets `idle_timeout`.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }
    /// Sets `include_traceback`.
    pub fn include_traceback(mut self, include: bool) -> Self {
        self.include_traceback = include;
        self
    }
    /// Sets `max_nesting`.
    pub fn max_nesting(mut self, depth: usize) -> Self {
        self.max_nesting = depth;
        self
    }
    /// Sets `max_async_calls`.
    pub fn max_async_calls(mut self, n: usize) -> Self {
        self.max_async_calls = n;
        self
    }
    /// Sets `batch_replies`.
    pub fn batch_replies(mut self, batch: bool) -> Self {
        self.batch_replies = batch;
        self
    }
    /// Sets `coalesce` (`None`: every message leaves as soon as it is made).
    pub fn coalesce(mut self, window: Option<Duration>) -> Self {
        self.coalesce = window;
        self
    }
    /// Sets `dialect`.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }
}
