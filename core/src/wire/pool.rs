//! [`BufferPool`]: spare buffers for large byte strings, and where their
//! bytes may be copied to and from ([`Placement`]). Owned by whoever builds
//! connections and handed to each protocol, so a large payload sent and
//! received over and over does not fault in fresh pages every time, and no
//! decision of the wire layer depends on where the allocator put a buffer
//! unless the pool says so.

use std::sync::{Arc, Mutex, PoisonError};

use super::cbor::Cbor;
use super::large::{LEND_SLACK, RESERVE_FIRST};
use crate::error::{LimitError, Result};

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
///
/// The pool also decides whether a large byte string's bytes are copied by
/// the kernel straight to and from its own buffer, or through the frame's:
/// its [`Placement`]. A pool made with [`Placement::InPlace`] makes every
/// protocol it is handed to deterministic (the same bytes and times in give
/// the same bytes, events and buffer lending out); the default avoids a
/// CPU's page-aliasing stall at the price of looking at buffer addresses.
#[derive(Clone, Default)]
pub struct BufferPool {
    spares: Arc<Mutex<Vec<Vec<u8>>>>,
    placement: Placement,
}

/// Where the kernel may copy a large byte string's bytes: straight from its
/// buffer on send (a vectored write) and straight into it on receive, or
/// through the frame's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// Always straight to and from the string's own buffer, wherever the
    /// allocator put it: no decision depends on an address.
    InPlace,
    /// In place, except where the copy would be slowed by 4 KiB aliasing
    /// (the destination lies 1 to 256 bytes ahead of the source modulo a
    /// page): then through the frame's buffer. On the machine the
    /// benchmarks run on, a 1 MiB echo over TCP ran at 817 MiB/s in place
    /// and 1,925-1,981 MiB/s with this (2026-12-02, `harness --only payload
    /// --secs 2`, two builds side by side; see the issue 12 note).
    #[default]
    AvoidPageAliasing,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("spares", &self.spare_count())
            .field("placement", &self.placement)
            .finish()
    }
}

impl BufferPool {
    /// An empty pool with the default [`Placement`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pool that places large byte strings as `placement` says.
    pub fn with_placement(placement: Placement) -> Self {
        BufferPool { placement, ..Self::default() }
    }

    /// How this pool places large byte strings.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Whether the kernel may copy a large byte string from `src` to `dst`
    /// in place (addresses, or offsets in the kernel's socket pages, which
    /// start at a page).
    pub(super) fn in_place(&self, src: usize, dst: usize) -> bool {
        match self.placement {
            Placement::InPlace => true,
            Placement::AvoidPageAliasing => !aliased(src, dst),
        }
    }

    /// The buffer a large string `len` bytes long, `offset` bytes into its
    /// frame, is received into: a spare when one suits, else a fresh one
    /// with room to read past the string.
    ///
    /// Under [`Placement::AvoidPageAliasing`], a spare suits unless the
    /// kernel's copies to and from it would alias: this receive's, or the
    /// send it may go back out in (its head a few dozen bytes long). glibc
    /// places every large block it maps 16 bytes into a page, where both do
    /// for usual heads, and a recycled buffer would keep that place for
    /// good; a fresh block (from the heap once one was unmapped) usually
    /// lies elsewhere. When it does not, the spare is kept and the string
    /// is copied in.
    ///
    /// A fresh buffer is reserved for at most [`RESERVE_FIRST`] bytes: a
    /// longer string's buffer grows as it arrives (see `LargeString`), so a
    /// forged length reserves no more than that. The reservation is
    /// fallible: [`LimitError::OutOfMemory`] ends the connection, not the
    /// process.
    pub(super) fn receive_buffer(&self, len: usize, offset: usize) -> Result<Vec<u8>> {
        let spare = self.take(len);
        let reserve = || -> Result<Vec<u8>> {
            let bytes = (len + LEND_SLACK).min(RESERVE_FIRST);
            let mut fresh = Vec::new();
            fresh.try_reserve_exact(bytes).map_err(|_| LimitError::OutOfMemory { bytes })?;
            Ok(fresh)
        };
        if self.placement == Placement::InPlace {
            return spare.map_or_else(reserve, Ok);
        }
        let suits = |buf: &Vec<u8>| {
            let page_offset = buf.as_ptr() as usize % 4096;
            !aliased(offset, buf.as_ptr() as usize)
                && (SEND_HEAD_MAX..=4096 - ALIASING_WINDOW as usize).contains(&page_offset)
        };
        if spare.as_ref().is_some_and(suits) {
            return Ok(spare.expect("checked"));
        }
        let fresh = reserve()?;
        Ok(match spare {
            Some(spare) if !suits(&fresh) => spare,
            _ => fresh,
        })
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

/// A source `(dst - src) mod 4096` bytes behind its destination, for
/// distances up to this, is not copied in place under
/// [`Placement::AvoidPageAliasing`].
pub(super) const ALIASING_WINDOW: isize = 256;

/// Whether a copy from `src` to `dst` is slowed by aliasing: `dst` lies 1
/// to [`ALIASING_WINDOW`] bytes ahead of `src` modulo a page. Addresses are
/// only compared.
pub(super) fn aliased(src: usize, dst: usize) -> bool {
    let ahead = (dst as isize).wrapping_sub(src as isize).rem_euclid(4096);
    (1..=ALIASING_WINDOW).contains(&ahead)
}

/// Heads of frames carrying a large string are assumed shorter than this
/// when choosing a buffer for it (see [`BufferPool::receive_buffer`]).
const SEND_HEAD_MAX: usize = 320;
