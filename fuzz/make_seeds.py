#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/.

The seeds come from the project's own inputs: lines of the venue captures in feeds/,
control messages and published ticks as docs/protocol.md shows them, a capture laid
out as docs/protocol.md specifies, and the WebSocket frames of tests/conformance.rs.
Run it again after changing any of those; the output is deterministic.

    python3 fuzz/make_seeds.py
"""

import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def frame(fin, opcode, payload, rsv=0):
    """A masked client frame, the length in its shortest form."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


def text(s):
    return frame(True, OP_TEXT, s.encode() if isinstance(s, str) else s)


def close(code, reason=b""):
    return frame(True, OP_CLOSE, struct.pack(">H", code) + reason)


SUBSCRIBE = '{"op":"subscribe","symbols":["SYM0","SYM1"],"format":"json","max_rate":2}'
CONTROL = [
    SUBSCRIBE,
    '{"op":"subscribe","symbols":["*"]}',
    '{"op":"subscribe","symbols":["S0","S1"],"format":"binary","id":7}',
    '{"op":"subscribe","symbols":["SYM0","SYM1"],"resume":{"SYM0":4211,"SYM1":977},"id":"resubscribe-2"}',
    '{"op":"subscribe","symbols":["S0"],"max_rate":1e-20}',
    '{"op":"subscribe","symbols":["S0"],"max_rate":0}',
    '{"op":"unsubscribe","symbols":["SYM0"]}',
    '{"op":"unsubscribe","symbols":["*"]}',
    '{"op":"frobnicate"}',
    '{"symbols":["A"]}',
    '{"op":"subscribe","symbols":[]}',
    '{"op":"subscribe","symbols":["A"],"format":"xml"}',
    '{"op":"subscribe","symbols":["A"],"max_rate":-1}',
    '[1]',
    '{',
]

# The frame sequences of the conformance suite's families.
FRAMES = {
    "text": text("Hello"),
    "binary_126": frame(True, OP_BINARY, bytes(range(126))),
    "binary_65536": frame(True, OP_BINARY, b"\x01" * 65536),
    "ping_pong": frame(True, OP_PING, b"ping") + frame(True, OP_PONG, b"unsolicited"),
    "fragmented": frame(False, OP_TEXT, b"frag") + frame(True, OP_PING, b"x")
    + frame(False, OP_CONT, b"men") + frame(True, OP_CONT, b"ted"),
    "utf8_split": frame(False, OP_TEXT, b"\xe2\x82") + frame(True, OP_CONT, b"\xac"),
    "utf8_invalid": text(b"\xce\xba\xed\xa0\x80edited"),
    "rsv": frame(True, OP_TEXT, b"rsv", rsv=2),
    "reserved_opcode": frame(True, 0xB, b""),
    "close": text("bye") + close(1000, b"Hello World!"),
    "close_invalid": close(1005),
    "continuation_orphan": frame(True, OP_CONT, b"orphan"),
    "unmasked": b"\x81\x02hi",
    "control": b"".join(text(m) for m in CONTROL[:8]),
}


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def capture(blocks, symbols):
    """A capture (docs/protocol.md, Capture files): header, JSON, entries."""
    meta = json.dumps({"created_at_ns": 1795312649479377653, "symbols": symbols,
                       "source": "ws://127.0.0.1:9001/ws"}).encode()
    out = b"TCREC1" + struct.pack("<HQII", 2, 1795312649479377653, len(meta), 0)
    out += meta + b"\0" * (-len(meta) % 8)

    def entry(kind, payload):
        return struct.pack("<IB3x", len(payload), kind) + payload + b"\0" * (-len(payload) % 8)

    for messages in blocks:
        headers = b"".join(struct.pack("<HHIQ", 1, 72, len(m), 1795312649479377653 + i)
                           for i, m in enumerate(messages))
        records = b"".join(r for m in messages for r in m)
        n, m = len(messages), sum(len(x) for x in messages)
        out += entry(1, struct.pack("<II", n, m) + headers + records)
        out += entry(2, json.dumps({"type": "symbols", "symbols": symbols}).encode())
    return out


def record(kind, sym, seq, values):
    return struct.pack("<BBHIQQQII4q", kind, 0, 0, sym, seq, 1795312649479377653,
                       1795312649479465469, 1, 0, *values)


