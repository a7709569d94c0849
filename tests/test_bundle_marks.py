"""CAD-style marks on the small analysis bundle: calibrated probabilities come from one Platt fit per head,
the operating point's specificity on the bundle's images meets its target, marks appear only on views at or
above the threshold with boxes inside the image and the view's calibrated probability as their score, the
exam score is the highest view's, and a bundle without evidence maps marks the frame's whole region. The
Overview shows the reliability diagram and the operating points on the demo and on such a bundle."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mammo_sae.analysis.operating_points import sigmoid
from mammo_sae.bundle import Bundle
from mammo_sae.bundle import marks as mk
from mammo_sae.bundle.cases import hanging_views
from mammo_sae.bundle.notes import NOTES_ENV
from mammo_sae.data.frames import transform_from_json
from mammo_sae.demo import DEMO_DIR, demo_bundle_dir

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
EVIDENCE_FILES = ("evidence.npy", "regions.npz", "evidence_regions.parquet", "evidence_split.parquet")


@pytest.fixture(scope="module")
def bundle(analysis_bundle_path: Path) -> Bundle:
    return Bundle.open(analysis_bundle_path)


def without_evidence(source: Path, folder: Path) -> Path:
    """A copy of the bundle at ``source`` (with its inputs) as written before evidence maps."""
    shutil.copytree(source.parent, folder)
    out = folder / source.name
    manifest = json.loads((out / "manifest.json").read_text())
    for name in (*EVIDENCE_FILES, "shortcuts.parquet"):
        manifest["files"].pop(name, None)
        (out / name).unlink(missing_ok=True)
    manifest["format_version"] = 2
    manifest.get("summary", {}).pop("shortcut_summary", None)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def labels(bundle: Bundle, head: str) -> np.ndarray:
    return bundle.images[head].to_numpy().astype(bool)


def test_calibrated_probabilities_are_each_heads_platt_fit_computed_once(bundle: Bundle) -> None:
    table = mk.calibrated_probabilities(bundle)
    assert (
        list(table.columns) == list(bundle.tasks)
        and table.index.tolist() == bundle.images["position"].tolist()
    )
    for head, fit in mk.calibrations(bundle).items():
        logits = bundle.images[f"logit_{head}_original"].to_numpy()
        assert np.allclose(table[head], sigmoid(fit.a * logits + fit.b))
        assert fit.n == len(bundle.images) and fit.n_positive == labels(bundle, head).sum()
        assert (fit.method == "identity") == (fit.n_positive in (0, fit.n)), "identity only on one class"
    assert mk._calibrated(bundle) is mk._calibrated(bundle), "fitted once per opened bundle"
    assert mk.view_probabilities(bundle, 1) == {h: pytest.approx(table.loc[1, h]) for h in bundle.tasks}


@pytest.mark.parametrize("target", [0.0, 0.5, 0.9, 1.0])
def test_the_operating_points_specificity_on_the_bundle_meets_its_target(
    bundle: Bundle, target: float
) -> None:
    table = mk.calibrated_probabilities(bundle)
    for head, point in mk.operating_points(bundle, target).items():
        y = labels(bundle, head)
        scores = table[head].to_numpy()
        assert point.target_specificity == target
        assert (point.n_positive, point.n_negative) == (y.sum(), (~y).sum())
        if not (~y).any():
            assert point.threshold == math.inf
            continue
        called = scores >= point.threshold
        assert point.specificity == pytest.approx(1 - called[~y].mean()) and point.specificity >= target
        if y.any():
            assert point.sensitivity == pytest.approx(called[y].mean())
        lower = scores[scores < point.threshold]  # the next lower score would miss the target
        if len(lower):
            assert 1 - (scores >= lower.max())[~y].mean() < target


def test_a_typed_threshold_gives_its_own_rates(bundle: Bundle) -> None:
    table = mk.calibrated_probabilities(bundle)
    points = mk.operating_points_at(bundle, 0.5)
    for head, point in points.items():
        y, called = labels(bundle, head), table[head].to_numpy() >= 0.5
        assert point.threshold == 0.5 and point.target_specificity == point.specificity
        if (~y).any():
            assert point.specificity == pytest.approx(1 - called[~y].mean())
    per_head = mk.operating_points_at(bundle, {h: 0.25 for h in bundle.tasks})
    assert {p.threshold for p in per_head.values()} == {0.25}
    with pytest.raises(mk.BundleError, match="in \\[0, 1\\]"):
        mk.operating_points_at(bundle, 1.5)


def inside_image(bundle: Bundle, position: int, box: tuple[float, float, float, float]) -> bool:
    rows, cols = transform_from_json(bundle.images.iloc[position]["transform"]).original_shape
    x0, y0, x1, y1 = box
    return 0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows


@pytest.mark.parametrize("target", [0.0, 0.5, 0.9])
def test_marks_only_on_views_at_or_above_the_threshold_inside_the_image(
    bundle: Bundle, target: float
) -> None:
    table = mk.calibrated_probabilities(bundle)
    points = mk.operating_points(bundle, target)
    marked = 0
    for head, point in points.items():
        for position in bundle.images["position"]:
            marks = mk.view_marks(bundle, int(position), head, point)
            probability = table.loc[position, head]
            if probability < point.threshold:
                assert marks == [], f"view {position} is below {head}'s threshold"
                continue
            evidence = bundle.evidence(int(position))[bundle.heads.tasks.index(head)]
            assert 1 <= len(marks) <= mk.MAX_MARKS or evidence.max() <= 0
            for mark in marks:
                assert (mark.position, mark.head) == (position, head)
                assert mark.score == pytest.approx(probability)
                assert inside_image(bundle, int(position), mark.box)
            marked += len(marks)
    if target == 0.0:
        assert marked > 0, "every view passes a threshold at 0% specificity"


def test_the_exam_score_is_the_highest_view_and_study_marks_cover_each_view(bundle: Bundle) -> None:
    table = mk.calibrated_probabilities(bundle)
    points = mk.operating_points(bundle, 0.0)
    for study in bundle.images["study_id"].unique():
        positions = [v.position for v in hanging_views(bundle, study)]
        present = [p for p in positions if p is not None]
        scores = mk.exam_scores(bundle, positions)
        assert scores == {h: pytest.approx(table.loc[present, h].max()) for h in bundle.tasks}
        marks = mk.study_marks(bundle, positions, points)
        assert sorted(marks) == sorted(present)
        for position, view_marks in marks.items():
            expected = [m for h, p in points.items() for m in mk.view_marks(bundle, position, h, p)]
            assert view_marks == expected
    assert all(math.isnan(v) for v in mk.exam_scores(bundle, [None, None]).values())


def test_a_bundle_without_evidence_marks_the_frames_whole_region(
    analysis_bundle_path: Path, tmp_path: Path
) -> None:
    old = Bundle.open(without_evidence(analysis_bundle_path, tmp_path / "old"))
    assert not old.has_evidence
    points = mk.operating_points(old, 0.0)
    for head, point in points.items():
        for position in old.images["position"]:
            marks = mk.view_marks(old, int(position), head, point)
            assert len(marks) == 1
            transform = transform_from_json(old.images.iloc[int(position)]["transform"])
            height, width = transform.frame_size
            whole = transform.boxes_to_original(np.array([[0.0, 0.0, width, height]]))[0]
            rows, cols = transform.original_shape
            assert np.allclose(marks[0].box, np.clip(whole, 0, [cols, rows, cols, rows]))
            assert inside_image(old, int(position), marks[0].box)


def test_reliability_and_summary_tables(bundle: Bundle) -> None:
    table = mk.reliability_table(bundle)
    assert set(table["head"]) == set(bundle.tasks) and set(table["series"]) == {
        mk.CALIBRATED,
        mk.UNCALIBRATED,
    }
    for (_, _), part in table.groupby(["head", "series"]):
        assert part["count"].sum() == len(bundle.images)
    summary = mk.calibration_summary(bundle)
    assert summary["head"].tolist() == list(bundle.tasks)
    assert summary["ece_after"].between(0, 1).all() and summary["ece_before"].between(0, 1).all()
    points = mk.operating_point_table(mk.operating_points(bundle))
    assert points["head"].tolist() == list(bundle.tasks) and (points["specificity"] >= 0.9).all()


# --- the Overview page ---------------------------------------------------------------------------------------


def overview(monkeypatch: pytest.MonkeyPatch, bundle: Path, notes: Path) -> AppTest:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle))
    monkeypatch.setenv(NOTES_ENV, str(notes))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    app.switch_page("views/overview.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    return app


def assert_shows_calibration(app: AppTest, bundle: Bundle) -> None:
    specs = [json.loads(c.proto.spec) for c in app.get("arrow_vega_lite_chart") or app.get("vega_lite_chart")]
    panels = [s for s in specs if "hconcat" in s]
    assert len(panels) == 1, "one reliability diagram"
    titles = [p["title"]["text"] for p in panels[0]["hconcat"]]
    assert titles == list(bundle.tasks)
    assert all("ECE" in p["title"]["subtitle"] for p in panels[0]["hconcat"])
    assert any(
        f"Calibrated on the analysed split, {len(bundle.images):,} images" in c.value for c in app.caption
    )
    assert any("not a held-out estimate" in c.value for c in app.caption)
    tables = [d.value for d in app.dataframe if "threshold" in d.value.columns]
    assert len(tables) == 1
    expected = mk.operating_points(bundle)
    assert tables[0]["head"].tolist() == list(expected)
    assert np.allclose(tables[0]["threshold"], [p.threshold for p in expected.values()])


@pytest.mark.skipif(not (DEMO_DIR / "demo.json").exists(), reason="needs the shipped demo bundle")
def test_the_overview_shows_calibration_on_the_demo(monkeypatch, tmp_path: Path) -> None:
    app = overview(monkeypatch, demo_bundle_dir(), tmp_path / "notes")
    assert_shows_calibration(app, Bundle.open(demo_bundle_dir()))


def test_the_overview_shows_calibration_on_a_bundle_without_evidence(
    monkeypatch, analysis_bundle_path: Path, tmp_path: Path
) -> None:
    path = without_evidence(analysis_bundle_path, tmp_path / "old")
    app = overview(monkeypatch, path, tmp_path / "notes")
    assert_shows_calibration(app, Bundle.open(path))


def test_the_accessors_agree_with_the_library(bundle: Bundle) -> None:
    import sys

    sys.path.insert(0, str(Path(HOME).parent))
    import accessors

    points = accessors.marks.operating_points(bundle, 0.5)
    assert points == mk.operating_points(bundle, 0.5)
    assert accessors.marks.operating_points(bundle, threshold=0.3) == mk.operating_points_at(bundle, 0.3)
    study = str(bundle.images["study_id"].iloc[0])
    positions = [v.position for v in hanging_views(bundle, study)]
    assert accessors.marks.study_marks(bundle, positions, 0.5) == mk.study_marks(bundle, positions, points)
    assert accessors.marks.exam_scores(bundle, positions) == pytest.approx(mk.exam_scores(bundle, positions))
    position = next(p for p in positions if p is not None)
    line = accessors.marks.probability_line(bundle, position, 0.5)
    for head, p in mk.view_probabilities(bundle, position).items():
        marked = "▲ marked" if p >= points[head].threshold else "–"
        assert f"**{accessors.md_text(head)}** {100 * p:.0f}% {marked}" in line
    caption = accessors.marks.point_caption(points[bundle.tasks[0]])
    assert caption.startswith(accessors.md_text(bundle.tasks[0]) + ": ")
