//! Reuse of large byte-string buffers on one thread, so a large payload sent
//! over and over does not fault in fresh pages each time.

use super::cbor::Cbor;

/// Byte strings at least this long reuse the buffer of one sent earlier
/// on this thread (see [`recycle`]); shorter ones are plain allocations.
pub(super) const RECYCLE_MIN: usize = 64 << 10;
/// Larger buffers are not kept for reuse.
const RECYCLE_MAX: usize = 16 << 20;

thread_local! {
    /// The buffer of the last large byte string this thread sent.
    static SPARE_BYTES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Takes back the buffer of the largest byte string in `item`, a message
/// just encoded, for the next large byte string this thread decodes.
///
/// A megabyte freed after sending and another allocated for the next
/// message received would otherwise come from fresh memory every time
/// (the allocator returns the freed top of its heap to the kernel, and
/// every page of the next buffer faults in again): an echo server or a
/// client sending and receiving payloads in turn spent a third of its time
/// in page faults.
pub(crate) fn recycle(item: Cbor) {
    fn largest(item: Cbor, depth: usize, best: &mut Vec<u8>) {
        match item {
            Cbor::Bytes(b) if b.capacity() > best.capacity() && b.capacity() <= RECYCLE_MAX => *best = b,
            // A message's values sit at most a few levels down.
            Cbor::Array(items) if depth < 4 => items.into_iter().for_each(|i| largest(i, depth + 1, best)),
            _ => {}
        }
    }
    let mut best = Vec::new();
    largest(item, 0, &mut best);
    keep_spare(best);
}

/// `bytes` in a new `Vec`, in the recycled buffer when it fits snugly.
pub(super) fn copy_bytes(bytes: &[u8]) -> Vec<u8> {
    match take_spare(bytes.len()) {
        Some(mut spare) => {
            spare.clear();
            spare.extend_from_slice(bytes);
            spare
        }
        None => bytes.to_vec(),
    }
}

/// Takes the spare buffer (see [`recycle`]) when it suits a byte string of
/// `len` bytes: big enough, and not more than twice the size (the buffer
/// is handed to the caller).
pub(super) fn take_spare(len: usize) -> Option<Vec<u8>> {
    if len < RECYCLE_MIN {
        return None;
    }
    let spare = SPARE_BYTES.try_with(|spare| spare.take()).ok()?;
    (spare.capacity() >= len && spare.capacity() / 2 <= len).then_some(spare)
}

/// Keeps `bytes`, a large byte string's buffer this thread is done with,
/// for the next large byte string it receives.
pub(super) fn keep_spare(bytes: Vec<u8>) {
    if (RECYCLE_MIN..=RECYCLE_MAX).contains(&bytes.capacity()) {
        // `try_with`: a connection may close (and send) while the thread's
        // locals are being destroyed; the buffer is then simply freed.
        let _ = SPARE_BYTES.try_with(|spare| spare.set(bytes));
    }
}
