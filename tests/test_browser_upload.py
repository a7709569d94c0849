"""The Upload page in a real browser (headless Debian Chromium, Playwright) on the shipped demo bundle: a
phantom study written as a PACS export (files without extensions, orientation in tags, in the series text
or nowhere) plus a file that is not a mammogram, uploaded together, hangs in the same viewer as Case
review with R CC, L CC, R MLO, L MLO in their slots, the view read from its pixels says "inferred from the
image", and the refused file is named with its reason; a DICOM that is not a phantom gets the notice that
the phantom-trained model's outputs mean nothing on it."""

from __future__ import annotations

import io
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from dicom_fixtures import demo_study_export
from pydicom import dcmread
from test_browser import SHOTS, browser, settle, streamlit_server, viewer_iframe  # noqa: F401 (browser is a fixture)

pytestmark = pytest.mark.slow
VARIANTS = ("tagged", "text-only", "untagged", "misplaced")
WORDS = {
    "tagged": "from the tags",
    "misplaced": "from the tags",
    "text-only": "from the series text",
    "untagged": "inferred from the image",
}
SLOTS = ["R CC", "L CC", "R MLO", "L MLO"]
MISMATCH = "trained on synthetic images"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], pd.DataFrame]:
    """A phantom study's four files as a PACS exports them (flat in one folder), and what each really is."""
    folder = tmp_path_factory.mktemp("upload-export")
    truth = demo_study_export(folder, seed=9, variants=VARIANTS)
    flat = folder / "upload"
    flat.mkdir()
    paths = []
    for source in truth["source_file"]:
        paths.append(flat / Path(source).name)
        shutil.copy(folder / "export" / source, paths[-1])
    truth["path"] = paths
    return paths, truth


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on the shipped demo bundle (the Upload page needs no dataset)."""
    cache = tmp_path_factory.mktemp("upload-cache")
    with streamlit_server(cache, tmp_path_factory.mktemp("upload-server")) as url:
        yield url


def upload(browser, url: str, files: list[Path], size: tuple[int, int] = (1600, 1000)):  # noqa: F811
    """A fresh page on the Upload page with ``files`` uploaded and the viewer drawn; (page, frame, seconds
    from the upload to the viewer's pixels drawn)."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(f"{url}/upload")
    settle(page)
    page.wait_for_timeout(2000)  # the page warms the models while files are picked; give a reader's pause
    start = time.monotonic()
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files([str(p) for p in files])
    settle(page)
    frame = viewer_iframe(page, timeout_s=120)
    frame.wait_for_selector("#viewer[data-state=ready]", timeout=120_000)
    return page, frame, time.monotonic() - start


def test_a_pacs_export_hangs_in_its_slots_with_its_provenance_and_a_bad_file_named(
    upload_server: str,
    browser,  # noqa: F811
    export,
    tmp_path: Path,
) -> None:
    paths, truth = export
    report = tmp_path / "report.txt"
    report.write_text("reported by Dr X")
    page, frame, seconds = upload(browser, upload_server, [*paths, report])
    print(f"four-view upload: viewer ready {seconds:.1f} s after the files were given (target 8 s)")
    names = [frame.locator(f'.slot[data-slot="{i}"] .name').inner_text() for i in range(4)]
    assert names == SLOTS
    captions = [frame.locator(f'.slot[data-slot="{i}"] .caption').inner_text() for i in range(4)]
    for row in truth.itertuples():
        slot = SLOTS.index(f"{row.laterality} {row.view}")
        assert captions[slot].startswith(WORDS[row.variant]), (row.variant, captions[slot])
    assert any(c.startswith("inferred from the image") for c in captions)
    warning = page.locator("[data-testid=stAlert]").filter(has_text="Left out of the study")
    assert "report.txt" in warning.inner_text() and "not a DICOM file" in warning.inner_text()
    assert page.get_by_text(MISMATCH).count() == 0, "phantoms on a phantom-built bundle get no notice"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "upload_study.png"))
    page.get_by_text("What fires here", exact=True).click()
    settle(page)
    assert page.get_by_text("Click a point on any view").count() == 1
    page.close()


def test_a_dicom_that_is_not_a_phantom_gets_the_mismatch_notice(
    upload_server: str,
    browser,  # noqa: F811
    export,
    tmp_path: Path,
) -> None:
    paths, _ = export
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        ds = dcmread(paths[0])
        ds.Manufacturer = "ACME Imaging"
        buffer = io.BytesIO()
        ds.save_as(buffer)
    real = tmp_path / "IM0001"
    real.write_bytes(buffer.getvalue())
    page, frame, _ = upload(browser, upload_server, [real])
    notice = page.get_by_text(MISMATCH)
    assert notice.count() >= 1 and "mean nothing" in notice.first.inner_text()
    present = [frame.locator(f'.slot[data-slot="{i}"] .empty').is_hidden() for i in range(4)]
    assert sum(present) == 1, "one view shown, three drawn as missing"
    assert page.get_by_text("Missing:").count() == 1
    page.close()
