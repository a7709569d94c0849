"""Every dashboard page through Streamlit's AppTest, on a small analysis bundle: pages render with the
frame's notices, a control changes a probability by exactly what the library computes, naming a latent
persists in the notes folder with its author, a bad upload shows its error and the session goes on, and
every message or untrusted string reaches Markdown escaped. Case review opens on the study head's evidence
map with the evidence line under each view (a bundle from before evidence maps: latent maps and a note),
a spot shows what fires there, flags show as badges, a top patch opens its case, and the shortcut audit's
button suppresses the flagged latents on the Interventions page."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from app_viewer import shown_viewer
from streamlit.testing.v1 import AppTest
from untrusted_fixtures import (
    HTML_NAME,
    MARKDOWN_NAME,
    MODEL_NAME,
    NOTE,
    UPLOAD_NAME,
    WINDOW_NAME,
    hostile_dicom,
)

from mammo_sae.analysis.interventions import contributions
from mammo_sae.bundle import Bundle
from mammo_sae.bundle import evidence_queries as evq
from mammo_sae.bundle.cases import hanging_views, study_table
from mammo_sae.bundle.notes import NOTES_ENV, notes_folder
from mammo_sae.bundle.queries import case_intervention, intervention_scale
from mammo_sae.bundle.roots import ROOTS_ENV
from mammo_sae.bundle.sessions import ReviewSessions
from mammo_sae.data.vindr import VindrIndex

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
PAGES = ("case_review", "concepts", "interventions", "shortcuts", "upload", "training", "overview")
SYNTHETIC = "**Synthetic phantoms:** generated images with planted lesions, not patient data."


def md_text(text: str) -> str:
    """The app's own Markdown escaping (app/accessors.py, imported as the app imports it)."""
    sys.path.insert(0, str(Path(HOME).parent))
    import accessors

    return accessors.md_text(text)


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the app keeps latent notes in these tests (MAMMO_SAE_NOTES)."""
    return tmp_path_factory.mktemp("notes")


def saved_notes(bundle: Path, notes_dir: Path) -> dict:
    """The notes file the app keeps for ``bundle`` (under its identity, in the notes folder)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    return json.loads((notes_folder(manifest, notes_dir) / "latent_notes.json").read_text())


