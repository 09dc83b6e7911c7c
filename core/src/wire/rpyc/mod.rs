//! RPyC 6's dialect: what a Python RPyC peer sends and understands
//! (`RPYC-WIRE.md`, checked against rpyc 6.0.2): its frames, its value
//! encoding (brine), and its messages with their boxed values and
//! exceptions. The protocol maps them onto the same requests, replies and
//! object tables as netref's own dialect.

mod brine; // values: brine's tags, encoded as Python's dumper does
mod frame; // frames: length, compressed flag, payload, newline
mod message; // messages: (seq, body), boxing labels, id packs, vinegar

pub use brine::{Brine, MAX_DEPTH};
pub(crate) use frame::{frame_decoder, open_frame, write_frame};
pub(crate) use message::handler;
pub use message::{Boxed, IdPack, Packet, Vinegar};
