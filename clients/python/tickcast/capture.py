"""Capture files (``TCREC1`` version 2, see ``docs/protocol.md``, "Capture files"):
recorded binary messages exactly as received, with the symbol maps.

Messages are stored in blocks: the headers of a block's messages, then all their
records back to back. :func:`read_capture` yields the messages one by one (pure
``struct``), or with ``prices=`` the records as :class:`Record` tuples with prices in
the form asked for (:mod:`tickcast.prices`); :func:`decode_capture` takes every
block's records as one contiguous array, so a whole capture decodes in a few numpy
calls per block (about 1 MiB of records), however small the messages were when they
arrived."""

from __future__ import annotations

import json
import os
import struct
import time
from typing import Any, BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .decode import HEADER, HEADER_SIZE, RECORD, RECORD_DTYPE, RECORD_SIZE, VERSION as MESSAGE_VERSION
from .decode import KIND_QUOTE, KIND_TRADE, DecodeError, decode_header
from . import prices as _prices

MAGIC = b"TCREC1"
"""The first six bytes of every capture."""
VERSION = 2
"""The format version read and written here."""
ENTRY_BLOCK = 1
"""Entry kind: a block of binary data messages (their headers, then their records)."""
ENTRY_SYMBOLS = 2
"""Entry kind: a ``symbols`` control message (JSON)."""
MAX_ENTRY_BYTES = 16 << 20
"""Longest entry accepted."""
BLOCK_RECORD_BYTES = 1 << 20
"""A writer closes its block once the block holds this many bytes of records."""

_FIXED = struct.Struct("<6sHQII")
_ENTRY = struct.Struct("<IB3x")
_BLOCK = struct.Struct("<II")

_HEADER_DTYPE = np.dtype([("version", "<u2"), ("record_size", "<u2"), ("record_count", "<u4"), ("ts_out", "<u8")])
_VOID = np.dtype((np.void, RECORD_SIZE))

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]


def _pad(n: int) -> int:
    return (8 - n % 8) % 8


def _names(payload: Any, at: int, header: bool = False) -> Dict[int, str]:
    """The id → name map of the JSON header (``header``) or of a ``symbols`` entry at
    byte ``at``; anything that is not one is a :class:`DecodeError`."""
    what = "JSON header" if header else "symbols entry"
    try:
        doc = json.loads(bytes(payload))
        entries = doc.get("symbols", []) if header else doc["symbols"]
        return {int(s["id"]): str(s["name"]) for s in entries}
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # bad UTF-8 and JSON are ValueErrors
        raise DecodeError(f"capture {what} at byte {at} is not valid: {type(e).__name__}: {e}") from None


def _read_fixed(data: Any) -> Tuple[int, int]:
    """Checks the fixed header (the first 24 bytes, or fewer); returns ``json_len`` and
    the offset of the first entry."""
    if len(data) < 6 or bytes(data[:6]) != MAGIC:
        raise DecodeError("not a tickcast capture (no TCREC1 magic)")
    if len(data) < _FIXED.size:
        raise DecodeError("capture ends inside its header")
    _, version, _created, json_len, _ = _FIXED.unpack_from(data, 0)
    if version != VERSION:
        raise DecodeError(f"unsupported capture version {version} (this reader knows version {VERSION})")
    if json_len > MAX_ENTRY_BYTES:
        raise DecodeError(f"capture header of {json_len} bytes is too long")
    return json_len, _FIXED.size + json_len + _pad(json_len)


def _block_counts(payload: Any, at: int) -> Tuple[int, int]:
    """``n`` and ``m`` of a block's payload, checked against its length."""
    if len(payload) < _BLOCK.size:
        raise DecodeError(f"capture block at byte {at}: {len(payload)} bytes, no block header")
    n, m = _BLOCK.unpack_from(payload, 0)
    want = _BLOCK.size + HEADER_SIZE * n + RECORD_SIZE * m
    if len(payload) != want:
        raise DecodeError(
            f"capture block at byte {at}: {len(payload)} bytes do not hold its {n} messages "
            f"and {m} records ({want} bytes)"
        )
    return n, m


def _bad_header(header: bytes, i: int, at: int) -> DecodeError:
    """The error for message ``i``'s header, which failed the version or size check
    (:func:`decode_header` checks those before the length, and says which)."""
    try:
        decode_header(header)
    except DecodeError as e:
        return DecodeError(f"capture block at byte {at}, message {i}: {e}")
    return DecodeError(f"capture block at byte {at}, message {i}: bad header")


def _count_mismatch(total: int, m: int, at: int) -> DecodeError:
    return DecodeError(f"capture block at byte {at}: its message headers count {total} records, the block holds {m}")


