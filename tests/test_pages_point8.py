"""Issue 19 point 8, the other pages at the same standard: Interventions draws the view's evidence before and
after (maps that add up to the logits it reports), offers k only in 10..50 and curves only up to d_sae,
colours a rise red and a fall blue, and opens on the view with the finding; Concept neurons opens the
latent a link names, the table's clicked row is the latent shown, every column is explained, the activation
histogram has a log count axis and the dictionary's density a log frequency axis with dead and dense
latents counted; the training report uses log axes where values span decades, says why the dead fraction
reads 0 early, and shows one logged step as values; Dataset opens on the bundle's images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.proto.Metric_pb2 import Metric
from streamlit.testing.v1 import AppTest

from mammo_sae.analysis.chart_axes import log_ticks
from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.intervened_evidence import code_shares, intervened_evidence
from mammo_sae.analysis.latent_charts import (
    FALL_COLOUR,
    RISE_COLOUR,
    activation_histogram_chart,
    density_chart,
    head_effect_chart,
)
from mammo_sae.analysis.latent_density import dead_and_dense, firing_density
from mammo_sae.bundle import Bundle
from mammo_sae.bundle import intervention_views as iv
from mammo_sae.bundle import latent_catalogue as lc
from mammo_sae.bundle import training_view as tv
from mammo_sae.bundle.cases import hanging_views
from mammo_sae.bundle.notes import NOTES_ENV
from mammo_sae.bundle.queries import intervention_scale

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")


# --- library ---------------------------------------------------------------------------------------------


def test_intervened_evidence_adds_the_scaled_latents_share_token_by_token() -> None:
    rng = np.random.default_rng(0)
    grid, d_sae, heads = (3, 4), 10, 2
    z_tl = np.where(rng.random((12, d_sae)) < 0.3, rng.random((12, d_sae)), 0).astype(np.float32)
    codes = TokenCodes.from_dense(z_tl, grid)
    effect_lh = rng.normal(size=(d_sae, heads))
    dense = codes.dense()
    expected = (dense.astype(np.float64) @ effect_lh / 12).T.reshape(heads, *grid)
    assert np.allclose(code_shares(codes, effect_lh), expected)
    before = rng.normal(size=(heads, *grid))
    scale = np.ones(d_sae)
    scale[[1, 4]] = 0
    scale[7] = 2.0
    after = intervened_evidence(before, codes, effect_lh, scale)
    change = (dense.astype(np.float64) @ (effect_lh * (scale - 1)[:, None]) / 12).T.reshape(heads, *grid)
    assert np.allclose(after, before + change)
    assert np.array_equal(intervened_evidence(before, codes, effect_lh, np.ones(d_sae)), before)


def test_k_choices_lie_in_10_to_50_and_within_the_sae() -> None:
    assert iv.intervention_ks(2944) == [10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert iv.intervention_ks(32) == [10, 15, 20, 25, 30]
    assert all(10 <= k <= 50 for k in iv.intervention_ks(16384))


def test_curves_stop_at_the_sae_size() -> None:
    curves = pd.DataFrame({"k_label": ["0", "10", "1000", "5000", "10000", "all"]})
    assert iv.curves_within(curves, 2944)["k_label"].tolist() == ["0", "10", "1000", "all"]


def test_a_rise_is_red_a_fall_blue() -> None:
    assert (iv.change_colour(0.01), iv.change_colour(-0.01), iv.change_colour(1e-5)) == (
        "red",
        "blue",
        "gray",
    )


def test_dead_and_dense_latents_and_the_log_density() -> None:
    frequency = np.array([0.0, 1e-5, 3e-4, 0.05, 0.2, 0.5, 0.0])
    dead, dense = dead_and_dense(frequency, 0.1)
    assert dead.tolist() == [0, 6] and dense.tolist() == [5, 4]
    density = firing_density(frequency)
    assert density["latents"].sum() == 5, "every live latent in one bin, the dead ones beside the axis"
    assert density["from"].iloc[0] <= 1e-5 and density["to"].iloc[-1] >= 0.5
    spec = density_chart(density, dense_threshold=0.1, marked=3e-4).to_dict()
    assert spec["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    hist = pd.DataFrame({"from": [0.0, 1.0], "to": [1.0, 2.0], "tokens": [1000, 0]})
    hspec = activation_histogram_chart(hist).to_dict()
    assert hspec["encoding"]["y"]["scale"]["type"] == "log"
    assert len(next(iter(hspec["datasets"].values()))) == 1, "an empty bin has no place on a log axis"
    assert hspec["encoding"]["y"]["axis"]["values"] == [1, 10, 100, 1000], (
        "one tick per decade, no finer grid"
    )


def test_log_ticks_are_decades_with_two_and_five_between_when_few() -> None:
    assert log_ticks(1, 4321) == [1, 10, 100, 1000, 10000], "one per decade from two decades"
    assert log_ticks(0.05, 0.9) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1], "2 and 5 between under two decades"
    assert log_ticks(0.05, 9.0) == [0.01, 0.1, 1, 10]
    assert log_ticks(3, 3) == [1, 2, 5, 10], "a single value still gets an axis"
    assert log_ticks(float("nan"), 0) == [1, 2, 5, 10], "no positive value: the unit decade"


def test_the_effect_chart_has_a_band_per_head_and_colours_by_sign() -> None:
    effects = pd.DataFrame(
        {"head": pd.Series(["mass", "calcification"], dtype="str"), "effect": [0.2, -0.05]}
    )
    spec = head_effect_chart(effects).to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [r["head"] for r in rows] == ["mass", "calcification"] and [r["sign"] for r in rows] == [
        "raises",
        "lowers",
    ]
    assert spec["height"] == {"step": 28}, "a band per head, however many heads"
    assert spec["encoding"]["color"]["scale"]["range"] == [RISE_COLOUR, FALL_COLOUR]
    assert spec["encoding"]["x"]["scale"]["zero"] is True


def test_catalogue_filters_by_name_id_category_and_flag() -> None:
    table = pd.DataFrame(
        {
            "rank": [1, 2, 3],
            "latent": [12, 5, 40],
            "name": ["Specks", "", "skin line"],
            "category": ["calcification", lc.UNNAMED, "anatomy"],
            "flags": [[], ["marker"], ["off_breast", "marker"]],
        }
    )
    assert lc.filter_catalogue(table, "speck")["latent"].tolist() == [12]
    assert lc.filter_catalogue(table, "#40")["latent"].tolist() == [40]
    assert lc.filter_catalogue(table, categories=[lc.UNNAMED])["latent"].tolist() == [5]
    assert lc.filter_catalogue(table, flags=["marker"])["latent"].tolist() == [5, 40]
    assert lc.latent_rank(table, 40) == 3 and lc.latent_rank(table, 99) is None
    assert [lc.parse_latent(v, 50) for v in ("12", "#7", "50", "x", None)] == [12, 7, None, None, None]


def test_log_axes_only_where_values_span_decades() -> None:
    assert tv.spans_decades(np.array([8.0, 0.4]))
    assert not tv.spans_decades(np.array([0.5, 0.1]))
    assert not tv.spans_decades(np.array([1.0, 0.0, 100.0])), "a zero has no place on a log axis"


# --- on the small analysis bundle ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_copy(analysis_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pages-bundle")
    for name in ("bundle", "phantoms", "classifier.safetensors", "sae-relu"):
        src = analysis_bundle_path.parent / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    return root / "bundle"


@pytest.fixture(autouse=True)
def notes_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(NOTES_ENV, str(tmp_path / "notes"))


def start(monkeypatch, bundle: Path, page: str, **query: str) -> AppTest:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle))
    app = AppTest.from_file(HOME, default_timeout=120)
    for name, value in query.items():
        app.query_params[name] = value
    app.run()
    app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_the_evidence_maps_add_up_to_the_logits_before_and_after(bundle_copy: Path) -> None:
    bundle = Bundle.open(bundle_copy)
    scale = intervention_scale(bundle, concept=bundle.concepts[0], k=10, mode="suppress")
    for error_term in (False, True):
        pair = iv.evidence_pair(bundle, 0, bundle.tasks[0], scale, error_term=error_term)
        assert pair.before_gw.sum() + pair.bias == pytest.approx(pair.logit_before, abs=5e-3)
        assert pair.after_gw.sum() + pair.bias == pytest.approx(pair.logit_after, abs=5e-3)
    h = bundle.heads.index(bundle.tasks[0])
    assert np.allclose(pair.before_gw, bundle.evidence(0)[h]), "with the error term: the model's own map"


def test_interventions_open_on_the_finding_with_both_maps_and_k_in_10_to_50(monkeypatch, bundle_copy) -> None:
    app = start(monkeypatch, bundle_copy, "interventions")
    bundle = Bundle.open(bundle_copy)
    assert not app.error, [e.value for e in app.error]
    slider = next(s for s in app.select_slider if s.label == "k per class")
    assert list(slider.options) == [str(k) for k in iv.intervention_ks(bundle.d_sae)]
    assert all(10 <= int(k) <= 50 for k in slider.options)
    study = next(s for s in app.selectbox if s.label == "Case").value
    head = next(s for s in app.selectbox if s.label == "Evidence for").value
    views = [v for v in hanging_views(bundle, study) if v.position is not None]
    expected = iv.finding_view(bundle, [v.position for v in views], head)
    shown = next(r for r in app.radio if r.label == "View").value
    assert shown == next(f"{v.laterality} {v.view}" for v in views if v.position == expected)
    if (bundle.images.iloc[[v.position for v in views]][head] == 1).any():
        assert bundle.images.iloc[expected][head] == 1, "the view with the finding"
    captions = [c for image in app.image for c in image.captions]
    assert any(c.startswith("Before") for c in captions) and any(c.startswith("After") for c in captions)
    next(s for s in app.selectbox if s.label == "Top-k of concept").set_value(bundle.concepts[0]).run()
    assert not app.exception, [e.value for e in app.exception]
    shown = [m for m in app.metric if m.label.endswith("probability")]
    assert shown
    for metric in shown:
        colour = Metric.MetricColor.Name(metric.proto.color).lower()
        assert colour == iv.change_colour(float(metric.delta)), (metric.delta, colour)


def test_the_curves_stop_at_the_sae_size(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "interventions")
    bundle = Bundle.open(bundle_copy)
    specs = [json.loads(c.proto.spec) for c in app.get("vega_lite_chart")]
    labels = {k for spec in specs for k in spec.get("encoding", {}).get("x", {}).get("sort", [])}
    assert labels and all(k == "all" or int(k) <= bundle.d_sae for k in labels), labels


def test_a_link_opens_its_latent_and_a_clicked_row_opens_exactly_that_latent(
    monkeypatch, bundle_copy
) -> None:
    bundle = Bundle.open(bundle_copy)
    latent = bundle.d_sae - 3
    app = start(monkeypatch, bundle_copy, "concepts", latent=str(latent))
    assert app.header[0].value == f"\\#{latent}"
    assert int(next(n for n in app.number_input if n.label == "Latent").value) == latent
    table = app.dataframe[0]
    clicked = int(table.value["latent"].iloc[2])
    app.session_state[table.key] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    app.run()
    assert app.header[0].value == f"\\#{clicked}", "the clicked row is the latent shown"
    assert str(app.query_params["latent"]).strip("[]'") == str(clicked), "and its link"
    next(n for n in app.number_input if n.label == "Latent").set_value(5).run()
    assert app.header[0].value == "\\#5" and app.dataframe[0].key != table.key, "the old selection is gone"


def test_every_catalogue_column_is_explained(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "concepts")
    config = json.loads(app.dataframe[0].proto.columns)
    table = app.dataframe[0].value
    for column in table.columns:
        assert config.get(column, {}).get("help"), f"column {column!r} has no explanation"


def test_the_density_lists_dead_and_dense_latents_with_their_thresholds(monkeypatch, bundle_copy) -> None:
    app = start(monkeypatch, bundle_copy, "concepts")
    assert any(
        c.value.startswith("Dead: fires on no token") and "more than 10%" in c.value for c in app.caption
    )


def one_step_bundle(bundle_copy: Path, tmp_path: Path) -> Path:
    shutil.copytree(bundle_copy.parent, tmp_path / "copy")
    log = tmp_path / "copy" / "sae-relu" / "metrics.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")
    return tmp_path / "copy" / "bundle"


def test_the_training_report_has_log_axes_and_explains_the_dead_fraction(monkeypatch, bundle_copy) -> None:
    bundle = Bundle.open(bundle_copy)
    report = tv.training_report(bundle)
    for panel in report.panels:
        assert panel.log == tv.spans_decades(panel.long["value"].to_numpy())
    app = start(monkeypatch, bundle_copy, "training")
    assert not app.error
    if report.steps > 1 and report.dead_note:
        assert any("dead window" in c.value for c in app.caption)


def test_a_one_step_log_is_shown_as_values_with_a_message(monkeypatch, bundle_copy, tmp_path: Path) -> None:
    bundle = one_step_bundle(bundle_copy, tmp_path)
    report = tv.training_report(Bundle.open(bundle))
    assert report.steps == 1 and report.single is not None and not report.panels
    app = start(monkeypatch, bundle, "training")
    assert any("single step" in i.value for i in app.info)
    assert not app.get("vega_lite_chart") and len(app.dataframe) == 1


def test_the_dataset_page_opens_on_the_bundles_images(monkeypatch, bundle_copy: Path) -> None:
    monkeypatch.delenv("MAMMO_SAE_DATA", raising=False)
    app = start(monkeypatch, bundle_copy, "dataset")
    root = next(t for t in app.text_input if t.label.startswith("Dataset root"))
    assert Path(root.value).resolve() == Bundle.open(bundle_copy).data_root.resolve()
    assert app.metric and not app.info


# --- on the shipped demo ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_page_renders_on_the_demo_and_dataset_opens_on_its_phantoms(
    monkeypatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.mktemp("fresh-cache")  # a fresh machine: no phantoms yet
    monkeypatch.setenv("MAMMO_SAE_CACHE", str(cache))
    monkeypatch.delenv("MAMMO_SAE_BUNDLE", raising=False)
    monkeypatch.delenv("MAMMO_SAE_DATA", raising=False)
    app = AppTest.from_file(HOME, default_timeout=900)
    app.run()
    app.switch_page("views/dataset.py").run()
    assert not app.exception, [e.value for e in app.exception]
    root = next(t for t in app.text_input if t.label.startswith("Dataset root")).value
    assert Path(root).is_relative_to(cache), "the demo's phantoms, generated into the cache"
    assert int(app.metric[0].value.replace(",", "")) > 0
    for page in ("interventions", "concepts", "training"):
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, (page, [e.value for e in app.exception])
        assert not app.error, (page, [e.value for e in app.error])
