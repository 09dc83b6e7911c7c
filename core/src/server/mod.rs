//! Servers: the [`Listener`] every server accepts on, the threaded servers
//! (RPyC's `ThreadedServer` and `OneShotServer`), and the data an
//! event-loop server keeps for many connections ([`event_loop`]:
//! [`LoopServer`], [`LoopListener`], [`Doorbell`]; [`DeadlineIndex`]).

pub mod deadlines;
pub mod event_loop;
pub mod listener;
mod threaded;

pub use deadlines::DeadlineIndex;
pub use event_loop::{
    millis_until, timeout, Doorbell, LoopConnections, LoopListener, LoopServer, ServerHandle,
};
pub use listener::{Accepted, Listener};
pub use threaded::{OneShotServer, ThreadedServer, ACCEPT_BACKOFF, DEFAULT_MAX_CONNECTIONS};
