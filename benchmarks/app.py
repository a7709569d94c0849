"""Dashboard speed on the demo bundle, with Streamlit's AppTest (server time, no browser): medians of

- case page ready after selecting a study (target <= 1.5 s),
- an intervention toggle updating the probabilities (target <= 150 ms; the fragment's rerun),
- a dataset curve update (target <= 1 s),
- resident memory over 200 case switches (target: within 10% after warm-up),
- on bundles with evidence maps: the click-to-table round trip (the page's rerun after a click on a view,
  with the "what fires here" query behind it, target <= 300 ms; the query alone is reported too) and the
  evidence map of one view (read, carried to display pixels through the frame transform, blended;
  target <= 50 ms).

    python benchmarks/app.py [--bundle weights/demo/bundle] [--switches 200] [--clicks 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from mammo_sae.bundle import Bundle
from mammo_sae.bundle import evidence_queries as evq
from mammo_sae.bundle.cases import hanging_views
from mammo_sae.bundle.overlays import blend_diverging, heatmap_on_original
from mammo_sae.bundle.viewer import head_evidence
from mammo_sae.data.frames import transform_from_json

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
    parser.add_argument("--clicks", type=int, default=40, help="clicks on views for the round trip")
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

    # a click on a view: the query behind it, and the page's whole rerun that shows its table
    bundle = Bundle.open(os.environ.get("MAMMO_SAE_BUNDLE") or "weights/demo/bundle")
    query_times, click_times, map_times = [], [], []
    if evq.has_evidence(bundle):
        rng = np.random.default_rng(0)
        study = next(s for s in app.selectbox if s.label.startswith("Study")).value
        positions = [v.position for v in hanging_views(bundle, study) if v.position is not None]
        tokens = rng.integers(0, bundle.grid[0] * bundle.grid[1], size=args.clicks)
        for i, token in enumerate(tokens):
            position = positions[i % len(positions)]
            query_times.append(timed(lambda p=position, t=int(token): evq.fires_here(bundle, p, token=t)))
            app.session_state["spot"] = {
                "study": study,
                "position": position,
                "token": int(token),
                "where": "bench",
            }
            click_times.append(timed(app.run))
            assert not app.exception, app.exception
        head = bundle.tasks[0]
        for i in range(args.clicks):
            position = i % len(bundle.images)
            transform = transform_from_json(bundle.images.iloc[position]["transform"])
            scale = 480 / transform.original_shape[0]
            image = np.zeros(
                (round(transform.original_shape[0] * scale), round(transform.original_shape[1] * scale)),
                np.uint8,
            )

            def evidence_view(position=position, transform=transform, scale=scale, image=image) -> None:
                heat = heatmap_on_original(head_evidence(bundle, position, head), transform, scale)
                blend_diverging(image, heat[: image.shape[0], : image.shape[1]], threshold=0.1)

            map_times.append(timed(evidence_view))

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
    if click_times:
        report("click on a view -> what-fires-here table (rerun)", click_times, 0.3)
        report("  the query behind the click", query_times, 0.3)
        report("evidence map of one view (480 px high)", map_times, 0.05)
    else:
        print("click round trip and evidence map: skipped, the bundle predates evidence maps")
    growth = (final - warm) / warm
    verdict = "PASS" if growth <= 0.10 else "FAIL"
    print(
        f"{'RSS over ' + str(args.switches) + ' case switches':<42} {warm:.0f} MB after 20 -> {final:.0f} MB ({growth:+.1%}, target <= +10%)  {verdict}"
    )


if __name__ == "__main__":
    main()
