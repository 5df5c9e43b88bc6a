"""Capture files (``TCREC1``, see ``docs/protocol.md``, "Capture files"): recorded
binary messages exactly as received, with the symbol maps.

:func:`read_capture` yields the messages one by one; :func:`decode_capture` decodes a
whole capture into one record array with a handful of numpy calls, for recorded
streams whose messages are too small for one numpy call per message to pay off."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .decode import HEADER_SIZE, RECORD_DTYPE, RECORD_SIZE, VERSION as MESSAGE_VERSION
from .decode import DecodeError, decode_header

MAGIC = b"TCREC1"
"""The first six bytes of every capture."""
VERSION = 1
"""The format version read and written here."""
ENTRY_MESSAGE = 1
"""Entry kind: a binary data message."""
ENTRY_SYMBOLS = 2
"""Entry kind: a ``symbols`` control message (JSON)."""
MAX_ENTRY_BYTES = 16 << 20
"""Longest entry accepted."""

_FIXED = struct.Struct("<6sHQII")
_ENTRY = struct.Struct("<IB3x")


def _pad(n: int) -> int:
    return (8 - n % 8) % 8


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DecodeError(f"capture ends inside {what}")
    return data


def read_capture(path_or_file: Union[str, BinaryIO]) -> Iterator[Tuple[bytes, Dict[int, str]]]:
    """Yields every binary message of a capture with the id → name map in force for it.

    Raises :class:`tickcast.DecodeError` for a file that is not a capture or is cut
    short inside an entry.
    """
    f = open(path_or_file, "rb") if isinstance(path_or_file, str) else path_or_file
    try:
        fixed = f.read(_FIXED.size)
        if len(fixed) < 6 or fixed[:6] != MAGIC:
            raise DecodeError("not a tickcast capture (no TCREC1 magic)")
        if len(fixed) != _FIXED.size:
            raise DecodeError("capture ends inside its header")
        _, version, _created, json_len, _ = _FIXED.unpack(fixed)
        if version != VERSION:
            raise DecodeError(f"unsupported capture version {version}")
        if json_len > MAX_ENTRY_BYTES:
            raise DecodeError(f"capture header of {json_len} bytes is too long")
        header = json.loads(_read_exact(f, json_len + _pad(json_len), "its JSON header")[:json_len])
        names = {int(s["id"]): str(s["name"]) for s in header.get("symbols", [])}
        while True:
            head = f.read(_ENTRY.size)
            if not head:
                return
            if len(head) != _ENTRY.size:
                raise DecodeError("capture ends inside an entry header")
            length, kind = _ENTRY.unpack(head)
            if length > MAX_ENTRY_BYTES:
                raise DecodeError(f"capture entry of {length} bytes is too long")
            payload = _read_exact(f, length + _pad(length), "an entry")[:length]
            if kind == ENTRY_MESSAGE:
                yield payload, names
            elif kind == ENTRY_SYMBOLS:
                names = {**names, **{int(s["id"]): str(s["name"]) for s in json.loads(payload)["symbols"]}}
            else:
                raise DecodeError(f"unknown capture entry kind {kind}")
    finally:
        if f is not path_or_file:
            f.close()


_VOID = np.dtype((np.void, RECORD_SIZE))
_WORDS_PER_RECORD = RECORD_SIZE // 8
# version u16 and record_size u16 of a message header, read as one little-endian u32.
_VERSION_AND_SIZE = MESSAGE_VERSION | RECORD_SIZE << 16


class _U64Reader:
    """``u64[i]``: the little-endian u64 at byte ``8 i``, on big-endian hosts."""

    def __init__(self, data: memoryview) -> None:
        self._data = data

    def __getitem__(self, i: int) -> int:
        return _U64.unpack_from(self._data, 8 * i)[0]


_U64 = struct.Struct("<Q")


def _read_header(data: memoryview) -> Tuple[int, Dict[int, str]]:
    """Checks the fixed header and JSON of a capture held whole in ``data``; returns
    the offset of the first entry and the header's id → name map."""
    if len(data) < 6 or bytes(data[:6]) != MAGIC:
        raise DecodeError("not a tickcast capture (no TCREC1 magic)")
    if len(data) < _FIXED.size:
        raise DecodeError("capture ends inside its header")
    _, version, _created, json_len, _ = _FIXED.unpack_from(data, 0)
    if version != VERSION:
        raise DecodeError(f"unsupported capture version {version}")
    if json_len > MAX_ENTRY_BYTES:
        raise DecodeError(f"capture header of {json_len} bytes is too long")
    start = _FIXED.size + json_len + _pad(json_len)
    if len(data) < start:
        raise DecodeError("capture ends inside its JSON header")
    header = json.loads(bytes(data[_FIXED.size:_FIXED.size + json_len]))
    return start, {int(s["id"]): str(s["name"]) for s in header.get("symbols", [])}


