#!/usr/bin/env python3
"""Writes small seed corpora of valid netref frames (run from fuzz/)."""
import os
import struct

TAG_SENDER, TAG_RECEIVER = 0x74650001, 0x74650002


def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)


def cbor(v):
    if v is None:
        return b"\xf6"
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, float):
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(map(cbor, v))
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    if isinstance(v, tuple):  # (tag, value)
        return head(6, v[0]) + cbor(v[1])
    raise TypeError(v)


def frame(v):
    body = cbor(v)
    return struct.pack(">I", len(body)) + body


HELLO = [0, "netref", 1, 0]
MESSAGES = {
    "hello": [HELLO],
    "root": [HELLO, [1, 1, 0]],
    "call_method": [HELLO, [1, 2, 2, 1, "add", [1, -2, 3.5]]],
    "call_objects": [HELLO, [1, 3, 1, 1, [(TAG_SENDER, 7), (TAG_RECEIVER, 1), {"k": [None, True]}]]],
    "getattr_dir": [HELLO, [1, 4, 3, 1, "version"], [1, 5, 4, 1]],
    "ping": [HELLO, [1, 6, 5, [b"\x00\xff", "text", [[[]]]]]],
    "release_cancel_close": [HELLO, [1, 0, 6, [[1, 1], [2, 3]]], [1, 0, 7, 6], [1, 0, 8, "bye"]],
    "reply_error": [HELLO, [2, 1, (TAG_SENDER, 1)], [3, 2, "ValueError", "bad", ["tb1", "tb2"]]],
}

for target, prefix in (("frame_decode", b"\x00"), ("protocol", b"")):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    for name, msgs in MESSAGES.items():
        data = b"".join(frame(m) for m in msgs)
        with open(f"corpus/{target}/{name}", "wb") as f:
            f.write(prefix + data)
# Split differently: one byte at a time and in 7-byte steps.
for step in (1, 7):
    data = b"".join(frame(m) for m in MESSAGES["call_objects"])
    with open(f"corpus/frame_decode/call_objects_step{step}", "wb") as f:
        f.write(bytes([step - 1]) + data)

# large_frame: [head length / 2, tail length, length delta, flags, head, tail,
# read sizes]; the target puts a 64 KiB + 100 byte string between head and
# tail (see fuzz_targets/large_frame.rs). Flags: 1 = read through the lent
# buffer, 2 = end of stream after the frame.
PING_HEAD = bytes([0x84, 0x01, 0x07, 0x05])                           # [1, 7, Ping, <string>]
CALL_HEAD = bytes([0x86, 0x01, 0x08, 0x02, 0x00, 0x65]) + b"echo2"    # [1, 8, CallMethod, 0, "echo2", ...
LARGE_FRAME = {
    "ping_lent": (PING_HEAD, b"", 0, 1, [0, 16, 200, 255, 3]),
    "ping_bytes": (PING_HEAD, b"", 0, 0, [0, 16, 200, 255, 3]),
    "call_lent_eof": (CALL_HEAD + b"\x81", b"", 0, 3, [1, 50, 107]),          # ... [<string>]]
    "call_tail_lent": (CALL_HEAD + b"\x82", b"\x07", 0, 1, [0, 0, 255, 9]),   # ... [<string>, 7]]
    "frame_too_short": (PING_HEAD, b"", -1, 1, [7, 77, 177]),
    "frame_too_long_eof": (CALL_HEAD + b"\x82", b"\x07", 3, 3, [255, 255]),
}
os.makedirs("corpus/large_frame", exist_ok=True)
for name, (h, t, delta, flags, steps) in LARGE_FRAME.items():
    with open(f"corpus/large_frame/{name}", "wb") as f:
        f.write(bytes([len(h) // 2, len(t), delta & 0xFF, flags]) + h + t + bytes(steps))
