"""The shortcut audit: logit-difference shares add up, flagged latents are ranked without a cap, and the
suppressed AUROC matches logits computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.interventions import HeadLinear
from mammo_sae.analysis.shortcuts import (
    ShortcutError,
    logit_difference_shares,
    shortcut_audit,
    suppression_set,
)
from mammo_sae.core.metrics import auroc


def _setting(seed: int = 0, n: int = 40, d: int = 30) -> tuple:
    rng = np.random.default_rng(seed)
    zbar_nl = rng.exponential(1.0, (n, d)).astype(np.float32)
    zbar_nl[rng.random((n, d)) < 0.5] = 0
    head = HeadLinear(("mass", "calcification"), rng.normal(size=(d, 2)), rng.normal(size=2))
    labels = {"mass": rng.integers(0, 2, n), "calcification": (zbar_nl[:, 3] > 0.5).astype(int)}
    return rng, zbar_nl, head, labels


def test_logit_difference_shares_add_up_to_the_class_difference() -> None:
    _, zbar_nl, head, labels = _setting()
    table = logit_difference_shares(zbar_nl, head, labels)
    assert len(table) == 2 * head.d_sae
    for task, y_n in labels.items():
        h = head.index(task)
        logit_n = zbar_nl.astype(np.float64) @ head.effect_lh[:, h] + head.const_h[h]
        total = logit_n[y_n == 1].mean() - logit_n[y_n == 0].mean()
        part = table[table["task"] == task]
        assert part["share"].sum() == pytest.approx(1.0)
        assert part["difference"].sum() == pytest.approx(total)
        assert table.attrs["total"][task] == pytest.approx(total)
        i = 7
        c1 = (zbar_nl[y_n == 1, i].astype(np.float64) * head.effect_lh[i, h]).mean()
        row = part.set_index("latent").loc[i]
        assert row["mean_positive"] == pytest.approx(c1)
        assert row["difference"] == pytest.approx(c1 - (zbar_nl[y_n == 0, i] * head.effect_lh[i, h]).mean())
    y_nh = np.stack([labels["mass"], labels["calcification"]], axis=1)
    subset = logit_difference_shares(zbar_nl, head, y_nh, latents=[4, 2])
    assert subset["latent"].tolist() == [4, 2, 4, 2]
    full = table.set_index(["task", "latent"])
    assert np.allclose(
        subset["share"], full.loc[list(zip(subset["task"], subset["latent"], strict=True))]["share"]
    )
    with pytest.raises(ShortcutError, match="0/1"):
        logit_difference_shares(zbar_nl, head, {"mass": np.full(40, 2)})
    with pytest.raises(Exception, match="unknown head"):
        logit_difference_shares(zbar_nl, head, {"density": labels["mass"]})


def test_suppression_set_matches_flag_kinds() -> None:
    flags = pd.Series({3: "off_breast", 5: "marker,lesion:mass", 9: "", 11: "lesion:calcification", 1: None})
    assert suppression_set(flags, ("off_breast", "marker")).tolist() == [3, 5]
    assert suppression_set(flags, ("lesion",)).tolist() == [5, 11]
    assert suppression_set(flags, "lesion:mass").tolist() == [5]
    assert suppression_set(flags, ()).dtype == np.int64


def test_shortcut_audit_against_hand_computed_logits() -> None:
    rng, zbar_nl, head, labels = _setting(1)
    flags = pd.Series("", index=np.arange(head.d_sae))
    flags[[3, 8]] = "marker"
    flags[12] = "off_breast,lesion:mass"
    flags[20] = "lesion:calcification"
    error_nh = rng.normal(size=(40, 2)) * 0.1
    audit = shortcut_audit(zbar_nl, head, labels, flags, error_nh)
    cut = np.array([3, 8, 12])
    for task, y_n in labels.items():
        h = head.index(task)
        effect_l = head.effect_lh[:, h].copy()
        base_n = zbar_nl.astype(np.float64) @ effect_l + head.const_h[h] + error_nh[:, h]
        effect_l[cut] = 0
        cut_n = zbar_nl.astype(np.float64) @ effect_l + head.const_h[h] + error_nh[:, h]
        row = audit.summary.set_index("task").loc[task]
        assert row["auroc"] == pytest.approx(auroc(y_n, base_n))
        assert row["auroc_suppressed"] == pytest.approx(auroc(y_n, cut_n))
        assert row["auroc_drop"] == pytest.approx(row["auroc"] - row["auroc_suppressed"])
        assert row["n_suppressed"] == 3 and row["logit"] == "sae+error"
        shares = logit_difference_shares(zbar_nl, head, labels).set_index(["task", "latent"])["share"]
        assert row["share_suppressed"] == pytest.approx(shares.loc[task].loc[cut].sum())
        flagged = audit.flagged[audit.flagged["task"] == task]
        assert sorted(flagged["latent"]) == [3, 8, 12, 20]  # every flagged latent, not a capped few
        assert np.all(np.diff(flagged["share"].to_numpy()) <= 0) and flagged["rank"].tolist() == [1, 2, 3, 4]
        assert flagged.set_index("latent").loc[20, "suppressed"] == False  # noqa: E712
        assert flagged.set_index("latent").loc[12, "flags"] == "lesion:mass,off_breast"
    plain = shortcut_audit(zbar_nl, head, labels, flags)
    assert (plain.summary["logit"] == "sae").all()
    h = head.index("mass")
    sae_n = zbar_nl.astype(np.float64) @ head.effect_lh[:, h]
    assert plain.summary.set_index("task").loc["mass", "auroc"] == pytest.approx(auroc(labels["mass"], sae_n))


def test_shortcut_audit_says_why_an_auroc_is_undefined() -> None:
    _, zbar_nl, head, _ = _setting(2)
    audit = shortcut_audit(zbar_nl, head, {"mass": np.ones(40, int)}, pd.Series({0: "marker"}))
    row = audit.summary.iloc[0]
    assert np.isnan(row["auroc"]) and row["note"] == "no negatives"
    assert np.isnan(row["share_suppressed"])
    with pytest.raises(ShortcutError, match="indexed by latent ids"):
        shortcut_audit(zbar_nl, head, {"mass": np.ones(40, int)}, pd.Series({99: "marker"}))
