"""Sparse token codes, latent statistics and top patches equal brute force on a tiny dense store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mammo_sae.analysis.codes import CodesError, TokenCodes, save_concatenation
from mammo_sae.analysis.latent_stats import latent_histograms, latent_summary
from mammo_sae.analysis.patches import TopPatches, patch_boxes

N_IMAGES, GRID, D_SAE = 7, (3, 4), 50
T = GRID[0] * GRID[1]
SILENT = (45, 46, 47, 48, 49)  # latents that never fire


def make_z(seed: int = 0, step: float | None = None) -> np.ndarray:
    """[N_IMAGES * T, D_SAE] float32 sparse codes (~10% non-zero) with exact ties, an fp16 underflow and
    silent latents; ``step`` rounds values to a grid so that ties are everywhere."""
    rng = np.random.default_rng(seed)
    z_tl = rng.exponential(1.0, (N_IMAGES * T, D_SAE)).astype(np.float32)
    z_tl *= rng.random(z_tl.shape) < 0.1
    if step is not None:
        z_tl = np.ceil(z_tl / step).astype(np.float32) * step
    z_tl[5:7] = 0
    z_tl[5, [2, 4, 6, 8, 10]] = 1.25  # a five-way tie in one token
    z_tl[5, 30] = 2.0
    z_tl[6, [1, 3]] = 3.0
    z_tl[6, [20, 21, 22]] = 0.5  # tie at a top-3 cut-off, below two larger entries
    z_tl[2 * T + 1, 7] = z_tl[2 * T + 5, 7] = 9.0  # same maximum twice in image 2
    z_tl[1 * T + 3, 9] = z_tl[4 * T + 0, 9] = 11.0  # same maximum in images 1 and 4
    z_tl[8, 30] = 1e-9  # underflows to 0 in float16
    z_tl[:, list(SILENT)] = 0
    return z_tl


def fp16(z_tl: np.ndarray) -> np.ndarray:
    return z_tl.astype(np.float16).astype(np.float32)


def brute_top_n(z_tl: np.ndarray, top_n: int) -> np.ndarray:
    """Each token's top_n largest positive entries, ties -> lower latent id, then the fp16 cast."""
    out_tl = np.zeros_like(z_tl)
    for r, z_l in enumerate(z_tl):
        order = np.lexsort((np.arange(len(z_l)), -z_l))[:top_n]
        pick = order[z_l[order] > 0]
        out_tl[r, pick] = z_l[pick]
    return fp16(out_tl)


@pytest.fixture
def z_tl() -> np.ndarray:
    return make_z()


@pytest.fixture
def codes(z_tl: np.ndarray) -> TokenCodes:
    return TokenCodes.from_dense(z_tl, GRID)


# --- TokenCodes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_torch", [False, True])
def test_from_dense_round_trips_to_the_fp16_cast(z_tl: np.ndarray, as_torch: bool) -> None:
    codes = TokenCodes.from_dense(torch.from_numpy(z_tl) if as_torch else z_tl, GRID)
    assert (codes.n_images, codes.tokens_per_image, codes.d_sae) == (N_IMAGES, T, D_SAE)
    np.testing.assert_array_equal(codes.dense(), fp16(z_tl))
    assert codes.nnz == int((fp16(z_tl) > 0).sum()) and z_tl[8, 30] > 0 == codes.dense()[8, 30]
    assert codes.value.dtype == np.float16 and (codes.value > 0).all()
    assert codes.latent.dtype == np.int32 and codes.indptr.dtype == np.int64
    for r in range(len(z_tl)):
        assert (np.diff(codes.latent[codes.indptr[r] : codes.indptr[r + 1]]) > 0).all()


def test_from_dense_takes_bfloat16_and_half_tensors(z_tl: np.ndarray) -> None:
    for dtype in (torch.bfloat16, torch.float16):
        z_low = torch.from_numpy(z_tl).to(dtype)
        codes = TokenCodes.from_dense(z_low, GRID)
        np.testing.assert_array_equal(codes.dense(), fp16(z_low.float().numpy()))


