"""Ticks for the log axes of the app's charts: one per decade (with 2 and 5 between when the values span
less than two decades), so a log axis reads as a log axis and not as a dense grid of minor lines."""

from __future__ import annotations

import math


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values covering ``[low, high]`` (both > 0; anything else is treated as 1): the powers of ten from
    the one at or below ``low`` to the one at or above ``high``, and 2x and 5x each when ``high / low`` is
    under 100."""
    low = low if math.isfinite(low) and low > 0 else 1.0
    high = high if math.isfinite(high) and high > 0 else 1.0
    low, high = min(low, high), max(low, high)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    last = max(last, first + 1)
    steps = (1, 2, 5) if high / low < 100 else (1,)
    ticks = [m * 10.0**k for k in range(first, last) for m in steps] + [10.0**last]
    return [int(t) if t >= 1 and float(t).is_integer() else float(f"{t:.12g}") for t in ticks]
