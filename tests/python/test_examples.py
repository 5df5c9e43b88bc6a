"""The Rust examples as a user runs them, against a real `[tls]` server: `record`
writes a capture over `wss://` trusting a private CA through `--ca-file`, Python's
`decode_capture` reads it back gap-free; `print_ticks` prints over `wss://` with the
CA and is refused without it. Certificates come from `trustme` (a test CA)."""

import os
import subprocess

import numpy as np
import pytest
import trustme

import tickcast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("TICKCAST_BIN", os.path.join(ROOT, "target", "debug", "tickcast"))
EXAMPLES = os.environ.get("TICKCAST_EXAMPLES", os.path.join(ROOT, "target", "debug", "examples"))
WAIT = 60  # seconds: the bound of every wait
SYMBOLS = 10


def example(name):
    path = os.path.join(EXAMPLES, name)
    assert os.access(path, os.X_OK), f"{path} missing: build it with `cargo build --example {name}`"
    return path


@pytest.fixture
def tls_server(tmp_path):
    """A `[tls]` server with a certificate for 127.0.0.1 from a test CA; yields its
    address and the CA's PEM file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_pem = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_pem))
    config = tmp_path / "tls.toml"
    config.write_text(f'[tls]\ncert_path = "{chain}"\nkey_path = "{key}"\n')
    proc = subprocess.Popen(
        [BINARY, "serve", "--config", str(config), "--listen", "127.0.0.1:0", "--workers", "2", "--no-pin",
         "--symbols", str(SYMBOLS), "--rate", "5000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on https://" in line and "wss://" in line, line
        yield line.split("https://", 1)[1].split()[0], str(ca_pem)
    finally:
        proc.terminate()
        assert proc.wait(timeout=WAIT) == 0, "server exits cleanly on SIGTERM"


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=WAIT, env={**os.environ, "RUST_BACKTRACE": "0"})


def test_record_over_wss_with_a_ca_file_then_decode_in_python(tls_server, tmp_path):
    addr, ca = tls_server
    out = tmp_path / "session.tcrec"
    done = run(example("record"), f"wss://{addr}/ws", "*", "--out", str(out), "--records", "3000", "--ca-file", ca)
    assert done.returncode == 0, done.stderr
    assert "(0 gaps)" in done.stderr, done.stderr

    arr, names = tickcast.decode_capture(str(out))
    assert len(arr) >= 3000
    assert set(names.values()) == {f"SYM{i}" for i in range(SYMBOLS)}
    msgs = list(tickcast.read_capture(str(out)))
    assert arr.tolist() == [r for m, _ in msgs for r in tickcast.decode_struct(m)[1]]
    # Per symbol: the snapshot first (the latest trade and quote), then every later
    # sequence number once, in order.
    for sid in np.unique(arr["symbol_id"]):
        recs = arr[arr["symbol_id"] == sid]
        snapshot = (recs["flags"] & tickcast.FLAG_SNAPSHOT) != 0
        first_live = int(np.argmin(snapshot))
        assert 1 <= first_live <= 2 and not snapshot[first_live:].any(), (names[int(sid)], recs["flags"][:4])
        seqs = recs["seq"].astype(np.int64)
        assert seqs[first_live] == seqs[:first_live].max() + 1, names[int(sid)]
        assert (np.diff(seqs[first_live:]) == 1).all(), f"gap in {names[int(sid)]}"


def test_print_ticks_over_wss_needs_the_ca_file(tls_server):
    addr, ca = tls_server
    done = run(example("print_ticks"), f"wss://{addr}/ws", "SYM0", "SYM1", "--count", "5", "--ca-file", ca)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and all(line.split()[0] in ("SYM0", "SYM1") for line in lines), lines
    assert "[snapshot]" in lines[0]
    refused = run(example("print_ticks"), f"wss://{addr}/ws", "SYM0", "--count", "5")
    assert refused.returncode != 0
    assert "UnknownIssuer" in refused.stderr, refused.stderr
