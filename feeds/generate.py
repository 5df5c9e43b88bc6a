#!/usr/bin/env python3
"""Writes the sample captures in this folder, deterministically.

The captures follow the venues' documented message schemas field for field (see
README.md). They are generated rather than recorded, because the machines this
project is built on reach no exchange; prices, sizes, ids and timestamps model a
quiet minute of BTC and ETH trading on 2026-11-20 from 14:30:00 UTC.

    python3 feeds/generate.py        # rewrites the .jsonl and .book.json files next to this script
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


# Order books. Both venues below keep a book of at most DEPTH price levels a side
# (prices in integer ticks of one cent, sizes in integer units of the venue's
# precision). The book changes one level per venue update; a new level that would
# be the 21st of its side first removes the worst level of that side, so the book
# never holds more than DEPTH levels a side, and bids always stay below asks.

DEPTH = 20


class Book:
    def __init__(self, rng, mid, size):
        self.rng = rng
        self.mid = mid  # the best bid the book leans toward; best ask mid + 1
        self.size = size  # (lo, hi) of a level's size, in units
        self.bids = {}
        self.asks = {}
        for i in range(DEPTH - 3):
            self.bids[mid - (self.offset() if i else 0)] = rng.randint(*size)
            self.asks[mid + 1 + (self.offset() if i else 0)] = rng.randint(*size)

    def offset(self):
        # Distance in ticks from the top for a new level: mostly close to it.
        return min(int(self.rng.expovariate(1 / 6)), 39)

    def drift(self, choices):
        self.mid = max(100, self.mid + self.rng.choice(choices))

    def side(self, s):
        return self.bids if s == "b" else self.asks

    def best(self, s):
        levels = self.side(s)
        return (max if s == "b" else min)(levels) if levels else None

    def worst(self, s):
        levels = self.side(s)
        return (min if s == "b" else max)(levels)

    def ranked(self, s):
        return sorted(self.side(s), reverse=(s == "b"))

    def new_size(self, old=None):
        while True:
            q = self.rng.randint(*self.size)
            if q != old:
                return q

    def step(self):
        """The next venue updates: one or two single-level changes (side, price,
        size; size 0 removes), not yet applied."""
        rng = self.rng
        bb, ba = self.best("b"), self.best("a")
        # The market moved through the top of a side: that level trades away.
        if ba is not None and ba <= self.mid and len(self.asks) > 1:
            return [("a", ba, 0)]
        if bb is not None and bb > self.mid and len(self.bids) > 1:
            return [("b", bb, 0)]
        s = rng.choice("ba")
        levels = self.side(s)
        r = rng.random()
        if r < 0.60:
            off = 0 if r < 0.15 else self.offset()
            price = self.mid - off if s == "b" else self.mid + 1 + off
            crosses = (s == "b" and ba is not None and price >= ba) or (s == "a" and bb is not None and price <= bb)
            if price not in levels and not crosses:
                add = (s, price, self.new_size())
                if len(levels) < DEPTH:
                    return [add]
                worst = self.worst(s)
                if (price > worst) if s == "b" else (price < worst):
                    return [(s, worst, 0), add]
        elif r < 0.66 and len(levels) > 14:
            return [(s, rng.choice(sorted(levels)), 0)]
        ranked = self.ranked(s)
        price = ranked[min(int(rng.expovariate(1 / 4)), len(ranked) - 1)]
        return [(s, price, self.new_size(levels[price]))]

    def apply(self, change):
        s, price, qty = change
        levels = self.side(s)
        if qty:
            levels[price] = qty
        else:
            levels.pop(price, None)
        bb, ba = self.best("b"), self.best("a")
        assert len(self.bids) <= DEPTH and len(self.asks) <= DEPTH
        assert bb is None or ba is None or bb < ba

    def copy(self):
        return {"b": dict(self.bids), "a": dict(self.asks)}


def binance_depth(rng):
    """Binance spot diff depth (`<symbol>@depth@100ms`) with the REST snapshots a
    client fetched, and the venue's final books."""
    symbols = {
        # symbol: mid in cents, first update id, qty decimals, level size range,
        # offset of the symbol's 100 ms ticks
        "BTCUSDT": {"mid": 9_125_000, "u": 71_234_567_890, "qty_dec": 5, "size": (1, 250_000), "off": 23},
        "ETHUSDT": {"mid": 304_520, "u": 52_345_678_901, "qty_dec": 4, "size": (10, 400_000), "off": 71},
    }
    events = SECONDS * 1000 // 100
    lines = []  # (time ms, order, line)

    def levels(prices, s, qty_dec):
        """[price, qty] pairs of one side, best first."""
        return [[binance_dec(p, 2), binance_dec(prices[p], qty_dec)]
                for p in sorted(prices, reverse=(s == "b"))]

    final = {}
    for name, s in symbols.items():
        book = Book(rng, s["mid"], s["size"])
        u = s["u"]
        gap = rng.randint(295, 305)  # this event is lost; the client resyncs
        # The two snapshots: {event whose [U, u] holds the snapshot's lastUpdateId
        # strictly inside: event the fetched snapshot arrives after}. The first
        # stands inside the 2nd event and arrives after the 3rd; the second stands
        # inside the 3rd event after the lost one and arrives after the 2nd (the
        # 1st showed the client the gap).
        straddle = {1: 2, gap + 3: gap + 2}
        times, fetched = [], []
        for k in range(events):
            t = START_MS + s["off"] + 100 * k + rng.randint(0, 3)
            times.append(t)
            book.drift([-2, -1, -1, 0, 0, 0, 0, 1, 1, 2])
            n = rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10, 13])
            if k in straddle:
                n = max(n, 3)
            first = u + 1
            snap_at = first + rng.randint(1, n - 2) if k in straddle else None
            changed = {}
            while u - first + 1 < n:
                for change in book.step():
                    u += 1
                    book.apply(change)
                    changed[change[:2]] = change[2]
                    if u == snap_at:
                        fetched.append((straddle[k], u, book.copy()))
            assert u - first + 1 >= len(changed)
            if k == gap:
                continue
            bids = {p: q for (side, p), q in changed.items() if side == "b"}
            asks = {p: q for (side, p), q in changed.items() if side == "a"}
            lines.append((t, len(lines), dumps({
                "stream": f"{name.lower()}@depth@100ms",
                "data": {
                    "e": "depthUpdate",
                    "E": t,
                    "s": name,
                    "U": first,
                    "u": u,
                    "b": levels(bids, "b", s["qty_dec"]),
                    "a": levels(asks, "a", s["qty_dec"]),
                },
            })))
        # The REST depth responses (`GET /api/v3/depth?symbol=...&limit=100`; the
        # whole book fits in it), each arriving after event `after` and before the
        # symbol's next one.
        assert len(fetched) == 2
        for after, last, snap in fetched:
            lines.append((times[after] + rng.randint(5, 60), len(lines), dumps({
                "stream": f"{name.lower()}@depth@snapshot",
                "data": {
                    "lastUpdateId": last,
                    "bids": levels(snap["b"], "b", s["qty_dec"]),
                    "asks": levels(snap["a"], "a", s["qty_dec"]),
                },
            })))
        final[name] = {"bids": levels(book.bids, "b", s["qty_dec"]), "asks": levels(book.asks, "a", s["qty_dec"])}
    lines.sort()
    return [dumps({"result": None, "id": 1})] + [line for _, _, line in lines], final


