"""What the app benchmarks share: resident memory, a timer and one report line per figure."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default) in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(action: Callable[[], object]) -> float:
    """Seconds one call of ``action`` takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def report(name: str, values: list[float], target: float | None, unit: str = "ms") -> None:
    """One line: the median (and max) of ``values`` (seconds) against ``target`` (seconds, or None)."""
    scale = 1000 if unit == "ms" else 1
    median = statistics.median(values)
    verdict = "" if target is None else ("PASS" if median <= target else "FAIL")
    goal = "" if target is None else f", target <= {target * scale:g} {unit}"
    print(
        f"{name:<50} median {median * scale:8.1f} {unit}  max {max(values) * scale:8.1f}  "
        f"(n={len(values)}{goal})  {verdict}"
    )
