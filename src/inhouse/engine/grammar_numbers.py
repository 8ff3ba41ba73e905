"""GBNF for numbers within bounds: integer ranges and whole-number decimal ranges, as
numerals a small model can only write correctly."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from inhouse.engine.gbnf import DIGIT, Chars, Expr, Lit, Rep, Seq, alt, opt, seq
from inhouse.errors import InvalidSchema

MAX_INT_BOUND = 10**15  # integer bounds beyond this are treated as absent


def int_range(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """Inclusive integer bounds from minimum/maximum and their exclusive forms."""
    lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
    highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
    if "exclusiveMinimum" in schema:
        lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
    if "exclusiveMaximum" in schema:
        highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
    return max(lows, default=None), min(highs, default=None)


def _same_length(a: str, b: str) -> Expr:
    """Decimal numerals from `a` to `b`, two numerals with the same number of digits."""
    rest = len(a) - 1
    if a == b:
        return Lit(a)
    if a[1:] == "0" * rest and b[1:] == "9" * rest:
        tail = (DIGIT if rest == 1 else Rep(DIGIT, rest, rest),) if rest else ()
        return Seq((Chars(f"[{a[0]}-{b[0]}]"), *tail))
    if a[0] == b[0]:
        return Seq((Lit(a[0]), _same_length(a[1:], b[1:])))
    low = Seq((Lit(a[0]), _same_length(a[1:], "9" * rest)))
    high = Seq((Lit(b[0]), _same_length("0" * rest, b[1:])))
    if int(b[0]) - int(a[0]) < 2:
        return alt(low, high)
    middle = _same_length(f"{int(a[0]) + 1}" + "0" * rest, f"{int(b[0]) - 1}" + "9" * rest)
    return alt(low, middle, high)


def _naturals(lo: int, hi: int | None) -> Expr:
    """Numerals of the integers lo..hi (0 <= lo; hi None: any, up to 16 digits)."""
    if hi is None:
        n = len(str(lo))
        longer = (Seq((Chars("[1-9]"), Rep(DIGIT, n, 15))),) if n < 16 else ()
        return alt(_same_length(str(lo), "9" * n), *longer)
    parts = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        first = max(lo, 10 ** (n - 1) if n > 1 else 0)
        parts.append(_same_length(str(first), str(min(hi, 10**n - 1))))
    return alt(*parts)


def integers(lo: int | None, hi: int | None) -> Expr:
    """Numerals of exactly the integers in lo..hi (None: unbounded, within 16 digits)."""
    if (lo is not None and lo > MAX_INT_BOUND) or (hi is not None and hi < -MAX_INT_BOUND):
        raise InvalidSchema(f"integer bounds beyond {MAX_INT_BOUND} are not supported")
    lo = None if lo is not None and lo < -MAX_INT_BOUND else lo
    hi = None if hi is not None and hi > MAX_INT_BOUND else hi
    if lo is not None and hi is not None and lo > hi:
        raise InvalidSchema(f"no integer lies between {lo} and {hi}")
    parts = []
    if hi is None or hi >= 0:
        parts.append(_naturals(max(lo or 0, 0), hi))
    if lo is None or lo < 0:
        magnitudes = _naturals(max(1, -hi if hi is not None else 1), None if lo is None else -lo)
        parts.append(Seq((Lit("-"), magnitudes)))
    return alt(*parts)


def decimals(low: int, high: int) -> Expr:
    """Numbers in [low, high] written without exponent, for integers 0 <= low <= high."""
    top = seq(Lit(str(high)), opt(Seq((Lit("."), Rep(Lit("0"), 1, 15)))))
    if low == high:
        return top
    below = seq(_naturals(low, high - 1), opt(Seq((Lit("."), Rep(DIGIT, 1, 15)))))
    return alt(below, top)


def whole(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)
