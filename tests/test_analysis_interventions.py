"""Latent interventions: folded heads equal decode-then-classify, one-pass curves equal explicit masks, a
known-answer curve, per-case contributions, chart specs and atomic chart files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch

from mammo_sae.analysis import interventions
from mammo_sae.analysis.charts import curves_chart, save_chart
from mammo_sae.analysis.interventions import (
    PAPER_KS,
    CurveInputs,
    HeadLinear,
    InterventionError,
    contributions,
    curve_logits,
    intervention_curves,
    k_label,
    scale_vector,
    shortcut_logits,
    topk_union,
    union_entry,
)
from mammo_sae.core.metrics import auroc

TASKS = ("mass", "calcification")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Model(NamedTuple):
    """A random SAE decoder, two linear heads and tokens of a few images, all float64."""

    w_dec_ld: np.ndarray
    b_dec_d: np.ndarray
    weight_hd: np.ndarray
    bias_h: np.ndarray
    z_ntl: np.ndarray  # [images, tokens, d_sae] SAE latents (sparse, non-negative)
    x_ntd: np.ndarray  # [images, tokens, d_in] backbone features the SAE reconstructs
    heads: HeadLinear


def make_model(seed: int = 0, n: int = 20, tokens: int = 6, d_in: int = 12, d_sae: int = 48) -> Model:
    rng = np.random.default_rng(seed)
    w_dec_ld = rng.standard_normal((d_sae, d_in))
    b_dec_d = rng.standard_normal(d_in)
    weight_hd = rng.standard_normal((len(TASKS), d_in))
    bias_h = rng.standard_normal(len(TASKS))
    z_ntl = np.maximum(rng.standard_normal((n, tokens, d_sae)) - 0.8, 0)
    x_ntd = rng.standard_normal((n, tokens, d_in))
    heads = HeadLinear.from_weights(TASKS, w_dec_ld, b_dec_d, weight_hd, bias_h)
    return Model(w_dec_ld, b_dec_d, weight_hd, bias_h, z_ntl, x_ntd, heads)


def decode_then_classify(model: Model, scale_l: np.ndarray | None = None) -> np.ndarray:
    """The explicit path: decode every token's (scaled) latents, mean-pool, apply the heads."""
    z_ntl = model.z_ntl if scale_l is None else model.z_ntl * scale_l
    x_hat_ntd = z_ntl @ model.w_dec_ld + model.b_dec_d
    return x_hat_ntd.mean(axis=1) @ model.weight_hd.T + model.bias_h


