//! RPyC's frames (`rpyc/core/channel.py`; `RPYC-WIRE.md` §1):
//!
//! ```text
//! u32 length (big-endian) | u8 compressed | payload[length] | "\n"
//! ```
//!
//! `length` counts the payload as sent, so a frame is `length + 6` bytes;
//! a payload flagged compressed is a zlib stream (RFC 1950, what Python's
//! `zlib.compress` makes). Python compresses payloads over 3000 bytes and
//! accepts uncompressed ones of any size: netref never compresses (on the
//! links RPC runs over, deflating costs more time than it saves), and
//! inflates what it receives within the frame limit, so a zlib bomb is
//! refused as it passes the limit rather than inflated whole.

use std::borrow::Cow;
use std::io::Read;

use crate::error::{DecodeError, LimitError, Result};
use crate::wire::{FrameDecoder, HEADER_LEN};

/// Bytes of a frame its header does not count: the flag and the newline.
const UNCOUNTED: usize = 2;

/// The newline that ends every frame (Python's `FLUSHER`).
const TRAILER: u8 = b'\n';

/// A decoder of RPyC frames: [`FrameDecoder`] with the flag and newline.
pub(crate) fn frame_decoder() -> FrameDecoder {
    FrameDecoder::with_uncounted(UNCOUNTED)
}

/// The payload of one frame body as [`frame_decoder`] cuts it (flag,
/// payload as sent, newline), inflated if it was compressed: at most
/// `max_len` bytes either way.
pub(crate) fn open_frame(body: &[u8], max_len: usize) -> Result<Cow<'_, [u8]>> {
    let (&flag, rest) = body.split_first().expect("a frame holds its flag");
    let (&trailer, payload) = rest.split_last().expect("a frame holds its newline");
    if trailer != TRAILER {
        // Python drops this byte unchecked; a frame without it means the
        // two sides no longer agree where frames start.
        return Err(DecodeError::Malformed(format!(
            "an RPyC frame must end with a newline, not byte 0x{trailer:02x} (the stream is out of step)"
        ))
        .into());
    }
    if flag == 0 {
        return Ok(Cow::Borrowed(payload));
    }
    let mut inflated = Vec::new();
    // One byte past the limit tells a payload that reaches it from one
    // that passes it.
    flate2::read::ZlibDecoder::new(payload).take(max_len as u64 + 1).read_to_end(&mut inflated).map_err(
        |e| DecodeError::Malformed(format!("an RPyC frame's compressed payload is not zlib data ({e})")),
    )?;
    if inflated.len() > max_len {
        return Err(LimitError::InflatesTooLarge { max: max_len }.into());
    }
    Ok(Cow::Owned(inflated))
}

/// Appends a frame holding `payload`, uncompressed, to `out`; fails,
/// appending nothing, when the payload is longer than `max_len`.
pub(crate) fn write_frame(payload: &[u8], out: &mut Vec<u8>, max_len: usize) -> Result<()> {
    if payload.len() > max_len || payload.len() > u32::MAX as usize {
        return Err(LimitError::FrameTooLarge { len: payload.len(), max: max_len }.into());
    }
    out.reserve(HEADER_LEN + UNCOUNTED + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.push(0);
    out.extend_from_slice(payload);
    out.push(TRAILER);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn cut(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut decoder = frame_decoder();
        decoder.push(bytes).unwrap();
        let mut frames = Vec::new();
        while let Some(body) = decoder.next_frame(1 << 20).unwrap() {
            frames.push(open_frame(body, 1 << 20).unwrap().into_owned());
        }
        decoder.finish().unwrap();
        frames
    }

    #[test]
    fn python_getroot_frame_is_cut_and_opened() {
        // `c.root`'s first frame, as rpyc 6.0.2 sends it (RPYC-WIRE.md §4).
        let frame = [0, 0, 0, 8, 0, 0x01, 0x11, 0x50, 0x11, 0x53, 0x11, 0x51, 0x02, 0x0a];
        assert_eq!(cut(&frame), vec![frame[5..13].to_vec()]);
        let mut written = Vec::new();
        write_frame(&frame[5..13], &mut written, 100).unwrap();
        assert_eq!(written, frame);
    }

    #[test]
    fn frames_split_at_every_byte_are_cut_the_same() {
        let mut stream = Vec::new();
        write_frame(b"one", &mut stream, 100).unwrap();
        write_frame(b"", &mut stream, 100).unwrap();
        write_frame(b"three", &mut stream, 100).unwrap();
        let mut decoder = frame_decoder();
        let mut frames = Vec::new();
        for b in &stream {
            decoder.push(std::slice::from_ref(b)).unwrap();
            while let Some(body) = decoder.next_frame(100).unwrap() {
                frames.push(open_frame(body, 100).unwrap().into_owned());
            }
        }
        assert_eq!(frames, [b"one".to_vec(), Vec::new(), b"three".to_vec()]);
    }

    fn compressed(payload: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(payload).unwrap();
        let z = z.finish().unwrap();
        let mut frame = (z.len() as u32).to_be_bytes().to_vec();
        frame.push(1);
        frame.extend_from_slice(&z);
        frame.push(b'\n');
        frame
    }

    #[test]
    fn compressed_payloads_are_inflated() {
        let payload = vec![7u8; 5000];
        assert_eq!(cut(&compressed(&payload)), vec![payload]);
    }

    #[test]
    fn a_zlib_bomb_is_refused_at_the_limit() {
        // 64 MiB of zeros deflate to about 64 KiB.
        let frame = compressed(&vec![0u8; 64 << 20]);
        assert!(frame.len() < 1 << 20);
        let mut decoder = frame_decoder();
        decoder.push(&frame).unwrap();
        let body = decoder.next_frame(1 << 20).unwrap().unwrap();
        let e = open_frame(body, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("inflates past max_frame_len (1048576)"), "{e}");
    }

    #[test]
    fn bad_frames_are_named() {
        let mut decoder = frame_decoder();
        decoder.push(&[0, 0, 0, 1, 0, b'x', b'y']).unwrap();
        let e = open_frame(decoder.next_frame(100).unwrap().unwrap(), 100).unwrap_err();
        assert!(e.to_string().contains("must end with a newline, not byte 0x79"), "{e}");

        let mut decoder = frame_decoder();
        decoder.push(&[0, 0, 0, 2, 1, 0xff, 0xff, b'\n']).unwrap();
        let e = open_frame(decoder.next_frame(100).unwrap().unwrap(), 100).unwrap_err();
        assert!(e.to_string().contains("is not zlib data"), "{e}");

        let mut decoder = frame_decoder();
        decoder.push(&[0, 0, 0, 9, 0]).unwrap();
        assert!(decoder.next_frame(100).unwrap().is_none());
        let e = decoder.finish().unwrap_err();
        assert!(e.to_string().contains("announced 15 bytes"), "{e}");
    }
}
