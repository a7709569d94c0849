"""The app's Upload page fed the whole hostile corpus in one session: each file shows its own specific
error (no exception, no traceback), and the session still takes a good file afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from dicom_fixtures import write_test_image
from hostile_files import Hostile, Originals, build_corpus, write_originals
from streamlit.testing.v1 import AppTest

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Originals:
    return write_originals(tmp_path_factory.mktemp("upload-originals"))


def thin_strip(path: Path) -> bytes:
    """A valid DICOM holding a one-pixel bright line on black, from row 20 down: no breast to extract."""
    picture = np.zeros((96, 80))
    picture[20:, 40] = 1.0
    write_test_image(path, intensity=picture)
    return path.read_bytes()


def unescaped(markdown: str) -> str:
    """Text the page escaped for Markdown (a backslash before each special character), as written."""
    return re.sub(r"\\(.)", r"\1", markdown)


def upload(app: AppTest, name: str, data: bytes) -> None:
    kind = "image/png" if name.endswith(".png") else "application/dicom"
    app.file_uploader[0].set_value((name, data, kind)).run()


def shown_problem(app: AppTest, entry: Hostile) -> str | None:
    """Why the page did not show exactly the entry's specific error (None when it did)."""
    if app.exception:
        return f"{entry.name}: exception {[e.value for e in app.exception]}"
    errors = [unescaped(e.value) for e in app.error]
    if len(errors) != 1:
        return f"{entry.name}: {len(errors)} error boxes: {errors}"
    if not re.search(entry.message, errors[0]) or entry.name not in errors[0]:
        return f"{entry.name}: {errors[0]}"
    if app.metric:
        return f"{entry.name}: probabilities shown for a refused file"
    return None


@pytest.mark.slow  # the analysis bundle it opens takes a while to build (shared with the other app tests)
def test_every_hostile_upload_shows_its_error_and_the_session_goes_on(
    monkeypatch: pytest.MonkeyPatch, analysis_bundle_path: Path, originals: Originals, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(analysis_bundle_path))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    app.switch_page("views/upload.py").run()
    assert not app.exception, [e.value for e in app.exception]
    problems = []
    for entry in build_corpus(originals):
        upload(app, entry.name, entry.data)
        problems.append(shown_problem(app, entry))
    assert [p for p in problems if p] == []
    upload(app, "thin-strip.dcm", thin_strip(tmp_path / "thin-strip.dcm"))  # reads; preprocessing refuses
    assert not app.exception, [e.value for e in app.exception]
    assert "too narrow for Mammo-CLIP's breast extraction" in unescaped(app.error[0].value)
    upload(app, "good.dcm", originals.explicit)
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert "mass probability" in [m.label for m in app.metric]
