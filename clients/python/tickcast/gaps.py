"""Per-symbol gap detection from sequence accounting (the same rules as the Rust
client's ``GapDetector``).

For a symbol, the ``count`` of the records received add up to the sequence numbers
advanced, and a ``snapshot`` record stands for everything before it
(``docs/protocol.md``, "Sequence numbers and gaps"). Each symbol keeps the highest
``seq`` seen and a deficit of updates not yet accounted for. The deficit is judged at
the end of each message (a conflated quote and trade arrive together, the lower seq
first), or at the end of the next one when the message was full (a larger batch is
split). A lower seq with a later ``ts_recv`` than anything seen means a restarted
server numbering afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from .decode import FLAG_SNAPSHOT, HEADER_SIZE, RECORD_SIZE

MAX_MESSAGE_BYTES = 65_535
"""Largest payload of a server data message (``docs/protocol.md``, "Batching")."""


@dataclass(frozen=True)
class Gap:
    """Updates of ``symbol`` were lost: sequence numbers from ``expected`` up to (not
    including) ``got`` were never accounted for."""

    symbol: str
    expected: int
    got: int

    @property
    def missed(self) -> int:
        """How many updates were lost."""
        return max(0, self.got - self.expected)


class _Tracker:
    __slots__ = ("name", "last", "deficit", "last_recv", "touched")

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = 0
        self.deficit = 0
        self.last_recv = 0
        self.touched = False


class GapDetector:
    """Tracks each symbol's sequence by name, so the accounting survives a reconnect
    where ids may be numbered afresh."""

    def __init__(self) -> None:
        self._by_name: Dict[str, _Tracker] = {}
        self._by_id: Dict[int, _Tracker] = {}
        self._touched: List[_Tracker] = []

    def bind(self, symbol_id: int, name: str) -> None:
        """Maps an id to a name on the current connection (a ``symbols`` message)."""
        t = self._by_name.get(name)
        if t is None:
            t = self._by_name[name] = _Tracker(name)
        self._by_id[symbol_id] = t

    def name(self, symbol_id: int) -> Optional[str]:
        """The name of an id on the current connection."""
        t = self._by_id.get(symbol_id)
        return t.name if t else None

    def names(self) -> Dict[int, str]:
        """The id → name map of the current connection."""
        return {i: t.name for i, t in self._by_id.items()}

    def new_connection(self) -> None:
        """Forgets the id map: a new connection sends its own ``symbols`` messages."""
        self._by_id.clear()
        self._touched.clear()
        for t in self._by_name.values():
            t.touched = False
            t.deficit = 0

    def forget(self, name: str) -> None:
        """Forgets a symbol's sequence (unsubscribed)."""
        t = self._by_name.get(name)
        if t is not None:
            t.last = t.deficit = t.last_recv = 0

    def last_seqs(self) -> Dict[str, int]:
        """The highest sequence number seen per symbol: what a resume continues from."""
        return {t.name: t.last for t in self._by_name.values() if t.last > 0}

    def observe(self, symbol_id: int, seq: int, flags: int, count: int, ts_recv: int) -> None:
        """Accounts for one record; records of unnamed ids are ignored."""
        t = self._by_id.get(symbol_id)
        if t is None:
            return
        if not t.touched:
            t.touched = True
            self._touched.append(t)
        afresh = seq <= t.last and ts_recv > t.last_recv
        if ts_recv > t.last_recv:
            t.last_recv = ts_recv
        if flags & FLAG_SNAPSHOT or t.last == 0 or afresh:
            t.last = seq
            t.deficit = 0
        elif seq <= t.last:
            t.deficit = max(0, t.deficit - count)
        else:
            need = seq - t.last + t.deficit
            t.deficit = max(0, need - count)
            t.last = seq

    def observe_records(self, records) -> None:
        """Accounts for every record of a decoded array (see :func:`tickcast.decode`)."""
        cols = zip(
            records["symbol_id"].tolist(), records["seq"].tolist(), records["flags"].tolist(),
            records["count"].tolist(), records["ts_recv"].tolist(),
        )
        observe = self.observe
        for sym, seq, flags, count, ts_recv in cols:
            observe(sym, seq, flags, count, ts_recv)

    def end_message(self, message_len: int) -> List[Gap]:
        """Ends a message of ``message_len`` bytes and returns the gaps it showed."""
        if message_len + RECORD_SIZE > MAX_MESSAGE_BYTES and message_len > HEADER_SIZE:
            return []
        gaps = []
        for t in self._touched:
            t.touched = False
            if t.deficit > 0:
                gaps.append(Gap(t.name, t.last - t.deficit, t.last))
                t.deficit = 0
        self._touched.clear()
        return gaps

    def __iter__(self) -> Iterator[Tuple[str, int]]:
        return iter(self.last_seqs().items())
