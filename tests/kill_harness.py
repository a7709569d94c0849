"""Kill a command anywhere, rerun it, and check that nothing was lost.

``run_with_kills`` starts a command line as a subprocess (in its own process group, as a job scheduler
would), waits for a point of its progress (a file appears, a log reaches n lines), waits a seeded random
moment more, SIGKILLs the whole group, and reruns the same command, point after point, until a run ends
on its own. ``assert_same_tree`` then compares the folder it left with the one an uninterrupted run of the
same command left at the same path: every file present on both sides (a leftover temporary file fails),
bytes equal, except that JSON files may differ in wall-clock fields and weights within a tolerance.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

ENV = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# JSON keys that hold wall-clock times or throughputs: they differ between any two runs
VOLATILE_KEYS = frozenset(
    {"created", "seconds", "build_seconds", "this_run_seconds", "tokens_per_s", "tokens_per_second"}
)
POLL_SECONDS = 0.005


def cli(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


# --- progress points -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Kill once ``reached()`` holds, ``delay`` seconds later."""

    label: str
    reached: Callable[[], bool]
    delay: float = 0.0


def file_appears(root: Path, pattern: str) -> Callable[[], bool]:
    """True once a file matching the glob ``pattern`` (relative to ``root``) exists."""
    return lambda: any(root.glob(pattern))


def lines_reach(path: Path, count: int) -> Callable[[], bool]:
    """True once the text file ``path`` holds at least ``count`` complete lines."""

    def reached() -> bool:
        try:
            return path.read_bytes().count(b"\n") >= count
        except OSError:
            return False

    return reached


def choose_points(
    seed: int, candidates: Sequence[tuple[str, Callable[[], bool]]], k: int, max_delay: float
) -> list[KillPoint]:
    """One seeded candidate from each of ``k`` equal stretches of ``candidates`` (given in the order a run
    reaches them, so the kills spread over the whole run), each with a seeded delay."""
    rng = random.Random(seed)
    bounds = [round(i * len(candidates) / k) for i in range(k + 1)]
    picked = [rng.randrange(bounds[i], bounds[i + 1]) for i in range(k)]
    return [KillPoint(*candidates[i], delay=round(rng.uniform(0, max_delay), 3)) for i in picked]


# --- running ---------------------------------------------------------------------------------------------


@dataclass
class KillReport:
    """What happened: where a running process was killed, which points a run got past before its kill."""

    command: str
    kills: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    runs: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        passed = f"; a run got past {', '.join(self.passed)} unkilled" if self.passed else ""
        return (
            f"{self.command}: {len(self.kills)} kills survived ({', '.join(self.kills)}){passed}; "
            f"{self.runs} runs, {self.seconds:.0f} s"
        )


def _start(argv: list[str], log: Any, cwd: Path | None) -> subprocess.Popen:
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=log, env=ENV, cwd=cwd, start_new_session=True
    )


def _finish(process: subprocess.Popen, log: Any, timeout: float) -> int:
    code = process.wait(timeout=timeout)
    if code != 0:
        log.seek(0)
        raise AssertionError(f"a run exited with {code} instead of resuming:\n{log.read()[-3000:]}")
    return code


def _kill_group(process: subprocess.Popen) -> bool:
    """SIGKILL the process and its children; True when it was still running."""
    alive = process.poll() is None
    if alive:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended between the two calls
            alive = False
    process.wait()
    return alive and process.returncode == -signal.SIGKILL


