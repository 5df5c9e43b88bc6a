"""Prices and sizes in the form you ask for, from the wire's fixed point.

On the wire (and in captures) every price and size is an ``int64`` count of 10⁻⁸
(:data:`SCALE`): ``6423157000000`` is ``64231.57``. Three forms:

- ``"decimal"`` (exact, the default of :func:`tickcast.to_dataframe`):
  :class:`decimal.Decimal` with exactly 8 decimal places, ``Decimal('64231.57000000')``
  — the same values pandas gives for the ``decimal128(19, 8)`` columns of a
  ``tickcast capture export --format parquet``.
- ``"fixed"`` (exact, fastest): the integer itself; divide by :data:`SCALE` (or keep
  it, with the scale) yourself.
- ``"float"`` (inexact): ``value / SCALE`` as a float, for plots and statistics;
  ``0.1`` is then ``0.1000000000000000055…``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

import numpy as np

SCALE = 100_000_000
"""Fixed-point scale of prices and sizes: the integer is the value times 10**8."""
DECIMALS = 8
"""Decimal places of a fixed-point value."""
FORMS = ("decimal", "fixed", "float")
"""The forms :func:`convert` and its callers accept."""

_DecimalT = Decimal


def check(prices: str) -> str:
    """``prices`` if it names a form, else a :class:`ValueError` that lists them."""
    if prices not in FORMS:
        raise ValueError(f"prices={prices!r}: expected one of {', '.join(map(repr, FORMS))}")
    return prices


def to_decimal(value: int) -> Decimal:
    """One fixed-point integer as an exact :class:`~decimal.Decimal` with 8 places."""
    return _DecimalT(int(value)).scaleb(-DECIMALS)


def value(raw: int, prices: str) -> Any:
    """One fixed-point integer in the form ``prices``."""
    if prices == "decimal":
        return to_decimal(raw)
    if prices == "fixed":
        return int(raw)
    if prices == "float":
        return raw / SCALE
    check(prices)


def convert(raw: np.ndarray, prices: str, mask: Optional[np.ndarray] = None) -> Any:
    """An array of fixed-point integers in the form ``prices``; where ``mask`` is
    False the value is missing (``None``, ``pd.NA`` for ``"fixed"`` through pandas, or
    NaN for ``"float"``).

    ``"decimal"`` gives an object array of :class:`~decimal.Decimal`, ``"fixed"`` the
    ``int64`` values (a pandas nullable ``Int64`` array when ``mask`` is given),
    ``"float"`` a ``float64`` array.
    """
    check(prices)
    raw = np.asarray(raw, dtype=np.int64)
    if prices == "float":
        out = raw / SCALE
        return out if mask is None else np.where(mask, out, np.nan)
    if prices == "fixed":
        return raw if mask is None else _masked_int(raw, mask)
    out = np.empty(len(raw), dtype=object)
    scaleb = _DecimalT.scaleb
    if mask is None:
        out[:] = [scaleb(_DecimalT(v), -DECIMALS) for v in raw.tolist()]
    else:
        idx = np.flatnonzero(mask)
        out[idx] = [scaleb(_DecimalT(v), -DECIMALS) for v in raw[idx].tolist()]
    return out


def _masked_int(raw: np.ndarray, mask: np.ndarray) -> Any:
    """A pandas nullable ``Int64`` array: ``raw`` where ``mask``, ``pd.NA`` elsewhere."""
    import pandas as pd

    return pd.arrays.IntegerArray(raw.copy(), ~np.asarray(mask, dtype=bool))
