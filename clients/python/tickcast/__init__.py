"""tickcast: Python client of the tickcast market-data server.

- :class:`Client`: asyncio subscriber (``websockets``) with reconnect, resume and
  per-symbol gap detection; events are :class:`Ticks`, :class:`Gap`, …
- :func:`decode`: a binary message into a numpy structured array in one call;
  :func:`decode_struct`: the pure-``struct`` reference decoder.
- :func:`to_dataframe`: records into a pandas DataFrame, prices exact by default
  (:mod:`tickcast.prices`: ``"decimal"``, ``"fixed"`` or ``"float"``).
- :class:`Book`: an order book rebuilt from book messages (numpy level arrays), with
  gap detection; :class:`Client` keeps one per symbol with ``channels=["book"]``.
- :func:`read_capture`, :class:`CaptureWriter`: capture files (``TCREC1``);
  :func:`decode_capture`: a whole capture into one record array; :func:`capture_blocks`:
  a capture block by block, in bounded memory.
"""

from . import prices
from .book import KIND_BOOK, Book, BookGap, Books
from .capture import CaptureWriter, Record, capture_blocks, decode_capture, read_capture
from .client import (
    Client,
    ClientClosed,
    Conflation,
    Control,
    Disconnected,
    Reconnected,
    ServerError,
    Shutdown,
    Subscribed,
    Symbols,
    Ticks,
    Unsubscribed,
    connect,
)
from .decode import (
    FLAG_CONFLATED,
    FLAG_REPLAY,
    FLAG_SNAPSHOT,
    HEADER_SIZE,
    KIND_QUOTE,
    KIND_TRADE,
    RECORD_DTYPE,
    RECORD_SIZE,
    SCALE,
    DecodeError,
    concat,
    Header,
    decode,
    decode_header,
    decode_struct,
    encode,
    to_dataframe,
)
from .gaps import Gap, GapDetector

__version__ = "0.1.0"

__all__ = [
    "KIND_BOOK", "Book", "BookGap", "Books",
    "CaptureWriter", "Record", "prices", "capture_blocks", "decode_capture", "read_capture", "Client", "ClientClosed", "Conflation", "Control",
    "Disconnected", "Reconnected", "ServerError", "Shutdown", "Subscribed", "Symbols", "Ticks",
    "Unsubscribed", "connect", "FLAG_CONFLATED", "FLAG_REPLAY", "FLAG_SNAPSHOT", "HEADER_SIZE",
    "KIND_QUOTE", "KIND_TRADE", "RECORD_DTYPE", "RECORD_SIZE", "SCALE", "DecodeError", "Header",
    "concat", "decode", "decode_header", "decode_struct", "encode", "to_dataframe", "Gap", "GapDetector",
]