def run_with_kills(
    argv: list[str],
    points: Sequence[KillPoint],
    *,
    name: str,
    cwd: Path | None = None,
    timeout: float = 300,
) -> KillReport:
    """Run ``argv``, SIGKILL it at each point in turn and rerun it; the last run must end with exit 0.

    A run that ends on its own before its point is reached must succeed (the remaining points are then
    passed); any other exit code fails: a rerun never refuses or crashes on what a killed run left."""
    report = KillReport(name)
    started = time.monotonic()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        for point in points:
            if point.reached():  # an earlier run already went past it
                report.passed.append(point.label)
                continue
            log.seek(0)
            log.truncate()
            process = _start(argv, log, cwd)
            report.runs += 1
            deadline = time.monotonic() + timeout
            while process.poll() is None and not point.reached():
                assert time.monotonic() < deadline, f"{name}: {point.label} not reached in {timeout} s"
                time.sleep(POLL_SECONDS)
            if process.poll() is None:
                time.sleep(point.delay)
            if _kill_group(process):
                report.kills.append(f"{point.label}+{point.delay:.2f}s")
                continue
            _finish(process, log, timeout)
            report.passed += [p.label for p in points[points.index(point) :]]
            break
        else:
            log.seek(0)
            log.truncate()
            report.runs += 1
            _finish(_start(argv, log, cwd), log, timeout)
    report.seconds = time.monotonic() - started
    return report


def run_clean(argv: list[str], *, cwd: Path | None = None, timeout: float = 300) -> None:
    """One uninterrupted run (the reference)."""
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


# --- comparing -------------------------------------------------------------------------------------------


def tree(root: Path) -> dict[str, Path]:
    """Every file under ``root`` (hidden ones included) by its relative path."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _close(a: Any, b: Any, rel: float, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - VOLATILE_KEYS
        assert keys == set(b) - VOLATILE_KEYS, (
            f"{where}: keys differ: {sorted(keys ^ (set(b) - VOLATILE_KEYS))}"
        )
        for key in sorted(keys):
            _close(a[key], b[key], rel, f"{where}.{key}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, rel, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"{where}: {a.shape} {a.dtype} != {b.shape} {b.dtype}"
        )
        torch.testing.assert_close(a, b, rtol=rel, atol=rel, msg=where)
    elif isinstance(a, float) and isinstance(b, float) and rel:
        assert math.isclose(a, b, rel_tol=rel, abs_tol=rel) or (math.isnan(a) and math.isnan(b)), (
            f"{where}: {a} != {b}"
        )
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _json_values(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return json.loads(text)


def _tensors(path: Path) -> Any:
    if path.suffix == ".pt":
        return torch.load(path, map_location="cpu", weights_only=True)
    with safe_open(str(path), framework="pt") as handle:
        return {"metadata": handle.metadata(), **{k: handle.get_tensor(k) for k in handle.keys()}}  # noqa: SIM118


def same_file(expected: Path, actual: Path, *, rel: float = 0.0) -> None:
    """Bytes equal; JSON equal but for wall-clock keys (numbers within ``rel``); weights within ``rel``."""
    if expected.read_bytes() == actual.read_bytes():
        return
    where = str(actual)
    if expected.suffix in (".json", ".jsonl"):
        _close(_json_values(expected), _json_values(actual), rel, where)
    elif expected.suffix in (".pt", ".safetensors") and rel:
        _close(_tensors(expected), _tensors(actual), rel, where)
    else:
        raise AssertionError(f"{actual} differs from the uninterrupted run's {expected}")


def assert_same_tree(
    expected: Path, actual: Path, *, skip: Sequence[str] = (), weights: Sequence[str] = (), rel: float = 1e-6
) -> int:
    """``actual`` holds exactly the files of ``expected`` (but those matching ``skip``), each the same;
    in files matching ``weights`` (tensors, JSON numbers) values may differ by ``rel``. Returns the number
    of files compared."""
    want = {k: v for k, v in tree(expected).items() if not any(fnmatch.fnmatch(k, s) for s in skip)}
    got = {k: v for k, v in tree(actual).items() if not any(fnmatch.fnmatch(k, s) for s in skip)}
    assert sorted(got) == sorted(want), (
        f"files differ: extra {sorted(set(got) - set(want))}, missing {sorted(set(want) - set(got))}"
    )
    for name in want:
        tolerant = any(fnmatch.fnmatch(name, pattern) for pattern in weights)
        same_file(want[name], got[name], rel=rel if tolerant else 0.0)
    return len(want)