def error_term(model: Model) -> np.ndarray:
    """[n, heads] w_h . (mean x - mean x_hat) with the unscaled reconstruction."""
    x_hat_ntd = model.z_ntl @ model.w_dec_ld + model.b_dec_d
    return (model.x_ntd.mean(axis=1) - x_hat_ntd.mean(axis=1)) @ model.weight_hd.T


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-9) -> None:
    """Relative agreement, measured against the largest magnitude (logits near zero have no relative scale)."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(1.0, np.abs(expected).max()))


def rankings(d_sae: int, seed: int, length0: int, length1: int) -> tuple[np.ndarray, np.ndarray]:
    """Two rankings: prefixes of random permutations of the latents."""
    rng = np.random.default_rng(seed)
    return rng.permutation(d_sae)[:length0], rng.permutation(d_sae)[:length1]


# --- folded heads and explicit logits -------------------------------------------------------------------------


def test_shortcut_logits_equal_decode_then_classify() -> None:
    model = make_model()
    zbar_nl = model.z_ntl.mean(axis=1)
    d_sae = model.heads.d_sae
    assert_close(shortcut_logits(zbar_nl, model.heads), decode_then_classify(model))
    scale_l = scale_vector(d_sae, scales={3: 2.5, 7: -1.0, 11: 0.0})
    assert_close(shortcut_logits(zbar_nl, model.heads, scale_l), decode_then_classify(model, scale_l))
    keep_l = scale_vector(d_sae, keep=[0, 5, 9])
    error_nh = error_term(model)
    assert_close(
        shortcut_logits(zbar_nl, model.heads, keep_l, error_nh),
        decode_then_classify(model, keep_l) + error_nh,
    )
    # Keep all plus the error term is the original model on the backbone features.
    original_nh = model.x_ntd.mean(axis=1) @ model.weight_hd.T + model.bias_h
    assert_close(shortcut_logits(zbar_nl, model.heads, error_nh=error_nh), original_nh)


def test_float32_zbar_is_summed_in_float64_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(n=23)
    zbar32_nl = model.z_ntl.mean(axis=1).astype(np.float32)
    expected_nh = zbar32_nl.astype(np.float64) @ model.heads.effect_lh + model.heads.const_h
    monkeypatch.setattr(interventions, "CHUNK_ELEMENTS", 5 * model.heads.d_sae)  # 5 rows per chunk
    logits_nh = shortcut_logits(zbar32_nl, model.heads)
    assert logits_nh.dtype == np.float64
    assert_close(logits_nh, expected_nh, rtol=1e-12)
    assert_close(shortcut_logits(torch.from_numpy(zbar32_nl), model.heads), expected_nh, rtol=1e-12)


def test_head_linear_from_torch_weights_and_errors() -> None:
    model = make_model()
    as_torch = [
        torch.from_numpy(a).float() for a in (model.w_dec_ld, model.b_dec_d, model.weight_hd, model.bias_h)
    ]
    heads32 = HeadLinear.from_weights(list(TASKS), *as_torch)
    assert heads32.tasks == TASKS and heads32.effect_lh.dtype == np.float64
    assert_close(heads32.effect_lh, model.heads.effect_lh, rtol=1e-6)
    assert (heads32.d_sae, heads32.n_heads) == (48, 2)
    assert model.heads.index("calcification") == 1
    with pytest.raises(InterventionError, match=r"unknown head 'density'.*\['mass', 'calcification'\]"):
        model.heads.index("density")
    with pytest.raises(InterventionError, match=r"head weights must be \[heads, d_in = 12\]"):
        HeadLinear.from_weights(TASKS, model.w_dec_ld, model.b_dec_d, model.weight_hd[:, :5], model.bias_h)
    with pytest.raises(InterventionError, match="name each of the 2 heads once"):
        HeadLinear(("mass", "mass"), model.heads.effect_lh, model.heads.const_h)


# --- latent sets and scale vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("length0", "length1"), [(30, 30), (12, 25), (0, 7)])
def test_union_entry_and_topk_union_match_sets(length0: int, length1: int) -> None:
    d_sae = 30
    rank0, rank1 = rankings(d_sae, 1, length0, length1)
    entry_l = union_entry(rank0, rank1, d_sae)
    assert entry_l.dtype == np.int64 and entry_l.shape == (d_sae,)
    for k in (0, 1, 2, 5, 11, 29, 30, 31, 10000):
        expected = sorted(set(rank0[:k].tolist()) | set(rank1[:k].tolist()))
        union = topk_union(rank0, rank1, k, d_sae)
        assert union.tolist() == expected
        assert np.flatnonzero(entry_l <= min(k, d_sae)).tolist() == expected
    assert topk_union(rank0, rank1, 0, d_sae).size == 0
    assert topk_union(rank0, rank1, None, d_sae).tolist() == list(range(d_sae))
    ranked = set(rank0.tolist()) | set(rank1.tolist())
    assert all((entry_l[t] == d_sae + 1) == (t not in ranked) for t in range(d_sae))


def test_rankings_and_k_are_checked() -> None:
    with pytest.raises(InterventionError, match="rank1 repeats latent ids"):
        union_entry(np.arange(5), np.array([1, 2, 1]), 5)
    with pytest.raises(InterventionError, match=r"rank0 has latent ids outside \[0, 5\): \[5, 9\]"):
        topk_union(np.array([0, 5, 9]), np.arange(5), 2, 5)
    with pytest.raises(InterventionError, match="non-negative integer or None"):
        topk_union(np.arange(5), np.arange(5), -1, 5)
    assert k_label(None) == "all" and k_label(50) == "50"


def test_scale_vector() -> None:
    assert scale_vector(6).tolist() == [1] * 6
    assert scale_vector(6, keep=[1, 4]).tolist() == [0, 1, 0, 0, 1, 0]
    assert scale_vector(6, suppress=np.array([1, 4])).tolist() == [1, 0, 1, 1, 0, 1]
    assert scale_vector(6, keep=[], scales={2: 0.5}).tolist() == [0, 0, 0.5, 0, 0, 0]
    assert scale_vector(6, suppress=[2], scales={2: 3.0}).dtype == np.float32
    with pytest.raises(InterventionError, match="keep or suppress, not both"):
        scale_vector(6, keep=[1], suppress=[2])
    with pytest.raises(InterventionError, match=r"suppress has latent ids outside \[0, 6\): \[-1, 6\]"):
        scale_vector(6, suppress=[0, -1, 6])
    with pytest.raises(InterventionError, match=r"scales has latent ids outside \[0, 6\): \[8\]"):
        scale_vector(6, scales={8: 1.0})
    with pytest.raises(InterventionError, match="integer latent ids"):
        scale_vector(6, keep=[1.5])


# --- one-pass curves ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length0", "length1"), [(300, 300), (120, 200)])
def test_curve_logits_equal_explicit_masks(length0: int, length1: int) -> None:
    rng = np.random.default_rng(3)
    d_sae, n = 300, 30
    heads = HeadLinear(TASKS, rng.standard_normal((d_sae, 2)), rng.standard_normal(2))
    zbar_nl = (rng.exponential(1.0, (n, d_sae)) * (rng.random((n, d_sae)) < 0.3)).astype(np.float32)
    error_nh = rng.standard_normal((n, 2))
    rank0, rank1 = rankings(d_sae, 4, length0, length1)
    ks = list(reversed(PAPER_KS))  # any order comes back in the caller's order
    keep_knh, suppress_knh = curve_logits(zbar_nl, heads, union_entry(rank0, rank1, d_sae), ks, error_nh)
    assert keep_knh.shape == suppress_knh.shape == (len(ks), n, 2)
    for i, k in enumerate(ks):
        union = topk_union(rank0, rank1, k, d_sae)
        assert_close(keep_knh[i], shortcut_logits(zbar_nl, heads, scale_vector(d_sae, keep=union), error_nh))
        assert_close(
            suppress_knh[i], shortcut_logits(zbar_nl, heads, scale_vector(d_sae, suppress=union), error_nh)
        )
    assert_close(keep_knh[ks.index(0)], np.broadcast_to(heads.const_h + error_nh, (n, 2)))


def test_curve_logits_rejects_bad_entry_and_repeated_ks() -> None:
    heads = HeadLinear(TASKS, np.ones((4, 2)), np.zeros(2))
    with pytest.raises(InterventionError, match="see union_entry"):
        curve_logits(np.ones((3, 4), np.float32), heads, np.array([0, 1, 2, 3]), [1])
    with pytest.raises(InterventionError, match="ks repeats a value"):
        curve_logits(np.ones((3, 4), np.float32), heads, np.array([1, 2, 3, 4]), [1, 5, 1])
    with pytest.raises(InterventionError, match=r"zbar must be floating \[n images, d_sae = 4\]"):
        curve_logits(np.ones((3, 5), np.float32), heads, np.array([1, 2, 3, 4]), [1])


def known_answer(seed: int = 5, n: int = 400, d_sae: int = 50, t: int = 7) -> tuple:
    """Latent t's mean activation IS the mass label and moves the mass logit by 10; the other 49 latents are
    noise in [0, 1) with effects in [-0.1, 0.1], so together they move a logit by less than 4.9 < 10."""
    rng = np.random.default_rng(seed)
    y_n = rng.permutation(np.repeat([0, 1], n // 2))
    zbar_nl = rng.random((n, d_sae)).astype(np.float32)
    zbar_nl[:, t] = y_n
    effect_lh = rng.uniform(-0.1, 0.1, (d_sae, 2))
    effect_lh[t] = (10.0, 0.0)
    heads = HeadLinear(TASKS, effect_lh, np.array([-5.0, 1.0]))
    rank1 = np.array([t, *[i for i in rng.permutation(d_sae) if i != t]])
    rank0 = np.array([i for i in rng.permutation(d_sae) if i != t][:20])
    return zbar_nl, heads, y_n, [CurveInputs("mass", rank0, rank1)]


def test_known_answer_curve() -> None:
    zbar_nl, heads, y_n, curves = known_answer()
    table = intervention_curves(zbar_nl, heads, curves, {"image": {"mass": y_n}})
    assert list(table.columns) == list(interventions.CURVE_COLUMNS)
    assert len(table) == 2 * len(PAPER_KS)
    assert table["k"].dtype == "Int64" and table["k"].isna().sum() == 2
    at = table.set_index(["mode", "k_label"])
    assert at.loc[("keep", "1"), "n_latents"] == 2  # T_1 = {rank0[0], t}
    assert at.loc[("keep", "1"), "auroc"] == 1.0 and at.loc[("keep", "1"), "auprc"] == 1.0
    assert at.loc[("keep", "all"), "auroc"] == 1.0  # the noise never outweighs latent t
    # Without latent t the logit is independent of the label: AUROC of 400 balanced cases has a standard
    # deviation of sqrt((n + 1) / (12 n0 n1)) ~ 0.029, so 0.12 is a 4-sigma bound (and the seed is fixed).
    assert abs(at.loc[("suppress", "1"), "auroc"] - 0.5) < 0.12
    assert abs(at.loc[("suppress", "10"), "auroc"] - 0.5) < 0.12
    # Keeping nothing (or suppressing everything) leaves every logit at const: all tied.
    assert at.loc[("keep", "0"), "auroc"] == 0.5 and at.loc[("suppress", "all"), "auroc"] == 0.5
    assert at.loc[("keep", "0"), "auprc"] == 0.5  # prevalence
    assert (table["n"] == 400).all() and (table["n_pos"] == 200).all()


def test_curves_per_unit_score_rows_through_their_image() -> None:
    zbar_nl, heads, y_n, curves = known_answer()
    rng = np.random.default_rng(9)
    pos_r = np.sort(rng.integers(0, len(y_n), 600))  # finding rows: some images repeat, some are absent
    error_nh = rng.standard_normal((len(y_n), 2))
    labels = {"image": {"mass": y_n, "calcification": 1 - y_n}, "row": {"mass": y_n[pos_r]}}
    ks = [0, 3, None]
    table = intervention_curves(zbar_nl, heads, curves, labels, ks, error_nh, units={"row": pos_r})
    assert table.groupby(["unit", "head"]).size().to_dict() == {
        ("image", "calcification"): 6,
        ("image", "mass"): 6,
        ("row", "mass"): 6,
    }
    keep_knh, suppress_knh = curve_logits(
        zbar_nl, heads, union_entry(*[curves[0].rank0, curves[0].rank1], 50), ks, error_nh
    )
    rows = table[table["unit"] == "row"].reset_index(drop=True)
    expected = [
        auroc(y_n[pos_r], logits[i][pos_r, 0]) for logits in (keep_knh, suppress_knh) for i in range(3)
    ]
    np.testing.assert_allclose(rows["auroc"], expected, atol=1e-12)
    assert rows["k_label"].tolist() == ["0", "3", "all"] * 2 and (rows["n"] == 600).all()
    with pytest.raises(InterventionError, match=r"units=\{'row': image positions\}"):
        intervention_curves(zbar_nl, heads, curves, {"row": {"mass": y_n[pos_r]}})
    with pytest.raises(InterventionError, match=r"unknown head 'density'"):
        intervention_curves(zbar_nl, heads, curves, {"image": {"density": y_n}})
    with pytest.raises(InterventionError, match="has shape"):
        intervention_curves(zbar_nl, heads, curves, {"image": {"mass": y_n[:10]}})


# --- one case -------------------------------------------------------------------------------------------------


def test_contributions_sum_to_the_logit_sorted_without_zeros() -> None:
    model = make_model(seed=2)
    zbar_l = model.z_ntl.mean(axis=1)[4]
    zbar_l[:10] = 0.0
    heads = model.heads
    logit_h = shortcut_logits(zbar_l[None], heads)[0]
    for h, task in enumerate(TASKS):
        table = contributions(zbar_l, heads, task)
        assert list(table.columns) == ["latent", "zbar", "effect", "contribution"]
        assert table.attrs == {"task": task, "const": heads.const_h[h]}
        assert table["contribution"].sum() + table.attrs["const"] == pytest.approx(
            logit_h[h], rel=1e-9, abs=1e-12
        )
        assert (table["contribution"] != 0).all() and not set(range(10)) & set(table["latent"])
        assert set(table["latent"]) == set(np.flatnonzero(zbar_l).tolist())
        assert np.all(np.diff(np.abs(table["contribution"].to_numpy())) <= 0)
        np.testing.assert_array_equal(table["contribution"], table["zbar"] * table["effect"])
    scale_l = scale_vector(heads.d_sae, suppress=[20, 21, 22])
    table = contributions(zbar_l, heads, "mass", scale_l)
    assert "scale" in table.columns and not {20, 21, 22} & set(table["latent"])
    expected = shortcut_logits(zbar_l[None], heads, scale_l)[0, 0]
    assert table["contribution"].sum() + table.attrs["const"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_contributions_break_ties_by_latent_id() -> None:
    heads = HeadLinear(TASKS, np.array([[1.0, 0], [-2.0, 0], [2.0, 0], [0.5, 0], [-2.0, 0]]), np.zeros(2))
    table = contributions(np.array([0.0, 1.0, 1.0, 2.0, 1.0], np.float32), heads, "mass")
    assert table["latent"].tolist() == [1, 2, 4, 3]


# --- charts ---------------------------------------------------------------------------------------------------


def chart_table(concepts: tuple[str, ...] = ("mass",)) -> pd.DataFrame:
    zbar_nl, heads, y_n, curves = known_answer(n=60)
    curves = [CurveInputs(c, curves[0].rank0, curves[0].rank1) for c in concepts]
    return intervention_curves(zbar_nl, heads, curves, {"image": {"mass": y_n, "calcification": 1 - y_n}})


def test_curves_chart_encodings() -> None:
    table = chart_table()
    reference = table[table["head"] == "mass"].assign(source="paper (VinDr)", auroc=0.8)
    spec = curves_chart(table, reference=reference).to_dict()
    encoding = spec["encoding"]
    assert encoding["x"]["field"] == "k_label" and encoding["x"]["type"] == "ordinal"
    assert encoding["x"]["sort"] == [k_label(k) for k in PAPER_KS]
    assert encoding["y"]["field"] == "auroc"
    assert encoding["color"]["field"] == "mode"
    assert encoding["column"]["field"] == "head" and "row" not in encoding  # one concept: no rows
    assert encoding["strokeDash"]["scale"]["domain"] == ["this run", "paper (VinDr)"]
    assert spec["mark"]["type"] == "line" and "AUROC" in spec["title"] and "mass" in spec["title"]
    two = curves_chart(chart_table(("mass", "calcification")), metric="auprc").to_dict()["encoding"]
    assert two["row"]["field"] == "panel" and two["y"]["field"] == "auprc"
    with pytest.raises(InterventionError, match="metric must be one of"):
        curves_chart(table, metric="accuracy")
    with pytest.raises(InterventionError, match="'source' column"):
        curves_chart(table, reference=table)


def test_save_chart_writes_json_and_png(tmp_path: Path) -> None:
    chart = curves_chart(chart_table())
    save_chart(chart, tmp_path / "c.vl.json", tmp_path / "png" / "c.png", scale=1.0)
    assert json.loads((tmp_path / "c.vl.json").read_text())["$schema"].startswith(
        "https://vega.github.io/schema"
    )
    assert (tmp_path / "png" / "c.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c.png", "c.vl.json", "png"]
