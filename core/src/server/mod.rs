//! Servers: the [`Listener`] every server accepts on, the threaded servers
//! (RPyC's `ThreadedServer` and `OneShotServer`), and the data an
//! event-loop server keeps for many connections ([`DeadlineIndex`]).

pub mod deadlines;
pub mod listener;
mod threaded;

pub use deadlines::DeadlineIndex;
pub use listener::{Accepted, Listener};
pub use threaded::{OneShotServer, ThreadedServer, ACCEPT_BACKOFF};