def _read(f: BinaryIO, n: int) -> bytes:
    """``n`` bytes of ``f``, or fewer at its end only (a read may return less than
    asked before the end)."""
    data = f.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class Record(NamedTuple):
    """One record of a capture, as :func:`read_capture` yields it with ``prices=``.
    The fields are the columns of ``tickcast capture export`` in the same order
    (``docs/protocol.md``, "Exporting captures"); the values of the other kind are
    ``None`` (a trade has no ``bid_px``)."""

    ts_event: int
    """When the update happened at the source, ns since the Unix epoch."""
    ts_recv: int
    """When the server took it in, ns since the Unix epoch."""
    ts_out: int
    """When its message was written, ns since the Unix epoch."""
    symbol: Optional[str]
    """The name from the capture's maps (``None`` for an id never named)."""
    symbol_id: int
    seq: int
    kind: str
    """``"trade"``, ``"quote"``, or ``"unknown"`` for a kind byte this reader does not know."""
    flags: int
    count: int
    price: Any
    size: Any
    high: Any
    low: Any
    bid_px: Any
    bid_sz: Any
    ask_px: Any
    ask_sz: Any


def read_capture(path_or_file: Union[str, "os.PathLike[str]", BinaryIO], prices: Optional[str] = None) -> Iterator[Any]:
    """Yields every binary message of a capture, exactly as received (header and
    records), with the id → name map in force for it: ``(message, names)``. Pure
    ``struct``.

    With ``prices`` (``"decimal"``, ``"fixed"`` or ``"float"``, see
    :mod:`tickcast.prices`) it yields every record instead, as a :class:`Record`
    whose prices and sizes are in that form: ``"decimal"`` and ``"fixed"`` are exact.

    Raises :class:`tickcast.DecodeError` for a file that is not a capture, is cut
    short inside an entry, or has a block whose headers disagree with its length;
    :class:`ValueError` for an unknown ``prices``.
    """
    if prices is not None:
        return _records(path_or_file, _prices.check(prices))
    return _messages_of(path_or_file)


def _records(path_or_file: Union[str, "os.PathLike[str]", BinaryIO], prices: str) -> Iterator[Record]:
    unpack = RECORD.unpack_from
    conv = _prices.value
    for msg, names in _messages_of(path_or_file):
        ts_out = HEADER.unpack_from(msg, 0)[3]
        for at in range(HEADER_SIZE, len(msg), RECORD_SIZE):
            kind, flags, _, sid, seq, ts_event, ts_recv, count, _, a, b, c, d = unpack(msg, at)
            values = [conv(v, prices) for v in (a, b, c, d)]
            none = [None] * 4
            if kind == KIND_TRADE:
                name, vals = "trade", values + none
            elif kind == KIND_QUOTE:
                name, vals = "quote", none + values
            else:
                name, vals = "unknown", none + none
            yield Record(ts_event, ts_recv, ts_out, names.get(sid), sid, seq, name, flags, count, *vals)


def _messages_of(path_or_file: Union[str, "os.PathLike[str]", BinaryIO]) -> Iterator[Tuple[bytes, Dict[int, str]]]:
    f = open(path_or_file, "rb") if isinstance(path_or_file, (str, os.PathLike)) else path_or_file
    try:
        fixed = _read(f, _FIXED.size)
        json_len, pos = _read_fixed(fixed)
        header = _read(f, pos - _FIXED.size)
        if len(header) != pos - _FIXED.size:
            raise DecodeError("capture ends inside its JSON header")
        names = _names(header[:json_len], _FIXED.size, header=True)
        while True:
            head = _read(f, _ENTRY.size)
            if not head:
                return
            if len(head) != _ENTRY.size:
                raise DecodeError("capture ends inside an entry header")
            length, kind = _ENTRY.unpack(head)
            if length > MAX_ENTRY_BYTES:
                raise DecodeError(f"capture entry of {length} bytes is too long")
            if kind not in (ENTRY_BLOCK, ENTRY_SYMBOLS):
                raise DecodeError(f"unknown capture entry kind {kind}")
            payload = _read(f, length + _pad(length))
            if len(payload) != length + _pad(length):
                raise DecodeError("capture ends inside an entry")
            if kind == ENTRY_SYMBOLS:
                names = {**names, **_names(payload[:length], pos)}
            else:
                yield from _messages(payload[:length], pos, names)
            pos += _ENTRY.size + length + _pad(length)
    finally:
        if f is not path_or_file:
            f.close()


