"""Concept scores: streamed class means equal a pandas groupby, and rankings follow the documented order."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.codes import CodesError
from mammo_sae.analysis.scores import (
    RANK_BY,
    ClassMeans,
    class_aurocs,
    describe_ranking,
    rank_latents,
    ranking_table,
    with_aurocs,
    with_peaks,
)

N_IMAGES, D_SAE = 40, 12
CONCEPTS = ["mass", "calcification", "dense"]


def make_data(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Mean latents [N_IMAGES, D_SAE] and labels: int with -1, float with NaN, nullable Int64 with NA."""
    rng = np.random.default_rng(seed)
    zbar_nl = rng.exponential(0.2, (N_IMAGES, D_SAE)).astype(np.float32)
    mass = rng.integers(0, 2, N_IMAGES)
    mass[[3, 17]] = -1
    calc = rng.integers(0, 2, N_IMAGES).astype(np.float64)
    calc[[0, 1, 25]] = np.nan
    dense = pd.array(rng.integers(0, 2, N_IMAGES), dtype="Int64")
    dense[[5, 30, 31]] = pd.NA
    labels = pd.DataFrame({"mass": mass, "calcification": calc, "dense": dense, "other": "x"})
    return zbar_nl, labels.set_index(np.arange(100, 100 + N_IMAGES))  # an index update must ignore