@pytest.mark.parametrize("top_n", [1, 3, 4, 10])
def test_top_n_matches_brute_force_with_the_tie_rule(z_tl: np.ndarray, top_n: int) -> None:
    codes = TokenCodes.from_dense(torch.from_numpy(z_tl), GRID, top_n=top_n)
    np.testing.assert_array_equal(codes.dense(), brute_top_n(z_tl, top_n))
    assert (np.diff(codes.indptr) <= top_n).all()
    if top_n == 3:
        np.testing.assert_array_equal(np.flatnonzero(codes.dense()[5]), [2, 4, 30])
        np.testing.assert_array_equal(np.flatnonzero(codes.dense()[6]), [1, 3, 20])


def test_from_dense_refuses_negative_nan_and_misshaped_codes(z_tl: np.ndarray) -> None:
    for value in (-0.5, np.nan):
        broken = z_tl.copy()
        broken[3, 3] = value
        with pytest.raises(CodesError, match=">= 0"):
            TokenCodes.from_dense(broken, GRID)
    with pytest.raises(CodesError, match="n_images"):
        TokenCodes.from_dense(z_tl[:-1], GRID)
    big = z_tl.copy()
    big[0, 0] = 1e6
    with pytest.raises(CodesError, match="float16 range"):
        TokenCodes.from_dense(big, GRID)


def test_slicing_and_concat_keep_images_intact(codes: TokenCodes, z_tl: np.ndarray) -> None:
    dense = fp16(z_tl)
    np.testing.assert_array_equal(codes.images(2, 5).dense(), dense[2 * T : 5 * T])
    np.testing.assert_array_equal(codes.image(6).dense(), dense[6 * T :])
    assert codes.images(3, 3).n_images == 0
    assert np.shares_memory(codes.image(1).value, codes.value)
    parts = [codes.images(0, 2), codes.images(2, 3), codes.images(3, 3), codes.images(3, 7)]
    joined = TokenCodes.concat(parts)
    for name in ("indptr", "latent", "value"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(codes, name))
    built = TokenCodes.concat(
        [TokenCodes.from_dense(z_tl[: 4 * T], GRID), TokenCodes.from_dense(z_tl[4 * T :], GRID)]
    )
    np.testing.assert_array_equal(built.dense(), dense)
    with pytest.raises(CodesError, match="outside"):
        codes.image(7)
    with pytest.raises(CodesError, match="grid"):
        TokenCodes.concat([codes, TokenCodes.from_dense(z_tl, (4, 3))])


