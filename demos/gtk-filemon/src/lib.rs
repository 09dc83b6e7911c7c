//! # netref-gtk-filemon
//!
//! RPyC's FileMonitor example as a GTK 4 program: a server polls a file's
//! metadata on its own thread and calls the client back, asynchronously,
//! whenever it changes; the client is a GTK window whose netref connection
//! is served by the GTK main loop itself (`netref-glib`), so the events land
//! in the window with no extra thread, and a slow remote call runs without
//! freezing it.
//!
//! - [`service`]: the typed service ([`FileMonitorService`]:
//!   `file_monitor(path, callback, interval_ms)`, a deliberately slow
//!   `checksum(path)`), run as a netref `ThreadedServer`.
//! - [`ui`]: the window ([`FileMonWindow::build`]).
//!
//! The binary embeds a server by default (`--embedded`) or connects to one
//! (`--addr HOST:PORT`); `--serve HOST:PORT` runs just the server.

pub mod service;
pub mod ui;

pub use service::{
    fnv1a64, service, spawn_server, Checksum, ChecksumError, FileMonitor, FileMonitorService,
    FileMonitorServiceProxy, Stat,
};
pub use ui::{FileMonWindow, Options};
