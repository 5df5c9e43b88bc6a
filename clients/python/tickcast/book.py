"""Order books rebuilt from tickcast book messages (``docs/protocol.md``, "Order books").

A :class:`Book` takes book records (``kind`` 3, from :func:`tickcast.decode`) or JSON
``book`` objects: a message flagged snapshot replaces the whole book, any other one
sets each level's size (0 removes the level). Books are numbered per symbol on their
own sequence; each message accounts for ``count`` of them, so a message that does not
follow the last one is a :class:`BookGap`. :attr:`Book.bids` and :attr:`Book.asks`
are numpy ``int64`` arrays of shape ``(levels, 2)``: price and size in fixed point
(:data:`tickcast.SCALE`), best first.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .decode import FLAG_SNAPSHOT, SCALE

KIND_BOOK = 3
"""``kind`` of a book record."""
SIDE_BID = 0
"""Side byte of a bid level."""
SIDE_ASK = 1
"""Side byte of an ask level."""


@dataclass(frozen=True)
class BookGap:
    """Book changes of ``symbol`` lost: book sequence numbers from ``expected`` up to
    (not including) ``got`` were never accounted for. The book is not the server's
    until the next snapshot."""

    symbol: str
    expected: int
    got: int


def _fixed(s: str) -> int:
    return int(Decimal(s) * SCALE)


class Book:
    """One symbol's book as a subscriber rebuilds it."""

    def __init__(self, symbol: str = "") -> None:
        self.symbol = symbol
        self.seq = 0
        """Book sequence number of the last complete message: what ``resume_book``
        carries."""
        self.synced = False
        """A snapshot (or the symbol's first change) was applied, and no gap since."""
        self._levels: Tuple[Dict[int, int], Dict[int, int]] = ({}, {})
        self._remaining = 0

    @property
    def bids(self) -> np.ndarray:
        """Bid levels ``[[price, size], …]``, highest price first (fixed point)."""
        return self._side(SIDE_BID, reverse=True)

    @property
    def asks(self) -> np.ndarray:
        """Ask levels ``[[price, size], …]``, lowest price first (fixed point)."""
        return self._side(SIDE_ASK, reverse=False)

    def _side(self, side: int, reverse: bool) -> np.ndarray:
        levels = self._levels[side]
        out = np.empty((len(levels), 2), dtype=np.int64)
        for i, p in enumerate(sorted(levels, reverse=reverse)):
            out[i, 0] = p
            out[i, 1] = levels[p]
        return out

    def _set(self, side: int, price: int, size: int) -> None:
        levels = self._levels[side]
        if size <= 0:
            levels.pop(price, None)
        else:
            levels[price] = size

    def _complete(self, seq: int, flags: int, count: int) -> Optional[BookGap]:
        expected = self.seq + max(count, 1)
        first = self.seq == 0 and not self.synced
        last, self.seq = self.seq, seq
        if flags & FLAG_SNAPSHOT or (first and seq == expected) or (self.synced and seq == expected):
            self.synced = True
            return None
        self.synced = False
        return BookGap(self.symbol, last + 1, seq)

    def apply_records(self, records: np.ndarray) -> List[BookGap]:
        """Applies this symbol's book records of a decoded message, in order; returns
        the gaps they showed (the levels are applied anyway)."""
        gaps = []
        rows = zip(
            records["kind"].tolist(), records["flags"].tolist(), records["seq"].tolist(),
            records["count"].tolist(), records["value0"].tolist(), records["value1"].tolist(),
            records["value2"].tolist(), records["value3"].tolist(),
        )
        for kind, flags, seq, count, price, size, side, group in rows:
            if kind != KIND_BOOK:
                continue
            levels, index = group & 0xFFFFFFFF, (group >> 32) & 0xFFFFFFFF
            if index == 0:
                if flags & FLAG_SNAPSHOT:
                    self._levels[0].clear()
                    self._levels[1].clear()
                self._remaining = levels
            if levels:
                self._set(SIDE_ASK if side & 0xFF == SIDE_ASK else SIDE_BID, price, size)
                self._remaining = max(0, self._remaining - 1)
            if self._remaining == 0:
                gap = self._complete(seq, flags, count)
                if gap is not None:
                    gaps.append(gap)
        return gaps

    def apply_json(self, msg: Mapping[str, Any]) -> Optional[BookGap]:
        """Applies one JSON ``book`` object; returns the gap it showed, if any."""
        flags = FLAG_SNAPSHOT if "snapshot" in (msg.get("flags") or ()) else 0
        if flags:
            self._levels[0].clear()
            self._levels[1].clear()
        for side, key in ((SIDE_BID, "bids"), (SIDE_ASK, "asks")):
            for price, size in msg.get(key) or ():
                self._set(side, _fixed(price), _fixed(size))
        return self._complete(int(msg["seq"]), flags, int(msg.get("count", 1)))


class Books:
    """Every symbol's :class:`Book`, by name, fed with whole decoded messages."""

    def __init__(self) -> None:
        self._books: Dict[str, Book] = {}

    def get(self, symbol: str) -> Optional[Book]:
        """The book of ``symbol``, if any of its book messages arrived."""
        return self._books.get(symbol)

    def forget(self, symbol: str) -> None:
        """Drops ``symbol``'s book (unsubscribed)."""
        self._books.pop(symbol, None)

    def resume_points(self, symbols: Optional[Iterable[str]] = None) -> Dict[str, int]:
        """``resume_book`` for a resubscribe: the seq of every synced book."""
        wanted = None if symbols is None else set(symbols)
        return {
            n: b.seq for n, b in self._books.items() if b.synced and (wanted is None or n in wanted)
        }

    def apply_records(self, records: np.ndarray, names: Mapping[int, str]) -> List[BookGap]:
        """Applies the book records of a decoded message to their symbols' books."""
        mask = records["kind"] == KIND_BOOK
        if not mask.any():
            return []
        gaps: List[BookGap] = []
        books = records[mask]
        for sym in dict.fromkeys(books["symbol_id"].tolist()):
            name = names.get(sym)
            if name is None:
                continue
            book = self._books.setdefault(name, Book(name))
            gaps.extend(book.apply_records(books[books["symbol_id"] == sym]))
        return gaps

    def apply_json(self, msg: Mapping[str, Any]) -> Optional[BookGap]:
        """Applies one JSON ``book`` object to its symbol's book."""
        name = str(msg["symbol"])
        return self._books.setdefault(name, Book(name)).apply_json(msg)
