"""The reading screen's speed on the demo bundle (issue 19, point 9), medians of server time measured in one
run with Streamlit's AppTest (the page's whole rerun, as a server runs it) unless said otherwise:

- next / previous study (the viewer's j / k and the toolbar's arrows take the same path; target <= 400 ms),
- a verdict save (the form's submit and the rerun that shows it; target <= 200 ms),
- the case snapshot as PNG (target <= 2 s) and as PDF (target <= 4 s),
- server memory over 200 study switches shared by 4 concurrent sessions (target: within +10% after warm-up),
- with ``--browser``: zoom / pan / window-level in Chromium (browser time from the event to the redrawn
  canvas; no server round trip is made: the number of script runs is counted before and after), and the
  first start on an empty cache (phantoms generated, progress shown) until the viewer is drawn (target <= 60 s).

    python benchmarks/reading.py [--switches 200] [--sessions 4] [--browser]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
HOME = str(REPO / "app" / "Home.py")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def report(name: str, values: list[float], target: float | None, unit: str = "ms") -> None:
    median = statistics.median(values)
    scale = 1000 if unit == "ms" else 1
    verdict = "" if target is None else ("PASS" if median <= target else "FAIL")
    goal = "" if target is None else f", target <= {target * scale:g} {unit}"
    print(f"{name:<52} median {median * scale:8.1f} {unit}  (n={len(values)}{goal})  {verdict}")


def reading_app(notes: Path) -> AppTest:
    """A session on Case review (notes and verdicts kept in ``notes``), its reviewer named."""
    os.environ["MAMMO_SAE_NOTES"] = str(notes)
    app = AppTest.from_file(HOME, default_timeout=300)
    app.run()
    app.session_state["note_author"] = "Benchmark reader"
    app.switch_page("views/case_review.py").run()
    assert not app.exception, app.exception
    return app


def press(app: AppTest, label: str) -> None:
    next(b for b in app.button if b.label == label).click().run()
    assert not app.exception, app.exception


def study_steps(app: AppTest, steps: int) -> list[float]:
    """Next, next, ... then previous: each a first visit of a study (nothing of it cached) or a return."""
    times = [timed(lambda: press(app, "▶")) for _ in range(steps)]
    times += [timed(lambda: press(app, "◀")) for _ in range(steps // 2)]
    return times


def verdict_saves(app: AppTest, count: int) -> list[float]:
    app.session_state["panel"] = "Verdict"
    app.run()
    times = []
    for i in range(count):
        radio = next(r for r in app.radio if r.label.startswith("Does the evidence"))
        radio.set_value(("yes", "partly", "no")[i % 3])
        button = next(b for b in app.button if b.label == "Save verdict")
        times.append(timed(lambda button=button: button.click().run()))
        assert not app.exception and app.success, (app.exception, [e.value for e in app.error])
    return times


def snapshots(count: int) -> tuple[list[float], list[float]]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from snapshot import snapshot_timings  # the snapshot benchmark's own measurement

    return snapshot_timings(count)


def shared_switches(notes: Path, sessions: int, switches: int) -> tuple[float, float]:
    """RSS after a warm-up and after ``switches`` study switches spread over ``sessions`` sessions."""
    apps = [reading_app(notes) for _ in range(sessions)]
    warm = None
    for i in range(switches):
        app = apps[i % sessions]
        press(app, "▶" if (i // (sessions * 20)) % 2 == 0 else "◀")
        if i == 4 * sessions:
            warm = rss_mb()
    return float(warm), rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--switches", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument(
        "--browser", action="store_true", help="also the browser-side and first-start figures"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as notes:
        app = reading_app(Path(notes))
        steps = study_steps(app, args.steps)
        saves = verdict_saves(app, 12)
        png, pdf = snapshots(5)
        warm, final = shared_switches(Path(notes), args.sessions, args.switches)
    report("next / previous study (page rerun)", steps, 0.4)
    report("verdict save (submit + rerun)", saves, 0.2)
    report("case snapshot PNG", png, 2.0, "s")
    report("case snapshot PDF", pdf, 4.0, "s")
    growth = (final - warm) / warm
    print(
        f"{f'RSS over {args.switches} switches, {args.sessions} sessions':<52} {warm:.0f} MB warm -> {final:.0f} MB "
        f"({growth:+.1%}, target <= +10%)  {'PASS' if growth <= 0.10 else 'FAIL'}"
    )
    if args.browser:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from reading_browser import browser_figures

        browser_figures(report)


if __name__ == "__main__":
    main()
