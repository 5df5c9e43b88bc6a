"""`tickcast capture info|export|cat` as a quant runs them, on real captures: one made
by the `record` example from a running server, and the files of the server's own
rolling recorder. The Parquet export read with pandas (pyarrow) gives the same rows
as `decode_capture`, with the same exact prices; CSV and JSON lines too; a file cut
short exports what is whole and says so; a large capture exports in bounded memory."""

import json
import os
import shutil
import signal
import subprocess
import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import tickcast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("TICKCAST_BIN", os.path.join(ROOT, "target", "debug", "tickcast"))
EXAMPLES = os.environ.get("TICKCAST_EXAMPLES", os.path.join(ROOT, "target", "debug", "examples"))
WAIT = 60  # seconds: the bound of every wait
SYMBOLS = 8
PRICES = ["price", "size", "high", "low", "bid_px", "bid_sz", "ask_px", "ask_sz"]


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=WAIT, env={**os.environ, "RUST_BACKTRACE": "0"})


def start(*extra):
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--workers", "1", "--no-pin",
         "--symbols", str(SYMBOLS), "--rate", "20000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    assert "listening on http://" in line, line
    return proc, line.split("http://", 1)[1].split()[0]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0, "server exits cleanly on SIGTERM"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A capture of 20,000 records made by the `record` example."""
    path = tmp_path_factory.mktemp("rec") / "session.tcrec"
    record = os.path.join(EXAMPLES, "record")
    assert os.access(record, os.X_OK), f"{record} missing: cargo build --example record"
    proc, addr = start()
    try:
        done = run(record, f"ws://{addr}/ws", "*", "--out", str(path), "--records", "20000")
        assert done.returncode == 0, done.stderr
    finally:
        stop(proc)
    return path


def export(path, fmt, out, *extra):
    done = run(BINARY, "capture", "export", str(path), "--format", fmt, "-o", str(out), *extra)
    assert done.returncode == 0, done.stderr
    return done


def reference(path):
    arr, names = tickcast.decode_capture(str(path))
    return tickcast.to_dataframe(arr, names)


def test_parquet_export_read_with_pandas_equals_decode_capture(recorded, tmp_path):
    out = tmp_path / "s.parquet"
    done = export(recorded, "parquet", out)
    ref = reference(recorded)
    assert f"{len(ref)} records exported" in done.stderr
    df = pd.read_parquet(out)  # pyarrow
    assert list(df.columns) == list(tickcast.Record._fields)
    assert len(df) == len(ref) >= 20000
    assert str(df["ts_event"].dtype) == "datetime64[ns, UTC]"
    for col in ("ts_event", "ts_recv"):
        assert np.array_equal(df[col].astype("int64").to_numpy(), ref[col].to_numpy().astype("int64")), col
    for col in ("symbol_id", "seq", "flags", "count"):
        assert np.array_equal(df[col].to_numpy(), ref[col].to_numpy()), col
    assert df["symbol"].tolist() == ref["symbol"].astype(str).tolist()
    assert df["kind"].tolist() == ref["kind"].astype(str).tolist()
    for col in PRICES:
        # Decimal('816.40000000') both ways, None where the other kind's value is.
        assert df[col].tolist() == ref[col].tolist(), col
    assert isinstance(df["price"].dropna().iloc[0], Decimal)
    # Row by row, the export is read_capture's records in the same order, ts_out too.
    rows = [
        (r.ts_event.value, r.ts_recv.value, r.ts_out.value, *tuple(r)[3:])
        for r in df.itertuples(index=False)
    ]
    assert rows == [tuple(r) for r in tickcast.read_capture(str(recorded), prices="decimal")]


def test_csv_and_jsonl_carry_the_same_exact_rows(recorded, tmp_path):
    ref = reference(recorded)
    export(recorded, "csv", tmp_path / "s.csv")
    csv = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == list(tickcast.Record._fields) and len(csv) == len(ref)
    assert [int(v) for v in csv["seq"]] == ref["seq"].tolist()
    for col in PRICES:
        assert [Decimal(v) if v else None for v in csv[col]] == ref[col].tolist(), col
    export(recorded, "jsonl", tmp_path / "s.jsonl")
    lines = [json.loads(line) for line in open(tmp_path / "s.jsonl")]
    assert len(lines) == len(ref)
    assert [line["ts_event"] for line in lines] == ref["ts_event"].tolist()
    for col in PRICES:
        assert [Decimal(line[col]) if col in line else None for line in lines] == ref[col].tolist(), col


def test_export_filters_by_symbol_and_time(recorded, tmp_path):
    ref = reference(recorded)
    start_ns = int(ref["ts_event"].quantile(0.25))
    end_ns = int(ref["ts_event"].quantile(0.75))
    export(recorded, "csv", tmp_path / "f.csv", "--symbols", "SYM1,SYM2", "--start", str(start_ns), "--end", str(end_ns))
    got = pd.read_csv(tmp_path / "f.csv")
    want = ref[ref["symbol"].isin(["SYM1", "SYM2"]) & (ref["ts_event"] >= start_ns) & (ref["ts_event"] < end_ns)]
    assert len(got) == len(want) > 0
    assert got["seq"].tolist() == want["seq"].tolist()
    # RFC 3339 times mean the same instants.
    iso = pd.Timestamp(start_ns, tz="UTC").isoformat().replace("+00:00", "Z")
    export(recorded, "csv", tmp_path / "g.csv", "--start", iso)
    assert len(pd.read_csv(tmp_path / "g.csv")) == int((ref["ts_event"] >= start_ns).sum())


def test_info_and_cat_describe_the_capture(recorded):
    done = run(BINARY, "capture", "info", str(recorded))
    assert done.returncode == 0, done.stderr
    ref = reference(recorded)
    assert "version     2" in done.stdout
    assert f"records     {len(ref)} (" in done.stdout
    assert f"symbols     {SYMBOLS}, gaps 0" in done.stdout
    info = json.loads(run(BINARY, "capture", "info", "--json", str(recorded)).stdout)
    assert info["records"] == len(ref) and info["gaps"] == 0
    assert info["trades"] == int((ref["kind"] == "trade").sum())
    assert info["ts_event"]["first_ns"] == int(ref["ts_event"].min())
    assert sorted(info["symbols"]) == sorted(f"SYM{i}" for i in range(SYMBOLS))
    cat = run(BINARY, "capture", "cat", str(recorded), "--symbols", "SYM3")
    lines = cat.stdout.splitlines()
    assert cat.returncode == 0 and len(lines) == int((ref["symbol"] == "SYM3").sum())
    assert all(" SYM3 " in line for line in lines)
    first = ref[ref["symbol"] == "SYM3"].iloc[0]
    assert f"#{first['seq']}" in lines[0] and "[snapshot]" in lines[0]


def test_a_truncated_capture_exports_what_is_whole_and_says_so(recorded, tmp_path):
    data = recorded.read_bytes()
    cut = tmp_path / "cut.tcrec"
    cut.write_bytes(data[:len(data) - 1000])
    # What is whole: every block before the cut.
    whole = 0
    try:
        for block, _ in tickcast.capture_blocks(str(cut)):
            whole += len(block)
    except tickcast.DecodeError:
        pass
    assert 0 < whole < len(reference(recorded))
    done = run(BINARY, "capture", "export", str(cut), "--format", "parquet", "-o", str(tmp_path / "cut.parquet"))
    assert done.returncode == 1
    assert "ends inside" in done.stderr and "at byte" in done.stderr, done.stderr
    assert f"the output is complete up to there: {whole} records" in done.stderr, done.stderr
    assert len(pd.read_parquet(tmp_path / "cut.parquet")) == whole
    info = run(BINARY, "capture", "info", str(cut))
    assert info.returncode == 1 and f"records     {whole} (" in info.stdout
    bad = tmp_path / "bad.tcrec"
    bad.write_bytes(b"{\"not\": \"a capture\"}\n")
    done = run(BINARY, "capture", "export", str(bad), "--format", "csv", "-o", str(tmp_path / "bad.csv"))
    assert done.returncode == 1 and "not a tickcast capture" in done.stderr, done.stderr


def peak_rss_kib(*args):
    """Runs a command; returns its exit status and peak resident memory (KiB)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read()
    return usage.ru_maxrss


