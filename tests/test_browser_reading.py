"""The reading screen in Chromium, on the shipped demo: CAD marks only at or above the operating point, two
reviewers saving verdicts at once, the PDF snapshot with its four views, a link that opens the same case
in a fresh browser, and `j` stepping the worklist."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_browser import (  # noqa: F401 (browser, demo_cache, notes_dir and the servers are fixtures)
    browser,
    demo_cache,
    notes_dir,
    notes_server,
    panel,
    query,
    server,
    settle,
    shoot,
    shown_study,
    viewer_frame,
    wait_for,
    wait_for_viewer,
)

from mammo_sae.bundle import Bundle
from mammo_sae.bundle import marks as mk
from mammo_sae.bundle.cases import hanging_views, study_table
from mammo_sae.bundle.format import read_manifest
from mammo_sae.bundle.notes import notes_folder
from mammo_sae.bundle.snapshot_drawing import page_layout
from mammo_sae.bundle.verdicts import VERDICTS_FILE
from mammo_sae.demo import demo_bundle_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo() -> Bundle:
    return Bundle.open(demo_bundle_dir())


def positions_of(bundle: Bundle, study: str) -> list[int | None]:
    """The study's views in hanging order (None: a missing view)."""
    return [v.position for v in hanging_views(bundle, study)]


def expected_marks(bundle: Bundle, study: str, specificity: float) -> list[int]:
    """How many marks each hanging slot should draw at ``specificity`` (the library's marks)."""
    positions = positions_of(bundle, study)
    found = mk.study_marks(bundle, positions, mk.operating_points(bundle, specificity))
    return [len(found.get(p, [])) if p is not None else 0 for p in positions]


def drawn_marks(page) -> list[int]:
    frame = viewer_frame(page)
    return [int(frame.locator(f'canvas[data-slot="{i}"]').get_attribute("data-marks") or 0) for i in range(4)]


def open_case(page, url: str, study: str, **params: str) -> None:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    page.goto(f"{url}/case_review?study={study}{extra}")
    settle(page)
    wait_for_viewer(page)
    viewer_frame(page).locator(f"#viewer[data-study='{study}'][data-state=ready]").wait_for(timeout=60_000)


def test_marks_are_drawn_only_on_views_at_or_above_the_operating_point(server: str, browser, demo) -> None:  # noqa: F811
    studies = study_table(demo)["study_id"].tolist()
    marked = ((s, expected_marks(demo, s, 0.90), expected_marks(demo, s, 0.99)) for s in studies)
    # a study with marked and unmarked views, where a stricter operating point removes a mark
    study, at_90, at_99 = next(m for m in marked if any(m[1]) and not all(m[1]) and m[2] != m[1])
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    open_case(page, server, study)
    assert drawn_marks(page) == at_90
    slider = page.get_by_role("slider", name="Specificity").first
    slider.focus()
    page.keyboard.press("End")  # 0.99
    settle(page)
    wait_for(lambda: drawn_marks(page) == at_99, timeout=60)
    page.evaluate("document.activeElement?.blur()")  # keys typed on the page, not into the slider
    page.keyboard.press("m")  # marks hidden with one key
    wait_for(lambda: drawn_marks(page) == [0, 0, 0, 0], timeout=30)
    page.close()


def test_two_reviewers_saving_at_once_lose_nothing(notes_server, browser, notes_dir, demo) -> None:  # noqa: F811
    study = study_table(demo)["study_id"].iloc[5]
    contexts = [browser.new_context(viewport={"width": 1600, "height": 1000}) for _ in range(2)]
    pages = [context.new_page() for context in contexts]
    reviewers = [("Dr. Ada", "partly", "mass edge only"), ("Dr. Lin", "no", "looks at the marker")]
    try:
        for page, (name, evidence, note) in zip(pages, reviewers, strict=True):
            open_case(page, notes_server, study)
            box = page.get_by_role("textbox", name="Your name (for notes and verdicts)").first
            box.fill(name)
            box.press("Enter")
            settle(page)
            panel(page, "Verdict")
            page.get_by_role("radiogroup", name="Does the evidence fall on the finding?").get_by_text(
                evidence, exact=True
            ).click()
            page.get_by_role("textbox", name="Note", exact=True).first.fill(note)
        buttons = [page.get_by_role("button", name="Save verdict").first for page in pages]
        for button in buttons:  # both saves sent before either answer comes back
            button.click(no_wait_after=True)
        for page in pages:
            page.wait_for_selector("text=Saved.", timeout=60_000)
        pages[0].reload()
        settle(pages[0])
        panel(pages[0], "Verdict")
        table = pages[0].locator("[data-testid=stDataFrame]").first
        table.wait_for(timeout=60_000)
    finally:
        for context in contexts:
            context.close()
    saved = json.loads(
        (notes_folder(read_manifest(demo_bundle_dir()), notes_dir) / VERDICTS_FILE).read_text()
    )
    entries = sorted((v["reviewer"], v["evidence"], v["note"]) for v in saved["cases"][study].values())
    assert entries == sorted(reviewers), "each reviewer's verdict is kept, neither overwrites the other"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) renders the PDF")
