#!/usr/bin/env python3
"""Writes the sample captures in this folder, deterministically.

The captures follow the venues' documented message schemas field for field (see
README.md). They are generated rather than recorded, because the machines this
project is built on reach no exchange; prices, sizes, ids and timestamps model a
quiet minute of BTC and ETH trading on 2026-11-20 from 14:30:00 UTC.

    python3 feeds/generate.py        # rewrites the .jsonl files next to this script
"""

import datetime
import json
import os
import random
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
START_MS = 1_795_185_000_000  # 2026-11-20T14:30:00Z
SECONDS = 60


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def binance_dec(units, decimals):
    """An integer count of 10^-decimals as Binance prints it: 8 decimal places."""
    whole, frac = divmod(units, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}" + "0" * (8 - decimals)


def cb_price(cents):
    return f"{cents // 100}.{cents % 100:02d}"


def cb_size(units):
    return f"{units // 10**8}.{units % 10**8:08d}"


def binance(rng):
    symbols = {
        # symbol: mid in cents, trade id, book update id, qty step exponent
        "BTCUSDT": {"mid": 9_125_000, "t": 5_512_345_678, "u": 71_234_567_890, "qty_dec": 5, "qty": (1, 40_000)},
        "ETHUSDT": {"mid": 304_520, "t": 3_101_234_567, "u": 52_345_678_901, "qty_dec": 4, "qty": (10, 80_000)},
    }
    lines = [dumps({"result": None, "id": 1})]
    t_ms = START_MS + 17
    end = START_MS + SECONDS * 1000
    while t_ms < end:
        t_ms += rng.choice([0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89])
        name = rng.choice(["BTCUSDT", "BTCUSDT", "ETHUSDT"])
        s = symbols[name]
        s["mid"] = max(100, s["mid"] + rng.randint(-3, 3))
        bid = s["mid"] - rng.choice([0, 0, 1])
        ask = bid + 1
        lo, hi = s["qty"]
        if rng.random() < 0.3:
            s["t"] += 1
            maker_is_buyer = rng.random() < 0.5
            price = bid if maker_is_buyer else ask
            qty = rng.randint(lo, hi)
            lines.append(dumps({
                "stream": f"{name.lower()}@trade",
                "data": {
                    "e": "trade",
                    "E": t_ms + rng.choice([0, 0, 1]),
                    "s": name,
                    "t": s["t"],
                    "p": binance_dec(price, 2),
                    "q": binance_dec(qty, s["qty_dec"]),
                    "T": t_ms,
                    "m": maker_is_buyer,
                    "M": True,
                },
            }))
        else:
            s["u"] += rng.randint(1, 60)
            lines.append(dumps({
                "stream": f"{name.lower()}@bookTicker",
                "data": {
                    "u": s["u"],
                    "s": name,
                    "b": binance_dec(bid, 2),
                    "B": binance_dec(rng.randint(lo, hi * 4), s["qty_dec"]),
                    "a": binance_dec(ask, 2),
                    "A": binance_dec(rng.randint(lo, hi * 4), s["qty_dec"]),
                },
            }))
    return lines


def cb_time(us):
    secs, micros = divmod(us, 1_000_000)
    t = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


