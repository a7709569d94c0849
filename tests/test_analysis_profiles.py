"""Latent location profiles, token AP and flags, against brute force on tiny random codes and hand-made
latents tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis import profiles
from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.profiles import (
    FlagThresholds,
    ProfileError,
    flag_rules,
    latent_flags,
    location_profiles,
    region_column,
    token_ap,
    token_aps,
)
from mammo_sae.analysis.regions import region_names

CATS = ("mass", "calcification")
NAMES = region_names(CATS)


def tiny_codes(seed: int, n: int = 5, grid: tuple[int, int] = (3, 4), d_sae: int = 9) -> TokenCodes:
    """Random sparse codes on a coarse value ladder (many ties), latent 4 never fires."""
    rng = np.random.default_rng(seed)
    z = rng.random((n * grid[0] * grid[1], d_sae)) * (rng.random((n * grid[0] * grid[1], d_sae)) < 0.4)
    z = np.ceil(z * 4) / 4
    z[:, 4] = 0.0
    return TokenCodes.from_dense(z.astype(np.float32), grid)


def brute_ap(values: np.ndarray, positive: np.ndarray, n_positive: int) -> float:
    """Average precision over distinct thresholds, highest first: sum of recall steps x precision."""
    if n_positive == 0:
        return float("nan")
    ap, previous_recall = 0.0, 0.0
    for level in sorted(set(values.tolist()), reverse=True):
        taken = values >= level
        precision = positive[taken].sum() / taken.sum()
        recall = positive[taken].sum() / n_positive
        ap += (recall - previous_recall) * precision
        previous_recall = recall
    return ap


def test_location_profiles_match_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "CHUNK_IMAGES", 2)  # several chunks
    codes = tiny_codes(0)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, len(NAMES), size=(codes.n_images, codes.tokens_per_image)).astype(np.uint8)
    released = []
    monkeypatch.setattr(TokenCodes, "release", lambda self: released.append(1))
    out = location_profiles(codes, labels, NAMES)
    assert released  # pages given back at least at the end
    z = codes.dense().astype(np.float64)
    flat = labels.reshape(-1)
    assert list(out.columns) == [region_column(n) for n in NAMES] + ["activation_mass"]
    assert list(out.index) == list(range(codes.d_sae))
    for latent in range(codes.d_sae):
        mass = z[:, latent].sum()
        assert out.loc[latent, "activation_mass"] == pytest.approx(mass)
        for r, name in enumerate(NAMES):
            expect = z[flat == r, latent].sum() / mass if mass > 0 else np.nan
            assert out.loc[latent, region_column(name)] == pytest.approx(expect, nan_ok=True)
    assert out.loc[4].drop("activation_mass").isna().all()
    shares = out.drop(columns="activation_mass").drop(index=4).sum(axis=1)
    assert np.allclose(shares, 1.0)
    with pytest.raises(ProfileError, match="region names"):
        location_profiles(codes, labels, NAMES[:3])
    with pytest.raises(ProfileError, match="fit the codes"):
        location_profiles(codes, labels[:2], NAMES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_ap_matches_a_per_latent_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "CHUNK_IMAGES", 3)
    codes = tiny_codes(seed)
    rng = np.random.default_rng(seed + 10)
    labels = rng.choice([0, 1, 5, 6], p=[0.5, 0.2, 0.2, 0.1], size=(codes.n_images, codes.tokens_per_image))
    labels = labels.astype(np.uint8)
    z = codes.dense()
    flat = labels.reshape(-1)
    both = token_aps(codes, labels, [5, 6, 3])
    for j, box_label in enumerate((5, 6)):
        got = token_ap(codes, labels, box_label)
        assert np.array_equal(got, both[j])
        for latent in range(codes.d_sae):
            active = z[:, latent] > 0
            expect = brute_ap(z[active, latent], flat[active] == box_label, int((flat == box_label).sum()))
            assert got[latent] == pytest.approx(expect, abs=1e-12), (box_label, latent)
    assert np.isnan(both[2]).all()  # no token carries label 3
    assert both[0][4] == 0.0  # a silent latent detects nothing


def test_token_ap_by_hand() -> None:
    # one image of 4 tokens; tokens 0, 2 and 3 are in the box; latent 0 fires 0.9 (box), 0.8 (not), 0.7 (box)
    z = np.zeros((4, 2), np.float32)
    z[[0, 1, 2], 0] = [0.9, 0.8, 0.7]
    z[[1, 3], 1] = [0.5, 0.5]  # a tie across a positive and a negative: one threshold, precision 1/2
    codes = TokenCodes.from_dense(z, (2, 2))
    labels = np.array([[5, 0, 5, 5]], np.uint8)
    ap = token_ap(codes, labels, 5)
    assert ap[0] == pytest.approx((1.0 + 2 / 3) / 3)
    assert ap[1] == pytest.approx(0.5 / 3)


def latents_table() -> pd.DataFrame:
    """Hand-made latents.parquet rows: profile shares and pointing columns."""
    rows = {
        # latent: (background, border, marker, peak_in_marker, fired_marker, peak_in_mass, fired_mass)
        0: (0.3, 0.3, 0.0, 0.0, 20, 0.0, 20),  # off the breast
        1: (0.1, 0.1, 0.6, 0.0, 20, 0.0, 20),  # marker by its activation mass
        2: (0.0, 0.0, 0.1, 0.9, 20, 0.0, 20),  # marker by its peaks
        3: (0.0, 0.0, 0.0, 0.9, 2, 0.8, 12),  # too few marker images; a mass latent
        4: (0.0, 0.0, 0.0, 0.0, 20, 0.8, 9),  # too few mass images (support 10 of 100)
        5: (np.nan, np.nan, np.nan, np.nan, 0, np.nan, 0),  # never fires
        6: (0.5, 0.2, 0.6, 0.5, 20, 0.5, 10),  # everything
    }
    table = pd.DataFrame.from_dict(
        rows,
        orient="index",
        columns=[
            "share_background",
            "share_border",
            "share_marker",
            "peak_in_marker",
            "fired_marker",
            "peak_in_mass",
            "fired_mass",
        ],
    )
    table["share_breast"] = 1 - table[["share_background", "share_border", "share_marker"]].sum(axis=1)
    return table


def test_flags_by_hand() -> None:
    table = latents_table()
    counts = {"marker": 30, "mass": 100}
    flags = latent_flags(table, CATS, counts)
    assert flags.tolist() == [
        "off_breast",
        "marker",
        "marker",
        "lesion:mass",
        "",
        "",
        "off_breast,marker,lesion:mass",
    ]
    rules = flag_rules(table, CATS, counts)
    assert rules["marker_share"].tolist() == [False, True, False, False, False, False, True]
    assert rules["marker_pointing"].tolist() == [False, False, True, False, False, False, True]
    assert not rules["lesion:calcification"].any()  # no calcification columns: never flagged
    strict = latent_flags(
        table, CATS, counts, FlagThresholds(off_breast=0.75, marker=0.7, lesion_pointing=0.6)
    )
    assert strict.tolist() == ["", "", "marker", "lesion:mass", "", "", ""]
    # support: max(min_support, ceil(fraction x images)); 0.1 x 30 is exactly 3
    assert FlagThresholds().support(30) == 3 and FlagThresholds().support(31) == 4
    assert FlagThresholds(min_support=5).support(10) == 5
    assert latent_flags(table, CATS, {"marker": 1000, "mass": 100}).tolist()[2] == ""
    no_profile = latent_flags(table.drop(columns=["share_border"]), CATS, counts)
    assert no_profile.tolist()[0] == "" and no_profile.tolist()[1] == "marker"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("off_breast", 0.0),
        ("marker", 1.2),
        ("lesion_pointing", "0.5"),
        ("min_support", 0),
        ("min_support", 2.5),
        ("min_support_fraction", -0.1),
        ("min_support_fraction", 1.1),
    ],
)
def test_flag_thresholds_refuse_bad_values(field: str, value: object) -> None:
    with pytest.raises(ProfileError, match=field):
        FlagThresholds(**{field: value})


def test_region_column() -> None:
    assert region_column("box:mass") == "share_box_mass" and region_column("breast") == "share_breast"
