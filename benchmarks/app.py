"""The app's speed on the demo bundle, server time measured in one run with Streamlit's AppTest (a page's whole
rerun, as the server runs it), medians:

- the reading screen: next / previous study after 2 s on each case (the viewer's j / k and the toolbar's
  arrows take one path; the page prefetches the next study meanwhile; target <= 400 ms), and with no pause, a verdict save (submit and the rerun that shows it; target <= 200 ms), a click on a
  view -> what fires there (target <= 300 ms, the query alone reported too), one view's evidence map
  (target <= 50 ms), the case snapshot as PNG (<= 2 s) and PDF (<= 4 s);
- Interventions: a control -> probabilities (the fragment's rerun; <= 150 ms) and a curve update (<= 1 s);
- server memory over 200 study switches shared by 4 concurrent sessions (target: within +10% after warm-up).

Zoom, pan and window/level never reach the server (the viewer draws them in the browser):
``benchmarks/reading_browser.py`` proves it and times them, with the first start on an empty cache.

    python benchmarks/app.py [--bundle weights/demo/bundle] [--switches 200] [--sessions 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import report, rss_mb, timed
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
HOME = str(REPO / "app" / "Home.py")


def reading_app() -> AppTest:
    """A session on Case review with its reviewer named."""
    app = AppTest.from_file(HOME, default_timeout=300)
    app.run()
    app.session_state["note_author"] = "Benchmark reader"
    app.switch_page("views/case_review.py").run()
    assert not app.exception, app.exception
    return app


def press(app: AppTest, label: str) -> None:
    next(b for b in app.button if b.label == label).click().run()
    assert not app.exception, app.exception


def study_steps(app: AppTest, steps: int, dwell: float = 0.0) -> list[float]:
    """Next, next, ... then back: each a first visit of a study or a return to one. ``dwell`` seconds on
    each case before the next key (a reader reads it; the page prefetches the next study meanwhile)."""
    times = []
    for key in ["▶"] * steps + ["◀"] * (steps // 2):
        time.sleep(dwell)
        times.append(timed(lambda key=key: press(app, key)))
    return times


def verdict_saves(app: AppTest, count: int) -> list[float]:
    app.session_state["panel"] = "Verdict"
    app.run()
    times = []
    for i in range(count):
        next(r for r in app.radio if r.label.startswith("Does the evidence")).set_value(
            ("yes", "partly", "no")[i % 3]
        )
        button = next(b for b in app.button if b.label == "Save verdict")
        times.append(timed(lambda button=button: button.click().run()))
        assert not app.exception and app.success, (app.exception, [e.value for e in app.error])
    return times


def view_clicks(app: AppTest, bundle, clicks: int) -> tuple[list[float], list[float]]:
    """A click on a view (the spot it sets) -> the page's rerun with its table, and the query alone."""
    from mammo_sae.bundle import evidence_queries as evq
    from mammo_sae.bundle.cases import hanging_views

    study = next(s for s in app.selectbox if s.key == "study").value
    positions = [v.position for v in hanging_views(bundle, study) if v.position is not None]
    tokens = np.random.default_rng(0).integers(0, bundle.grid[0] * bundle.grid[1], size=clicks)
    app.session_state["panel"] = "What fires here"
    rerun, query = [], []
    for i, token in enumerate(tokens):
        position = positions[i % len(positions)]
        query.append(timed(lambda p=position, t=int(token): evq.fires_here(bundle, p, token=t)))
        app.session_state["spot"] = {
            "study": study,
            "position": position,
            "token": int(token),
            "where": "bench",
        }
        rerun.append(timed(app.run))
        assert not app.exception, app.exception
    return rerun, query


def evidence_maps(bundle, count: int) -> list[float]:
    """One view's evidence map carried to display pixels (480 px high) and blended."""
    from mammo_sae.bundle.overlays import blend_diverging, heatmap_on_original
    from mammo_sae.bundle.viewer import head_evidence
    from mammo_sae.data.frames import transform_from_json

    head, times = bundle.tasks[0], []
    for i in range(count):
        position = i % len(bundle.images)
        transform = transform_from_json(bundle.images.iloc[position]["transform"])
        scale = 480 / transform.original_shape[0]
        shape = (round(transform.original_shape[0] * scale), round(transform.original_shape[1] * scale))
        image = np.zeros(shape, np.uint8)

        def draw(position=position, transform=transform, scale=scale, image=image) -> None:
            heat = heatmap_on_original(head_evidence(bundle, position, head), transform, scale)
            blend_diverging(image, heat[: image.shape[0], : image.shape[1]], threshold=0.1)

        times.append(timed(draw))
    return times