def coinbase_level2(rng):
    """Coinbase Exchange `level2_batch`: a snapshot per product, then l2updates
    batched every 50 ms; once per product a fresh snapshot after a few lost updates.
    Also the venue's final books."""
    products = {
        # product: mid in cents, level size range (units of 10^-8), batch offset (us)
        "BTC-USD": {"mid": 9_126_000, "size": (1_000, 150_000_000), "off": 3_117,
                    "n": [0, 0, 1, 1, 2, 2, 3, 4, 5, 7]},
        "ETH-USD": {"mid": 304_610, "size": (100_000, 2_500_000_000), "off": 28_409,
                    "n": [0, 0, 0, 1, 1, 2, 3, 4]},
    }
    batches = SECONDS * 1000 // 50
    t0 = START_MS * 1000 + 1_377

    def levels(book, s):
        prices = book[s]
        return [[cb_price(p), cb_size(prices[p])] for p in sorted(prices, reverse=(s == "b"))]

    def snapshot(name, book):
        return dumps({"type": "snapshot", "product_id": name, "bids": levels(book, "b"), "asks": levels(book, "a")})

    head = [dumps({
        "type": "subscriptions",
        "channels": [{"name": "level2_batch", "product_ids": list(products)}],
    })]
    lines = []  # (time us, order, line)
    final = {}
    for name, p in products.items():
        book = Book(rng, p["mid"], p["size"])
        head.append(snapshot(name, book.copy()))
        seen = book.copy()  # the book a client holds from what is in the capture
        # Around 30 s in, l2updates are lost (3 or more, until a level the client holds
        # is gone from the venue's book); then the venue sends a fresh snapshot.
        lose_from, lost, resnapped = rng.randint(590, 610), 0, False
        for k in range(batches):
            t = t0 + 50_000 * k + p["off"] + rng.randint(0, 2_000)
            book.drift([-1, 0, 0, 0, 0, 0, 1])
            n = rng.choice(p["n"])
            if not n:
                continue
            changed = {}
            done = 0
            while done < n:
                for change in book.step():
                    book.apply(change)
                    changed[change[:2]] = change[2]
                    done += 1
            if k >= lose_from and not resnapped:
                lost += 1
                gone = any(price not in book.side(s) for s in seen for price in seen[s])
                if lost >= 3 and gone:
                    resnapped = True
                    seen = book.copy()
                    lines.append((t + rng.randint(100, 9_000), len(lines), snapshot(name, seen)))
                continue
            for (s, price), qty in changed.items():
                if qty:
                    seen[s][price] = qty
                else:
                    seen[s].pop(price, None)
            lines.append((t, len(lines), dumps({
                "type": "l2update",
                "product_id": name,
                "changes": [["buy" if s == "b" else "sell", cb_price(price), cb_size(qty)]
                            for (s, price), qty in changed.items()],
                "time": cb_time(t),
            })))
        assert resnapped and seen == book.copy()
        final[name] = {"bids": levels(seen, "b"), "asks": levels(seen, "a")}
    lines.sort()
    return head + [line for _, _, line in lines], final


def write(name, lines):
    with open(os.path.join(HERE, name), "w") as f:
        f.write("\n".join(lines) + "\n")


def write_json(name, obj):
    with open(os.path.join(HERE, name), "w") as f:
        f.write(dumps(obj) + "\n")


if __name__ == "__main__":
    write("binance-spot-btcusdt-ethusdt.jsonl", binance(random.Random(20261120)))
    write("coinbase-exchange-btc-usd-eth-usd.jsonl", coinbase(random.Random(20261120)))
    # The order-book captures use their own seeds: the captures above stay as they are.
    depth, books = binance_depth(random.Random(2026112001))
    write("binance-spot-btcusdt-depth.jsonl", depth)
    write_json("binance-spot-btcusdt-depth.book.json", books)
    level2, books = coinbase_level2(random.Random(2026112002))
    write("coinbase-exchange-btc-usd-level2.jsonl", level2)
    write_json("coinbase-exchange-btc-usd-level2.book.json", books)