def test_the_pdf_snapshot_holds_the_four_views(server: str, browser, demo, tmp_path: Path) -> None:  # noqa: F811
    study = study_table(demo)["study_id"].iloc[2]
    page = browser.new_page(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    open_case(page, server, study)
    page.get_by_role("button", name="Snapshot").first.click()
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="PDF").first.click()
    pdf = tmp_path / "snapshot.pdf"
    download.value.save_as(pdf)
    assert (
        download.value.suggested_filename.endswith(".pdf") and study[:8] in download.value.suggested_filename
    )
    page.close()
    subprocess.run(
        ["pdftoppm", "-r", "150", "-png", "-singlefile", str(pdf), str(tmp_path / "page")], check=True
    )
    rendered = np.asarray(Image.open(tmp_path / "page.png").convert("L"), dtype=np.float64)
    layout = page_layout()
    assert abs(rendered.shape[1] - layout.width) <= 2 and abs(rendered.shape[0] - layout.height) <= 2
    for slot, position in enumerate(positions_of(demo, study)):
        x0, y0, x1, y1 = layout.image_area(slot)
        area = rendered[y0:y1, x0:x1]
        assert position is not None and area.std() > 20, f"slot {slot}: a view is drawn there"
        assert (area < 30).mean() > 0.1 and (area > 120).mean() > 0.02, f"slot {slot}: background and tissue"
    title = rendered[: layout.title[3], : layout.width // 2]
    assert (title < 100).mean() > 0.002, "the title line is printed"


def test_a_link_opens_the_same_case_view_and_latent_in_a_fresh_browser(server: str, browser, demo) -> None:  # noqa: F811
    studies = study_table(demo)["study_id"].tolist()
    first = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = first.new_page()
    page.goto(f"{server}/case_review")
    settle(page)
    wait_for_viewer(page)
    assert shown_study(page) == studies[0][:8]
    page.locator("[data-testid=stSidebar]").click(position={"x": 20, "y": 300})
    page.keyboard.press("j")  # the next study of the worklist
    settle(page)
    wait_for(lambda: query(page).get("study") == studies[1])
    viewer_frame(page).locator(f"#viewer[data-study='{studies[1]}'][data-state=ready]").wait_for(
        timeout=60_000
    )
    panel(page, "Drivers")
    bars = page.locator("[data-testid=stVegaLiteChart]").filter(has=page.locator("g.mark-rect")).last
    bars.locator("g.mark-rect path").nth(1).click()  # overlay the second driver's map
    settle(page)
    wait_for(lambda: query(page).get("overlay") == "latent" and "latent" in query(page))
    link, shown = page.url, query(page)
    shoot(page, "case_review_linked")
    first.close()
    fresh = browser.new_context(viewport={"width": 1280, "height": 800})
    page = fresh.new_page()
    page.goto(link)
    settle(page)
    wait_for_viewer(page)
    assert query(page) == shown, "the fresh browser keeps the link"
    viewer = viewer_frame(page).locator("#viewer")
    assert viewer.get_attribute("data-study") == studies[1]
    names = [f"{v.laterality} {v.view}" for v in hanging_views(demo, studies[1])]
    assert names[int(viewer.get_attribute("data-selected"))] == shown["view"]
    assert page.get_by_role("spinbutton", name="Latent").first.input_value() == shown["latent"]
    fresh.close()
