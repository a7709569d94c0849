"""The case snapshot: an A4 landscape page with the four hung views and their overlays, each view's scores,
the exam score per head, the top latents, the verdicts, the bundle's identity and the research-use notice;
a PNG and a PDF that poppler renders to the same layout; a missing view drawn as a named empty slot; marks
only when given, their tags never mirrored; SYNTHETIC PHANTOMS on a phantom bundle; study ids shortened."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammo_sae import RESEARCH_USE_NOTICE
from mammo_sae.bundle import Bundle
from mammo_sae.bundle.mark_drawing import draw_marks, mark_label
from mammo_sae.bundle.marks import Mark, OperatingPoint
from mammo_sae.bundle.render import MARK_COLOUR
from mammo_sae.bundle.snapshot import (
    BundleIdentity,
    SnapshotCase,
    build_case,
    render_views,
    snapshot_pdf,
    snapshot_png,
    verdict_items,
)
from mammo_sae.bundle.snapshot_drawing import compose, page_layout
from mammo_sae.bundle.viewer import ViewOptions
from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.vindr import VindrIndex

PDF_DPI = 50


@pytest.fixture(scope="module")
def bundle(analysis_bundle_path: Path) -> Bundle:
    return Bundle.open(analysis_bundle_path)


@pytest.fixture(scope="module")
def study(bundle: Bundle) -> str:
    """A study of the bundle with all four views."""
    counts = bundle.images.groupby("study_id")["position"].count()
    full = counts[counts == 4]
    assert len(full), "the fixture bundle has a study with four views"
    return str(full.index[0])


@pytest.fixture(scope="module")
def images(bundle: Bundle, study: str, analysis_setting) -> list:
    from mammo_sae.bundle.cases import hanging_views

    paths = VindrIndex.load(analysis_setting.data).images.set_index("image_id")["path"]
    return [read_mammogram(paths[v.image_id]) for v in hanging_views(bundle, study)]


def case_of(bundle: Bundle, study: str, **choices) -> SnapshotCase:
    options = ViewOptions(opacity=0.7, threshold=0.1)
    return build_case(bundle, study, options=options, overlay="evidence map", head="mass", **choices)


def region(image: np.ndarray, box, factor: float = 1.0) -> np.ndarray:
    x0, y0, x1, y1 = (round(v * factor) for v in box)
    return image[y0:y1, x0:x1]


def test_the_png_is_an_a4_page_with_four_views_that_are_not_blank(bundle, study, images) -> None:
    case = case_of(bundle, study)
    views = render_views(bundle, images, case)
    page = np.asarray(Image.open(io.BytesIO(snapshot_png(case, views))).convert("RGB"))
    layout = page_layout(case)
    assert page.shape == (layout.height, layout.width, 3) == (1240, 1754, 3), "A4 landscape at 150 dpi"
    pictures = compose(case, views).pictures
    for name, box in zip(("R CC", "L CC", "R MLO", "L MLO"), pictures, strict=True):
        assert box is not None, f"{name} is drawn"
        assert region(page, box).std() > 10, f"the {name} view is not blank"
    # the hanging: R views end at the centre line, L views start there (chest walls back to back)
    centre = layout.views[2] // 2
    assert abs(pictures[0][2] - centre) <= 10 and abs(pictures[1][0] - centre) <= 10


def test_a_missing_view_is_an_empty_slot_with_its_name(bundle, study, images) -> None:
    case = case_of(bundle, study)
    views = render_views(bundle, images, case)
    slots = (*case.slots[:3], replace(case.slots[3], position=None, scores=(), note=""))
    page = compose(replace(case, slots=slots), [*views[:3], None])
    assert page.pictures[3] is None
    cell = page.layout.cells[3]
    inside = [
        t.text for t in page.texts if cell[0] <= t.box[0] and t.box[2] <= cell[2] and cell[1] <= t.box[1]
    ]
    assert "L MLO" in inside and "not in this study" in inside
    pixels = np.asarray(page.image)
    assert region(pixels, page.layout.image_area(3)).std() > 3, "the empty slot is drawn, not left black"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils' pdftoppm is not installed")
def test_the_pdf_renders_with_poppler_and_shows_the_views_where_the_png_has_them(
    bundle, study, images, tmp_path: Path
) -> None:
    case = case_of(bundle, study)
    views = render_views(bundle, images, case)
    (tmp_path / "case.pdf").write_bytes(snapshot_pdf(case, views))
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            str(PDF_DPI),
            "-singlefile",
            str(tmp_path / "case.pdf"),
            str(tmp_path / "page"),
        ],
        check=True,
        timeout=60,
    )
    shown = np.asarray(Image.open(tmp_path / "page.png").convert("RGB")).astype(np.float32)
    layout = page_layout(case)
    factor = PDF_DPI / 150
    assert shown.shape[:2] == pytest.approx((layout.height * factor, layout.width * factor), abs=2)
    for box in compose(case, views).pictures:
        assert region(shown, box, factor).std() > 10, "each view shows in the rendered PDF"
    png = Image.open(io.BytesIO(snapshot_png(case, views))).convert("RGB")
    small = np.asarray(png.resize((shown.shape[1], shown.shape[0]), Image.Resampling.BOX)).astype(np.float32)
    assert np.abs(small - shown).mean() < 8, "the PDF page is the PNG page"


def test_a_phantom_bundle_says_synthetic_phantoms_in_the_title_bar(bundle, study, images) -> None:
    case = case_of(bundle, study)
    assert case.identity.synthetic, "the fixture bundle is built on phantoms"
    views = render_views(bundle, images, case)
    page = compose(case, views)
    label = next(t for t in page.texts if t.text == "SYNTHETIC PHANTOMS")
    assert label.region == "title" and label.box[3] <= page.layout.title[3]
    assert region(np.asarray(page.image), label.box).std() > 20, "the label is drawn"
    real = compose(replace(case, identity=replace(case.identity, synthetic=False)), views)
    assert not any("SYNTHETIC" in line for line in real.lines), "no synthetic label on a real-data bundle"


def test_marks_are_drawn_only_when_given(bundle, study, images) -> None:
    case = case_of(bundle, study)
    views = render_views(bundle, images, case)
    plain = np.asarray(compose(case, views).image)
    assert np.array_equal(np.asarray(compose(replace(case, marks=()), views).image), plain)
    position = case.slots[0].position
    marked_case = replace(case, marks=(Mark(position, "mass", (60.0, 80.0, 110.0, 130.0), 0.87),))
    page = compose(marked_case, views)
    changed = np.any(np.asarray(page.image) != plain, axis=2)
    ys, xs = np.nonzero(changed)
    picture = page.pictures[0]
    assert len(xs), "the mark is drawn"
    assert (
        picture[0] <= xs.min() and xs.max() < picture[2] and picture[1] <= ys.min() and ys.max() < picture[3]
    ), "the mark lies on its own view only"


def test_a_mark_tag_reads_left_to_right_on_a_mirrored_view() -> None:
    width, height = 300, 400
    grey = np.full((height, width, 3), 60, np.uint8)
    mark = Mark(0, "mass", (60.0, 150.0, 100.0, 190.0), 0.87)
    plain = draw_marks(grey, [mark], scale=1.0, flipped=False)
    mirrored = draw_marks(grey, [mark], scale=1.0, flipped=True)
    assert mark_label(mark) == "mass 87%"
    # the ring sits at the mirrored place ...
    assert np.any(mirrored[170, width - 100 - 30 : width - 60 + 30] != 60)

    # ... and the tag is the same picture as on the unmirrored view: its text is written, not mirrored
    def tag(image: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(np.all(image[:130] == MARK_COLOUR, axis=2))  # the tag lies above the ring
        return image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]

    assert np.array_equal(tag(plain), tag(mirrored)), "the tag's text must not be mirrored"
    assert not np.array_equal(tag(plain), tag(plain)[:, ::-1]), "a mirrored tag would differ"


def test_the_page_names_the_bundle_the_scores_the_latents_and_the_notice(bundle, study, images) -> None:
    case = case_of(bundle, study)
    page = compose(case, render_views(bundle, images, case))
    lines = page.lines
    assert RESEARCH_USE_NOTICE in lines
    notice = next(t for t in page.texts if t.text == RESEARCH_USE_NOTICE)
    assert notice.region == "footer"
    manifest = bundle.manifest
    text = "\n".join(lines)
    assert manifest["inputs"]["backbone"]["architecture"] in text
    assert f"{manifest['sae']['d_sae']} latents" in text
    assert manifest["created"][:10] in text, "the build date"
    assert "probability, not calibrated" in text, "without calibrated inputs the page says so"
    assert any(line.startswith("Top latents: mass logit on ") for line in lines)
    assert case.contributions and f"#{case.contributions[0].latent}" in text
    shares = [row.share for row in case.contributions]
    assert all(-1 <= s <= 1 for s in shares) and abs(shares[0]) >= abs(shares[-1])
    assert "No verdict recorded for this case." in lines


def test_study_ids_are_shortened_and_no_image_id_is_shown(bundle, study, images) -> None:
    case = case_of(bundle, study)
    text = "\n".join(compose(case, render_views(bundle, images, case)).lines)
    assert study[:12] in text and study not in text
    for image_id in bundle.images["image_id"]:
        assert str(image_id) not in text


def test_calibrated_scores_are_judged_at_the_operating_point(bundle, study, images) -> None:
    positions = [s.position for s in case_of(bundle, study).slots]
    probabilities = {p: {"mass": 0.2 + 0.2 * i, "calcification": 0.05} for i, p in enumerate(positions)}
    points = {head: OperatingPoint(head, 0.5, 0.9, 0.91, 0.7, 10, 20) for head in ("mass", "calcification")}
    case = case_of(bundle, study, probabilities=probabilities, points=points)
    assert case.calibrated
    passes = [next(s for s in slot.scores if s.head == "mass").passes for slot in case.slots]
    assert passes == [False, False, True, True]
    exam = {e.head: e for e in case.exam_scores}
    assert math.isclose(exam["mass"].score, 0.8) and exam["mass"].view == "L MLO" and exam["mass"].passes
    assert exam["calcification"].passes is False
    lines = compose(case, render_views(bundle, images, case)).lines
    assert "Exam score per head (calibrated probability)" in lines
    assert "ABOVE" in lines and "below" in lines
    assert any(line.startswith("50% (sens 70%, spec 91%)") for line in lines)


def test_each_reviewers_verdict_is_shown(bundle, study, images) -> None:
    verdicts = [
        {"study": study, "reviewer": "Dr. Ada", "evidence": "partly", "model_error": "false negative",
         "note": "evidence splits between the mass and the marker", "updated": "2026-12-02T08:00:00+00:00"},
        {"study": study, "reviewer": "Dr. Bo", "evidence": None, "model_error": "no", "note": "",
         "updated": "2026-12-02T08:05:00+00:00"},
    ]  # fmt: skip
    case = case_of(bundle, study, verdicts=verdicts)
    assert verdict_items(verdicts[1]) == (
        ("reviewer", "Dr. Bo"),
        ("evidence on the finding", "not judged"),
        ("model error", "no"),
        ("saved", "2026-12-02 08:05 UTC"),
    )
    lines = compose(case, render_views(bundle, images, case)).lines
    assert "Reviewer verdicts (2)" in lines
    assert {"Dr. Ada", "Dr. Bo", "partly", "false negative"} <= set(lines)
    assert any("evidence splits between the mass" in line for line in lines)


def test_the_identity_reads_the_manifest() -> None:
    manifest = {
        "created": "2026-12-02T03:54:10+00:00",
        "dataset_kind": "VinDr-Mammo layout",
        "synthetic": False,
        "run_id": "8ac0ee1c1ca8280c64c1",
        "inputs": {
            "backbone": {"architecture": "timm:efficientnet_b5", "layer": "final_conv", "num_features": 2048}
        },
        "sae": {"architecture": "topk", "d_in": 2048, "d_sae": 16384, "hparams": {"k": 32}},
    }
    identity = BundleIdentity.from_manifest(manifest)
    assert identity == BundleIdentity(
        dataset_kind="VinDr-Mammo layout",
        synthetic=False,
        backbone="timm:efficientnet_b5 · final_conv · 2048 channels",
        sae="topk SAE, 2048 -> 16384 latents, k = 32",
        built="2026-12-02 03:54 UTC",
        run="8ac0ee1c1ca8",
    )
    assert BundleIdentity.from_manifest({}).dataset_kind == "unknown"


def test_the_app_accessor_exports_png_and_pdf_with_calibrated_scores_and_marks(
    analysis_bundle_path: Path, analysis_setting, study: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(analysis_bundle_path))
    monkeypatch.setenv("MAMMO_SAE_NOTES", str(tmp_path / "notes"))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "app"))
    import accessors

    bundle = accessors.open_bundle(str(analysis_bundle_path))
    choices = {"options": ViewOptions(), "overlay": "evidence map", "head": "mass", "threshold": 0.0}
    case, views = accessors.snapshot.case_snapshot(bundle, analysis_setting.data, study, **choices)
    assert case.calibrated and all(e.passes for e in case.exam_scores), "threshold 0: every head passes"
    assert case.marks and {m.position for m in case.marks} <= {s.position for s in case.slots}
    assert all(v is not None for v in views)
    unmarked, _ = accessors.snapshot.case_snapshot(
        bundle, analysis_setting.data, study, **choices, marks=False
    )
    assert unmarked.marks == ()
    png = accessors.snapshot.snapshot_png(bundle, analysis_setting.data, study, **choices)
    assert Image.open(io.BytesIO(png)).size == (1754, 1240)
    assert accessors.snapshot.snapshot_pdf(bundle, analysis_setting.data, study, **choices).startswith(
        b"%PDF"
    )
    name = accessors.snapshot.file_name(study, "pdf")
    assert name == f"snapshot-{study[:12]}.pdf" and study not in name


def test_a_head_without_an_operating_point_says_so_instead_of_a_number(bundle, study, images) -> None:
    positions = [s.position for s in case_of(bundle, study).slots]
    probabilities = {p: {"mass": 0.6, "calcification": 0.4} for p in positions}
    points = {
        "mass": OperatingPoint("mass", math.inf, 0.9, math.nan, math.nan, 4, 0),
        "calcification": OperatingPoint("calcification", 0.3, 0.9, 0.9, math.nan, 3, 5),
    }
    case = case_of(bundle, study, probabilities=probabilities, points=points)
    lines = compose(case, render_views(bundle, images, case)).lines
    assert "none: no negatives" in lines, "an infinite threshold is not shown as a number"
    assert "30% (spec 90%)" in lines, "an unknown sensitivity is left out, not shown as nan"
    assert not any("nan" in line or "inf" in line for line in lines)
