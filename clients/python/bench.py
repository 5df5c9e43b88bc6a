"""Decode throughput of the Python client: numpy (one ``np.frombuffer`` per message)
against the pure-``struct`` reference decoder, in records per second.

    python bench.py                       # synthetic stream: 100,000 records in
                                          # messages of every size from 1 to 910
    python bench.py --capture s.tcrec     # a stream recorded by examples/record.rs
    python bench.py --sizes 1,10,100,910  # also: streams of one message size each

Each decoder reads every record's ``seq`` and first value (numpy: column sums;
struct: a Python loop over the tuples), so neither skips the work. Best of
``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from typing import Callable, List

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
    total = 0
    for m in messages:
        _, recs = tickcast.decode(m)
        total += int(recs["seq"].sum()) + int(recs["value0"].sum())
    return total


def struct_path(messages: List[bytes]) -> int:
    total = 0
    for m in messages:
        _, recs = tickcast.decode_struct(m)
        for r in recs:
            total += r[4] + r[9]
    return total


def best(fn: Callable[[List[bytes]], int], messages: List[bytes], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(messages)
        times.append(time.perf_counter() - t0)
    return min(times)


def run(name: str, messages: List[bytes], repeat: int) -> None:
    records = sum((len(m) - tickcast.HEADER_SIZE) // tickcast.RECORD_SIZE for m in messages)
    assert numpy_path(messages) == struct_path(messages), "both decoders agree"
    t_np = best(numpy_path, messages, repeat)
    t_py = best(struct_path, messages, repeat)
    print(f"{name:<34} {len(messages):>8} msgs {records:>9} recs  "
          f"numpy {records / t_np / 1e6:8.2f} M rec/s  struct {records / t_py / 1e6:6.2f} M rec/s  "
          f"ratio {t_py / t_np:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", help="a .tcrec capture file")
    ap.add_argument("--records", type=int, default=100_000, help="records of each synthetic stream")
    ap.add_argument("--sizes", default="", help="comma-separated message sizes, one stream each")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    if args.capture:
        msgs = [m for m, _ in tickcast.read_capture(args.capture)]
        run(f"capture {args.capture}", msgs, args.repeat)
    run("synthetic, sizes 1..910", synthetic(args.records, list(range(1, 911))), args.repeat)
    for s in [int(x) for x in args.sizes.split(",") if x]:
        run(f"synthetic, {s} per message", synthetic(args.records, [s]), args.repeat)


if __name__ == "__main__":
    main()
