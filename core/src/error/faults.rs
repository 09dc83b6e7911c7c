//! Faults of the peer or of the bytes it sent: [`ProtocolError`], [`DecodeError`], [`LimitError`].

/// The peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The handshake failed: wrong magic, incompatible version or missing features.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A message arrived that is not valid in the current state.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// A reply or error named a sequence number we never sent (or already answered).
    #[error("reply to unknown sequence number {0}")]
    UnknownSequence(u64),
    /// The peer referred to one of our objects that we never handed out or already freed.
    #[error("reference to unknown object id {0}")]
    UnknownObject(u64),
    /// The peer released more references than it was given.
    #[error("peer released {released} references to object {id} but held {held}")]
    OverRelease {
        /// The object id.
        id: u64,
        /// How many references the peer released.
        released: u64,
        /// How many it held.
        held: u64,
    },
    /// The peer speaks RPyC older than 6.0, whose messages are laid out
    /// differently (netref speaks RPyC 6.0's).
    #[error(
        "peer speaks RPyC < 6 (its messages are RPyC 5's 3-tuples); netref speaks RPyC 6.0's wire protocol"
    )]
    OldRpyc,
    /// The RPyC peer asked for a handler number RPyC 6 does not define.
    #[error("the RPyC peer sent a request for unknown handler {0} (RPyC 6 defines 1 to 20)")]
    UnknownHandler(u64),
}

/// Bytes that do not form a valid frame or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame body is not valid CBOR (the string is the decoder's message).
    #[error("invalid CBOR: {0}")]
    BadCbor(String),
    /// The frame holds more bytes after the one CBOR item it may contain.
    #[error("{0} trailing bytes after the message in a frame")]
    TrailingBytes(usize),
    /// The stream ended in the middle of a frame.
    #[error("truncated frame: header announced {expected} bytes, stream ended after {got}")]
    Truncated {
        /// Bytes the frame header promised.
        expected: usize,
        /// Bytes that arrived before the end.
        got: usize,
    },
    /// The message is CBOR but not of a known shape; says what was wrong.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message kind this version does not know.
    #[error("unknown message kind {0}")]
    UnknownMessage(u64),
    /// A request kind this version does not know.
    #[error("unknown request kind {0}")]
    UnknownRequest(u64),
    /// A CBOR tag netref does not use.
    #[error("unknown CBOR tag {0}")]
    UnknownTag(u64),
    /// A value of RPyC's dialect is not valid brine (RPyC's own encoding):
    /// where it went wrong, and how.
    #[error("invalid brine (RPyC's encoding) at byte {offset}: {problem}")]
    BadBrine {
        /// The offset in the encoded value where decoding stopped.
        offset: usize,
        /// What was wrong there.
        problem: String,
    },
}

/// A configured limit was exceeded. Each variant names the limit's
/// [`Config`](crate::Config) field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A frame larger than `max_frame_len`.
    #[error("frame of {len} bytes exceeds max_frame_len ({max})")]
    FrameTooLarge {
        /// The announced or produced frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Values nested deeper than `max_depth`.
    #[error("value nested deeper than max_depth ({max})")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More requests awaiting replies than `max_pending`.
    #[error("more than max_pending ({max}) requests awaiting replies")]
    TooManyPending {
        /// The limit.
        max: usize,
    },
    /// More objects exported to the peer than `max_exported`.
    #[error("more than max_exported ({max}) objects exported to the peer")]
    TooManyExported {
        /// The limit.
        max: usize,
    },
    /// More peer objects held at once than `max_imported`.
    #[error("more than max_imported ({max}) objects imported from the peer")]
    TooManyImported {
        /// The limit.
        max: usize,
    },
    /// Calls nested deeper than `max_nesting` on one thread (a callback
    /// calling the peer, which calls back, and so on).
    #[error(
        "calls nested deeper than max_nesting ({max}): each callback calling the peer back runs one level deeper on the thread's stack"
    )]
    TooDeeplyNested {
        /// The limit.
        max: usize,
    },
    /// The connections sharing a [`MemoryBudget`](crate::MemoryBudget)
    /// buffered more than it allows, and this one held the most.
    #[error(
        "the connections sharing a memory budget buffer {used} bytes, over its {max}: this one, \
         holding the most ({buffered} bytes), was closed"
    )]
    MemoryBudgetSpent {
        /// What this connection buffered.
        buffered: usize,
        /// What all of them buffered.
        used: usize,
        /// The budget.
        max: usize,
    },
    /// The peer's calls of asynchronous methods already running number
    /// `max_async_calls`; the call is refused, the connection goes on.
    #[error(
        "{max} calls of asynchronous methods are already running, the most max_async_calls allows: \
         the call was refused"
    )]
    TooManyAsyncCalls {
        /// The limit.
        max: usize,
    },
    /// More unsent output than `max_output_buffer`.
    #[error("{queued} bytes of output queued, over max_output_buffer ({max}): the peer is not reading")]
    OutputBufferFull {
        /// Bytes queued.
        queued: usize,
        /// The limit.
        max: usize,
    },
    /// A frame holding more items (values, containers, tags) than
    /// `max_frame_items`: decoded, it would take many times its size.
    #[error("a frame of {len} bytes holds more than max_frame_items ({max}) values")]
    TooManyItems {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An RPyC frame whose zlib payload inflates past `max_frame_len` (a
    /// zlib bomb): refused as the inflating passes the limit, before the
    /// rest is inflated.
    #[error("an RPyC frame inflates past max_frame_len ({max}): refused")]
    InflatesTooLarge {
        /// The limit.
        max: usize,
    },
    /// A frame that began to arrive was not whole within `frame_timeout`
    /// (a peer dribbling its bytes).
    #[error("a frame was not whole {timeout:?} after it began to arrive (frame_timeout): {received} bytes of it came")]
    FrameTimedOut {
        /// The bytes of the frame that had arrived.
        received: usize,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// The memory for what the peer is sending could not be had (the
    /// process's address space or the system's memory is spent): that one
    /// connection ends, the process goes on.
    #[error("no memory for a buffer of {bytes} bytes for the peer's frame: this connection ends")]
    OutOfMemory {
        /// The size of the buffer asked for.
        bytes: usize,
    },
}
