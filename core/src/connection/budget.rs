//! The memory budget many connections share: the bytes they buffer (output
//! the peer has not read, the frame arriving), counted together, and the
//! connection holding the most closed when the total passes the budget.
//!
//! Each connection's limits (`max_output_buffer`, `max_frame_len`) bound
//! one connection; a server with many peers flooding at once could still
//! hold many times them. The budget caps the sum.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::state::{After, State};
use super::Shared;
use crate::error::LimitError;

/// How many bytes a builder's connections may buffer together by default
/// (see [`MemoryBudget`]): 1 GiB, four connections' `max_output_buffer`.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 30;

/// A cap on the bytes that many connections buffer together: output
/// queued for peers that do not read it, and frames still arriving.
///
/// Every connection a [`Builder`](crate::Builder) starts (and those of
/// its clones: a server's) shares the builder's budget, of
/// [`DEFAULT_MEMORY_BUDGET`] unless [`Builder::memory_budget`](crate::Builder::memory_budget)
/// gives another. When the bytes buffered by all of them pass the budget,
/// the connection holding the most is closed with
/// [`LimitError::MemoryBudgetSpent`](crate::error::LimitError::MemoryBudgetSpent),
/// so that a few peers flooding without reading cannot take the process's
/// memory; the others go on. A closed connection stops counting at once
/// (its buffers go when its last handle does, which a server lets go of
/// at once).
///
/// Cheap to clone: clones are the same budget.
///
/// ```
/// use netref::{Builder, MemoryBudget};
///
/// // Every connection of both servers' builders together: at most 256 MiB.
/// let budget = MemoryBudget::new(256 << 20);
/// let public = Builder::default().memory_budget(&budget);
/// let admin = Builder::default().memory_budget(&budget);
/// assert_eq!(budget.used(), 0);
/// # let _ = (public, admin);
/// ```
#[derive(Clone)]
pub struct MemoryBudget(Arc<Inner>);

struct Inner {
    max: usize,
    /// The sum of the members' charges.
    used: AtomicUsize,
    /// The connections that share the budget (some gone: pruned as it
    /// grows, and when a victim is chosen).
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    list: Vec<Weak<Shared>>,
    /// `list`'s length after the last pruning: it is pruned again when it
    /// doubles, so registering costs O(1) amortised.
    pruned_at: usize,
}

impl MemoryBudget {
    /// A budget of `max_bytes` for the connections that share it.
    pub fn new(max_bytes: usize) -> MemoryBudget {
        MemoryBudget(Arc::new(Inner {
            max: max_bytes,
            used: AtomicUsize::new(0),
            members: Default::default(),
        }))
    }

    /// The budget, in bytes.
    pub fn max(&self) -> usize {
        self.0.max
    }

    /// The bytes its connections buffer now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Acquire)
    }

    /// Counts a new connection in.
    pub(super) fn register(&self, shared: Weak<Shared>) {
        let mut members = self.0.members.lock().unwrap_or_else(|e| e.into_inner());
        if members.list.len() >= 2 * members.pruned_at.max(16) {
            members.list.retain(|m| m.strong_count() > 0);
            members.pruned_at = members.list.len();
        }
        members.list.push(shared);
    }

    /// Moves a connection's charge from `before` to `now` bytes; true when
    /// the budget is spent afterwards.
    fn recharge(&self, before: usize, now: usize) -> bool {
        if now > before {
            let used = self.0.used.fetch_add(now - before, Ordering::AcqRel) + (now - before);
            used > self.0.max
        } else {
            self.0.used.fetch_sub(before - now, Ordering::AcqRel);
            false
        }
    }

    /// Closes the connection holding the most, while the budget is spent.
    fn close_largest(&self) {
        let victim = {
            let members = self.0.members.lock().unwrap_or_else(|e| e.into_inner());
            // Another thread may have closed one meanwhile.
            if self.used() <= self.0.max {
                return;
            }
            members.list.iter().filter_map(Weak::upgrade).max_by_key(|m| m.charged.load(Ordering::Acquire))
        };
        let Some(victim) = victim else { return };
        let buffered = victim.charged.load(Ordering::Acquire);
        let error = LimitError::MemoryBudgetSpent { buffered, used: self.used(), max: self.0.max };
        victim.fail_with(error);
    }
}

impl Default for MemoryBudget {
    /// A budget of [`DEFAULT_MEMORY_BUDGET`].
    fn default() -> Self {
        MemoryBudget::new(DEFAULT_MEMORY_BUDGET)
    }
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget").field("max", &self.max()).field("used", &self.used()).finish()
    }
}

impl Shared {
    /// Brings the connection's charge on its budget up to date with what
    /// it buffers now (nothing once closed). A spent budget closes the
    /// connection holding the most, once the lock is released.
    pub(super) fn charge(&self, st: &State, after: &mut Vec<After>) {
        let now = if st.closed.is_some() { 0 } else { st.proto.buffered_len() };
        let before = self.charged.swap(now, Ordering::AcqRel);
        if now != before && self.budget.recharge(before, now) {
            after.push(After::OverBudget);
        }
    }

    /// Acts on a spent budget (with no lock held).
    pub(super) fn enforce_budget(&self) {
        self.budget.close_largest();
    }

    /// Ends the connection for `error`: its pending calls fail, its peer's
    /// requests are dropped, whoever serves it learns at once.
    fn fail_with(&self, error: LimitError) {
        let mut after = Vec::new();
        {
            let mut st = self.lock();
            st.proto.fail_for(error);
            self.process_events(&mut st, &mut after);
            self.charge(&st, &mut after);
            self.wake_driver(&st);
        }
        self.finish(after);
    }
}
