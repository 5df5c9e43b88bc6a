"""Decode throughput of the Python client: numpy (one ``np.frombuffer`` per message,
or one ``decode_capture`` per capture file) against the pure-``struct`` reference
decoder, in records per second.

    python bench.py                       # synthetic stream: 100,000 records in
                                          # messages of every size from 1 to 910
    python bench.py --capture s.tcrec     # a stream recorded by examples/record.rs
    python bench.py --sizes 1,10,100,910  # also: streams of one message size each

Each path reads every record's ``seq`` and first value, so none skips the work:

- numpy: one ``tickcast.decode`` per message, the arrays joined with
  ``tickcast.concat``, then column sums over the stream (the idiomatic use);
- numpy per message: the same decode, with the column sums done per message (numpy's
  per-call overhead on every message: small messages pay for it);
- struct: ``tickcast.decode_struct`` per message and a Python loop over the tuples;
- with ``--capture``, three more on the same stream: *whole capture*:
  ``tickcast.decode_capture`` on the file's bytes (held in memory) into one array,
  then the column sums; *blocks*: ``tickcast.capture_blocks`` over the same bytes,
  the column sums per block (about 1 MiB of records each, no copy); *struct from the
  capture*: ``tickcast.read_capture`` over the same bytes and the struct path (the
  pure-Python way to read a capture, from the same input).

Every path starts from bytes in memory: struct from messages already split out of the
capture (which favours it), the whole-capture paths from the file's bytes. Ratios are
against struct. Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import io
import platform
import random
import time
from typing import Any, Callable, List, Optional

import numpy as np

import tickcast


def synthetic(total: int, sizes: List[int], seed: int = 1) -> List[bytes]:
    """Messages of ``total`` records, sizes cycling through ``sizes``."""
    rng = random.Random(seed)
    out, n, i = [], 0, 0
    while n < total:
        size = min(sizes[i % len(sizes)], total - n)
        i += 1
        recs = []
        for _ in range(size):
            n += 1
            kind = 1 if n % 3 == 0 else 2
            recs.append((kind, 0, 0, n % 100, n // 100 + 1, 1_795_000_000_000_000_000 + n,
                         1_795_000_000_000_000_100 + n, 1, 0,
                         10_000_000_000 + rng.randrange(1_000_000), 100_000_000,
                         10_001_000_000, 200_000_000))
        out.append(tickcast.encode(recs, ts_out=n))
    return out


def numpy_path(messages: List[bytes]) -> int:
    """One ``decode`` per message (as the client does), then the columns of the whole
    stream at once: the way numpy is meant to be used."""
    decode = tickcast.decode
    recs = tickcast.concat([decode(m)[1] for m in messages])
    return int(recs["seq"].sum(dtype=np.uint64)) + int(recs["value0"].sum(dtype=np.int64))


def numpy_per_message(messages: List[bytes]) -> int:
    """One ``decode`` per message and the columns read per message: numpy's per-call
    overhead paid on every message."""
    total = 0
    for m in messages:
        _, recs = tickcast.decode(m)
        total += int(recs["seq"].sum(dtype=np.uint64)) + int(recs["value0"].sum(dtype=np.int64))
    return total


def struct_path(messages: List[bytes]) -> int:
    total = 0
    for m in messages:
        _, recs = tickcast.decode_struct(m)
        for r in recs:
            total += r[4] + r[9]
    return total


def capture_path(data: bytes) -> int:
    """The whole capture in one ``decode_capture``, then the columns."""
    recs, _ = tickcast.decode_capture(data)
    return int(recs["seq"].sum(dtype=np.uint64)) + int(recs["value0"].sum(dtype=np.int64))


def blocks_path(data: bytes) -> int:
    """``capture_blocks``: each block's records as a view, the columns per block."""
    total = 0
    for recs, _ in tickcast.capture_blocks(data):
        total += int(recs["seq"].sum(dtype=np.uint64)) + int(recs["value0"].sum(dtype=np.int64))
    return total


def capture_struct_path(data: bytes) -> int:
    """``read_capture`` and ``decode_struct``: the capture in pure Python."""
    return struct_path([m for m, _ in tickcast.read_capture(io.BytesIO(data))])


def best(fn: Callable[[Any], int], messages: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(messages)
        times.append(time.perf_counter() - t0)
    return min(times)


def run(name: str, messages: List[bytes], repeat: int, capture: Optional[bytes] = None) -> None:
    records = sum((len(m) - tickcast.HEADER_SIZE) // tickcast.RECORD_SIZE for m in messages)
    mask = (1 << 64) - 1
    want = struct_path(messages) & mask
    assert numpy_path(messages) & mask == want and numpy_per_message(messages) & mask == want
    t_np = best(numpy_path, messages, repeat)
    t_pm = best(numpy_per_message, messages, repeat)
    t_py = best(struct_path, messages, repeat)
    print(f"{name:<30} {len(messages):>7} msgs {records:>8} recs | numpy {records / t_np / 1e6:7.2f} M/s "
          f"({t_py / t_np:5.1f}x) | numpy per message {records / t_pm / 1e6:6.2f} M/s ({t_py / t_pm:5.1f}x) "
          f"| struct {records / t_py / 1e6:5.2f} M/s")
    if capture is not None:
        assert capture_path(capture) & mask == want and capture_struct_path(capture) & mask == want
        assert blocks_path(capture) & mask == want
        t_cs = best(capture_struct_path, capture, repeat)
        for label, fn in (("whole capture", capture_path), ("blocks", blocks_path)):
            t = best(fn, capture, repeat)
            print(f"{'':<30} {label:<13} {records / t / 1e6:7.2f} M/s ({t_cs / t:5.1f}x struct from the capture, "
                  f"{t_py / t:5.1f}x struct)")
        print(f"{'':<30} struct from the capture {records / t_cs / 1e6:5.2f} M/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", help="a .tcrec capture file")
    ap.add_argument("--records", type=int, default=100_000, help="records of each synthetic stream")
    ap.add_argument("--sizes", default="", help="comma-separated message sizes, one stream each")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    if args.capture:
        with open(args.capture, "rb") as f:
            data = f.read()
        msgs = [m for m, _ in tickcast.read_capture(io.BytesIO(data))]
        run(f"capture {args.capture}", msgs, args.repeat, capture=data)
    run("synthetic, sizes 1..910", synthetic(args.records, list(range(1, 911))), args.repeat)
    for s in [int(x) for x in args.sizes.split(",") if x]:
        run(f"synthetic, {s} per message", synthetic(args.records, [s]), args.repeat)


if __name__ == "__main__":
    main()
