//! [`BufferPool`]: spare buffers for large byte strings, owned by whoever
//! builds connections and handed to each protocol, so a large payload sent
//! and received over and over does not fault in fresh pages every time.

use std::sync::{Arc, Mutex, PoisonError};

use super::cbor::Cbor;

/// Byte strings at least this long reuse a spare buffer from the pool (see
/// [`BufferPool`]); shorter ones are plain allocations.
pub(super) const RECYCLE_MIN: usize = 64 << 10;
/// Larger buffers are not kept for reuse.
const RECYCLE_MAX: usize = 16 << 20;
/// Spare buffers one pool keeps at most: one per connection busy with large
/// payloads at the same time, for a few of them.
const SPARES_MAX: usize = 4;

/// Spare buffers for large byte strings (64 KiB to 16 MiB), shared by the
/// connections of one [`Builder`](crate::Builder) (a server's connections
/// share its builder's pool; see
/// [`Builder::buffer_pool`](crate::Builder::buffer_pool)).
///
/// A megabyte freed after sending and another allocated for the next
/// message received would otherwise come from fresh memory every time (the
/// allocator returns the freed top of its heap to the kernel, and every page
/// of the next buffer faults in again): an echo server or a client sending
/// and receiving payloads in turn spent a third of its time in page faults.
/// The pool keeps at most four buffers, so it costs at most 64 MiB however
/// many connections share it, and a connection that never moves large
/// payloads never touches it. What is in the pool only changes where a
/// byte string's bytes live, never what a protocol reads or writes.
///
/// ```
/// let pool = netref::wire::BufferPool::new();
/// let builder = netref::Builder::default().buffer_pool(&pool);
/// # let _ = builder;
/// ```
#[derive(Clone, Default)]
pub struct BufferPool {
    spares: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool").field("spares", &self.spare_count()).finish()
    }
}

impl BufferPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many spare buffers the pool holds now.
    pub fn spare_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A buffer list is valid whatever a panicking holder was doing.
        self.spares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the buffer of the largest byte string in `item`, a message just
    /// encoded, for the next large byte string a connection decodes.
    pub(crate) fn recycle(&self, item: Cbor) {
        fn largest(item: Cbor, depth: usize, best: &mut Vec<u8>) {
            match item {
                Cbor::Bytes(b) if b.capacity() > best.capacity() && b.capacity() <= RECYCLE_MAX => *best = b,
                // A message's values sit at most a few levels down.
                Cbor::Array(items) if depth < 4 => {
                    items.into_iter().for_each(|i| largest(i, depth + 1, best))
                }
                _ => {}
            }
        }
        let mut best = Vec::new();
        largest(item, 0, &mut best);
        self.keep(best);
    }

    /// `bytes` in a new `Vec`, in a spare buffer when one fits snugly.
    pub(super) fn copy(&self, bytes: &[u8]) -> Vec<u8> {
        match self.take(bytes.len()) {
            Some(mut spare) => {
                spare.clear();
                spare.extend_from_slice(bytes);
                spare
            }
            None => bytes.to_vec(),
        }
    }

    /// A spare buffer that suits a byte string of `len` bytes: big enough,
    /// and not more than twice the size (the buffer is handed to the caller).
    pub(super) fn take(&self, len: usize) -> Option<Vec<u8>> {
        if len < RECYCLE_MIN {
            return None;
        }
        let mut spares = self.lock();
        let i = spares.iter().position(|s| s.capacity() >= len && s.capacity() / 2 <= len)?;
        Some(spares.swap_remove(i))
    }

    /// Keeps `bytes`, a large byte string's buffer a connection is done
    /// with, for the next large byte string one receives. A full pool drops
    /// its smallest buffer for a larger one.
    pub(super) fn keep(&self, bytes: Vec<u8>) {
        if !(RECYCLE_MIN..=RECYCLE_MAX).contains(&bytes.capacity()) {
            return;
        }
        let mut spares = self.lock();
        if spares.len() < SPARES_MAX {
            spares.push(bytes);
        } else if let Some(smallest) = spares.iter_mut().min_by_key(|s| s.capacity()) {
            if smallest.capacity() < bytes.capacity() {
                *smallest = bytes;
            }
        }
    }
}