def _messages(payload: bytes, at: int, names: Dict[int, str]) -> Iterator[Tuple[bytes, Dict[int, str]]]:
    """The messages of a block, checked whole before the first is yielded."""
    n, m = _block_counts(payload, at)
    headers = [payload[_BLOCK.size + HEADER_SIZE * i:_BLOCK.size + HEADER_SIZE * (i + 1)] for i in range(n)]
    counts = []
    for i, h in enumerate(headers):
        version, record_size, count, _ = HEADER.unpack(h)
        if version != MESSAGE_VERSION or record_size != RECORD_SIZE:
            raise _bad_header(h, i, at)
        counts.append(count)
    if sum(counts) != m:
        raise _count_mismatch(sum(counts), m, at)
    start = _BLOCK.size + HEADER_SIZE * n
    for h, count in zip(headers, counts):
        end = start + RECORD_SIZE * count
        yield h + payload[start:end], names
        start = end


class _Memory:
    """Bytes of a capture held in memory: :meth:`take` gives views, no copy."""

    def __init__(self, raw: np.ndarray) -> None:
        self._raw = raw
        self._pos = 0

    def take(self, n: int) -> np.ndarray:
        out = self._raw[self._pos:self._pos + n]
        self._pos += len(out)
        return out


class _File:
    """A capture read from a file as it goes: :meth:`take` reads into a fresh buffer,
    so memory stays bounded by the largest entry."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def take(self, n: int) -> np.ndarray:
        buf = np.empty(n, dtype=np.uint8)
        view = memoryview(buf)
        readinto = getattr(self._f, "readinto", None)
        got = 0
        while got < n:  # a read may return less than asked before the end
            if readinto is not None:
                step = readinto(view[got:]) or 0
            else:  # a file-like object with read() only
                chunk = self._f.read(n - got)
                step = len(chunk)
                view[got:got + step] = chunk
            if not step:
                break
            got += step
        return buf[:got]


def _entries(src: Union[_Memory, _File]) -> Iterator[Tuple[Optional[np.ndarray], Dict[int, str]]]:
    """The walk shared by :func:`capture_blocks` and :func:`decode_capture`: one Python
    step per entry. Yields each block's records as one array of 72-byte items (its
    headers checked with whole-array operations), and ``None`` after the header and
    after each ``symbols`` entry, each with the id → name map then in force."""
    fixed = src.take(_FIXED.size)
    json_len, pos = _read_fixed(fixed)
    header = src.take(pos - _FIXED.size)
    if len(header) != pos - _FIXED.size:
        raise DecodeError("capture ends inside its JSON header")
    names = _names(header[:json_len].tobytes(), _FIXED.size, header=True)
    yield None, names
    unpack = _ENTRY.unpack_from
    while True:
        head = src.take(_ENTRY.size)
        if not len(head):
            return
        if len(head) != _ENTRY.size:
            raise DecodeError("capture ends inside an entry header")
        length, kind = unpack(head, 0)
        if length > MAX_ENTRY_BYTES:
            raise DecodeError(f"capture entry of {length} bytes is too long")
        if kind not in (ENTRY_BLOCK, ENTRY_SYMBOLS):
            raise DecodeError(f"unknown capture entry kind {kind}")
        payload = src.take(length + _pad(length))
        if len(payload) != length + _pad(length):
            raise DecodeError("capture ends inside an entry")
        if kind == ENTRY_BLOCK:
            yield _block_records(payload[:length], pos), names
        else:
            names = {**names, **_names(payload[:length].tobytes(), pos)}
            yield None, names
        pos += _ENTRY.size + length + _pad(length)


def _block_records(payload: np.ndarray, at: int) -> np.ndarray:
    """The records of a block (``payload``, its entry at byte ``at``), as a view of
    72-byte items, after checking its headers in whole-array operations."""
    n, m = _block_counts(payload, at)
    headers = np.frombuffer(payload, _HEADER_DTYPE, n, _BLOCK.size)
    ok = (headers["version"] == MESSAGE_VERSION) & (headers["record_size"] == RECORD_SIZE)
    if not ok.all():
        i = int(np.argmin(ok))
        raise _bad_header(headers[i:i + 1].tobytes(), i, at)
    total = int(headers["record_count"].sum(dtype=np.uint64))
    if total != m:
        raise _count_mismatch(total, m, at)
    return payload[_BLOCK.size + HEADER_SIZE * n:].view(_VOID)


def capture_blocks(source: Source) -> Iterator[Tuple[np.ndarray, Dict[int, str]]]:
    """Yields the records of each block of a capture as a structured array of
    :data:`tickcast.RECORD_DTYPE`, with the id → name map in force for it: the way
    to go through a capture larger than memory, a block (about 1 MiB of records) at
    a time.

    From bytes in memory the arrays are read-only views of them (no copy); from a path
    or an open binary file each block is read into its own buffer as the iteration
    goes, so memory stays bounded by one block. Concatenated, the arrays equal
    :func:`decode_capture`'s. Raises :class:`tickcast.DecodeError` as
    :func:`read_capture` does, when the iteration reaches the fault.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        entries = _entries(_Memory(np.frombuffer(source, dtype=np.uint8)))
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield from _records_of(_entries(_File(f)))
        return
    else:
        entries = _entries(_File(source))
    yield from _records_of(entries)


