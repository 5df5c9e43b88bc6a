"""Capture files (``TCREC1``, see ``docs/protocol.md``, "Capture files"): recorded
binary messages exactly as received, with the symbol maps."""

from __future__ import annotations

import json
import struct
import time
from typing import BinaryIO, Dict, Iterator, Optional, Tuple, Union

from .decode import DecodeError

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
