"""The asyncio client: subscribe, read events, reconnect and resume.

::

    async with tickcast.Client("ws://127.0.0.1:9001/ws", ["SYM0"]) as client:
        async for event in client:
            ...

Events are the dataclasses below. :class:`Ticks` carries a message's records as a
numpy structured array (:data:`tickcast.RECORD_DTYPE`); a :class:`Gap` follows the
:class:`Ticks` that showed it. When the connection ends, the client yields
:class:`Disconnected`, reconnects (at once after the server announced its shutdown,
otherwise after an exponential backoff with jitter), subscribes again with
``"resume": {symbol: last_seq}`` and yields :class:`Reconnected`; the server then
replays what was missed (records flagged ``replay``) or sends a snapshot. A restarted
server that does not know every symbol yet rejects that subscribe (a
:class:`ServerError` event): the client sends it again after a backoff until accepted.

Backpressure: the client reads a message only when asked for the next event (beyond
``websockets``' own bounded queue, ``max_queue``), so a slow consumer slows the
socket and the server conflates (:class:`Conflation`) rather than the client's memory
growing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import websockets
from websockets.exceptions import ConnectionClosed

from .book import KIND_BOOK, Book, Books
from .decode import FLAG_CONFLATED, FLAG_REPLAY, FLAG_SNAPSHOT, Header, decode, to_dataframe
from .gaps import Gap, GapDetector

__all__ = [
    "Client", "ClientClosed", "Ticks", "Gap", "Symbols", "Subscribed", "Unsubscribed",
    "Conflation", "Shutdown", "ServerError", "Control", "Disconnected", "Reconnected",
]


class ClientClosed(ConnectionError):
    """The client is closed, was told not to reconnect, or gave up reconnecting."""


@dataclass
class Ticks:
    """One binary data message."""

    header: Header
    records: np.ndarray
    """Structured array (:data:`tickcast.RECORD_DTYPE`), a read-only view of ``raw``."""
    names: Dict[int, str]
    """Symbol id → name on the connection that delivered the message."""
    raw: bytes = field(repr=False)
    """The message exactly as received (for capture files)."""

    def __len__(self) -> int:
        return len(self.records)

    def symbol(self, symbol_id: int) -> Optional[str]:
        """The name of a symbol id."""
        return self.names.get(int(symbol_id))

    def flagged(self, flag: int) -> np.ndarray:
        """Boolean mask of the records carrying ``flag`` (``tickcast.FLAG_*``)."""
        return (self.records["flags"] & flag) != 0

    def to_dataframe(self, prices: str = "decimal") -> Any:
        """The records as a pandas DataFrame (see :func:`tickcast.to_dataframe`)."""
        return to_dataframe(self.records, self.names, prices)


@dataclass(frozen=True)
class Symbols:
    """Id → name of symbols newly added to the subscription."""

    symbols: Dict[int, str]


@dataclass(frozen=True)
class Subscribed:
    """The server acknowledged a subscribe."""

    symbols: List[str]


@dataclass(frozen=True)
class Unsubscribed:
    """The server acknowledged an unsubscribe."""

    symbols: List[str]


@dataclass(frozen=True)
class Conflation:
    """The server started (``on``) or stopped merging updates for this connection."""

    on: bool
    merged: Optional[int] = None
    """When it stops: how many updates were merged."""


@dataclass(frozen=True)
class Shutdown:
    """The server announced its shutdown; the client reconnects at once."""


@dataclass(frozen=True)
class ServerError:
    """The server rejected a control message."""

    message: str


@dataclass(frozen=True)
class Control:
    """Any other text message, as parsed JSON."""

    message: Any


@dataclass(frozen=True)
class Disconnected:
    """The connection ended; the client reconnects unless told not to."""

    reason: str


@dataclass(frozen=True)
class Reconnected:
    """A new connection is up and the subscriptions were sent again with resume points."""

    attempts: int
    resumed: int
    """Symbols resumed from a sequence number."""


class Client:
    """A tickcast subscriber (binary format).

    :param url: ``ws://host:port/ws``, or ``wss://`` for a server with TLS.
    :param symbols: symbols to subscribe on connect (``["*"]`` for all).
    :param max_rate: at most this many updates per second per symbol (server-side).
    :param reconnect: reconnect when the connection ends (default True).
    :param backoff_initial: first reconnect delay in seconds (default 0.1), doubling.
    :param backoff_max: longest reconnect delay in seconds (default 5).
    :param max_reconnect_attempts: failed attempts in a row before giving up
        (default None: never).
    :param open_timeout: longest wait for a connection and handshake, seconds (default 5).
    :param max_queue: messages ``websockets`` reads ahead (default 1024).
    :param seed: seed of the reconnect jitter (default: random).
    :param token: the token of a server with ``[auth]``, sent on every connection as
        ``Authorization: Bearer <token>`` (default None).
    :param ca_file: ``wss://`` only: a PEM file of CA certificates to trust besides the
        system's (a private CA, or a self-signed server certificate; default None).
    :param channels: the channels of ``symbols`` (``"trade"``, ``"quote"``, ``"book"``;
        default None: the server's default, trades and quotes). With ``"book"``, each
        symbol's :class:`~tickcast.Book` is rebuilt (:meth:`book`) and resumed on
        reconnect; a lost change is a :class:`~tickcast.BookGap` event.
    """

    def __init__(
        self,
        url: str,
        symbols: Iterable[str] = (),
        *,
        max_rate: Optional[float] = None,
        reconnect: bool = True,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        max_reconnect_attempts: Optional[int] = None,
        open_timeout: float = 5.0,
        max_queue: int = 1024,
        seed: Optional[int] = None,
        token: Optional[str] = None,
        ca_file: Optional[str] = None,
        channels: Optional[Sequence[str]] = None,
    ) -> None:
        self.channels = list(channels) if channels is not None else None
        self._books = Books()
        self.url = url
        self.max_rate = max_rate
        self.reconnect = reconnect
        self.backoff_initial = max(0.001, backoff_initial)
        self.backoff_max = max(self.backoff_initial, backoff_max)
        self.max_reconnect_attempts = max_reconnect_attempts
        self.open_timeout = open_timeout
        self.max_queue = max_queue
        self.token = token
        self._ssl: Optional[ssl.SSLContext] = None
        if ca_file is not None:
            if not url.startswith("wss://"):
                raise ValueError(f"ca_file is for wss:// URLs, not {url!r}")
            # Read once, now: a missing or bad file is an error here, not at reconnect.
            self._ssl = ssl.create_default_context(cafile=os.fspath(ca_file))
        self._rng = random.Random(seed)
        self._wanted: set = set()
        self._wildcard = False
        self._gaps = GapDetector()
        self._names: Dict[int, str] = {}
        self._events: Deque[Any] = deque()
        self._ws: Any = None
        self._closed = False
        self._retry_at: Optional[float] = None
        self._backoff_attempt = 0
        self._attempts = 0
        self._shutdown_announced = False
        self._resubscribes = 0
        self._awaiting: Optional[str] = None
        self._resubscribe_at: Optional[float] = None
        self._resubscribe_attempt = 0
        self._remember(list(symbols))

    # -- connection ---------------------------------------------------------------

    async def connect(self) -> "Client":
        """Opens the first connection (which must succeed) and subscribes."""
        self._ws = await self._open()
        await self._resubscribe()
        return self

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection (code 1000); :meth:`next` raises ClientClosed after."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is up."""
        return self._ws is not None

    def last_seqs(self) -> Dict[str, int]:
        """The highest sequence number seen per symbol: what a reconnect resumes from."""
        return self._gaps.last_seqs()

    async def _open(self) -> Any:
        extra: Dict[str, Any] = {}
        if self.token is not None:
            extra["additional_headers"] = {"Authorization": f"Bearer {self.token}"}
        if self._ssl is not None:
            extra["ssl"] = self._ssl
        return await websockets.connect(
            self.url, open_timeout=self.open_timeout, max_queue=self.max_queue,
            max_size=1 << 20, compression=None, **extra,
        )

    def _remember(self, symbols: Sequence[str]) -> None:
        for s in symbols:
            if s == "*":
                self._wildcard = True
            else:
                self._wanted.add(s)

    def _subscribe_message(
        self, symbols: Sequence[str], resume: Optional[Dict[str, int]], id: Optional[str] = None
    ) -> str:
        msg: Dict[str, Any] = {"op": "subscribe", "symbols": list(symbols), "format": "binary"}
        if self.max_rate is not None:
            msg["max_rate"] = self.max_rate
        if resume:
            msg["resume"] = resume
        if self.channels is not None:
            msg["channels"] = self.channels
        if id is not None:
            msg["id"] = id
        return json.dumps(msg)

    async def _resubscribe(self) -> int:
        """On a new connection: subscribes again with resume points; returns how many."""
        self._gaps.new_connection()
        self._names = {}
        self._shutdown_announced = False
        self._resubscribe_at = None
        self._resubscribe_attempt = 0
        return await self._send_resubscribe()

    async def _send_resubscribe(self) -> int:
        """Sends the subscribe that restores every subscription, with an ``id`` to
        recognise its reply (a restarted server that has not yet seen a symbol rejects
        it, and it is sent again after a backoff)."""
        if not (self._wildcard or self._wanted):
            self._awaiting = None
            return 0
        symbols = ["*"] if self._wildcard else sorted(self._wanted)
        resume = {
            s: seq for s, seq in self._gaps.last_seqs().items() if self._wildcard or s in self._wanted
        }
        self._resubscribes += 1
        self._awaiting = f"resubscribe-{self._resubscribes}"
        msg = json.loads(self._subscribe_message(symbols, resume, self._awaiting))
        books = self._books.resume_points(None if self._wildcard else self._wanted)
        if books:
            msg["resume_book"] = books
        await self._send(json.dumps(msg))
        return len(resume)

    async def _send(self, text: str) -> None:
        if self._ws is None:
            return
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            pass  # the next read reports the end of the connection

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(self, symbols: Sequence[str]) -> None:
        """Adds symbols (``["*"]`` for all); sent again on every reconnect."""
        self._remember(symbols)
        await self._send(self._subscribe_message(symbols, None))

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        """Removes symbols (``["*"]`` for all) and forgets their sequences."""
        for s in symbols:
            if s == "*":
                self._wildcard = False
                for name in list(self._wanted):
                    self._gaps.forget(name)
                    self._books.forget(name)
                self._wanted.clear()
            else:
                self._wanted.discard(s)
                self._gaps.forget(s)
                self._books.forget(s)
        await self._send(json.dumps({"op": "unsubscribe", "symbols": list(symbols)}))

    # -- events -------------------------------------------------------------------

    def __aiter__(self) -> "Client":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.next()
        except ClientClosed:
            raise StopAsyncIteration from None

    async def next(self) -> Any:
        """The next event. Raises :class:`tickcast.DecodeError` for a bad binary message
        (skipped; the stream goes on) and :class:`ClientClosed` when it cannot go on.
        Safe to cancel (e.g. under ``asyncio.timeout``)."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._closed:
                raise ClientClosed("client closed")
            if self._ws is None:
                await self._reconnect()
                continue
            try:
                if self._resubscribe_at is None:
                    msg = await self._ws.recv()
                else:
                    try:
                        async with asyncio.timeout_at(self._resubscribe_at):
                            msg = await self._ws.recv()  # cancel-safe in websockets >= 13
                    except TimeoutError:
                        self._resubscribe_at = None
                        await self._send_resubscribe()
                        continue
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd is not None else None
                reason = f"closed: {code} {e.rcvd.reason}" if e.rcvd is not None else "connection lost"
                self._disconnected(reason, going_away=code == 1001)
                continue
            if isinstance(msg, (bytes, bytearray, memoryview)):
                self._on_binary(bytes(msg))
            else:
                self._on_text(msg)

    def book(self, symbol: str) -> Optional[Book]:
        """The book of ``symbol`` (subscribed with the ``book`` channel), as rebuilt
        from the book messages received so far."""
        return self._books.get(symbol)

    def _on_binary(self, msg: bytes) -> None:
        header, records = decode(msg)  # DecodeError propagates: the message is skipped
        books = records["kind"] == KIND_BOOK
        if books.any():
            # Numbered apart: the books account for them, not the gap detector.
            self._events.extend(self._books.apply_records(records, self._names))
            self._gaps.observe_records(records[~books])
        else:
            self._gaps.observe_records(records)
        self._events.append(Ticks(header, records, self._names, msg))
        for gap in self._gaps.end_message(len(msg)):
            self._events.append(gap)

    def _on_text(self, text: str) -> None:
        try:
            v = json.loads(text)
        except ValueError as e:
            self._events.append(Control({"type": "invalid", "error": str(e), "text": text}))
            return
        kind = v.get("type") if isinstance(v, dict) else None
        if self._awaiting is not None and isinstance(v, dict) and v.get("id") == self._awaiting:
            self._awaiting = None
            if kind == "error":
                cap = min(self.backoff_max, self.backoff_initial * (2 ** min(self._resubscribe_attempt, 20)))
                self._resubscribe_attempt += 1
                self._resubscribe_at = asyncio.get_running_loop().time() + cap / 2 + self._rng.random() * cap / 2
        if kind == "symbols":
            added: Dict[int, str] = {}
            for s in v.get("symbols") or []:
                if isinstance(s, dict) and isinstance(s.get("id"), int) and isinstance(s.get("name"), str):
                    added[s["id"]] = s["name"]
                    self._gaps.bind(s["id"], s["name"])
            # Copy on write: earlier Ticks keep the map they were delivered with.
            self._names = {**self._names, **added}
            self._events.append(Symbols(added))
        elif kind == "subscribed":
            self._events.append(Subscribed(list(v.get("symbols") or [])))
        elif kind == "unsubscribed":
            self._events.append(Unsubscribed(list(v.get("symbols") or [])))
        elif kind == "conflation":
            self._events.append(Conflation(v.get("state") == "on", v.get("merged")))
        elif kind == "shutdown":
            self._shutdown_announced = True
            self._events.append(Shutdown())
        elif kind == "error":
            self._events.append(ServerError(str(v.get("message", ""))))
        else:
            self._events.append(Control(v))

    def _next_delay(self) -> float:
        cap = min(self.backoff_max, self.backoff_initial * (2 ** min(self._backoff_attempt, 20)))
        self._backoff_attempt += 1
        # "Equal jitter": half fixed, half random, so clients dropped together spread out.
        return cap / 2 + self._rng.random() * cap / 2

    def _disconnected(self, reason: str, going_away: bool) -> None:
        self._ws = None
        loop = asyncio.get_running_loop()
        if going_away or self._shutdown_announced:
            self._backoff_attempt = 0
            self._retry_at = loop.time()
        else:
            self._retry_at = loop.time() + self._next_delay()
        self._attempts = 0
        self._events.append(Disconnected(reason))

    async def _reconnect(self) -> None:
        if not self.reconnect:
            self._closed = True
            raise ClientClosed("disconnected and reconnect is off")
        loop = asyncio.get_running_loop()
        if self._retry_at is None:
            self._retry_at = loop.time()
        delay = self._retry_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            ws = await self._open()
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as e:
            self._attempts += 1
            if self.max_reconnect_attempts is not None and self._attempts >= self.max_reconnect_attempts:
                self._closed = True
                raise ClientClosed(f"gave up after {self._attempts} reconnect attempts: {e}") from e
            self._retry_at = loop.time() + self._next_delay()
            return
        self._ws = ws
        self._retry_at = None
        attempts, self._attempts = self._attempts + 1, 0
        self._backoff_attempt = 0
        resumed = await self._resubscribe()
        self._events.append(Reconnected(attempts, resumed))


async def connect(url: str, symbols: Iterable[str] = (), **options: Any) -> Client:
    """Creates a :class:`Client` and opens its first connection."""
    return await Client(url, symbols, **options).connect()
