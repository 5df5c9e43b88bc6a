"""The Python client's `token` and `ca_file` options against a real server with
`[auth]` and `[tls]` (a test CA from `trustme`), and exact prices in the DataFrames of
what it receives (`tickcast.prices`: `"decimal"`, `"fixed"`, next to `"float"`)."""

import asyncio
import os
import ssl
import subprocess
import time
from decimal import Decimal

import pytest
import trustme
import websockets

import tickcast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("TICKCAST_BIN", os.path.join(ROOT, "target", "debug", "tickcast"))
WAIT = 30  # seconds: the bound of every wait
SECRET = "python-client-test-secret"


def jwt(claims, secret=SECRET):
    """An HS256 JWT, with nothing but the standard library."""
    import base64
    import hashlib
    import hmac
    import json

    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    body = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return body + "." + b64(sig)


@pytest.fixture
def secure_server(tmp_path):
    """A server with `[tls]` (a certificate for 127.0.0.1 from a test CA) and `[auth]`;
    yields its address and the CA's PEM file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, ca_pem = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_pem))
    config = tmp_path / "secure.toml"
    config.write_text(
        f'[tls]\ncert_path = "{chain}"\nkey_path = "{key}"\n'
        f'[auth]\njwt_secret = "{SECRET}"\nallow_query_token = false\n'
    )
    proc = subprocess.Popen(
        [BINARY, "serve", "--config", str(config), "--listen", "127.0.0.1:0", "--workers", "1", "--no-pin",
         "--symbols", "10", "--rate", "2000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on https://" in line, line
        yield line.split("https://", 1)[1].split()[0], str(ca_pem)
    finally:
        proc.terminate()
        assert proc.wait(timeout=WAIT) == 0, "server exits cleanly on SIGTERM"


def test_token_and_ca_file_options(secure_server):
    addr, ca = secure_server
    url = f"wss://{addr}/ws"
    token = jwt({"sub": "py", "exp": int(time.time()) + 3600, "symbols": ["SYM1", "SYM2"]})

    async def main():
        # Both options: ticks arrive over wss://, and a refused symbol is named.
        async with tickcast.Client(url, ["SYM1", "SYM2"], token=token, ca_file=ca) as client:
            records = 0
            async with asyncio.timeout(WAIT):
                while records < 20:
                    event = await client.next()
                    if isinstance(event, tickcast.Ticks):
                        assert set(event.records["symbol_id"].tolist()) <= set(event.names)
                        records += len(event)
            await client.subscribe(["SYM3"])
            async with asyncio.timeout(WAIT):
                while not isinstance(event := await client.next(), tickcast.ServerError):
                    pass
            assert event.message == 'not entitled to symbol "SYM3"'
        # Without the token: 401 at the upgrade.
        with pytest.raises(websockets.InvalidStatus) as refused:
            await tickcast.Client(url, ["SYM1"], ca_file=ca).connect()
        assert refused.value.response.status_code == 401
        # Without the CA file: the server's certificate is not trusted.
        with pytest.raises(ssl.SSLCertVerificationError):
            await tickcast.Client(url, ["SYM1"], token=token).connect()

    asyncio.run(main())


def test_ca_file_is_checked_at_once():
    with pytest.raises(ValueError, match="ca_file is for wss://"):
        tickcast.Client("ws://127.0.0.1:1/ws", ca_file="ca.pem")
    with pytest.raises(FileNotFoundError):
        tickcast.Client("wss://127.0.0.1:1/ws", ca_file="/nonexistent/ca.pem")


def test_dataframe_prices_exact_as_fixed_point_or_decimal():
    big = 9_223_372_036_854_775_807  # 92233720368.54775807: beyond a float's 16 digits
    records = [
        (tickcast.KIND_TRADE, 0, 0, 0, 1, 10, 11, 1, 0, big, 150_000_000, big, -1),
        (tickcast.KIND_QUOTE, 0, 0, 1, 2, 12, 13, 1, 0, 81_636_000_000, 1, 81_637_000_000, 2_500_000_000),
    ]
    arr = tickcast.decode(tickcast.encode(records))[1]
    names = {0: "A", 1: "B"}
    floats = tickcast.to_dataframe(arr, names, prices="float")
    fixed = tickcast.to_dataframe(arr, names, prices="fixed")
    decimal = tickcast.to_dataframe(arr, names)  # the default
    # Floats round the big price; the other two are exact.
    assert floats["price"][0] == big / 10**8 and int(floats["price"][0] * 10**8) != big
    assert fixed["price"][0] == big and str(fixed["price"].dtype) == "Int64"
    assert fixed["low"][0] == -1 and fixed["size"][0] == 150_000_000
    assert decimal["price"][0] == Decimal("92233720368.54775807")
    assert decimal["low"][0] == Decimal("-0.00000001") and decimal["size"][0] == Decimal("1.5")
    assert decimal["bid_px"][1] == Decimal("816.36") and decimal["ask_sz"][1] == Decimal("25")
    # Missing on the rows of the other kind, in each form.
    assert floats["bid_px"].isna()[0] and fixed["bid_px"].isna()[0] and decimal["bid_px"][0] is None
    assert fixed["price"].isna()[1] and decimal["price"][1] is None
    # The same on a client's Ticks.
    ticks = tickcast.Ticks(tickcast.decode_header(tickcast.encode(records)), arr, names, b"")
    assert ticks.to_dataframe()["price"][0] == Decimal("92233720368.54775807")
    assert ticks.to_dataframe(prices="fixed")["price"][0] == big
