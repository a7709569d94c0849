"""The app on the shipped demo: its phantoms are generated on the first start with a progress bar that
counts images and is gone when done (never replayed by a cache, never shown when nothing is generated),
and a latent named on the demo is kept in the user's data folder, not in the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_viewer import shown_viewer
from streamlit.testing.v1 import AppTest

import mammo_sae.demo.dataset as demo_dataset
from mammo_sae.bundle.format import read_manifest
from mammo_sae.bundle.notes import NOTES_ENV, notes_folder
from mammo_sae.data.phantom import GENERATOR_VERSION, PhantomConfig, generate_dataset, load_manifest
from mammo_sae.demo import DEMO_DIR, demo_bundle_dir, ensure_demo_dataset

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")


def tiny_demo(folder: Path) -> Path:
    """A demo folder whose held-out set is two small phantom studies (with their recorded checksum)."""
    config = PhantomConfig(studies=2, seed=4, height=192, width=160)
    generate_dataset(folder / "probe", config, workers=1)
    record = {
        "parameters": config.to_dict(),
        "pixel_checksum": load_manifest(folder / "probe")["pixel_checksum"]["value"],
    }
    demo = folder / "demo"
    demo.mkdir()
    (demo / "demo.json").write_text(
        json.dumps({"generator_version": GENERATOR_VERSION, "datasets": {"heldout": record}})
    )
    return demo


def test_generating_the_demo_phantoms_reports_images_done_of_total(tmp_path: Path) -> None:
    demo = tiny_demo(tmp_path)
    calls: list[tuple[int, int]] = []
    root = ensure_demo_dataset(
        demo, cache=tmp_path / "cache", progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(i, 8) for i in range(1, 9)], "one call per image: 2 studies x 4 views"
    calls.clear()
    assert ensure_demo_dataset(demo, cache=tmp_path / "cache", progress=lambda *a: calls.append(a)) == root
    assert calls == [], "nothing generated, nothing reported"


def tree_listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]]]:
    """The app started on the demo with an empty cache (it generates the phantoms): the cache and the
    progress reports the generator received from the app."""
    cache = tmp_path_factory.mktemp("demo-cache")
    reports: list[tuple[int, int]] = []
    real = demo_dataset.generate_dataset

    def spy(root, config, *, on_image=None, **options):
        def report(done: int, total: int) -> None:
            reports.append((done, total))
            on_image(done, total)

        return real(root, config, on_image=report if on_image else None, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAMMO_SAE_CACHE", str(cache))
        patch.delenv("MAMMO_SAE_BUNDLE", raising=False)
        patch.setattr(demo_dataset, "generate_dataset", spy)
        app = AppTest.from_file(HOME, default_timeout=900)
        app.run()
        app.switch_page("views/case_review.py").run()
        assert not app.exception, [e.value for e in app.exception]
        spec, pixel_bytes = shown_viewer(app)
        assert [s["name"] for s in spec["slots"]] == ["R CC", "L CC", "R MLO", "L MLO"]
        assert all(pixel_bytes), "the views show once generated"
        assert not app.get("progress"), "the bar is removed when the work is done"
    return cache, reports


def progress_or_status(app: AppTest) -> list[str]:
    """Labels of every progress bar, status box or expander that mentions the phantoms."""
    labels = [str(getattr(p, "proto", "")) for p in app.get("progress")]
    labels += [s.label for s in app.status] + [e.label for e in app.expander if "phantom" in e.label.lower()]
    return labels


@pytest.mark.slow
def test_the_first_start_counts_images_and_later_runs_draw_no_progress(
    first_start: tuple[Path, list[tuple[int, int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, reports = first_start
    heldout = demo_dataset.read_demo_manifest()["datasets"]["heldout"]["parameters"]
    total = 4 * heldout["studies"]
    assert reports == [(i, total) for i in range(1, total + 1)], "the app's bar got every image done / total"
    monkeypatch.setenv("MAMMO_SAE_CACHE", str(cache))
    monkeypatch.delenv("MAMMO_SAE_BUNDLE", raising=False)
    for page in ("views/case_review.py", "views/concepts.py"):  # a new session: every cache is warm
        app = AppTest.from_file(HOME, default_timeout=300)
        app.run()
        app.switch_page(page).run()
        assert not app.exception, [e.value for e in app.exception]
        assert progress_or_status(app) == [], "no progress is drawn when nothing is generated"
        app.run()
        assert progress_or_status(app) == [], "nor on a rerun"


@pytest.mark.slow
def test_a_note_on_the_demo_goes_to_the_data_folder_not_the_repository(
    first_start: tuple[Path, list[tuple[int, int]]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache, _ = first_start
    monkeypatch.setenv("MAMMO_SAE_CACHE", str(cache))
    monkeypatch.setenv(NOTES_ENV, str(tmp_path / "notes"))
    monkeypatch.delenv("MAMMO_SAE_BUNDLE", raising=False)
    before = tree_listing(DEMO_DIR)
    app = AppTest.from_file(HOME, default_timeout=300)
    app.run()
    next(t for t in app.text_input if t.label.startswith("Your name")).set_value("Dr. Ada").run()
    app.switch_page("views/concepts.py").run()
    next(n for n in app.number_input if n.label == "Latent").set_value(7).run()
    next(t for t in app.text_input if t.label == "Name").set_value("specks")
    next(b for b in app.button if b.label == "Save").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(s.value.startswith("Saved") and "specks" in s.value for s in app.success)
    assert tree_listing(DEMO_DIR) == before, "nothing is written into weights/demo"
    saved = notes_folder(read_manifest(demo_bundle_dir()), tmp_path / "notes") / "latent_notes.json"
    entry = json.loads(saved.read_text())["7"]
    assert (entry["name"], entry["author"]) == ("specks", "Dr. Ada") and entry["updated"].endswith("+00:00")


def test_one_generation_runs_for_every_session_and_a_failed_one_is_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys
    import threading

    sys.path.insert(0, str(Path(HOME).parent))
    import accessors

    release, calls = threading.Event(), []

    def generate(*, cache: Path, progress) -> Path:
        calls.append(cache)
        progress(1, 2)
        release.wait(30)
        if len(calls) == 1:
            raise OSError("disk full")
        return cache

    monkeypatch.setattr(accessors, "ensure_demo_dataset", generate)
    root = tmp_path / "cache" / "phantoms-heldout-x"
    first = accessors._generation(root)
    assert accessors._generation(root) is first, "a rerun or a second session joins the running generation"
    release.set()
    first.thread.join(30)
    assert (first.finished, str(first.error), (first.done, first.total)) == (True, "disk full", (1, 2))
    retry = accessors._generation(root)
    retry.thread.join(30)
    assert retry is not first and retry.error is None and calls == [root.parent, root.parent]
