"""What fires here: region masks from tokens, points and boxes, and the per-latent table against brute force
on dense codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.fires_here import FiresHereError, image_entries, region_tokens, what_fires_here

GRID, FRAME = (4, 3), (40, 30)  # footprints 10 x 10 frame px


def _tokens(mask_t: np.ndarray) -> list[int]:
    return np.flatnonzero(mask_t).tolist()


def test_region_tokens_from_token_point_and_box() -> None:
    assert _tokens(region_tokens(GRID, FRAME, token=7)) == [7]
    assert _tokens(region_tokens(GRID, FRAME, point=(15.0, 25.0))) == [2 * 3 + 1]
    # a point on a footprint edge goes to the right / lower footprint; the frame's far edge to the last
    assert _tokens(region_tokens(GRID, FRAME, point=(10.0, 20.0))) == [2 * 3 + 1]
    assert _tokens(region_tokens(GRID, FRAME, point=(30.0, 40.0))) == [11]
    assert _tokens(region_tokens(GRID, FRAME, point=(0.0, 0.0))) == [0]
    # a box overlaps a footprint only with positive area: touching an edge does not count
    assert _tokens(region_tokens(GRID, FRAME, box=(10.0, 10.0, 20.0, 20.0))) == [4]
    assert _tokens(region_tokens(GRID, FRAME, box=(9.5, 10.0, 20.5, 20.0))) == [3, 4, 5]
    # partly outside the frame: clipped
    assert _tokens(region_tokens(GRID, FRAME, box=(-50.0, 35.0, 5.0, 99.0))) == [9]
    # a degenerate box: the token of its centre
    assert _tokens(region_tokens(GRID, FRAME, box=(12.0, 3.0, 12.0, 17.0))) == [4]
    whole = region_tokens(GRID, FRAME, box=(0.0, 0.0, 30.0, 40.0))
    assert whole.all() and whole.shape == (12,) and whole.dtype == bool


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"token": 1, "point": (1.0, 1.0)}, "exactly one"),
        ({"token": 12}, "0..11"),
        ({"token": -1}, "0..11"),
        ({"point": (31.0, 5.0)}, "x = 31.0 lies outside"),
        ({"point": (5.0, -0.1)}, "y = -0.1 lies outside"),
        ({"point": (np.nan, 1.0)}, "finite"),
        ({"box": (5.0, 5.0, 1.0, 9.0)}, "x0 <= x1"),
        ({"box": (30.0, 0.0, 40.0, 10.0)}, "does not overlap"),
        ({"box": (40.0, 0.0, 40.0, 10.0)}, "outside the frame"),
        ({"box": (1.0, 2.0, 3.0)}, "4 finite numbers"),
    ],
)
def test_region_tokens_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(FiresHereError, match=match):
        region_tokens(GRID, FRAME, **kwargs)


def _random_codes(rng: np.random.Generator, n_images: int, grid: tuple[int, int], d_sae: int) -> TokenCodes:
    z = rng.exponential(1.0, (n_images * grid[0] * grid[1], d_sae)).astype(np.float32)
    z[rng.random(z.shape) < 0.7] = 0
    return TokenCodes.from_dense(torch.from_numpy(z), grid)


def _brute_force(z_tl: np.ndarray, region_t: np.ndarray, effect_lh: np.ndarray, tasks: tuple) -> pd.DataFrame:
    rows = []
    n_tokens = len(region_t)
    for i in range(z_tl.shape[1]):
        zin, zout = z_tl[region_t, i].astype(np.float64), z_tl[~region_t, i].astype(np.float64)
        if not (zin > 0).any():
            continue
        row = {"latent": i, "mean_in": zin.mean(), "max_in": zin.max(), "mean_out": zout.mean()}
        row["specificity"] = row["mean_in"] / row["mean_out"] if row["mean_out"] > 0 else np.inf
        for h, task in enumerate(tasks):
            row[f"contribution_{task}"] = sum(z * effect_lh[i, h] / n_tokens for z in zin)
        rows.append(row)
    table = pd.DataFrame(rows)
    for task in tasks:
        table[f"share_{task}"] = table[f"contribution_{task}"] / table[f"contribution_{task}"].sum()
    return table


def test_what_fires_here_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    codes = _random_codes(rng, 3, GRID, 9)
    effect_lh = rng.normal(size=(9, 2))
    tasks = ("mass", "calcification")
    z_tl = codes.images(1, 2).dense()
    for region_t in (
        region_tokens(GRID, FRAME, box=(3.0, 12.0, 19.0, 29.0)),
        region_tokens(GRID, FRAME, token=5),
    ):
        table = what_fires_here(*image_entries(codes, 1), region_t, effect_lh, tasks, 12)
        expect = _brute_force(z_tl, region_t, effect_lh, tasks)
        expect = expect.sort_values(["mean_in", "latent"], ascending=[False, True], kind="stable")
        assert table["latent"].tolist() == expect["latent"].tolist()
        pd.testing.assert_frame_equal(table, expect.reset_index(drop=True)[table.columns], check_dtype=False)
        assert table["share_mass"].sum() == pytest.approx(1.0)
        assert table.attrs["n_in"] == region_t.sum()
        assert table.attrs["region_total_mass"] == pytest.approx(expect["contribution_mass"].sum())
        # the region's latent evidence is the per-token SAE evidence (minus decoder bias) over the region
        assert table["contribution_calcification"].sum() == pytest.approx(
            (z_tl[region_t].astype(np.float64) @ effect_lh[:, 1]).sum() / 12
        )
    ranked = what_fires_here(
        *image_entries(codes, 1), region_t, effect_lh, tasks, 12, rank_by="contribution_mass"
    )
    assert np.all(np.diff(ranked["contribution_mass"].abs().to_numpy()) <= 0)
    signed = what_fires_here(
        *image_entries(codes, 1),
        region_t,
        effect_lh,
        tasks,
        12,
        rank_by="contribution_mass",
        signed=True,
        top=2,
    )
    assert len(signed) == 2 and signed["contribution_mass"].iloc[0] == ranked["contribution_mass"].max()


def test_what_fires_here_edge_cases() -> None:
    # latent 0 only inside the region; latent 1 inside and outside; latent 2 only outside
    token, latent = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2])
    value = np.array([2.0, 1.0, 3.0, 5.0], dtype=np.float32)
    region = np.array([True, False, False])
    effect = np.array([[1.0], [2.0], [4.0]])
    table = what_fires_here(token, latent, value, region, effect, ("t",), 3)
    assert table["latent"].tolist() == [0, 1]
    assert table["specificity"].tolist() == [np.inf, 1.0 / 1.5]
    assert table["contribution_t"].tolist() == pytest.approx([2.0 / 3, 2.0 / 3])
    everywhere = what_fires_here(token, latent, value, np.ones(3, bool), effect, ("t",), 3)
    assert everywhere["mean_out"].isna().all() and everywhere["specificity"].isna().all()
    with pytest.raises(FiresHereError, match="no token"):
        what_fires_here(token, latent, value, np.zeros(3, bool), effect, ("t",), 3)
    with pytest.raises(FiresHereError, match="rank_by"):
        what_fires_here(token, latent, value, region, effect, ("t",), 3, rank_by="contribution_x")
    with pytest.raises(FiresHereError, match=r"0\.\.2"):
        what_fires_here(token, latent + 1, value, region, effect, ("t",), 3)
