"""Prices and sizes of records as DataFrame columns: floats, exact fixed-point
integers, or :class:`decimal.Decimal`.

On the wire a value is a fixed-point integer, the value times :data:`SCALE` (10**8):
``81636000000`` is ``816.36``. A float64 holds about 15-16 significant digits, so a
float column rounds large or very precise values; the other two forms are exact.

``prices`` is one of:

- ``"float"``: ``float64`` (NaN on rows of the other kind), for analysis;
- ``"fixed"``: the integers themselves in pandas' nullable ``Int64`` (``<NA>`` on rows of
  the other kind); divide by :data:`SCALE` for the value, or keep integer arithmetic;
- ``"decimal"``: :class:`decimal.Decimal` objects (``None`` on rows of the other kind),
  exact and readable, slower.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Dict

import numpy as np

from .decode import KIND_QUOTE, KIND_TRADE, QUOTE_FIELDS, SCALE, TRADE_FIELDS

PRICE_MODES = ("float", "fixed", "decimal")
"""The accepted values of ``prices``."""


def check_mode(prices: str) -> str:
    """``prices``, or a :class:`ValueError` naming the accepted values."""
    if prices not in PRICE_MODES:
        raise ValueError(f"prices={prices!r}: expected one of {', '.join(map(repr, PRICE_MODES))}")
    return prices


def fixed_to_str(raw: int) -> str:
    """The shortest exact decimal form of a fixed-point integer, as the server writes it
    in JSON (``150000000`` → ``"1.5"``, ``-1`` → ``"-0.00000001"``)."""
    raw = int(raw)
    whole, frac = divmod(abs(raw), SCALE)
    sign = "-" if raw < 0 else ""
    return f"{sign}{whole}.{frac:08d}".rstrip("0").rstrip(".") if frac else f"{sign}{whole}"


def fixed_to_decimal(raw: int) -> Decimal:
    """One fixed-point integer as an exact :class:`decimal.Decimal` (``150000000`` → ``Decimal("1.5")``)."""
    return Decimal(fixed_to_str(raw))


def value_columns(records: np.ndarray, prices: str = "float") -> Dict[str, Any]:
    """The named value columns of ``records`` (``price``, ``size``, ``high``, ``low`` for
    trades; ``bid_px``, ``bid_sz``, ``ask_px``, ``ask_sz`` for quotes), each blank on
    rows of the other kind, in the form ``prices`` asks for (see the module)."""
    import pandas as pd  # optional dependency: pip install 'tickcast[pandas]'

    check_mode(prices)
    kind = records["kind"]
    cols: Dict[str, Any] = {}
    for k, fields in ((KIND_TRADE, TRADE_FIELDS), (KIND_QUOTE, QUOTE_FIELDS)):
        mask = kind == k
        for i, name in enumerate(fields):
            raw = records[f"value{i}"]
            if prices == "float":
                cols[name] = np.where(mask, raw / SCALE, np.nan)
            elif prices == "fixed":
                cols[name] = pd.arrays.IntegerArray(raw.astype(np.int64), ~mask)
            else:
                cols[name] = np.array([fixed_to_decimal(v) if m else None for v, m in zip(raw.tolist(), mask)], dtype=object)
    return cols
