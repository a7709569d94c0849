"""Dashboard speed on the demo bundle, with Streamlit's AppTest (server time, no browser): medians of

- case page ready after selecting a study (target <= 1.5 s),
- an intervention toggle updating the probabilities (target <= 150 ms; the fragment's rerun),
- a dataset curve update (target <= 1 s),
- resident memory over 200 case switches (target: within 10% after warm-up).

    python benchmarks/app.py [--bundle weights/demo/bundle] [--switches 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", default=None, help="bundle folder (default: the shipped demo)")
    parser.add_argument("--switches", type=int, default=200)
    args = parser.parse_args()
    if args.bundle:
        os.environ["MAMMO_SAE_BUNDLE"] = args.bundle
    app = AppTest.from_file(HOME, default_timeout=300)
    app.run()
    app.switch_page("views/case_review.py").run()
    assert not app.exception, app.exception
    study_box = next(s for s in app.selectbox if s.label.startswith("Study"))
    studies = list(study_box.options)

    # case page: select a study, wait for the run to finish (first visit of each study: nothing cached)
    case_times = []
    for study in studies[1:13]:
        box = next(s for s in app.selectbox if s.label.startswith("Study"))
        case_times.append(timed(lambda box=box, study=study: box.set_value(study).run()))
        assert not app.exception, app.exception

    # interventions: the fragment reruns alone when a control changes
    app.switch_page("views/interventions.py").run()
    toggle_times = []
    for k in ["1", "5", "10", "50", "100", "5", "10", "250", "500", "1000"]:
        slider = next(s for s in app.select_slider if s.label == "k per class")
        toggle_times.append(timed(lambda slider=slider, k=k: slider.set_value(int(k)).run()))
        assert not app.exception, app.exception
    concept = next(s for s in app.selectbox if s.label == "Top-k of concept")
    concept.set_value(concept.options[1]).run()  # a concept: the curves below then follow its ranking

    curve_times = []
    for _ in range(5):
        for unit in ("row", "image"):
            radio = next(r for r in app.radio if r.label == "Unit")
            curve_times.append(timed(lambda radio=radio, unit=unit: radio.set_value(unit).run()))

    # memory over many case switches
    app.switch_page("views/case_review.py").run()
    warm = None
    for i in range(args.switches):
        box = next(s for s in app.selectbox if s.label.startswith("Study"))
        box.set_value(studies[i % len(studies)]).run()
        if i == 19:
            warm = rss_mb()
    final = rss_mb()

    def report(name: str, values: list[float], target: float) -> None:
        median = statistics.median(values)
        verdict = "PASS" if median <= target else "FAIL"
        print(
            f"{name:<42} median {median * 1000:8.1f} ms  (n={len(values)}, target <= {target * 1000:.0f} ms)  {verdict}"
        )

    print(f"bundle: {os.environ.get('MAMMO_SAE_BUNDLE', 'weights/demo/bundle')}, studies: {len(studies)}")
    report("case page ready after selecting a study", case_times, 1.5)
    report("intervention control -> probabilities", toggle_times, 0.15)
    report("dataset curve update", curve_times, 1.0)
    growth = (final - warm) / warm
    verdict = "PASS" if growth <= 0.10 else "FAIL"
    print(
        f"{'RSS over ' + str(args.switches) + ' case switches':<42} {warm:.0f} MB after 20 -> {final:.0f} MB ({growth:+.1%}, target <= +10%)  {verdict}"
    )


if __name__ == "__main__":
    main()