def snapshots(studies: int) -> tuple[list[float], list[float]]:
    """The case snapshot of new studies as PNG and as PDF (each study's first export: nothing cached)."""
    sys.path.insert(0, str(REPO / "app"))
    import accessors

    bundle = accessors.open_bundle(accessors.default_bundle_path())
    root = accessors.bundle_data_root(bundle)
    ids = accessors.study_ids(bundle)
    choices = {"options": accessors.ViewOptions(opacity=0.7, threshold=0.1), "overlay": "evidence map",
               "head": bundle.tasks[0]}  # fmt: skip
    accessors.snapshot.snapshot_png(bundle, root, ids[-1], **choices)  # imports and calibration, once
    png = [
        timed(lambda s=s: accessors.snapshot.snapshot_png(bundle, root, s, **choices)) for s in ids[:studies]
    ]
    pdf = [
        timed(lambda s=s: accessors.snapshot.snapshot_pdf(bundle, root, s, **choices))
        for s in ids[studies : 2 * studies]
    ]
    return png, pdf


def interventions(app: AppTest) -> tuple[list[float], list[float]]:
    app.switch_page("views/interventions.py").run()
    toggles = []
    for k in ["10", "20", "50", "10", "30", "50", "20", "10"]:
        slider = next(s for s in app.select_slider if s.label == "k per class")
        if k in slider.options:
            toggles.append(timed(lambda slider=slider, k=k: slider.set_value(int(k)).run()))
            assert not app.exception, app.exception
    concept = next(s for s in app.selectbox if s.label == "Top-k of concept")
    concept.set_value(concept.options[1]).run()
    curves = []
    for _ in range(4):
        for unit in ("row", "image"):
            radio = next(r for r in app.radio if r.label == "Unit")
            curves.append(timed(lambda radio=radio, unit=unit: radio.set_value(unit).run()))
    return toggles, curves


def shared_switches(sessions: int, switches: int) -> tuple[float, float]:
    """RSS after a warm-up and after ``switches`` study switches spread over ``sessions`` sessions."""
    apps = [reading_app() for _ in range(sessions)]
    warm = rss_mb()
    for i in range(switches):
        press(apps[i % sessions], "▶" if (i // (sessions * 20)) % 2 == 0 else "◀")
        if i == 8 * sessions - 1:
            warm = rss_mb()
    return warm, rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", default=None, help="bundle folder (default: the shipped demo)")
    parser.add_argument("--switches", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16, help="next-study steps (then half as many back)")
    parser.add_argument("--clicks", type=int, default=30, help="clicks on views")
    args = parser.parse_args()
    if args.bundle:
        os.environ["MAMMO_SAE_BUNDLE"] = args.bundle
    for name in list(logging.root.manager.loggerDict):  # bare-mode warnings on every call
        if name.startswith("streamlit"):
            logging.getLogger(name).setLevel(logging.ERROR)
    from mammo_sae.bundle import Bundle
    from mammo_sae.bundle import evidence_queries as evq

    bundle = Bundle.open(args.bundle or REPO / "weights" / "demo" / "bundle")
    with tempfile.TemporaryDirectory() as notes:
        os.environ["MAMMO_SAE_NOTES"] = notes
        app = reading_app()
        steps = study_steps(app, args.steps, dwell=2.0)
        cold = study_steps(app, args.steps)
        saves = verdict_saves(app, 12)
        clicks, queries = view_clicks(app, bundle, args.clicks) if evq.has_evidence(bundle) else ([], [])
        maps = evidence_maps(bundle, 40) if evq.has_evidence(bundle) else []
        png, pdf = snapshots(6)
        toggles, curves = interventions(app)
        warm, final = shared_switches(args.sessions, args.switches)
    print(f"bundle {bundle.path}: {bundle.images['study_id'].nunique()} studies, {len(bundle.images)} views")
    report("next / previous study, 2 s on each case (page rerun)", steps, 0.4)
    report("  ... key held down, nothing prefetched", cold, None)
    report("verdict save (submit + rerun)", saves, 0.2)
    if clicks:
        report("click on a view -> what fires there (rerun)", clicks, 0.3)
        report("  the query behind the click", queries, 0.3)
        report("evidence map of one view (480 px high)", maps, 0.05)
    report("case snapshot PNG (a new study)", png, 2.0, "s")
    report("case snapshot PDF (a new study)", pdf, 4.0, "s")
    report("intervention control -> probabilities", toggles, 0.15)
    report("intervention curve update", curves, 1.0)
    growth = (final - warm) / warm
    print(
        f"{f'RSS over {args.switches} switches, {args.sessions} sessions':<50} {warm:.0f} MB warm -> {final:.0f} MB "
        f"({growth:+.1%}, target <= +10%)  {'PASS' if growth <= 0.10 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
