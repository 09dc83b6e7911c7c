//! Hashing for this side's own sequence numbers.

/// Hashes the sequence numbers that key the maps of calls in flight
/// (`Connection`'s result slots, the protocol's pending and expired
/// calls). They are this side's own counter: the peer can look one up but
/// never choose what is inserted, so they need no defence against
/// collisions, and SipHash (a few percent of a synchronous call's
/// user-space time) buys nothing. One multiplication spreads consecutive
/// numbers over the table.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct SeqHash;

impl std::hash::BuildHasher for SeqHash {
    type Hasher = SeqHasher;
    fn build_hasher(&self) -> SeqHasher {
        SeqHasher(0)
    }
}

/// The hasher of [`SeqHash`].
pub(crate) struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