def main():
    shutil.rmtree(OUT, ignore_errors=True)

    # Control messages.
    for i, m in enumerate(CONTROL):
        write("control_message", f"{i:02}", m.encode())

    # WebSocket frames: [limit lo, limit hi, cut seed] + frames.
    for name, wire in FRAMES.items():
        write("frame_reader", name, b"\xff\xff\x07" + wire)
        write("frame_reader", name + "_small_limit", b"\x40\x00\x2b" + wire)

    # The whole core: [which connection, window, cut seed] + frames; the echo
    # connection gets the frame families, the subscriber control messages.
    for name, wire in FRAMES.items():
        if len(wire) <= 4096:
            write("core_input", "echo_" + name, b"\x00\x04\x07" + wire)
    write("core_input", "subscriber_control", b"\x01\x10\x07" + FRAMES["control"])
    write("core_input", "subscriber_slow", b"\x01\x00\x2b"
          + text('{"op":"subscribe","symbols":["*"],"format":"json"}')
          + frame(True, OP_PING, b"p") * 20)
    write("core_input", "subscriber_rate", b"\x01\x40\x11"
          + text('{"op":"subscribe","symbols":["S0","S1"],"max_rate":2}')
          + text('{"op":"subscribe","symbols":["S2"],"resume":{"S2":1}}')
          + text('{"op":"unsubscribe","symbols":["S0"]}') + close(1000))

    # /publish: [0 text | 1 binary] + message.
    published = [
        '{"symbol":"SYM0","kind":"trade","ts_event":1795312649479377653,"price":"1.5","size":"2"}',
        '[{"symbol":"SYM1","kind":"quote","ts_event":1795312649479377700,'
        '"bid_px":"99.5","bid_sz":"3","ask_px":"99.75","ask_sz":"1"},'
        '{"symbol":"SYM0","kind":"trade","price":"0.00000001","size":"100"}]',
        '{"symbol":"SYM0","kind":"bid","price":"1"}',
        '[]',
        '{"symbol":"A B","kind":"trade","price":"1","size":"1"}',
    ]
    for i, m in enumerate(published):
        write("publish_decoder", f"text_{i}", b"\x00" + m.encode())
    header = struct.pack("<HHIQ", 1, 72, 2, 0)
    body = record(1, 0, 0, (150000000, 200000000, 0, 0)) + record(2, 1, 0, (1, 2, 3, 4))
    write("publish_decoder", "binary_two", b"\x01" + header + body)
    write("publish_decoder", "binary_bad_id", b"\x01" + struct.pack("<HHIQ", 1, 72, 1, 0)
          + record(1, 99, 0, (1, 1, 0, 0)))

    # Capture files.
    symbols = [{"id": 0, "name": "SYM0"}, {"id": 1, "name": "SYM1"}]
    msgs = [[record(1, 0, 1, (81636000000, 2, 81636000000, 81636000000))],
            [record(2, 1, 1, (1, 2, 3, 4)), record(1, 0, 2, (5, 6, 5, 5))]]
    write("capture_reader", "two_blocks", capture([msgs, msgs[:1]], symbols))
    write("capture_reader", "empty", capture([], []))
    write("capture_reader", "cut", capture([msgs], symbols)[:-20])

    # Venue messages: [0 Binance | 1 Coinbase] + lines of the recorded captures.
    for venue, path in [(0, "binance-spot-btcusdt-ethusdt.jsonl"),
                        (1, "coinbase-exchange-btc-usd-eth-usd.jsonl")]:
        with open(os.path.join(ROOT, "feeds", path), "rb") as f:
            lines = f.read().splitlines()
        for i in range(0, 40, 4):
            write("normalize", f"{path[:8]}_{i:02}", bytes([venue]) + b"\n".join(lines[i:i + 4]))
        # The first line of each type, alone.
        seen = set()
        for line in lines:
            kind = json.loads(line).get("type") or json.loads(line).get("stream", "").split("@")[-1]
            if kind not in seen:
                seen.add(kind)
                write("normalize", f"{path[:8]}_{kind or 'ack'}", bytes([venue]) + line)

    # HTTP requests, as browsers, clients and scanners send them.
    ws_head = ("GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
    requests = {
        "ws_subscribe": ws_head.format(path="/ws", extra="").encode() + text(SUBSCRIBE) + close(1000),
        "echo": ws_head.format(path="/echo", extra="").encode() + FRAMES["fragmented"] + close(1000),
        "echo_origin": ws_head.format(path="/echo", extra="Origin: https://evil.example\r\n").encode(),
        "publish": ws_head.format(path="/publish?token=secret", extra="").encode()
        + text(published[0]) + close(1000),
        "publish_bearer": ws_head.format(path="/publish", extra="Authorization: Bearer nope\r\n").encode(),
        "get_healthz": b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n",
        "head_symbols": b"HEAD /symbols HTTP/1.1\r\nHost: test\r\n\r\n",
        "post_stats": b"POST /stats HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}",
        "pipelined": b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nDELETE /ws HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "ws_without_upgrade": b"GET /ws HTTP/1.1\r\nHost: test\r\n\r\n",
        "head_ws": ws_head.format(path="/ws", extra="").replace("GET", "HEAD", 1).encode(),
        "http10": b"GET /stats HTTP/1.0\r\n\r\n",
        "not_found": b"OPTIONS /nowhere HTTP/1.1\r\nHost: test\r\n\r\n",
    }
    for name, req in requests.items():
        write("http_request", name, req)


if __name__ == "__main__":
    main()
