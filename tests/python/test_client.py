"""The Python client package (installed with `pip install ./clients/python`): numpy
decoding equal to the pure-struct reference, bad frames rejected, the client against
the real server (values equal to the JSON form of the same ticks), and reconnect with
resume across a server restart on the same port."""

import asyncio
import io
import json
import os
import random
import signal
import subprocess
import time
import urllib.request
from decimal import Decimal

import numpy as np
import pytest
import websockets

import tickcast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("TICKCAST_BIN", os.path.join(ROOT, "target", "debug", "tickcast"))
WAIT = 30  # seconds: the bound of every wait


def test_the_installed_package_is_used():
    assert "site-packages" in tickcast.__file__ or "dist-packages" in tickcast.__file__, tickcast.__file__


def random_records(n, seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice([tickcast.KIND_TRADE, tickcast.KIND_QUOTE])
        out.append((
            kind, rng.randrange(8), 0, rng.randrange(1 << 32), rng.randrange(1 << 64),
            rng.randrange(1 << 64), rng.randrange(1 << 64), rng.randrange(1 << 32), 0,
            rng.randrange(-(1 << 63), 1 << 63), rng.randrange(-(1 << 63), 1 << 63),
            rng.randrange(-(1 << 63), 1 << 63), rng.randrange(-(1 << 63), 1 << 63),
        ))
    return out


def test_numpy_decode_of_10000_records_equals_the_struct_reference():
    records = random_records(10_000)
    msg = tickcast.encode(records, ts_out=123)
    header, arr = tickcast.decode(msg)
    ref_header, ref = tickcast.decode_struct(msg)
    assert header == ref_header == (1, 72, 10_000, 123)
    assert arr.dtype.itemsize == 72 and len(arr) == 10_000
    assert arr.tolist() == ref == records
    assert not arr.flags.writeable, "a view of the message, not a copy"
    parts = [tickcast.decode(tickcast.encode(records[i:i + 910]))[1] for i in range(0, 10_000, 910)]
    assert tickcast.concat(parts).tolist() == records


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: m[:10], "truncated message: 10 bytes"),
        (lambda m: b"", "truncated message: 0 bytes"),
        (lambda m: m[:-1], "does not hold its 2 records .* truncated"),
        (lambda m: m[:16 + 72], "does not hold its 2 records"),
        (lambda m: m + b"\0", "does not hold its 2 records"),
        (lambda m: b"\x02\x00" + m[2:], "unsupported version 2"),
        (lambda m: m[:2] + b"\x50\x00" + m[4:], "unsupported record_size 80"),
        (lambda m: m[:4] + (3).to_bytes(4, "little") + m[8:], "does not hold its 3 records"),
        (lambda m: "text", "bytes, not str"),
    ],
)
def test_bad_frames_raise_a_clear_decode_error(mutate, match):
    msg = tickcast.encode(random_records(2))
    for decoder in (tickcast.decode, tickcast.decode_struct):
        with pytest.raises(tickcast.DecodeError, match=match):
            decoder(mutate(msg))


def test_gap_detector_rules():
    d = tickcast.GapDetector()
    d.bind(0, "A")

    def message(*records):
        for seq, flags, count, recv in records:
            d.observe(0, seq, flags, count, recv)
        return [(g.expected, g.got) for g in d.end_message(16 + 72 * len(records))]

    assert message((5, tickcast.FLAG_SNAPSHOT, 1, 1), (6, 0, 1, 2)) == []
    assert message((9, 0, 1, 3)) == [(7, 9)]
    # A conflated pair, lower seq first, adds up: no gap.
    assert message((12, tickcast.FLAG_CONFLATED, 2, 4), (14, tickcast.FLAG_CONFLATED, 3, 5)) == []
    # A restarted server that had nothing to snapshot: seq 1 with a later ingest time.
    assert message((1, 0, 1, 100), (2, 0, 1, 101)) == []
    assert d.last_seqs() == {"A": 2}
    # A full message defers judgement to the next one.
    d.observe(0, 5, 0, 1, 102)
    assert d.end_message(16 + 910 * 72) == []
    assert [(g.symbol, g.missed) for g in d.end_message(16 + 72)] == [("A", 2)]