def brute_table(zbar_nl: np.ndarray, labels: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(zbar_nl.astype(np.float64))
    zbar_all = frame.mean()
    parts = []
    for concept in CONCEPTS:
        label = (
            pd.to_numeric(labels[concept].astype("Float64"), errors="coerce").replace(-1, np.nan).to_numpy()
        )
        for cls in (0, 1):
            members = frame[label == cls]
            parts.append(
                pd.DataFrame(
                    {
                        "latent": np.arange(D_SAE),
                        "concept": concept,
                        "cls": cls,
                        "n_images": len(members),
                        "zbar": members.mean().to_numpy(),
                        "zbar_all": zbar_all.to_numpy(),
                    }
                )
            )
    table = pd.concat(parts, ignore_index=True)
    return table.assign(deviation=table["zbar"] - table["zbar_all"])


def assert_tables_equal(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == ["latent", "concept", "cls", "n_images", "zbar", "zbar_all", "deviation"]
    for column in ("latent", "concept", "cls", "n_images"):
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy())
    for column in ("zbar", "zbar_all", "deviation"):
        np.testing.assert_allclose(
            got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-12, atol=1e-15
        )


def fed(zbar_nl: np.ndarray, labels: pd.DataFrame, cuts: list[int]) -> ClassMeans:
    means = ClassMeans(D_SAE, CONCEPTS)
    bounds = [0, *cuts, len(zbar_nl)]
    for start, stop in itertools.pairwise(bounds):
        means.update(zbar_nl[start:stop], labels.iloc[start:stop])
    return means


def test_class_means_match_groupby_in_any_chunking() -> None:
    zbar_nl, labels = make_data()
    expected = brute_table(zbar_nl, labels)
    for cuts in ([], [7, 20], [1, 2, 3, 39]):
        assert_tables_equal(fed(zbar_nl, labels, cuts).table(), expected)
    bools = labels.assign(mass=labels["mass"].clip(lower=0).astype(bool))
    np.testing.assert_array_equal(
        fed(zbar_nl, bools, []).table().query("concept == 'mass'")["n_images"].unique(),
        [int((bools["mass"] == 0).sum()), int(bools["mass"].sum())],
    )


def test_state_dict_round_trip_and_merge_of_halves_equal_one_pass() -> None:
    zbar_nl, labels = make_data(seed=1)
    whole = fed(zbar_nl, labels, [13]).table()
    first, second = fed(zbar_nl[:15], labels.iloc[:15], [4]), fed(zbar_nl[15:], labels.iloc[15:], [])
    buffer = io.BytesIO()
    np.savez(buffer, **first.state_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        resumed = ClassMeans.from_state_dict(dict(saved))
    assert_tables_equal(resumed.merge(second).table(), whole)
    reordered = ClassMeans(D_SAE, CONCEPTS[::-1])
    reordered.update(zbar_nl[15:], labels.iloc[15:])
    assert_tables_equal(first.merge(reordered).table(), whole)
    with pytest.raises(CodesError, match="merge"):
        first.merge(ClassMeans(D_SAE, ["mass"]))
    with pytest.raises(CodesError, match="lacks"):
        ClassMeans.from_state_dict({"concepts": np.array(CONCEPTS)})


def test_update_refuses_bad_labels_and_shapes() -> None:
    zbar_nl, labels = make_data()
    means = ClassMeans(D_SAE, CONCEPTS)
    with pytest.raises(CodesError, match=r"\[2\.0\]"):
        means.update(zbar_nl, labels.assign(mass=labels["mass"].replace(0, 2)))
    with pytest.raises(CodesError, match="must be 0/1"):
        means.update(zbar_nl, labels.assign(dense="yes"))
    with pytest.raises(CodesError, match="lack the concept columns"):
        means.update(zbar_nl, labels.drop(columns="dense"))
    with pytest.raises(CodesError, match="label rows"):
        means.update(zbar_nl[:-1], labels)
    with pytest.raises(CodesError, match="NaN"):
        means.update(np.full_like(zbar_nl, np.nan), labels)
    assert means.n_all == 0


def _scored(zbar_nl: np.ndarray, mass: list[int]) -> pd.DataFrame:
    means = ClassMeans(zbar_nl.shape[1], ["mass"])
    means.update(zbar_nl, pd.DataFrame({"mass": mass}))
    return means.table()


def test_rank_latents_by_deviation_or_mean_with_ties_by_latent_id() -> None:
    # class 1 = images 0, 1; latent 0 is high everywhere (big mean, no deviation); 1 and 3 tie on deviation
    zbar_nl = np.array(
        [
            [5.0, 2.0, 0.0, 2.0, 1.0],
            [5.0, 2.0, 0.0, 2.0, 1.0],
            [5.0, 0.0, 0.0, 0.0, 0.0],
            [5.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    table = _scored(zbar_nl, [1, 1, 0, 0])
    np.testing.assert_array_equal(rank_latents(table, "mass", 1), [1, 3, 4, 0, 2])
    np.testing.assert_array_equal(rank_latents(table, "mass", 1, rank_by="mean"), [0, 1, 3, 4, 2])
    np.testing.assert_array_equal(rank_latents(table, "mass", 0), [0, 2, 4, 1, 3])
    assert RANK_BY == ("deviation", "mean", "peak_deviation", "peak", "auroc", "peak_auroc")
    with pytest.raises(CodesError, match="rank_by"):
        rank_latents(table, "mass", 1, rank_by="zbar")
    with pytest.raises(CodesError, match="no rows for concept 'calc'"):
        rank_latents(table, "calc", 1)


def test_ranking_table_orders_every_class_and_skips_empty_ones() -> None:
    zbar_nl, labels = make_data()
    means = ClassMeans(D_SAE, CONCEPTS)
    means.update(zbar_nl, labels)
    ranked = ranking_table(means.table(), CONCEPTS, top=5)
    assert list(ranked.columns) == [
        "concept",
        "cls",
        "rank",
        "latent",
        "zbar",
        "zbar_all",
        "deviation",
        "n_images",
    ]
    assert len(ranked) == len(CONCEPTS) * 2 * 5
    for (concept, cls), group in ranked.groupby(["concept", "cls"], sort=False):
        assert group["rank"].tolist() == list(range(5))
        np.testing.assert_array_equal(group["latent"], rank_latents(means.table(), concept, cls)[:5])
    by_mean = ranking_table(means.table(), ["mass"], rank_by="mean")
    assert len(by_mean) == 2 * D_SAE and (np.diff(by_mean.query("cls == 0")["zbar"]) <= 0).all()

    table = _scored(zbar_nl[:4], [1, 1, -1, 1])
    with pytest.raises(CodesError, match="no images"):
        rank_latents(table, "mass", 0)
    assert table.query("cls == 0")["zbar"].isna().all()
    only_positive = ranking_table(table)
    assert set(only_positive["cls"]) == {1} and len(only_positive) == D_SAE
    with pytest.raises(CodesError, match="no concepts"):
        ranking_table(table, ["calcification"])


def test_peak_ranking_prefers_a_latent_that_fires_hard_on_few_tokens() -> None:
    """Per-image peaks (max over tokens) beside the means: a lesion latent with one strong token per positive
    image wins on peaks while a broad latent wins on means."""
    labels = pd.DataFrame({"mass": [1, 1, 0, 0]})
    means = ClassMeans(2, ["mass"])
    peaks = ClassMeans(2, ["mass"])
    # latent 0: broad, a little higher on positives; latent 1: one strong token on positives only
    means.update(np.array([[0.50, 0.05], [0.50, 0.05], [0.30, 0.0], [0.30, 0.0]]), labels)
    peaks.update(np.array([[0.60, 5.0], [0.60, 5.0], [0.40, 0.0], [0.40, 0.0]]), labels)
    table = with_peaks(means.table(), peaks.table())
    assert rank_latents(table, "mass", 1, rank_by="deviation")[0] == 0
    assert rank_latents(table, "mass", 1, rank_by="peak_deviation")[0] == 1
    ranked = ranking_table(table, ["mass"], rank_by="peak")
    assert {"peak", "peak_all", "peak_deviation"} <= set(ranked.columns)


def _brute_auroc(values: np.ndarray, positive: np.ndarray) -> float:
    """P(positive > negative) + P(tie) / 2 over every pair."""
    pos, neg = values[positive], values[~positive]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def test_class_aurocs_equal_pairwise_counting_with_ties_and_unknown_labels() -> None:
    zbar_nl, labels = make_data(3)
    zbar_nl[:, 4] = 0.0  # a latent that never fires: every pair ties
    zbar_nl[::3, 5] = 0.0
    got = class_aurocs(zbar_nl, labels.reset_index(drop=True), CONCEPTS, block=5)
    for k, concept in enumerate(CONCEPTS):
        label = labels[concept].to_numpy(dtype=np.float64, na_value=np.nan)
        known = ~np.isnan(label) & (label != -1)
        for latent in range(D_SAE):
            expected = _brute_auroc(zbar_nl[known, latent].astype(np.float64), label[known] == 1)
            assert got[k, latent] == pytest.approx(expected, abs=1e-12)
    assert np.allclose(got[:, 4], 0.5)


def test_class_aurocs_are_nan_without_both_classes_and_check_lengths() -> None:
    labels = pd.DataFrame({"mass": [1, 1, -1]})
    assert np.isnan(class_aurocs(np.ones((3, 2)), labels, ["mass"])).all()
    with pytest.raises(CodesError, match="label rows"):
        class_aurocs(np.ones((4, 2)), labels, ["mass"])


def test_peak_auroc_ranking_is_scale_free() -> None:
    """A broad latent with huge activations that rise a little on positives tops the peak deviation, while
    the peak AUROC prefers the weak latent that fires on positive images only; class 0 gets 1 - AUROC."""
    labels = pd.DataFrame({"mass": [1, 1, 1, 0, 0, 0]})
    peaks_nl = np.array(
        [[40.0, 1.0], [30.0, 0.8], [22.0, 0.9], [25.0, 0.0], [21.0, 0.0], [20.0, 0.1]], dtype=np.float32
    )
    means, peaks = ClassMeans(2, ["mass"]), ClassMeans(2, ["mass"])
    means.update(peaks_nl / 10, labels)
    peaks.update(peaks_nl, labels)
    auroc_kl = class_aurocs(peaks_nl, labels, ["mass"])
    table = with_aurocs(with_peaks(means.table(), peaks.table()), auroc_kl, auroc_kl, ["mass"])
    assert rank_latents(table, "mass", 1, rank_by="peak_deviation")[0] == 0
    assert rank_latents(table, "mass", 1, rank_by="peak_auroc")[0] == 1
    row = table[(table["latent"] == 1) & (table["cls"] == 0)]
    assert float(row["peak_auroc"].iloc[0]) == pytest.approx(1.0 - auroc_kl[0, 1])
    assert {"auroc", "peak_auroc"} <= set(ranking_table(table, ["mass"], rank_by="peak_auroc").columns)


def test_ranking_by_a_score_the_table_lacks_says_to_rerun() -> None:
    means = ClassMeans(2, ["mass"])
    means.update(np.ones((2, 2)), pd.DataFrame({"mass": [0, 1]}))
    with pytest.raises(CodesError, match="rerun analyze"):
        rank_latents(means.table(), "mass", 1, rank_by="peak_auroc")


def test_every_ranking_mode_is_described_by_what_it_sorts_on() -> None:
    texts = {mode: describe_ranking(mode, 1) for mode in RANK_BY}
    assert len(set(texts.values())) == len(RANK_BY)
    assert (
        texts["deviation"]
        == "the class-1 average of each latent's per-image mean activation minus its all-image average"
    )
    assert "per-image peak activation minus" in texts["peak_deviation"]
    assert "minus" not in texts["peak"] and "minus" not in texts["mean"]
    assert texts["peak_auroc"].startswith("the AUROC") and "class-0" in describe_ranking("auroc", 0)
    with pytest.raises(CodesError, match="rank_by must be one of"):
        describe_ranking("median", 1)
