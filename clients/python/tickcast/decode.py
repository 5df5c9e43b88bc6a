"""Decoding of tickcast binary data messages (layout in ``docs/protocol.md``).

A message is a 16-byte header followed by ``record_count`` records of 72 bytes, all
little-endian::

    header: version u16, record_size u16, record_count u32, ts_out u64
    record: kind u8, flags u8, reserved u16, symbol_id u32, seq u64, ts_event u64,
            ts_recv u64, count u32, reserved u32, value0..value3 i64

:func:`decode` reads every record of a message with one ``np.frombuffer`` call (a
read-only view of the message bytes, no copy); :func:`decode_struct` is the reference
decoder in pure ``struct``. Both raise :class:`DecodeError` for a message that does
not follow the layout.
"""

from __future__ import annotations

import struct
from typing import Any, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

VERSION = 1
"""Protocol version in every message header."""
HEADER_SIZE = 16
"""Bytes of the message header."""
RECORD_SIZE = 72
"""Bytes of one record."""
SCALE = 100_000_000
"""Fixed-point scale of prices and sizes: the integer is the value times 10**8."""

KIND_TRADE = 1
"""``kind`` of a trade record."""
KIND_QUOTE = 2
"""``kind`` of a quote record."""
FLAG_SNAPSHOT = 1
"""Flag bit: the latest value, sent on subscribe or after the server lost its place."""
FLAG_CONFLATED = 2
"""Flag bit: the record stands for ``count`` merged updates."""
FLAG_REPLAY = 4
"""Flag bit: re-sent from the server's ring after a resume."""

HEADER = struct.Struct("<HHIQ")
"""The header as a ``struct``: version, record_size, record_count, ts_out."""
RECORD = struct.Struct("<BBHIQQQII4q")
"""A record as a ``struct``, fields in :data:`RECORD_DTYPE` order."""

RECORD_DTYPE = np.dtype(
    {
        "names": [
            "kind", "flags", "reserved", "symbol_id", "seq", "ts_event", "ts_recv",
            "count", "reserved2", "value0", "value1", "value2", "value3",
        ],
        "formats": [
            "u1", "u1", "<u2", "<u4", "<u8", "<u8", "<u8", "<u4", "<u4", "<i8", "<i8", "<i8", "<i8",
        ],
        "offsets": [0, 1, 2, 4, 8, 16, 24, 32, 36, 40, 48, 56, 64],
        "itemsize": RECORD_SIZE,
    }
)
"""numpy dtype of one record. ``value0..value3`` are a trade's price, size, high, low
or a quote's bid_px, bid_sz, ask_px, ask_sz, in fixed point (see :data:`SCALE`)."""

TRADE_FIELDS = ("price", "size", "high", "low")
"""Names of a trade's four values."""
QUOTE_FIELDS = ("bid_px", "bid_sz", "ask_px", "ask_sz")
"""Names of a quote's four values."""

Buffer = Union[bytes, bytearray, memoryview]


class DecodeError(ValueError):
    """A binary message that does not follow the documented layout."""


class Header(NamedTuple):
    """The header of a binary message."""

    version: int
    record_size: int
    record_count: int
    ts_out: int
    """When the server wrote the message, ns since the Unix epoch."""


def decode_header(msg: Buffer) -> Header:
    """Checks a message's header and length and returns the header.

    Raises :class:`DecodeError` for a message shorter than its header, a version or
    record size other than 1 and 72, or a length that disagrees with the record count.
    """
    if not isinstance(msg, (bytes, bytearray, memoryview)):
        raise DecodeError(f"a binary message is bytes, not {type(msg).__name__}")
    n = len(msg)
    if n < HEADER_SIZE:
        raise DecodeError(f"truncated message: {n} bytes, shorter than the {HEADER_SIZE}-byte header")
    header = Header(*HEADER.unpack_from(msg, 0))
    if header.version != VERSION:
        raise DecodeError(f"unsupported version {header.version} (this decoder reads version {VERSION})")
    if header.record_size != RECORD_SIZE:
        raise DecodeError(
            f"unsupported record_size {header.record_size} (version {VERSION} records are {RECORD_SIZE} bytes)"
        )
    want = HEADER_SIZE + header.record_count * RECORD_SIZE
    if n != want:
        raise DecodeError(
            f"message of {n} bytes does not hold its {header.record_count} records "
            f"({want} bytes expected{': truncated' if n < want else ''})"
        )
    return header


_unpack_header = HEADER.unpack_from
_frombuffer = np.frombuffer