def test_to_dataframe_prices_are_exact_by_default_and_fixed_or_float_on_request():
    records = [
        (1, 1, 0, 0, 7, 1_700_000_000_000_000_000, 1_700_000_000_000_000_001, 1, 0,
         81_636_000_000, 10_000_000, 81_636_000_000, 81_636_000_000),
        (2, 0, 0, 1, 3, 1_700_000_000_000_000_002, 1_700_000_000_000_000_003, 1, 0,
         9_950_000_000, 300_000_000, 9_975_000_000, (1 << 63) - 1),
    ]
    _, arr = tickcast.decode(tickcast.encode(records))
    df = tickcast.to_dataframe(arr, {0: "SYM0", 1: "SYM1"})
    assert list(df["symbol"]) == ["SYM0", "SYM1"]
    assert list(df["kind"]) == ["trade", "quote"]
    # Exact: 0.1 is 0.1, and the largest size keeps every digit.
    assert df["price"][0] == Decimal("816.36") and str(df["size"][0]) == "0.10000000"
    assert df["ask_sz"][1] == Decimal("92233720368.54775807")
    assert df["price"][1] is None and df["bid_px"][0] is None
    assert df["value0"][0] == 81_636_000_000 and df["value0"].dtype == np.int64
    assert list(df["snapshot"]) == [True, False]
    assert str(df["time"][0]) == "2023-11-14 22:13:20+00:00"

    fixed = tickcast.to_dataframe(arr, {0: "SYM0", 1: "SYM1"}, prices="fixed")
    assert str(fixed["price"].dtype) == "Int64" and fixed["price"][0] == 81_636_000_000
    assert fixed["price"].isna().tolist() == [False, True]
    assert fixed["ask_sz"][1] == (1 << 63) - 1

    floats = tickcast.to_dataframe(arr, {0: "SYM0", 1: "SYM1"}, prices="float")
    assert floats["price"][0] == 816.36 and floats["size"][0] == 0.1
    assert np.isnan(floats["price"][1]) and floats["bid_px"][1] == 99.5
    with pytest.raises(ValueError, match="prices='exact'"):
        tickcast.to_dataframe(arr, prices="exact")


def test_capture_round_trip_in_python():
    f = io.BytesIO()
    w = tickcast.CaptureWriter(f, {0: "SYM0"}, source="ws://x/ws")
    msg = tickcast.encode(random_records(3))
    w.message(msg)
    w.symbols({1: "SYM1"})
    w.message(msg)
    assert len(list(tickcast.read_capture(io.BytesIO(f.getvalue())))) == 1, "the open block is not written yet"
    w.close()
    f.seek(0)
    got = list(tickcast.read_capture(f))
    assert got == [(msg, {0: "SYM0"}), (msg, {0: "SYM0", 1: "SYM1"})]
    for cut in range(len(f.getvalue())):
        try:
            list(tickcast.read_capture(io.BytesIO(f.getvalue()[:cut])))
        except tickcast.DecodeError:
            pass
    with pytest.raises(tickcast.DecodeError, match="TCREC1"):
        list(tickcast.read_capture(io.BytesIO(b'{"not": "a capture"}\n')))


def small_capture():
    """A capture of messages of 0 to 20 records, with symbols maps between them."""
    f = io.BytesIO()
    w = tickcast.CaptureWriter(f, {0: "SYM0"}, source="ws://x/ws")
    records = random_records(400, seed=5)
    msgs, i, size = [], 0, 0
    while i < len(records):
        msg = tickcast.encode(records[i:i + size], ts_out=i)
        w.message(msg)
        msgs.append(msg)
        i += size
        size = (size + 7) % 21
        if len(msgs) % 5 == 0:
            w.symbols({len(msgs): f"SYM{len(msgs)}x"})  # odd lengths: padded entries
    w.close()
    return f.getvalue(), msgs, records