def coinbase(rng):
    products = {
        "BTC-USD": {"mid": 9_126_000, "trade_id": 876_543_210, "seq": 112_345_678_901, "size": (1_000, 50_000_000),
                    "open": 9_010_012, "low": 8_955_500, "high": 9_188_800, "vol": 8_123_45678901, "vol30": 291_234_12345678},
        "ETH-USD": {"mid": 304_610, "trade_id": 612_345_678, "seq": 67_890_123_456, "size": (100_000, 900_000_000),
                    "open": 299_876, "low": 297_011, "high": 307_245, "vol": 98_765_43210987, "vol30": 3_456_789_01234567},
    }
    rng_uuid = lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))
    lines = [dumps({
        "type": "subscriptions",
        "channels": [
            {"name": "matches", "product_ids": list(products)},
            {"name": "ticker", "product_ids": list(products)},
            {"name": "heartbeat", "product_ids": list(products)},
        ],
    })]
    t_us = START_MS * 1000 + 4_211

    def book(p):
        bid = p["mid"] - rng.choice([0, 0, 1])
        return bid, bid + 1

    def match(name, p, ty, t_us, maker_side):
        bid, ask = p["bbo"]
        price = ask if maker_side == "sell" else bid
        size = rng.randint(*p["size"])
        p["last"] = (price, size, maker_side)
        p["vol"] += size
        p["high"] = max(p["high"], price)
        p["low"] = min(p["low"], price)
        return dumps({
            "type": ty,
            "trade_id": p["trade_id"],
            "sequence": p["seq"],
            "maker_order_id": rng_uuid(),
            "taker_order_id": rng_uuid(),
            "time": cb_time(t_us),
            "product_id": name,
            "size": cb_size(size),
            "price": cb_price(price),
            "side": maker_side,
        })

    def ticker(name, p, t_us):
        price, size, maker_side = p["last"]
        bid, ask = p["bbo"]
        return dumps({
            "type": "ticker",
            "sequence": p["seq"],
            "product_id": name,
            "price": cb_price(price),
            "open_24h": cb_price(p["open"]),
            "volume_24h": cb_size(p["vol"]),
            "low_24h": cb_price(p["low"]),
            "high_24h": cb_price(p["high"]),
            "volume_30d": cb_size(p["vol30"] + p["vol"]),
            "best_bid": cb_price(bid),
            "best_bid_size": cb_size(rng.randint(*p["size"])),
            "best_ask": cb_price(ask),
            "best_ask_size": cb_size(rng.randint(*p["size"])),
            "side": "buy" if maker_side == "sell" else "sell",
            "time": cb_time(t_us),
            "trade_id": p["trade_id"],
            "last_size": cb_size(size),
        })

    # On subscribe: the last match of each product, then its current ticker.
    for name, p in products.items():
        p["bbo"] = book(p)
        lines.append(match(name, p, "last_match", t_us - rng.randint(1_000, 900_000), rng.choice(["buy", "sell"])))
    for name, p in products.items():
        t_us += rng.randint(50, 400)
        lines.append(ticker(name, p, t_us))

    next_heartbeat = (START_MS + 1000) * 1000 + 183
    end = (START_MS + SECONDS * 1000) * 1000
    while t_us < end:
        t_us += rng.choice([900, 8_000, 21_000, 55_000, 89_000, 144_000, 233_000, 377_000])
        while next_heartbeat <= t_us:
            for name, p in products.items():
                p["seq"] += rng.randint(1, 30)
                lines.append(dumps({
                    "type": "heartbeat",
                    "last_trade_id": p["trade_id"],
                    "product_id": name,
                    "sequence": p["seq"],
                    "time": cb_time(next_heartbeat + rng.randint(0, 900)),
                }))
            next_heartbeat += 1_000_000
        name = rng.choice(["BTC-USD", "BTC-USD", "ETH-USD"])
        p = products[name]
        p["mid"] = max(100, p["mid"] + rng.randint(-4, 4))
        p["bbo"] = book(p)
        maker_side = rng.choice(["buy", "sell"])
        # A taker order may sweep a few resting orders: several matches at one time,
        # and the ticker channel batches them into one ticker after the last.
        for _ in range(rng.choice([1, 1, 1, 1, 2, 3])):
            p["seq"] += rng.randint(1, 40)
            p["trade_id"] += 1
            lines.append(match(name, p, "match", t_us, maker_side))
        lines.append(ticker(name, p, t_us))
    return lines


def write(name, lines):
    with open(os.path.join(HERE, name), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    write("binance-spot-btcusdt-ethusdt.jsonl", binance(random.Random(20261120)))
    write("coinbase-exchange-btc-usd-eth-usd.jsonl", coinbase(random.Random(20261120)))