def decode_capture(source: Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]) -> Tuple[np.ndarray, Dict[int, str]]:
    """Decodes every data message of a capture into one structured array of
    :data:`tickcast.RECORD_DTYPE`, and returns it with the capture's id → name map
    (the header's and every ``symbols`` entry's, merged in file order).

    The array equals ``tickcast.concat([decode(m)[1] for m, _ in read_capture(source)])``
    and owns its memory. ``source`` is a path, an open binary file (read to its end), or
    the capture's bytes.

    The per-message work is one integer read in one Python loop over the entry
    headers; the message headers are then checked and the records gathered with
    whole-array numpy operations (entries start on 8-byte boundaries, so every record
    of the file is an 8-byte-aligned 72-byte item of one strided view). Raises
    :class:`tickcast.DecodeError` as :func:`read_capture` and :func:`tickcast.decode`
    do.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(source, dtype=np.uint8)
    elif isinstance(source, (str, os.PathLike)):
        raw = np.fromfile(source, dtype=np.uint8)
    else:
        raw = np.frombuffer(source.read(), dtype=np.uint8)
    data = memoryview(raw)
    n = len(data)
    pos, names = _read_header(data)
    # u64[i]: the little-endian u64 at byte 8 i; a native cast is the cheapest read.
    u64 = data[: n - n % 8].cast("Q") if sys.byteorder == "little" else _U64Reader(data)
    offsets: List[int] = []
    append = offsets.append
    last = n - 8
    # The only loop per entry. An entry header read as one u64 is len | kind << 32
    # (the reserved bytes are 0). A message is 16 + 72 * count bytes, a multiple of 8
    # with no padding, so the common entry is a word with kind 1 and len % 8 == 0, and
    # the next entry is 8 + len bytes on. Anything else takes the slow branch.
    step = (1 << 32) - 8
    mask = 0xFFFFFFFF_00000007
    while pos <= last:
        word = u64[pos >> 3]
        if word & mask == 0x1_00000000:
            append(pos)
            pos += word - step
            continue
        length, kind = word & 0xFFFFFFFF, (word >> 32) & 0xFF
        if length > MAX_ENTRY_BYTES:
            raise DecodeError(f"capture entry of {length} bytes is too long")
        end = pos + 8 + length
        if end > n:
            break
        if kind == ENTRY_MESSAGE:  # with nonzero reserved bytes
            append(pos)
        elif kind == ENTRY_SYMBOLS:
            names = {**names, **{int(s["id"]): str(s["name"]) for s in json.loads(bytes(data[pos + 8:end]))["symbols"]}}
        else:
            raise DecodeError(f"unknown capture entry kind {kind}")
        pos = end + _pad(length)
    if pos != n:
        if pos < n and n - pos < 8:
            raise DecodeError("capture ends inside an entry header")
        raise DecodeError("capture ends inside an entry")

    entries = np.array(offsets, dtype=np.intp)
    if not len(entries):
        return np.empty(0, dtype=RECORD_DTYPE), names
    # Every message header at once: length agrees with version, record size and count.
    words32 = raw[: n - n % 4].view("<u4")
    at = entries >> 2
    lengths = words32[at]
    counts = words32[at + 3].astype(np.intp)
    ok = (words32[at + 2] == _VERSION_AND_SIZE) & (lengths == HEADER_SIZE + RECORD_SIZE * counts)
    ok &= lengths <= MAX_ENTRY_BYTES
    if not ok.all():
        bad = int(np.argmin(ok))
        off, length = int(entries[bad]), int(lengths[bad])
        if length > MAX_ENTRY_BYTES:
            raise DecodeError(f"capture entry of {length} bytes is too long")
        decode_header(bytes(data[off + 8:off + 8 + length]))  # raises, saying what is wrong
        raise DecodeError(f"bad message header at byte {off + 8}")  # not reached

    # Record k of message j is the 72 bytes at word (entries[j] + 24) / 8 + 9 k of a
    # view that starts a 72-byte item at every 8-byte word of the file.
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    index = np.repeat(((entries + 8 + HEADER_SIZE) >> 3) - _WORDS_PER_RECORD * first, counts)
    index += np.arange(0, _WORDS_PER_RECORD * total, _WORDS_PER_RECORD, dtype=np.intp)
    items = n // 8 - _WORDS_PER_RECORD + 1
    if items <= 0:
        return np.empty(0, dtype=RECORD_DTYPE), names
    windows = np.ndarray((items,), dtype=_VOID, buffer=raw, strides=(8,))
    return windows[index].view(RECORD_DTYPE), names


class CaptureWriter:
    """Writes a capture: :meth:`message` for each binary message as received,
    :meth:`symbols` for each ``symbols`` map."""

    def __init__(self, f: BinaryIO, symbols: Optional[Dict[int, str]] = None, source: Optional[str] = None) -> None:
        self._f = f
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

    def _entry(self, kind: int, payload: bytes) -> None:
        self._f.write(_ENTRY.pack(len(payload), kind))
        self._f.write(payload + b"\0" * _pad(len(payload)))

    def message(self, msg: bytes) -> None:
        """Appends a binary data message."""
        self._entry(ENTRY_MESSAGE, msg)

    def symbols(self, symbols: Dict[int, str]) -> None:
        """Appends an id → name map for the messages that follow."""
        body = {"type": "symbols", "symbols": [{"id": i, "name": n} for i, n in sorted(symbols.items())]}
        self._entry(ENTRY_SYMBOLS, json.dumps(body).encode())