def test_decode_capture_equals_the_per_message_paths():
    data, msgs, records = small_capture()
    arr, names = tickcast.decode_capture(data)
    assert arr.dtype == tickcast.RECORD_DTYPE
    assert arr.flags.writeable, "a copy, not a view of the (read-only) bytes"
    assert arr.tolist() == records
    assert arr.tolist() == [r for m in msgs for r in tickcast.decode_struct(m)[1]]
    assert np.array_equal(arr, tickcast.concat([tickcast.decode(m)[1] for m, _ in tickcast.read_capture(io.BytesIO(data))]))
    assert names == dict(list(tickcast.read_capture(io.BytesIO(data)))[-1][1])
    assert names[5] == "SYM5x"
    # From a file, a path and a bytearray alike.
    assert np.array_equal(tickcast.decode_capture(io.BytesIO(data))[0], arr)
    assert np.array_equal(tickcast.decode_capture(bytearray(data))[0], arr)
    # Only the header: no records.
    empty = io.BytesIO()
    tickcast.CaptureWriter(empty, {3: "SYM3"})
    arr, names = tickcast.decode_capture(empty.getvalue())
    assert len(arr) == 0 and arr.dtype == tickcast.RECORD_DTYPE and names == {3: "SYM3"}


def test_decode_capture_rejects_what_read_capture_rejects():
    data, _, _ = small_capture()
    # Every truncation either decodes (cut at an entry boundary) or raises DecodeError,
    # as read_capture does.
    for cut in range(0, len(data), 7):
        part = data[:cut]
        try:
            want = tickcast.concat([tickcast.decode(m)[1] for m, _ in tickcast.read_capture(io.BytesIO(part))])
        except tickcast.DecodeError:
            with pytest.raises(tickcast.DecodeError):
                tickcast.decode_capture(part)
        else:
            assert np.array_equal(tickcast.decode_capture(part)[0], want)
    with pytest.raises(tickcast.DecodeError, match="TCREC1"):
        tickcast.decode_capture(b'{"not": "a capture"}\n')
    # The writer refuses what is not a message.
    w = tickcast.CaptureWriter(io.BytesIO())
    for bad in (tickcast.encode(random_records(2))[:-1], b"\x01\x00", b"not bytes either"):
        with pytest.raises(tickcast.DecodeError):
            w.message(bad)
    # Blocks whose contents disagree: both readers say what is wrong.
    pack = tickcast.capture._BLOCK.pack
    two = tickcast.encode(random_records(2))
    version2 = b"\x02" + two[1:16]
    cases = [
        (pack(1, 2) + version2 + two[16:], "message 0: unsupported version 2"),
        (pack(1, 2) + two[:16] + two[16:-72], "do not hold its 1 messages and 2 records"),
        (pack(1, 1) + two[:16] + two[16:-72], "message headers count 2 records, the block holds 1"),
        (pack(2, 2) + two[:16] + two[:16] + two[16:], "message headers count 4 records, the block holds 2"),
        (b"\x01\x00", "no block header"),
    ]
    for payload, error in cases:
        f = io.BytesIO()
        with tickcast.CaptureWriter(f) as w:
            w.message(tickcast.encode(random_records(1)))
            w.symbols({})
            w._entry(tickcast.capture.ENTRY_BLOCK, payload)
        with pytest.raises(tickcast.DecodeError, match=error):
            tickcast.decode_capture(f.getvalue())
        with pytest.raises(tickcast.DecodeError, match=error):
            list(tickcast.read_capture(io.BytesIO(f.getvalue())))
    f = io.BytesIO()
    w = tickcast.CaptureWriter(f)
    w._entry(7, b"12345678")
    with pytest.raises(tickcast.DecodeError, match="unknown capture entry kind 7"):
        tickcast.decode_capture(f.getvalue())
    with pytest.raises(tickcast.DecodeError, match="unknown capture entry kind 7"):
        list(tickcast.read_capture(io.BytesIO(f.getvalue())))
    # A capture of version 1 (one message per entry) is refused.
    v1 = bytearray(data)
    v1[6] = 1
    with pytest.raises(tickcast.DecodeError, match="unsupported capture version 1"):
        tickcast.decode_capture(bytes(v1))


def test_mutated_captures_raise_decode_error_and_the_readers_agree():
    """A valid capture with a few bytes changed anywhere (headers, JSON, blocks): every
    reader either raises DecodeError or returns, never another exception, and when they
    return they return the same records."""
    data, _, _ = small_capture()
    rng = random.Random(11)
    outcomes = {"raised": 0, "decoded": 0}
    for _ in range(1000):
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        b = bytes(b)
        results = []
        for read in (
            lambda: tickcast.decode_capture(b)[0],
            lambda: tickcast.concat([a for a, _ in tickcast.capture_blocks(b)]),
            lambda: tickcast.concat([tickcast.decode(m)[1] for m, _ in tickcast.read_capture(io.BytesIO(b))]),
        ):
            try:
                results.append(read())
            except tickcast.DecodeError:
                results.append(None)
        if results[0] is None:
            outcomes["raised"] += 1
            assert results[1] is None and results[2] is None
        else:
            outcomes["decoded"] += 1
            assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])
    assert outcomes["raised"] > 0 and outcomes["decoded"] > 0, outcomes


