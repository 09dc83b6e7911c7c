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
    let mut items = 0;
    // Where the heads after the last string skipped begin.
    let mut start = 0;
    while start < body.len() && items <= limit {
        let mut heads = Decoder::from(&body[start..]);
        loop {
            let Ok(head) = heads.pull() else { return items };
            items += 1;
            if items > limit {
                return items;
            }
            if let Header::Bytes(Some(len)) | Header::Text(Some(len)) = head {
                // Resume past the string's content, which is not heads.
                start = start.saturating_add(heads.offset()).saturating_add(len);
                break;
            }
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::count_items;
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
    fn a_string_claiming_more_than_the_body_ends_the_count() {
        let body = [0x82, 0x5a, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(count_items(&body, 100), 2);
    }
}
