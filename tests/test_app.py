"""The Streamlit app through AppTest: it starts, labels itself research-only and browses a dataset; its
views lay out what the accessors return and import nothing else of the library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mammo_sae.data.phantom import PhantomConfig, generate_dataset

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
VIEWS = sorted((Path(HOME).parent / "views").glob("*.py"))
VIEW_IMPORTS = {"__future__", "accessors", "altair", "dataclasses", "streamlit"}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("app") / "phantoms"
    generate_dataset(root, PhantomConfig(studies=3, seed=5, height=256, width=208), workers=1)
    return root


def start(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> AppTest:
    monkeypatch.setenv("MAMMO_SAE_DATA", str(data_root))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    return app


def test_home_shows_the_research_use_banner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = start(monkeypatch, tmp_path / "nowhere")
    assert any("Research use only" in m.value for m in app.markdown)
    assert app.title[0].value == "mammo-sae"


def test_dataset_page_explains_how_to_make_data_when_there_is_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = start(monkeypatch, tmp_path / "nowhere")
    app.switch_page("views/dataset.py").run()
    assert not app.exception, app.exception
    assert "mammo_sae.phantom" in app.code[0].value


def test_dataset_page_browses_a_phantom_study(monkeypatch: pytest.MonkeyPatch, phantoms: Path) -> None:
    app = start(monkeypatch, phantoms)
    app.switch_page("views/dataset.py").run()
    assert not app.exception, app.exception
    assert any("Synthetic phantoms" in m.value for m in [*app.caption, *app.markdown])
    assert app.metric[0].value == "12"
    assert len(app.get("image")) == 4
    app.toggle[1].set_value(True).run()  # invert
    assert not app.exception, app.exception


def test_dataset_page_reports_a_broken_root_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "breast-level_annotations.csv").write_text("study_id,image_id\n1,2\n")
    app = start(monkeypatch, broken)
    app.switch_page("views/dataset.py").run()
    assert not app.exception, app.exception
    assert "missing" in app.error[0].value.lower() or "column" in app.error[0].value.lower()


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def test_views_import_only_the_accessors_and_layout_libraries() -> None:
    assert len(VIEWS) == 8
    extra = {path.name: sorted(imported_modules(path) - VIEW_IMPORTS) for path in VIEWS}
    assert extra == {path.name: [] for path in VIEWS}, "views reach the library only through accessors"


def test_the_notes_location_is_the_command_line_then_the_environment_then_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    sys.path.insert(0, str(Path(HOME).parent))
    import accessors

    monkeypatch.setenv("MAMMO_SAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MAMMO_SAE_NOTES", raising=False)
    monkeypatch.setattr(sys, "argv", ["Home.py"])
    assert accessors.notes_location() == tmp_path / "cache" / "notes"
    monkeypatch.setenv("MAMMO_SAE_NOTES", str(tmp_path / "env"))
    assert accessors.notes_location() == tmp_path / "env"
    monkeypatch.setattr(sys, "argv", ["Home.py", "--notes", str(tmp_path / "flag")])
    assert accessors.notes_location() == tmp_path / "flag"