def test_capture_blocks_close_at_the_size_limit():
    """Messages gather into blocks of about 1 MiB of records: a capture of large
    messages has several blocks, and reads back message for message."""
    msg = tickcast.encode(random_records(910, seed=3))
    per_block = -(-tickcast.capture.BLOCK_RECORD_BYTES // (910 * tickcast.RECORD_SIZE))
    f = io.BytesIO()
    with tickcast.CaptureWriter(f) as w:
        for _ in range(per_block + 1):
            w.message(msg)
    data = f.getvalue()
    assert [m for m, _ in tickcast.read_capture(io.BytesIO(data))] == [msg] * (per_block + 1)
    arr, _ = tickcast.decode_capture(data)
    assert np.array_equal(arr, tickcast.concat([tickcast.decode(msg)[1]] * (per_block + 1)))
    # Two blocks: the first closed at the limit, the second at close().
    first = tickcast.capture._read_fixed(data[:24])[1]
    length, kind = tickcast.capture._ENTRY.unpack_from(data, first)
    assert kind == tickcast.capture.ENTRY_BLOCK
    assert tickcast.capture._BLOCK.unpack_from(data, first + 8) == (per_block, per_block * 910)
    second = first + 8 + length
    assert tickcast.capture._BLOCK.unpack_from(data, second + 8) == (1, 910)


def test_capture_blocks_from_memory_a_path_and_a_file(tmp_path):
    """capture_blocks yields each block's records with the names in force: views of
    bytes in memory; from a file, one buffer per block, never the whole file."""
    data, msgs, records = small_capture()
    big = tickcast.encode(random_records(910, seed=4))
    f = io.BytesIO()
    with tickcast.CaptureWriter(f, {0: "SYM0"}) as w:
        for _ in range(20):
            w.message(big)
        w.symbols({1: "SYM1"})
        w.message(big)
    for capture in (data, f.getvalue()):
        path = tmp_path / "c.tcrec"
        path.write_bytes(capture)
        whole, names = tickcast.decode_capture(capture)
        from_memory = list(tickcast.capture_blocks(capture))
        assert all(not a.flags.writeable for a, _ in from_memory), "views of the bytes"
        for blocks in (from_memory, list(tickcast.capture_blocks(str(path))),
                       list(tickcast.capture_blocks(io.BytesIO(capture)))):
            assert all(a.dtype == tickcast.RECORD_DTYPE for a, _ in blocks)
            assert np.array_equal(tickcast.concat([a for a, _ in blocks]), whole)
            assert blocks[-1][1] == names or capture is data
        if capture is not data:
            blocks = list(tickcast.capture_blocks(str(path)))
            assert len(blocks) == 3 and [n for _, n in blocks] == [{0: "SYM0"}, {0: "SYM0"}, {0: "SYM0", 1: "SYM1"}]
            assert all(a.base.nbytes < 2 * tickcast.capture.BLOCK_RECORD_BYTES for a, _ in blocks), "one block in memory"
    # A file-like object that returns a few bytes per read, with or without readinto.
    class Trickle:
        def __init__(self, data, readinto):
            self._f = io.BytesIO(data)
            if readinto:
                self.readinto = lambda b: self._f.readinto(b[:5])

        def read(self, n=-1):
            return self._f.read(min(n, 5) if n > 0 else n)

    for readinto in (True, False):
        blocks = list(tickcast.capture_blocks(Trickle(f.getvalue(), readinto)))
        assert np.array_equal(tickcast.concat([a for a, _ in blocks]), tickcast.decode_capture(f.getvalue())[0])
    assert list(tickcast.read_capture(Trickle(f.getvalue(), False))) == list(tickcast.read_capture(io.BytesIO(f.getvalue())))
    # A fault is raised when the iteration reaches it, after the good blocks.
    cut = f.getvalue()[:-100]
    got = []
    with pytest.raises(tickcast.DecodeError, match="ends inside an entry"):
        for a, _ in tickcast.capture_blocks(cut):
            got.append(a)
    assert len(got) == 2


# -- against the real server -------------------------------------------------------

def start(listen="127.0.0.1:0", symbols=10, rate=5000, config=None):
    extra = ["--config", config] if config else ["--symbols", str(symbols), "--rate", str(rate)]
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", listen, "--workers", "2", "--no-pin", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    if "listening on http://" not in line:
        proc.kill()
        raise AssertionError(f"unexpected first line: {line!r}")
    addr = line.split("http://", 1)[1].split()[0]
    # The port is open before the feed has created its symbols: wait for them, so that
    # a first subscribe does not meet "unknown symbol".
    deadline = time.monotonic() + WAIT
    while json.loads(urllib.request.urlopen(f"http://{addr}/healthz", timeout=WAIT).read())["symbols"] < symbols:
        assert time.monotonic() < deadline, "symbols never appeared"
        time.sleep(0.01)
    return proc, addr


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0, "server exits cleanly on SIGTERM"


@pytest.fixture
def server():
    proc, addr = start()
    try:
        yield addr
    finally:
        if proc.poll() is None:
            stop(proc)


SYMBOLS = ["SYM0", "SYM1", "SYM2", "SYM3"]
VALUE_NAMES = {"trade": ("price", "size", "high", "low"), "quote": ("bid_px", "bid_sz", "ask_px", "ask_sz")}


def test_client_records_equal_the_json_ticks(server):
    async def via_client():
        out = {}
        async with tickcast.Client(f"ws://{server}/ws", SYMBOLS, seed=1) as client:
            async with asyncio.timeout(WAIT):
                while len(out) < 1500:
                    ev = await client.next()
                    assert not isinstance(ev, tickcast.Gap), ev
                    if isinstance(ev, tickcast.Ticks):
                        for r in ev.records[ev.records["flags"] == 0]:
                            kind = "trade" if r["kind"] == tickcast.KIND_TRADE else "quote"
                            out[(ev.symbol(r["symbol_id"]), int(r["seq"]), kind)] = (
                                int(r["ts_event"]), int(r["ts_recv"]), int(r["count"]),
                                tuple(int(r[f"value{i}"]) for i in range(4)),
                            )
        return out

    async def via_json():
        out = {}
        async with websockets.connect(f"ws://{server}/ws") as ws:
            await ws.send(json.dumps({"op": "subscribe", "symbols": SYMBOLS, "format": "json"}))
            async with asyncio.timeout(WAIT):
                while len(out) < 1500:
                    v = json.loads(await ws.recv())
                    if not isinstance(v, list):
                        continue
                    for t in v:
                        if t["flags"]:
                            continue
                        values = tuple(int(Decimal(t[n]) * tickcast.SCALE) for n in VALUE_NAMES[t["kind"]])
                        out[(t["symbol"], t["seq"], t["kind"])] = (t["ts_event"], t["ts_recv"], t["count"], values)
        return out

    async def both():
        return await asyncio.gather(via_client(), via_json())

    binary, as_json = asyncio.run(both())
    common = binary.keys() & as_json.keys()
    assert len(common) >= 500, len(common)
    for k in common:
        assert binary[k] == as_json[k], k


def test_restart_on_the_same_port_reconnects_with_a_snapshot_and_no_gap():
    # The first run numbers far past what the second (100 ticks/s over 4 symbols) can
    # reach within WAIT, so the resume points are sequences the new server never
    # reached: the protocol answers with a snapshot (or, for a symbol that has not
    # ticked yet, its first tick).
    proc, addr = start(symbols=4, rate=20000)

    async def run():
        nonlocal proc
        events = []
        async with tickcast.Client(f"ws://{addr}/ws", SYMBOLS, backoff_initial=0.02,
                                   backoff_max=0.2, open_timeout=1, seed=3) as client:
            async with asyncio.timeout(WAIT):
                while any(client.last_seqs().get(s, 0) < 1000 for s in SYMBOLS):
                    ev = await client.next()
                    assert not isinstance(ev, tickcast.Gap), ev
            before = client.last_seqs()
            await asyncio.to_thread(stop, proc)
            proc, _ = await asyncio.to_thread(start, addr, 4, 100)
            first = {}
            count = {}
            async with asyncio.timeout(WAIT):
                while len(first) < len(SYMBOLS) or min(count.values()) < 3:
                    # Messages the first run sent before closing come first.
                    ev = await client.next()
                    events.append(type(ev).__name__)
                    assert not isinstance(ev, tickcast.Gap), ev
                    if isinstance(ev, tickcast.Reconnected):
                        assert ev.resumed == len(SYMBOLS)
                    if isinstance(ev, tickcast.Ticks) and "Reconnected" in events:
                        for r in ev.records:
                            name = ev.symbol(r["symbol_id"])
                            first.setdefault(name, (int(r["flags"]), int(r["seq"])))
                            count[name] = count.get(name, 0) + 1
            after = client.last_seqs()
        return before, first, after, events

    try:
        before, first, after, events = asyncio.run(run())
    finally:
        if proc.poll() is None:
            stop(proc)
    assert events.index("Disconnected") < events.index("Reconnected")
    for s in SYMBOLS:
        flags, seq = first[s]
        assert flags == tickcast.FLAG_SNAPSHOT or (flags == 0 and seq == 1), (s, flags, seq)
        assert after[s] < before[s], "the new run numbers afresh"


def test_resubscribe_rejected_by_a_restarted_server_is_retried(tmp_path):
    # The second server has no feed: it learns SYM0 only when a publisher sends it, so
    # the client's resubscribe is rejected ("unknown symbol") until then.
    config = tmp_path / "publish-only.toml"
    config.write_text('publish_token = "t"\nfeeds = []\n')
    proc, addr = start(symbols=1, rate=500)

    async def run():
        nonlocal proc
        async with tickcast.Client(f"ws://{addr}/ws", ["SYM0"], backoff_initial=0.02,
                                   backoff_max=0.1, open_timeout=1, seed=5) as client:
            async with asyncio.timeout(WAIT):
                while not client.last_seqs():
                    await client.next()
                await asyncio.to_thread(stop, proc)
                proc, _ = await asyncio.to_thread(start, addr, 0, 0, str(config))
                while True:
                    ev = await client.next()
                    if isinstance(ev, tickcast.ServerError):
                        assert "SYM0" in ev.message
                        break
                async with websockets.connect(f"ws://{addr}/publish?token=t") as pub:
                    await pub.send(json.dumps({"symbol": "SYM0", "kind": "trade", "price": "1.5", "size": "2"}))
                    while True:
                        ev = await client.next()
                        assert not isinstance(ev, tickcast.Gap), ev
                        if isinstance(ev, tickcast.Ticks):
                            r = ev.records[0]
                            assert (int(r["seq"]), int(r["value0"])) == (1, 150_000_000)
                            assert ev.symbol(r["symbol_id"]) == "SYM0"
                            return

    try:
        asyncio.run(run())
    finally:
        if proc.poll() is None:
            stop(proc)


def test_decode_capture_of_a_recorded_session(server, tmp_path):
    """A capture recorded from the real server (binary messages as received, the
    symbols maps as they came) decodes in one call to what the per-message numpy path
    and the pure-struct reference give."""
    path = tmp_path / "session.tcrec"

    async def record():
        async with websockets.connect(f"ws://{server}/ws") as ws:
            await ws.send(json.dumps({"op": "subscribe", "symbols": ["*"], "format": "binary"}))
            with open(path, "wb") as f, tickcast.CaptureWriter(f, source=f"ws://{server}/ws") as w:
                records = 0
                async with asyncio.timeout(WAIT):
                    while records < 5000:
                        m = await ws.recv()
                        if isinstance(m, bytes):
                            w.message(m)
                            records += tickcast.decode_header(m).record_count
                        elif json.loads(m).get("type") == "symbols":
                            w.symbols({int(s["id"]): s["name"] for s in json.loads(m)["symbols"]})

    asyncio.run(record())
    arr, names = tickcast.decode_capture(str(path))
    msgs = list(tickcast.read_capture(str(path)))
    assert len(msgs) > 1 and len(arr) >= 5000
    assert np.array_equal(arr, tickcast.concat([tickcast.decode(m)[1] for m, _ in msgs]))
    assert arr.tolist() == [r for m, _ in msgs for r in tickcast.decode_struct(m)[1]]
    assert names == msgs[-1][1] and set(names.values()) == {f"SYM{i}" for i in range(10)}
    assert set(np.unique(arr["symbol_id"]).tolist()) <= set(names)