@pytest.fixture(scope="module")
def bundle_copy(analysis_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The analysis bundle, with its inputs, copied so tests may change it."""
    root = tmp_path_factory.mktemp("app-bundle")
    source = analysis_bundle_path.parent
    for name in ("bundle", "phantoms", "classifier.safetensors", "sae-relu"):
        src = source / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    return root / "bundle"


@pytest.fixture(autouse=True)
def notes_env(monkeypatch: pytest.MonkeyPatch, notes_dir: Path) -> None:
    monkeypatch.setenv(NOTES_ENV, str(notes_dir))


def start(
    monkeypatch: pytest.MonkeyPatch, bundle: Path, page: str | None = None, author: str = ""
) -> AppTest:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    if author:
        next(t for t in app.text_input if t.label.startswith("Your name")).set_value(author).run()
    assert not app.exception, app.exception
    if page:
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_the_research_banner(monkeypatch, bundle_copy: Path, page: str) -> None:
    app = start(monkeypatch, bundle_copy, page)
    assert any("Research use only" in m.value for m in app.markdown)
    assert not app.error, [e.value for e in app.error]


@pytest.mark.parametrize("page", (*PAGES, "dataset"))
def test_every_page_says_once_that_the_bundle_is_built_on_phantoms(
    monkeypatch, bundle_copy: Path, page
) -> None:
    app = start(monkeypatch, bundle_copy, page)
    shown = [m.value for m in [*app.caption, *app.markdown]]
    assert sum(SYNTHETIC in text for text in shown) == 1, shown


def view_position(bundle: Bundle, study: str, view: str) -> int:
    laterality, name = view.split()
    images = bundle.images
    match = images[
        (images["study_id"] == study) & (images["laterality"] == laterality) & (images["view"] == name)
    ]
    return int(match["position"].iloc[0])


def chart_specs(app: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in app.get("vega_lite_chart")]


def shown_study(app: AppTest) -> str:
    return next(s for s in app.selectbox if s.key == "study").value


def test_case_review_draws_the_contribution_bars_of_the_overlay_head_largest_first(
    monkeypatch, bundle_copy: Path
) -> None:
    app = start(monkeypatch, bundle_copy, "case_review")
    bundle = Bundle.open(bundle_copy)
    study = shown_study(app)
    app.session_state["panel"] = "Drivers"
    app.run()
    for head in bundle.tasks:
        next(s for s in app.selectbox if s.key == "head").set_value(head).run()
        view = next(s for s in app.selectbox if s.key == "view").value
        assert view_position(bundle, study, view) == max(
            (v.position for v in hanging_views(bundle, study) if v.position is not None),
            key=lambda p: bundle.images[f"logit_{head}_original"].iloc[p],
        ), "the chart opens on the head's strongest view"
        ranked = contributions(
            bundle.mean_latents[view_position(bundle, study, view)], bundle.heads, head
        ).head(15)
        bars = next(
            s for s in chart_specs(app) if s.get("encoding", {}).get("x", {}).get("field") == "contribution"
        )
        flags = evq.latent_flags(bundle)
        assert bars["encoding"]["y"]["sort"] == [
            f"#{t}{evq.badge_suffix(flags[t])}" for t in ranked["latent"]
        ]
        assert bars["encoding"]["x"]["title"] == f"contribution to the {head} logit"
        assert [p["name"] for p in bars["params"]] == ["bar"], "a bar can be clicked"


def test_case_review_hangs_four_views_with_calibrated_probabilities(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "case_review")
    assert not app.exception, app.exception
    bundle = Bundle.open(bundle_copy)
    study = shown_study(app)
    scores = app.dataframe[0].value
    names = [f"{v.laterality} {v.view}" for v in hanging_views(bundle, study) if v.position is not None]
    assert scores["view"].tolist() == names, "R CC, L CC, R MLO, L MLO"
    raw = 1 / (1 + np.exp(-bundle.images.iloc[view_position(bundle, study, names[0])]["logit_mass_original"]))
    assert f"(raw {raw:.2f})" in scores["mass"].iloc[0]


def test_case_review_opens_on_the_study_heads_evidence_map_with_a_line_under_each_view(
    monkeypatch, bundle_copy: Path
) -> None:
    app = start(monkeypatch, bundle_copy, "case_review")
    bundle = Bundle.open(bundle_copy)
    assert bundle.has_evidence, "the analysis bundle carries evidence maps"
    views = [v for v in hanging_views(bundle, shown_study(app)) if v.position is not None]
    assert next(s for s in app.selectbox if s.key == "overlay").value == "evidence"
    head = next(s for s in app.selectbox if s.key == "head").value
    assert head == evq.study_head(bundle, [v.position for v in views])

    def lines(head: str) -> list[str]:
        return [
            f"**{v.laterality} {v.view}** {md_text(evq.evidence_line(bundle, v.position, head))}"
            for v in views
        ]

    assert [m.value for m in app.markdown if " evidence\\: " in m.value] == lines(head)
    other = next(t for t in bundle.tasks if t != head)
    next(s for s in app.selectbox if s.key == "head").set_value(other).run()
    assert [m.value for m in app.markdown if " evidence\\: " in m.value] == lines(other), (
        "the lines follow the head"
    )


def test_a_spot_shows_what_fires_there_with_badges(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "case_review")
    bundle = Bundle.open(bundle_copy)
    study = shown_study(app)
    position = next(v.position for v in hanging_views(bundle, study) if v.position is not None)
    token = int(np.argmax(np.diff(bundle.codes.image(position).indptr)))  # the token with most active latents
    app.session_state["spot"] = {"study": study, "position": position, "token": token, "where": "here"}
    app.session_state["panel"] = "What fires here"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    table = app.dataframe[0].value
    expected = evq.fires_here(bundle, position, token=token)
    assert table["latent"].tolist() == expected["latent"].tolist() and len(table)
    assert [list(f) for f in table["flags"]] == expected["flags"].tolist()
    assert np.allclose(table["mean_in"], expected["mean_in"])


def test_an_old_bundle_shows_latent_maps_and_says_it_predates_evidence(
    monkeypatch, bundle_copy: Path, tmp_path: Path
) -> None:
    shutil.copytree(bundle_copy.parent, tmp_path / "copy")
    bundle = tmp_path / "copy" / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in (
        "evidence.npy",
        "regions.npz",
        "evidence_regions.parquet",
        "evidence_split.parquet",
        "shortcuts.parquet",
    ):
        manifest["files"].pop(name, None)
        (bundle / name).unlink(missing_ok=True)
    manifest["format_version"] = 2
    manifest.get("summary", {}).pop("shortcut_summary", None)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    app = start(monkeypatch, bundle, "case_review")
    assert not app.error, [e.value for e in app.error]
    assert next(s for s in app.selectbox if s.key == "overlay").options == ["latent map", "no map"]
    assert any("predates evidence maps" in c.value for c in app.caption)
    assert not [m.value for m in app.markdown if " evidence\\: " in m.value]
    assert len([c for c in app.caption if c.value.startswith("Map: ")]) == 1, "the top contributor's map"
    app.switch_page("views/shortcuts.py").run()
    assert not app.exception and any("predates the shortcut audit" in i.value for i in app.info)


def test_the_shortcut_audit_button_suppresses_the_flagged_latents_on_interventions(
    monkeypatch, bundle_copy: Path
) -> None:
    bundle = Bundle.open(bundle_copy)
    flagged = evq.suppressed_latents(bundle)
    if not flagged:
        pytest.skip("the small analysis bundle flags no off-breast or marker latent")
    app = start(monkeypatch, bundle_copy, "shortcuts")
    button = next(b for b in app.button if b.label.startswith("Suppress the"))
    assert f"{len(flagged):,} flagged latents" in button.label
    button.click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(t.label.startswith(f"Suppress the {len(flagged):,} flagged") and t.value for t in app.toggle)
    study = next(s for s in app.selectbox if s.label == "Case").value
    view = next(r for r in app.radio if r.label == "View").value
    scale = intervention_scale(bundle, concept=None, k=10, mode="suppress", scales={t: 0.0 for t in flagged})
    expected = case_intervention(bundle, view_position(bundle, study, view), scale).set_index("head")
    shown = {m.label.removesuffix(" probability"): m for m in app.metric if m.label.endswith("probability")}
    assert shown
    for head, metric in shown.items():
        assert float(metric.value) == pytest.approx(expected.loc[head, "after"], abs=5e-4)


def test_a_top_patch_opens_its_case_with_its_latent(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "concepts")
    bundle = Bundle.open(bundle_copy)
    assert "flags" in app.dataframe[0].value.columns, "the concept table shows the flags"
    latent = int(next(n for n in app.number_input if n.label == "Latent").value)
    patches = bundle.patches[bundle.patches["latent"] == latent].sort_values("rank")
    first = next(b for b in app.button if b.label == "Open case")
    first.click().run()
    assert not app.exception, [e.value for e in app.exception]
    study = bundle.images["study_id"].iloc[int(patches["image"].iloc[0])]
    assert next(s for s in app.selectbox if s.key == "study").value == study
    assert next(s for s in app.selectbox if s.key == "overlay").value == "latent"
    assert any(c.value.startswith(f"Map: \\#{latent}") for c in app.caption)


def test_an_intervention_moves_the_probability_by_what_the_library_computes(
    monkeypatch, bundle_copy: Path
) -> None:
    app = start(monkeypatch, bundle_copy, "interventions")
    bundle = Bundle.open(bundle_copy)
    concept_box = next(s for s in app.selectbox if s.label == "Top-k of concept")
    concept_box.set_value("calcification").run()
    assert not app.exception
    study = next(s for s in app.selectbox if s.label == "Case").value
    view = next(r for r in app.radio if r.label == "View").value
    laterality, view_name = view.split()
    row = bundle.images[
        (bundle.images["study_id"] == study)
        & (bundle.images["laterality"] == laterality)
        & (bundle.images["view"] == view_name)
    ]
    scale = intervention_scale(bundle, concept="calcification", k=10, mode="suppress")
    expected = case_intervention(bundle, int(row["position"].iloc[0]), scale).set_index("head")
    shown = {m.label.removesuffix(" probability"): m for m in app.metric if m.label.endswith("probability")}
    for head, metric in shown.items():
        assert float(metric.value) == pytest.approx(expected.loc[head, "after"], abs=5e-4)
        assert float(metric.delta) == pytest.approx(expected.loc[head, "change"], abs=5e-4)
    assert any(abs(expected["change"]) > 1e-4), "the fixture's heads react to suppressing latents"


def test_the_concept_table_says_which_score_ranked_it(monkeypatch, bundle_copy: Path) -> None:
    from mammo_sae.analysis.scores import describe_ranking

    app = start(monkeypatch, bundle_copy, "concepts")
    wanted = md_text(describe_ranking(Bundle.open(bundle_copy).rank_by, 1))
    assert any(wanted in c.value for c in app.caption), [c.value for c in app.caption]


def test_an_unknown_ranking_score_in_the_manifest_is_named_not_raised(
    monkeypatch, bundle_copy: Path, tmp_path: Path
) -> None:
    shutil.copytree(bundle_copy.parent, tmp_path / "copy")
    bundle = tmp_path / "copy" / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["config"]["rank_by"] = "median"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    app = start(monkeypatch, bundle, "concepts")
    assert any("not recognised" in c.value and "'median'" in c.value for c in app.caption)


def test_naming_a_latent_persists_in_the_notes_folder_with_its_author(
    monkeypatch, bundle_copy: Path, notes_dir: Path
) -> None:
    before = sorted(p.name for p in bundle_copy.iterdir())
    app = start(monkeypatch, bundle_copy, "concepts", author="Dr. Ada")
    latent = int(next(n for n in app.number_input if n.label == "Latent").value)
    form_inputs = [t for t in app.text_input if t.label == "Name"]
    form_inputs[0].set_value("<b>specks</b> & things")
    next(s for s in app.selectbox if s.label == "Category").set_value("calcification")
    next(b for b in app.button if b.label == "Save").click().run()
    assert not app.exception
    entry = saved_notes(bundle_copy, notes_dir)[str(latent)]
    assert (entry["name"], entry["author"]) == ("<b>specks</b> & things", "Dr. Ada") and entry["updated"]
    assert sorted(p.name for p in bundle_copy.iterdir()) == before, "nothing is written into the bundle"
    assert any("Saved" in s.value for s in app.success)
    app.switch_page("views/overview.py").run()
    app.switch_page("views/concepts.py").run()
    assert next(t for t in app.text_input if t.label.startswith("Your name")).value == "Dr. Ada", (
        "the author is kept in the session across pages"
    )


def test_a_bad_upload_shows_its_error_and_a_good_one_its_probabilities(
    monkeypatch, bundle_copy: Path
) -> None:
    app = start(monkeypatch, bundle_copy, "upload")
    app.file_uploader[0].set_value(("scan.dcm", b"this is not a dicom file" * 10, "application/dicom")).run()
    assert not app.exception
    assert any("not a DICOM file" in e.value for e in app.error)
    root = Bundle.open(bundle_copy).data_root
    path = VindrIndex.load(root).images["path"].iloc[0]
    app.file_uploader[0].set_value(("scan.dcm", Path(path).read_bytes(), "application/dicom")).run()
    assert not app.exception and not app.error
    labels = [m.label for m in app.metric]
    assert "mass probability" in labels and "calcification probability" in labels
    assert not np.any([str(path) in m.value for m in app.markdown])


def test_a_missing_bundle_says_how_to_build_it(monkeypatch, tmp_path: Path) -> None:
    app = start(monkeypatch, tmp_path / "nowhere", "overview")
    assert any("does not exist" in e.value for e in app.error)
    assert any("mammo_sae.analyze" in c.value for c in app.code)


def test_untrusted_text_is_escaped_for_markdown() -> None:
    escaped = md_text("<script>x</script> **b** [l](javascript:1) :red[c] $m$\nline")
    for raw in ("<script>", "**b**", "[l](", ":red[", "$m$", "\n"):
        assert raw not in escaped
    assert escaped.replace("\\", "") == "<script>x</script> **b** [l](javascript:1) :red[c] $m$ line"


def name_latent(app: AppTest, latent: int, **fields: str) -> None:
    """On the Concept neurons page: go to ``latent`` (no save yet) and fill the given form fields."""
    next(n for n in app.number_input if n.label == "Latent").set_value(latent).run()
    widgets = {"name": app.text_input, "category": app.selectbox, "note": app.text_area}
    labels = {"name": "Name", "category": "Category", "note": "Note"}
    for field, value in fields.items():
        next(w for w in widgets[field] if w.label == labels[field]).set_value(value)


def save(app: AppTest) -> None:
    next(b for b in app.button if b.label == "Save").click().run()
    assert not app.exception, [e.value for e in app.exception]


def test_two_sessions_naming_at_once_keep_both_edits(monkeypatch, bundle_copy: Path, notes_dir: Path) -> None:
    first, second = start(monkeypatch, bundle_copy, "concepts"), start(monkeypatch, bundle_copy, "concepts")
    name_latent(first, 11, name="ducts")
    name_latent(second, 12, name="skin line", category="anatomy")
    save(first)
    save(second)
    name_latent(first, 13, name="specks")  # both forms open latent 13 before either saves
    name_latent(second, 13, category="calcification", note="fine, clustered")
    save(first)
    save(second)
    saved = saved_notes(bundle_copy, notes_dir)
    assert saved["11"]["name"] == "ducts" and saved["12"]["name"] == "skin line"
    assert (saved["13"]["name"], saved["13"]["category"], saved["13"]["note"]) == (
        "specks",
        "calcification",
        "fine, clustered",
    ), "the second save keeps the name the first session gave the same latent"
    assert next(t for t in second.text_input if t.label == "Name").value == "specks", (
        "the form shows the merge"
    )


def test_a_bundle_path_outside_the_roots_is_refused(monkeypatch, bundle_copy: Path, tmp_path: Path) -> None:
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    app = start(monkeypatch, bundle_copy, "overview")
    for typed in (str(outside), f"{bundle_copy}/..", f"{bundle_copy}/../../../../../../etc"):
        next(t for t in app.text_input if t.label == "Bundle folder").set_value(typed).run()
        assert not app.exception
        assert any("outside the folders bundles may be opened from" in e.value for e in app.error), typed
        assert not app.metric, "nothing of the refused folder is shown"
    next(t for t in app.text_input if t.label == "Bundle folder").set_value(str(bundle_copy)).run()
    assert not app.error and app.metric


def shown_text(app: AppTest) -> list[str]:
    """The Markdown source of every text element of the page."""
    kinds = ("markdown", "caption", "header", "subheader", "title", "success", "error", "warning", "info")
    return [e.value for kind in kinds for e in app.get(kind)]


def test_untrusted_names_reach_the_page_escaped(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "concepts")
    for latent, name in ((21, HTML_NAME), (22, MARKDOWN_NAME)):
        name_latent(app, latent, name=name, note=NOTE)
        save(app)
        carrying = [t for t in shown_text(app) if "alert" in t or "bold" in t]
        assert len(carrying) >= 2, "the header and the saved message show the name"
        unescaped = [t for t in carrying if re.search(r"(?<!\\)[<>\[\]()*!:=]", t)]
        assert not unescaped, "a payload reached Markdown unescaped"
        header = next(h.value for h in app.header if h.value.startswith("\\#"))
        assert header.replace("\\", "") == f"#{latent} {name}" and header == md_text(f"#{latent} {name}")


def test_dicom_strings_and_file_names_reach_the_page_escaped(
    monkeypatch, bundle_copy: Path, tmp_path: Path
) -> None:
    root = Bundle.open(bundle_copy).data_root
    hostile = hostile_dicom(Path(VindrIndex.load(root).images["path"].iloc[0]), tmp_path / "hostile.dcm")
    app = start(monkeypatch, bundle_copy, "upload")
    app.file_uploader[0].set_value((UPLOAD_NAME, b"not a dicom" * 20, "application/dicom")).run()
    assert any(md_text(UPLOAD_NAME) in e.value for e in app.error), "the error quotes the name escaped"
    app.file_uploader[0].set_value((UPLOAD_NAME, hostile.read_bytes(), "application/dicom")).run()
    assert not app.exception and not app.error
    cells = app.table[0].value["value"]
    assert cells["manufacturer_model_name"] == md_text(MODEL_NAME)
    assert md_text(WINDOW_NAME) in cells["window_presets"]
    assert md_text(UPLOAD_NAME) in [c for image in app.image for c in image.captions]


MARKDOWN_PATH = "![x](evil.png) **bold** :red[c]"  # a path component: no slash


def assert_literal(values: list[str], raw: str) -> None:
    """Some shown value carries ``raw`` escaped, none carries it as Markdown."""
    assert any(md_text(raw) in v for v in values), values
    assert not any(raw in v for v in values), "a typed path reached Markdown unescaped"


def test_a_typed_bundle_path_reaches_the_error_escaped(
    monkeypatch, bundle_copy: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    app = start(monkeypatch, bundle_copy, "overview")
    typed = str(tmp_path / MARKDOWN_PATH)
    next(t for t in app.text_input if t.label == "Bundle folder").set_value(typed).run()
    assert not app.exception
    assert_literal([e.value for e in app.error], MARKDOWN_PATH)


def test_a_stale_bundle_message_reaches_the_page_escaped(
    monkeypatch, bundle_copy: Path, tmp_path: Path
) -> None:
    shutil.copytree(bundle_copy.parent, tmp_path / "copy")
    stale = tmp_path / "copy" / MARKDOWN_PATH.replace("/", "_")
    (tmp_path / "copy" / "bundle").rename(stale)
    with open(tmp_path / "copy" / "classifier.safetensors", "ab") as handle:
        handle.write(b"changed")
    app = start(monkeypatch, stale, "overview")
    errors = [e.value for e in app.error]
    assert any("inputs changed" in e for e in errors), errors
    assert_literal(errors, MARKDOWN_PATH.replace("/", "_"))


def test_a_typed_dataset_root_reaches_the_page_escaped(
    monkeypatch, bundle_copy: Path, tmp_path: Path
) -> None:
    app = start(monkeypatch, bundle_copy, "dataset")
    typed = str(tmp_path / MARKDOWN_PATH)
    next(t for t in app.text_input if t.label.startswith("Dataset root")).set_value(typed).run()
    assert not app.exception
    assert_literal([i.value for i in app.info], MARKDOWN_PATH)


def test_the_overview_shows_the_manifest_warnings_escaped(
    monkeypatch, bundle_copy: Path, tmp_path: Path
) -> None:
    shutil.copytree(bundle_copy.parent, tmp_path / "copy")
    bundle = tmp_path / "copy" / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["warnings"] = ["features hardly vary across images", f"a head {MARKDOWN_PATH}"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    app = start(monkeypatch, bundle, "overview")
    shown = [w.value for w in app.warning if "Research use only" not in w.value]
    assert shown == [md_text(w) for w in manifest["warnings"]]
    del manifest["warnings"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    app.run()
    assert not app.exception
    assert [w.value for w in app.warning if "Research use only" not in w.value] == [], "no key: no warnings"


def test_a_link_opens_its_case_view_head_and_latent_and_the_address_follows(
    monkeypatch, bundle_copy: Path
) -> None:
    bundle = Bundle.open(bundle_copy)
    study = study_table(bundle)["study_id"].iloc[1]
    view = [f"{v.laterality} {v.view}" for v in hanging_views(bundle, study) if v.position is not None][-1]
    head, latent = bundle.tasks[-1], bundle.d_sae - 2
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle_copy))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.query_params.update(
        {"study": study, "view": view, "head": head, "overlay": "latent", "latent": latent}
    )
    app.switch_page("views/case_review.py").run()
    assert not app.exception, [e.value for e in app.exception]
    shown = {s.key: s.value for s in app.selectbox if s.key in ("study", "view", "head", "overlay")}
    assert shown == {"study": study, "view": view, "head": head, "overlay": "latent"}
    assert next(n for n in app.number_input if n.key == "latent").value == latent
    spec, _ = shown_viewer(app)
    assert spec["study"] == study and spec["slots"][spec["selected"]]["name"] == view
    next(s for s in app.selectbox if s.key == "overlay").set_value("evidence").run()
    address = {k: str(v).strip("[]'") for k, v in app.query_params.items()}
    assert address == {"study": study, "view": view, "head": head, "overlay": "evidence"}, (
        "raw values, no latent"
    )


def case_review_linked_to_session(monkeypatch, bundle_copy: Path, name: str) -> AppTest:
    """Case review opened by an address with ``?session=name``, run once without an exception."""
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle_copy))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.query_params["session"] = name
    app.switch_page("views/case_review.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_a_session_link_opens_the_saved_session_and_steps_through_it_in_order(
    monkeypatch, bundle_copy: Path, notes_dir: Path
) -> None:
    bundle = Bundle.open(bundle_copy)
    ids = study_table(bundle)["study_id"].tolist()
    ReviewSessions.for_bundle(bundle.manifest, notes_dir).save("Tuesday MDT", [ids[-1], ids[0]], "Dr. Ada")
    app = case_review_linked_to_session(monkeypatch, bundle_copy, "Tuesday MDT")
    assert next(s for s in app.selectbox if s.key == "review-session").value == "Tuesday MDT"
    assert len(ids) >= 2 and shown_study(app) == ids[-1], "the session's first study, not the worklist's"
    next(b for b in app.button if b.label == "▶").click().run()
    assert shown_study(app) == ids[0]
    assert next(b for b in app.button if b.label == "▶").disabled, "the session's last study"
    assert str(app.query_params["session"]).strip("[]'") == "Tuesday MDT", "and the address keeps it"


def test_a_link_to_a_deleted_session_says_so_and_shows_the_worklist(
    monkeypatch, bundle_copy: Path, notes_dir: Path
) -> None:
    app = case_review_linked_to_session(monkeypatch, bundle_copy, "Gone MDT")
    assert next(s for s in app.selectbox if s.key == "review-session").value == "(all studies)"
    warning = " ".join(w.value for w in app.warning)
    assert "no review session named Gone MDT" in warning and "whole worklist" in warning
    app.run()
    assert "Gone MDT" in " ".join(w.value for w in app.warning), "it stays until a session is chosen"
    assert "session" not in app.query_params, "the address no longer names the missing session"
