//! RPyC 6's dialect: what a Python RPyC peer sends and understands
//! (`RPYC-WIRE.md`, checked against rpyc 6.0.2). So far its value
//! encoding, brine; its frames and messages follow.

mod brine; // values: brine's tags, encoded as Python's dumper does

pub use brine::{Brine, MAX_DEPTH};
