"""A third-party client (the `websockets` package) subscribes in binary and decodes
records with `struct`, using nothing but the layout in docs/protocol.md."""

import asyncio
import json
import os
import struct
import subprocess
import time
import urllib.request
from decimal import Decimal

import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("TICKCAST_BIN", os.path.join(ROOT, "target", "debug", "tickcast"))

# From docs/protocol.md.
HEADER = struct.Struct("<HHIQ")  # version, record_size, record_count, ts_out
RECORD = struct.Struct("<BBHIQQQII4q")  # kind, flags, _, symbol_id, seq, ts_event, ts_recv, count, _, values
SCALE = Decimal(10) ** 8


@pytest.fixture
def server():
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--workers", "2", "--no-pin",
         "--symbols", "20", "--rate", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://" in line, f"unexpected first line: {line!r}"
        addr = line.split("http://", 1)[1].split()[0]
        # The feed interns its symbols just after the port opens: wait for all of them,
        # so that no test subscribes to a symbol that does not exist yet.
        deadline = time.monotonic() + 20
        while True:
            with urllib.request.urlopen(f"http://{addr}/healthz", timeout=5) as r:
                if json.load(r).get("symbols") == 20:
                    break
            assert time.monotonic() < deadline, "symbols never appeared"
            time.sleep(0.01)
        yield addr
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0, "server exits cleanly on SIGTERM"


def decode(msg: bytes):
    version, record_size, count, ts_out = HEADER.unpack_from(msg, 0)
    assert version == 1 and record_size == RECORD.size == 72
    assert len(msg) == 16 + count * record_size
    out = []
    for i in range(count):
        kind, flags, _, sym, seq, ts_event, ts_recv, n, _, a, b, c, d = RECORD.unpack_from(msg, 16 + i * record_size)
        out.append(dict(kind=kind, flags=flags, symbol_id=sym, seq=seq, ts_event=ts_event,
                        ts_recv=ts_recv, count=n, values=(a, b, c, d), ts_out=ts_out))
    return out


async def collect(addr, fmt, symbols, want):
    async with websockets.connect(f"ws://{addr}/ws") as ws:
        await ws.send(json.dumps({"op": "subscribe", "symbols": symbols, "format": fmt}))
        names, ticks = {}, []
        async with asyncio.timeout(30):
            while len(ticks) < want:
                msg = await ws.recv()
                if isinstance(msg, bytes):
                    assert fmt == "binary"
                    ticks.extend(decode(msg))
                    continue
                v = json.loads(msg)
                if isinstance(v, list):
                    ticks.extend(v)
                elif v["type"] == "symbols":
                    names.update({s["id"]: s["name"] for s in v["symbols"]})
                else:
                    assert v["type"] == "subscribed", v
        return names, ticks


def test_binary_records_decode_with_struct_and_match_json(server):
    symbols = [f"SYM{i}" for i in range(20)]

    async def both():
        return await asyncio.gather(collect(server, "binary", symbols, 3000),
                                    collect(server, "json", symbols, 3000))

    (names, binary), (_, as_json) = asyncio.run(both())
    assert sorted(names.values()) == sorted(symbols)

    last = {}
    for r in binary:
        name = names[r["symbol_id"]]
        assert r["kind"] in (1, 2)
        assert r["ts_recv"] >= r["ts_event"] > 1_600_000_000 * 10**9
        assert r["ts_out"] >= r["ts_recv"]
        if r["flags"] & 1 == 0 and name in last:
            assert r["seq"] == last[name] + 1, f"gap in {name}"
            assert r["count"] == 1
        last[name] = r["seq"]
        if r["kind"] == 2:
            bid_px, _, ask_px, _ = r["values"]
            assert 0 < bid_px < ask_px

    by_key = {(t["symbol"], t["seq"]): t for t in as_json}
    matched = 0
    for r in binary:
        t = by_key.get((names[r["symbol_id"]], r["seq"]))
        if t is None:
            continue
        matched += 1
        assert t["ts_event"] == r["ts_event"] and t["ts_recv"] == r["ts_recv"]
        fields = ("price", "size", "high", "low") if r["kind"] == 1 else ("bid_px", "bid_sz", "ask_px", "ask_sz")
        assert t["kind"] == ("trade" if r["kind"] == 1 else "quote")
        for field, raw in zip(fields, r["values"]):
            assert Decimal(t[field]) == Decimal(raw) / SCALE, (field, t[field], raw)
    assert matched > 2000, matched


def test_bad_input_gets_errors(server):
    async def run():
        async with websockets.connect(f"ws://{server}/ws") as ws:
            await ws.send("not json")
            err = json.loads(await ws.recv())
            assert err["type"] == "error" and "invalid JSON" in err["message"]
            await ws.send(json.dumps({"op": "subscribe", "symbols": ["NOPE"]}))
            err = json.loads(await ws.recv())
            assert err == {"type": "error", "message": 'unknown symbol "NOPE"', "symbols": ["NOPE"]}
            await ws.send(b"\x00\x01")
            err = json.loads(await ws.recv())
            assert "binary messages are not accepted" in err["message"]
    asyncio.run(run())