def test_latent_maps_and_mean_latents_match_dense(codes: TokenCodes, z_tl: np.ndarray) -> None:
    dense_nhwl = fp16(z_tl).reshape(N_IMAGES, *GRID, D_SAE)
    np.testing.assert_array_equal(codes.latent_map(2, 7), dense_nhwl[2, :, :, 7])
    assert codes.latent_map(2, 7)[0, 1] == codes.latent_map(2, 7)[1, 1] == 9.0
    latents = [9, 3, 46, 9, 0]  # a duplicate and a silent latent
    maps = codes.image_latent_maps(4, latents)
    assert maps.shape == (5, *GRID) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps, np.moveaxis(dense_nhwl[4][:, :, latents], 2, 0))
    assert codes.image_latent_maps(0, []).shape == (0, *GRID)
    with pytest.raises(CodesError, match="latent ids"):
        codes.latent_map(0, D_SAE)
    expected = fp16(z_tl).reshape(N_IMAGES, T, D_SAE).mean(axis=1)
    np.testing.assert_allclose(codes.mean_latents(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip_stores_uint16_latents(codes: TokenCodes, tmp_path: Path, mmap: bool) -> None:
    codes.save(tmp_path)
    meta = json.loads((tmp_path / "codes.json").read_text())
    assert meta == {
        "format_version": 1,
        "grid": list(GRID),
        "d_sae": D_SAE,
        "n_images": N_IMAGES,
        "nnz": codes.nnz,
        "latent_dtype": "uint16",
    }
    assert np.load(tmp_path / "codes_latent.npy").dtype == np.uint16
    loaded = TokenCodes.load(tmp_path, mmap=mmap)
    assert isinstance(loaded.value, np.memmap) == mmap
    assert (loaded.grid, loaded.d_sae) == (GRID, D_SAE)
    np.testing.assert_array_equal(loaded.dense(), codes.dense())
    np.testing.assert_array_equal(loaded.mean_latents(), codes.mean_latents())
    assert not list(tmp_path.glob("*.tmp"))


def test_save_concatenation_streams_parts_into_the_same_files(codes: TokenCodes, tmp_path: Path) -> None:
    codes.save(tmp_path / "whole")
    parts = [codes.images(0, 2), codes.images(2, 3), codes.images(3, N_IMAGES)]
    totals = {"grid": GRID, "d_sae": D_SAE, "n_images": N_IMAGES, "nnz": codes.nnz}
    save_concatenation(tmp_path / "streamed", iter(parts), **totals)
    for name in ("codes_indptr.npy", "codes_latent.npy", "codes_value.npy", "codes.json"):
        assert (tmp_path / "streamed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    with pytest.raises(CodesError, match="announced"):
        save_concatenation(tmp_path / "short", iter(parts[:2]), **totals)
    assert not (tmp_path / "short" / "codes.json").exists(), "a failed write leaves no complete folder"


def test_wide_saes_store_int32_latents(tmp_path: Path) -> None:
    d_sae = 70_000
    z_tl = np.zeros((2 * T, d_sae), dtype=np.float32)
    z_tl[[0, 3, 3, T + 7], [65_535, 65_536, 69_999, 12]] = [1.0, 2.0, 3.0, 4.0]
    codes = TokenCodes.from_dense(z_tl, GRID)
    codes.save(tmp_path)
    assert np.load(tmp_path / "codes_latent.npy").dtype == np.int32
    loaded = TokenCodes.load(tmp_path)
    np.testing.assert_array_equal(loaded.latent, [65_535, 65_536, 69_999, 12])
    np.testing.assert_array_equal(loaded.dense(), z_tl)


def _corrupt_truncated(folder: Path) -> str:
    path = folder / "codes_value.npy"
    path.write_bytes(path.read_bytes()[:-40])
    return "codes_value.npy"


def _corrupt_indptr(folder: Path) -> str:
    indptr = np.load(folder / "codes_indptr.npy")
    indptr[10], indptr[20] = indptr[20], indptr[10]
    np.save(folder / "codes_indptr.npy", indptr)
    return "codes_indptr.npy"


def _corrupt_meta(key: str, value: object, names: str):
    def corrupt(folder: Path) -> str:
        meta = json.loads((folder / "codes.json").read_text())
        (folder / "codes.json").write_text(json.dumps(meta | {key: value}))
        return names

    return corrupt


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncated,
        _corrupt_indptr,
        _corrupt_meta("n_images", N_IMAGES - 1, "codes_indptr.npy"),
        _corrupt_meta("nnz", 3, "codes_latent.npy"),
        _corrupt_meta("d_sae", 10, "codes_latent.npy"),
        _corrupt_meta("latent_dtype", "int32", "codes_latent.npy"),
        _corrupt_meta("format_version", 2, "codes.json"),
    ],
)
def test_damaged_folders_raise_codes_error_naming_the_file(
    codes: TokenCodes, tmp_path: Path, corrupt, mmap: bool
) -> None:
    codes.save(tmp_path)
    name = corrupt(tmp_path)
    with pytest.raises(CodesError, match=name) as info:
        TokenCodes.load(tmp_path, mmap=mmap)
    assert "python -m mammo_sae.analyze" in str(info.value)


def test_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(CodesError, match=r"codes\.json is missing"):
        TokenCodes.load(tmp_path)


# --- latent statistics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_images", [3, 256])
def test_latent_summary_matches_dense(codes: TokenCodes, z_tl: np.ndarray, chunk_images: int) -> None:
    dense = fp16(z_tl).astype(np.float64)
    fired = dense > 0
    summary = latent_summary(codes, chunk_images=chunk_images)
    assert list(summary.index) == list(range(D_SAE)) and summary.index.name == "latent"
    np.testing.assert_allclose(summary["frequency"], fired.mean(axis=0))
    np.testing.assert_allclose(summary["images"], fired.reshape(N_IMAGES, T, D_SAE).any(axis=1).mean(axis=0))
    np.testing.assert_allclose(summary["mean"], dense.mean(axis=0), rtol=1e-12)
    active = np.where(fired.any(axis=0), dense.sum(axis=0) / np.maximum(fired.sum(axis=0), 1), 0.0)
    np.testing.assert_allclose(summary["mean_active"], active, rtol=1e-12)
    np.testing.assert_array_equal(summary["max"], dense.max(axis=0).astype(np.float32))
    assert (summary.loc[list(SILENT)] == 0).all().all()


@pytest.mark.parametrize("chunk_images", [2, 256])
def test_latent_histograms_match_numpy(codes: TokenCodes, z_tl: np.ndarray, chunk_images: int) -> None:
    dense = fp16(z_tl)
    maxima = latent_summary(codes)["max"].to_numpy()
    hist = latent_histograms(codes, maxima, bins=8, chunk_images=chunk_images)
    assert hist.shape == (D_SAE, 8) and hist.dtype == np.int64
    for latent in range(D_SAE):
        values = dense[:, latent][dense[:, latent] > 0]
        expected = np.histogram(values, bins=8, range=(0, maxima[latent]))[0] if len(values) else np.zeros(8)
        np.testing.assert_array_equal(hist[latent], expected)
    assert hist.sum() == codes.nnz and (hist[list(SILENT)] == 0).all()
    with pytest.raises(CodesError, match="above its maximum"):
        latent_histograms(codes, maxima * 0.5)


# --- top patches -----------------------------------------------------------------------------------------


def brute_top_patches(dense_tl: np.ndarray, n: int) -> list[tuple[int, int, int, float]]:
    """(latent, image, token, value) rows: each image's first maximal token, value desc then image asc."""
    dense_nlt = dense_tl.reshape(N_IMAGES, T, D_SAE).transpose(0, 2, 1)
    rows = []
    for latent in range(D_SAE):
        entries = []
        for image in range(N_IMAGES):
            token = int(np.argmax(dense_nlt[image, latent]))
            if dense_nlt[image, latent, token] > 0:
                entries.append((-float(dense_nlt[image, latent, token]), image, token))
        rows += [(latent, image, token, -v) for v, image, token in sorted(entries)[:n]]
    return rows


@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("step", [None, 0.5])
def test_top_patches_match_brute_force_in_any_chunking(n: int, step: float | None) -> None:
    z_tl = make_z(seed=1, step=step)
    codes = TokenCodes.from_dense(z_tl, GRID)
    expected = brute_top_patches(fp16(z_tl), n)
    for cuts in ([(0, 7)], [(0, 2), (2, 3), (3, 7)], [(5, 7), (0, 1), (3, 5), (1, 3)]):
        top = TopPatches(D_SAE, n=n)
        for start, stop in cuts:
            top.update(codes.images(start, stop), image_offset=start)
        result = top.result()
        got = list(zip(result["latent"], result["image"], result["token"], result["value"], strict=True))
        assert got == expected
        np.testing.assert_array_equal(result["row"], result["token"] // GRID[1])
        np.testing.assert_array_equal(result["col"], result["token"] % GRID[1])
        assert (result.groupby("latent")["rank"].apply(lambda r: list(r) == list(range(len(r))))).all()
    dtypes = {"latent": "int32", "rank": "int16", "image": "int64", "token": "int32", "value": "float32"}
    assert {k: str(result[k].dtype) for k in dtypes} == dtypes
    assert result.query("latent == 7 and image == 2")["token"].tolist() == [1]
    far = TopPatches(D_SAE, n=n)  # image ids too large for the packed sort key: the lexsort path
    far.update(codes.images(4, 7), image_offset=2**50 + 4)
    far.update(codes.images(0, 4), image_offset=2**50)
    shifted = far.result().assign(image=lambda f: f["image"] - 2**50)
    assert shifted.equals(result)


def test_patch_boxes_hand_values() -> None:
    boxes = patch_boxes(np.array([1, 2]), np.array([2, 1]), grid=(3, 4), frame_size=(300, 400))
    np.testing.assert_allclose(boxes, [[200, 100, 300, 200], [100, 200, 200, 300]])
    odd = patch_boxes(np.array([2]), np.array([1]), grid=(3, 4), frame_size=(100, 90))
    np.testing.assert_allclose(odd, [[22.5, 200 / 3, 45, 100]])
