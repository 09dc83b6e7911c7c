//! Frames and messages: how bytes on the wire are cut and what they mean.
//!
//! A frame is a 4-byte big-endian length followed by exactly one CBOR item.
//! The length is checked against the limit *before* any of the body is
//! buffered, and a frame may arrive split at any byte. A message is a CBOR
//! array whose first element names its kind:
//!
//! | message | layout |
//! |---|---|
//! | hello   | `[0, "netref", version, features]` |
//! | request | `[1, seq, kind, ...]` (see [`RequestKind`]) |
//! | reply   | `[2, seq, value]` |
//! | error   | `[3, seq, type_name, message, [traceback...]]` |
//!
//! Values inside messages are CBOR items ([`Cbor`]); object references are
//! the two private tags [`TAG_SENDER_OBJECT`] and [`TAG_RECEIVER_OBJECT`]
//! around an object id. This module knows the shapes; the protocol gives
//! the ids their meaning.
//!
//! The codec behind it is ciborium (and a decoder and an encoder of our own
//! for the common subset, which agree with it byte for byte), but no
//! signature here names a ciborium type: [`Cbor`] is netref's own.

// One concern a file, in the order bytes travel on the way in, then out:
mod budget; // how many items a frame may hold, counted before decoding
mod cbor; // the `Cbor` item and the ciborium boundary
mod encode; // the frame encoder
mod frame; // cutting a byte stream into frames
mod large; // large byte strings received straight into their own buffer
mod message; // message shapes: hello, request, reply, error
mod output; // the output queue that sends large byte strings in place
mod pool; // spare buffers for large byte strings
pub mod rpyc; // the second dialect: RPyC 6's encoding (brine)
mod slice_decoder; // the fast decoder for the common subset
#[cfg(test)]
mod tests;

pub(crate) use budget::{count_items, count_items_from};
pub(crate) use cbor::{cbor_integer, decode_cbor_in, into_ciborium};
pub use cbor::{decode_cbor, Cbor};
pub use encode::encode_frame;
pub use frame::FrameDecoder;
pub use large::InputBuffer;
pub(crate) use large::LargeString;
pub use message::{Message, RequestKind, WireRequest};
pub(crate) use output::Output;
pub use pool::{BufferPool, Placement};

/// Bytes that open every netref hello, so that a peer speaking something else
/// is told so instead of being misread.
pub const MAGIC: &str = "netref";
/// Protocol version. Peers must agree on it exactly.
pub const VERSION: u64 = 1;
/// Feature bits this build understands (none are defined yet; the field lets
/// later versions negotiate additions without a version bump).
pub const FEATURES: u64 = 0;

/// Tag around the id of an object that lives at the sender of the message.
pub const TAG_SENDER_OBJECT: u64 = 0x7465_0001;
/// Tag around the id of the receiver's own object, handed back.
pub const TAG_RECEIVER_OBJECT: u64 = 0x7465_0002;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;