def repeated(recorded, path, copies):
    """A capture of `recorded`'s messages written `copies` times over."""
    msgs = list(tickcast.read_capture(str(recorded)))
    with open(path, "wb") as f, tickcast.CaptureWriter(f, msgs[0][1]) as w:
        for _ in range(copies):
            for m, _ in msgs:
                w.message(m)
    return path


def test_a_progress_bar_on_a_terminal_only(recorded, tmp_path):
    big = repeated(recorded, tmp_path / "big.tcrec", 5)
    args = [BINARY, "capture", "export", str(big), "--format", "parquet", "-o", str(tmp_path / "big.parquet")]
    # Standard error on a pseudo-terminal, as in an interactive shell.
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=WAIT) == 0
    os.close(master)
    text = seen.decode(errors="replace")
    assert str(big) in text and "MiB" in text and "=" in text, text[-500:]
    # Not a terminal: only the closing line.
    done = run(*args)
    assert done.stderr.strip().splitlines() == [f"{5 * len(reference(recorded))} records exported"], done.stderr


def test_a_large_capture_exports_in_bounded_memory(recorded, tmp_path):
    """The same recorded messages written 10 and 40 times over (about 200,000 and
    800,000 records) exported to Parquet, which buffers a row group: four times the
    input, about the same peak memory (a writer that held the whole output would
    grow by more than the output's growth, about 5 MiB; one that held the rows, by
    far more)."""
    rss, size, out_size = {}, {}, {}
    for copies in (10, 40):
        path = repeated(recorded, tmp_path / f"x{copies}.tcrec", copies)
        out = tmp_path / f"x{copies}.parquet"
        rss[copies] = peak_rss_kib(BINARY, "capture", "export", str(path), "--format", "parquet", "-o", str(out))
        size[copies], out_size[copies] = os.path.getsize(path), os.path.getsize(out)
    assert (size[40] - size[10]) // 1024 > 40_000
    assert (out_size[40] - out_size[10]) // 1024 > 4096
    assert rss[40] - rss[10] < 4096, f"peak RSS {rss[10]} KiB -> {rss[40]} KiB"