def _records_of(entries: Iterator[Tuple[Optional[np.ndarray], Dict[int, str]]]) -> Iterator[Tuple[np.ndarray, Dict[int, str]]]:
    for records, names in entries:
        if records is not None:
            yield records.view(RECORD_DTYPE), names


def decode_capture(source: Source) -> Tuple[np.ndarray, Dict[int, str]]:
    """Decodes every data message of a capture into one structured array of
    :data:`tickcast.RECORD_DTYPE`, and returns it with the capture's id → name map
    (the header's and every ``symbols`` entry's, merged in file order).

    The array equals ``tickcast.concat([decode(m)[1] for m, _ in read_capture(source)])``
    and owns its memory. ``source`` is a path, an open binary file (read to its end), or
    the capture's bytes.

    One Python step per entry: a block's headers are checked with whole-array numpy
    operations and its records, back to back in the file, are taken as one view; the
    views are then joined in one copy. Raises :class:`tickcast.DecodeError` as
    :func:`read_capture` does.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(source, dtype=np.uint8)
    elif isinstance(source, (str, os.PathLike)):
        raw = np.fromfile(source, dtype=np.uint8)
    else:
        raw = np.frombuffer(source.read(), dtype=np.uint8)
    blocks: List[np.ndarray] = []
    names: Dict[int, str] = {}
    for records, names in _entries(_Memory(raw)):
        if records is not None:
            blocks.append(records)
    if not blocks:
        return np.empty(0, dtype=RECORD_DTYPE), names
    return np.concatenate(blocks).view(RECORD_DTYPE), names


class CaptureWriter:
    """Writes a capture: :meth:`message` for each binary message as received,
    :meth:`symbols` for each ``symbols`` map.

    Messages are gathered into a block, written once it holds
    :data:`BLOCK_RECORD_BYTES` of records, before a ``symbols`` entry, and on
    :meth:`flush` and :meth:`close`. Use it as a context manager, or call
    :meth:`close` at the end: messages still in the open block are not in the file
    until then. The file itself is left open.
    """

    def __init__(self, f: BinaryIO, symbols: Optional[Dict[int, str]] = None, source: Optional[str] = None) -> None:
        self._f = f
        self._headers = bytearray()
        self._records = bytearray()
        self._count = 0
        created = time.time_ns()
        header: dict = {
            "created_at_ns": created,
            "symbols": [{"id": i, "name": n} for i, n in sorted((symbols or {}).items())],
        }
        if source:
            header["source"] = source
        data = json.dumps(header).encode()
        f.write(_FIXED.pack(MAGIC, VERSION, created, len(data), 0))
        f.write(data + b"\0" * _pad(len(data)))

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _entry(self, kind: int, payload: bytes) -> None:
        self._f.write(_ENTRY.pack(len(payload), kind))
        self._f.write(payload + b"\0" * _pad(len(payload)))

    def _write_block(self) -> None:
        if not self._count:
            return
        m = len(self._records) // RECORD_SIZE
        self._entry(ENTRY_BLOCK, _BLOCK.pack(self._count, m) + bytes(self._headers) + bytes(self._records))
        self._headers.clear()
        self._records.clear()
        self._count = 0

    def message(self, msg: bytes) -> None:
        """Appends a binary data message exactly as received. Raises
        :class:`tickcast.DecodeError` for one that is not a valid message."""
        decode_header(msg)
        self._headers += msg[:HEADER_SIZE]
        self._records += msg[HEADER_SIZE:]
        self._count += 1
        if len(self._records) >= BLOCK_RECORD_BYTES:
            self._write_block()

    def symbols(self, symbols: Dict[int, str]) -> None:
        """Appends an id → name map for the messages that follow."""
        self._write_block()
        body = {"type": "symbols", "symbols": [{"id": i, "name": n} for i, n in sorted(symbols.items())]}
        self._entry(ENTRY_SYMBOLS, json.dumps(body).encode())

    def flush(self) -> None:
        """Writes the open block and flushes the file."""
        self._write_block()
        self._f.flush()

    def close(self) -> None:
        """Writes the open block and flushes the file (which stays open)."""
        self.flush()