def decode(msg: Buffer) -> Tuple[Header, np.ndarray]:
    """Decodes a binary message into its header and a structured array of records.

    The array is a read-only view of ``msg`` (no copy): copy it (``.copy()``) to keep
    it beyond the life of the message buffer or to modify it. Raises
    :class:`DecodeError` as :func:`decode_header` does.
    """
    # The common case in as few Python steps as possible: numpy's per-call overhead
    # already dominates small messages. Anything unusual takes decode_header's path,
    # which explains what is wrong.
    try:
        version, record_size, count, ts_out = _unpack_header(msg)
    except (struct.error, TypeError):
        decode_header(msg)
        raise  # decode_header raised; not reached
    if version != VERSION or record_size != RECORD_SIZE or len(msg) != HEADER_SIZE + count * RECORD_SIZE:
        decode_header(msg)
    return Header(version, record_size, count, ts_out), _frombuffer(msg, RECORD_DTYPE, count, HEADER_SIZE)


def decode_struct(msg: Buffer) -> Tuple[Header, List[Tuple[int, ...]]]:
    """Reference decoder in pure ``struct``: the records as tuples in
    :data:`RECORD_DTYPE` field order (so ``decode(msg)[1].tolist()`` is equal)."""
    header = decode_header(msg)
    unpack = RECORD.unpack_from
    return header, [unpack(msg, HEADER_SIZE + i * RECORD_SIZE) for i in range(header.record_count)]


def encode(records: Iterable[Sequence[int]], ts_out: int = 0) -> bytes:
    """Encodes records (tuples in :data:`RECORD_DTYPE` field order) into a message;
    for tests and tools."""
    body = b"".join(RECORD.pack(*r) for r in records)
    return HEADER.pack(VERSION, RECORD_SIZE, len(body) // RECORD_SIZE, ts_out) + body


_VOID = np.dtype((np.void, RECORD_SIZE))


def concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenates record arrays (one per message) into one owned array.

    Copies the records as opaque 72-byte items, several times faster than
    ``np.concatenate`` on the structured dtype, which copies field by field.
    """
    if not arrays:
        return np.empty(0, dtype=RECORD_DTYPE)
    return np.concatenate([a.view(_VOID) for a in arrays]).view(RECORD_DTYPE)


def to_dataframe(
    records: Union[np.ndarray, Sequence[np.ndarray]],
    names: Optional[Mapping[int, str]] = None,
    prices: str = "decimal",
) -> Any:
    """A pandas DataFrame of records (one array, or several concatenated).

    Columns: ``symbol`` (from ``names``, id → name), ``symbol_id``, ``seq``, ``kind``
    (``"trade"``/``"quote"``), ``flags`` and the booleans ``snapshot``, ``conflated``,
    ``replay``, ``count``, ``ts_event``, ``ts_recv`` (raw ns) and ``time`` (``ts_event``
    as UTC datetimes), the raw fixed-point integers ``value0..value3``, and the values
    by name: ``price``, ``size``, ``high``, ``low`` for trades and ``bid_px``,
    ``bid_sz``, ``ask_px``, ``ask_sz`` for quotes, missing on rows of the other kind.

    ``prices`` is their form (:mod:`tickcast.prices`): ``"decimal"`` (the default,
    exact) gives :class:`decimal.Decimal` values with 8 places and ``None`` where
    missing, as ``pandas.read_parquet`` gives for a ``tickcast capture export`` to
    Parquet; ``"fixed"`` (exact, fastest) the fixed-point integers (10⁻⁸ units) as
    nullable ``Int64`` columns with ``pd.NA``; ``"float"`` floats with NaN (inexact,
    for plots and statistics). Decimals cost a Python object per value: take
    ``"fixed"`` for frames of millions of rows.
    """
    import pandas as pd  # optional dependency: pip install 'tickcast[pandas]'

    from . import prices as _prices

    _prices.check(prices)
    if not isinstance(records, np.ndarray):
        records = concat(list(records))
    names = names or {}
    ids = records["symbol_id"]
    kind = records["kind"]
    flags = records["flags"]
    trade = kind == KIND_TRADE
    quote = kind == KIND_QUOTE
    unique = np.unique(ids)
    lookup = {int(i): names.get(int(i)) for i in unique}
    cols: dict = {
        "symbol": pd.Categorical([lookup[int(i)] for i in ids]) if len(unique) else pd.Categorical([]),
        "symbol_id": ids,
        "seq": records["seq"],
        "kind": pd.Categorical(np.where(trade, "trade", np.where(quote, "quote", "unknown"))),
        "flags": flags,
        "snapshot": (flags & FLAG_SNAPSHOT) != 0,
        "conflated": (flags & FLAG_CONFLATED) != 0,
        "replay": (flags & FLAG_REPLAY) != 0,
        "count": records["count"],
        "ts_event": records["ts_event"],
        "ts_recv": records["ts_recv"],
        "time": pd.to_datetime(records["ts_event"].astype("int64"), unit="ns", utc=True),
    }
    for i in range(4):
        cols[f"value{i}"] = records[f"value{i}"]
    for mask, fields in ((trade, TRADE_FIELDS), (quote, QUOTE_FIELDS)):
        for i, name in enumerate(fields):
            cols[name] = _prices.convert(records[f"value{i}"], prices, mask)
    return pd.DataFrame(cols)
