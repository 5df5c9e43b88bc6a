"""Order books in the Python client: `tickcast.Book` applies binary book records and
JSON book objects with the protocol's rules (snapshot, changes, group words, gaps),
and against the real server (the synthetic feed with `book_depth`, a finite feed), the
client's books equal the book a late JSON subscriber gets as its snapshot."""

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request

import numpy as np
import websockets

import tickcast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("TICKCAST_BIN", os.path.join(ROOT, "target", "debug", "tickcast"))
WAIT = 30  # seconds: the bound of every wait
SNAP = tickcast.FLAG_SNAPSHOT


def book_record(seq, flags, count, side, price, size, levels, index, symbol_id=0):
    group = levels | (index << 32)
    return (tickcast.KIND_BOOK, flags, 0, symbol_id, seq, 1, 2, count, 0, price, size, side, group)


def test_book_applies_snapshots_changes_and_reports_gaps():
    msg = tickcast.encode([
        book_record(7, SNAP, 1, 0, 100, 1, 3, 0),
        book_record(7, SNAP, 1, 0, 101, 2, 3, 1),
        book_record(7, SNAP, 1, 1, 103, 5, 3, 2),
        book_record(8, 0, 1, 0, 100, 0, 1, 0),  # removes 100
        book_record(11, tickcast.FLAG_CONFLATED, 3, 0, 0, 0, 0, 0),  # merged, no level left
    ])
    books = tickcast.Books()
    assert books.apply_records(tickcast.decode(msg)[1], {0: "A"}) == []
    b = books.get("A")
    assert b.seq == 11 and b.synced
    assert b.bids.tolist() == [[101, 2]] and b.bids.dtype == np.int64
    assert b.asks.tolist() == [[103, 5]]
    assert books.resume_points() == {"A": 11}
    gap = b.apply_records(tickcast.decode(tickcast.encode([book_record(13, 0, 1, 1, 104, 1, 1, 0)]))[1])
    assert gap == [tickcast.BookGap("A", 12, 13)] and not b.synced
    assert books.resume_points() == {}, "an out-of-sync book asks for a snapshot"
    # JSON: the same rules; prices and sizes are exact decimal strings.
    assert b.apply_json({"type": "book", "symbol": "A", "seq": 20, "flags": ["snapshot"], "count": 1,
                         "bids": [["816.35", "1.5"]], "asks": []}) is None
    assert b.bids.tolist() == [[81_635_000_000, 150_000_000]] and b.asks.shape == (0, 2)
    assert b.apply_json({"symbol": "A", "seq": 21, "flags": [], "count": 1,
                         "bids": [["816.35", "0"]], "asks": [["817", "2"]]}) is None
    assert b.bids.shape == (0, 2) and b.asks.tolist() == [[81_700_000_000, 200_000_000]]


def start(tmp_path, limit):
    config = tmp_path / "books.toml"
    config.write_text(
        "[[feeds]]\nkind = \"synthetic\"\nsymbols = 3\nrate = 4000\n"
        f"limit = {limit}\nbook_depth = 6\n"
    )
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--workers", "2", "--no-pin", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    assert "listening on http://" in line, f"unexpected first line: {line!r}"
    addr = line.split("http://", 1)[1].split()[0]
    deadline = time.monotonic() + WAIT
    while json.loads(urllib.request.urlopen(f"http://{addr}/healthz", timeout=WAIT).read())["symbols"] < 3:
        assert time.monotonic() < deadline, "symbols never appeared"
        time.sleep(0.01)
    return proc, addr


def test_client_books_equal_the_servers(tmp_path):
    limit = 8_000
    proc, addr = start(tmp_path, limit)
    symbols = ["SYM0", "SYM1", "SYM2"]

    async def run():
        async with tickcast.Client(f"ws://{addr}/ws", symbols, channels=["book"], seed=1) as client:
            async with asyncio.timeout(WAIT):
                # Until the feed has ended …
                while True:
                    stats = json.loads(urllib.request.urlopen(f"http://{addr}/stats", timeout=WAIT).read())
                    if stats["sequencer"]["ticks"] >= limit:
                        break
                    ev = await client.next()
                    assert not isinstance(ev, (tickcast.Gap, tickcast.BookGap)), ev
                # … a late subscriber's snapshot is the server's book, with its seq.
                async with websockets.connect(f"ws://{addr}/ws") as ws:
                    await ws.send(json.dumps({"op": "subscribe", "symbols": symbols, "channels": ["book"],
                                              "format": "json"}))
                    want = {}
                    while len(want) < 3:
                        v = json.loads(await ws.recv())
                        for m in v if isinstance(v, list) else []:
                            ref = tickcast.Book(m["symbol"])
                            assert ref.apply_json(m) is None
                            want[m["symbol"]] = ref
                # The client reads on until it is there too.
                while any(client.book(s) is None or client.book(s).seq < want[s].seq for s in symbols):
                    ev = await client.next()
                    assert not isinstance(ev, (tickcast.Gap, tickcast.BookGap)), ev
                for s in symbols:
                    got = client.book(s)
                    assert got.synced and got.seq == want[s].seq, s
                    assert np.array_equal(got.bids, want[s].bids), s
                    assert np.array_equal(got.asks, want[s].asks), s
                    assert len(got.bids) > 0 and len(got.asks) > 0, s

    try:
        asyncio.run(run())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