def test_the_recorders_files_read_and_export(tmp_path):
    """The server's own rolling recorder: its files decode in Python and export, and
    together hold every tick of each symbol from their first on, in order."""
    rec = tmp_path / "rec"
    config = tmp_path / "record.toml"
    config.write_text(f'[record]\ndir = "{rec}"\nrotate_mb = 1\nkeep = 10\nflush_interval_ms = 50\n')
    proc, addr = start("--config", str(config))
    try:
        deadline = time.monotonic() + WAIT
        while len(list(rec.glob("*.tcrec"))) < 3:
            assert time.monotonic() < deadline, "the recorder never rotated"
            time.sleep(0.05)
    finally:
        stop(proc)
    files = sorted(rec.glob("*.tcrec"))
    arrays = [tickcast.decode_capture(str(f)) for f in files]
    names = arrays[0][1]
    assert set(names.values()) == {f"SYM{i}" for i in range(SYMBOLS)}
    arr = tickcast.concat([a for a, _ in arrays])
    for sid in np.unique(arr["symbol_id"]):
        seqs = arr["seq"][arr["symbol_id"] == sid].astype(np.int64)
        assert (np.diff(seqs) == 1).all(), names[int(sid)]
    out = tmp_path / "day.parquet"
    done = run(BINARY, "capture", "export", *map(str, files), "--format", "parquet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    df = pd.read_parquet(out)
    assert len(df) == len(arr)
    assert df["seq"].tolist() == arr["seq"].tolist()
    assert (df["count"] == 1).all() and (df["flags"] == 0).all(), "the recorder keeps sequenced ticks as they are"
    shutil.rmtree(rec)
