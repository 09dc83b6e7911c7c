//! The decoding budget: how many items a frame may hold, counted on its
//! heads (ciborium-ll) before anything is decoded.
//!
//! A decoded item costs far more than its bytes on the wire: a small
//! integer is one byte in CBOR and a 32-byte [`Cbor`](super::Cbor) (then a
//! [`Value`](crate::Value)) in memory, so a frame of small integers decoded
//! whole takes some 30 times its size. Counting the items first bounds what
//! any frame can make this side allocate: its bytes (strings are copied
//! once) plus the item limit times the size of an item, whatever the peer
//! sends.

use ciborium_ll::{Decoder, Header};

/// The items in `body` (one per CBOR head: a value, a container, a tag, a
/// chunk of a string written in pieces), counting no further than
/// `limit + 1`: enough to tell a frame over `limit`. Strings are skipped,
/// not read. Malformed input ends the count (its decoder reports why).
pub(crate) fn count_items(body: &[u8], limit: usize) -> usize {
    count_items_from(body, 0, limit).0
}

/// [`count_items`] from the head at `start`, for a body still arriving:
/// the items counted, and where to resume once more of the body is here
/// (the first head not whole yet, or the end of a string not all here).
/// Counting a body in pieces this way gives the same total as counting it
/// whole.
pub(crate) fn count_items_from(body: &[u8], mut start: usize, limit: usize) -> (usize, usize) {
    let mut items = 0;
    while start < body.len() && items <= limit {
        let mut heads = Decoder::from(&body[start..]);
        loop {
            // Where this head begins, to resume at if it is not whole.
            let at = start + heads.offset();
            let Ok(head) = heads.pull() else { return (items, at) };
            items += 1;
            if let Header::Bytes(Some(len)) | Header::Text(Some(len)) = head {
                // Resume past the string's content, which is not heads.
                start = start.saturating_add(heads.offset()).saturating_add(len);
                break;
            }
            if items > limit {
                return (items, start + heads.offset());
            }
        }
    }
    (items, start)
}

#[cfg(test)]
mod tests {
    use super::{count_items, count_items_from};
    use crate::wire::Cbor;

    fn encode(item: &Cbor) -> Vec<u8> {
        let mut frame = Vec::new();
        crate::wire::encode_frame(item, &mut frame, usize::MAX).unwrap();
        frame.split_off(crate::wire::HEADER_LEN)
    }

    #[test]
    fn counts_every_item_and_skips_strings_whole() {
        let body = encode(&Cbor::Array(vec![
            Cbor::Integer(1),
            Cbor::Bytes(vec![0x81; 1000]), // bytes that would read as heads
            Cbor::Text("\u{1}\u{2}".repeat(50)),
            Cbor::Map(vec![(Cbor::Integer(2), Cbor::Tag(5, Box::new(Cbor::Null)))]),
        ]));
        // array, 1, bytes, text, map, 2, tag, null
        assert_eq!(count_items(&body, 100), 8);
        assert_eq!(count_items(&body, 3), 4, "stops one past the limit");
    }

    #[test]
    fn counts_indefinite_containers_and_chunked_strings() {
        // [_ 1, (_ h'01', h'02'), 3] with a break after each indefinite item
        let body = [0x9f, 0x01, 0x5f, 0x41, 0x01, 0x41, 0x02, 0xff, 0x03, 0xff];
        // array, 1, bytes (indefinite), two chunks, break, 3, break
        assert_eq!(count_items(&body, 100), 8);
    }

    #[test]
    fn counting_in_pieces_gives_the_whole_count() {
        let body = encode(&Cbor::Array(vec![
            Cbor::Integer(1),
            Cbor::Integer(1 << 40),
            Cbor::Bytes(vec![0x81; 300]),
            Cbor::Text("x".repeat(30)),
            Cbor::Map(vec![(Cbor::Integer(2), Cbor::Tag(5, Box::new(Cbor::Float(1.5))))]),
            Cbor::Array((0..40).map(Cbor::Integer).collect()),
        ]));
        let whole = count_items(&body, 1000);
        for step in [1, 2, 3, 7, 64] {
            let (mut items, mut at) = (0, 0);
            let mut have = 0;
            while have < body.len() {
                have = (have + step).min(body.len());
                let (n, next) = count_items_from(&body[..have], at, 1000 - items);
                items += n;
                at = next;
            }
            assert_eq!(items, whole, "arriving {step} bytes at a time");
        }
        // Past the limit, the count stops one over it, in pieces too.
        let many = encode(&Cbor::Array((0..40).map(Cbor::Integer).collect()));
        let (n, at) = count_items_from(&many[..10], 0, 5);
        assert_eq!((n, at), (6, 7), "the array's two-byte head and five one-byte integers");
    }

    #[test]
    fn a_string_claiming_more_than_the_body_ends_the_count() {
        let body = [0x82, 0x5a, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(count_items(&body, 100), 2);
    }
}
