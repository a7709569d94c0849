"""Passes over memory-mapped analysis files keep the resident set bounded and the results unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.interventions import HeadLinear, shortcut_logits
from mammo_sae.analysis.latent_stats import latent_histograms, latent_summary
from mammo_sae.core.page_release import release_pages

SMAPS = Path("/proc/self/smaps")
needs_smaps = pytest.mark.skipif(not SMAPS.is_file(), reason="needs Linux /proc/self/smaps")
MIB = 1 << 20


def resident_mib(folder: Path) -> float:
    """Resident MiB of this process's mappings of files under ``folder``."""
    total, inside = 0, False
    for line in SMAPS.read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0]:  # a mapping's first line: address range ...
            inside = len(head) >= 6 and head[-1].startswith(str(folder.resolve()))
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total / 1024


def random_codes(n_images: int, seed: int = 0) -> TokenCodes:
    """Codes of ``n_images`` images on a 6x5 grid, 300 latents, ~20% of them firing per token."""
    rng = np.random.default_rng(seed)
    z_tl = rng.exponential(1.0, (n_images * 30, 300)).astype(np.float32)
    z_tl *= rng.random(z_tl.shape) < 0.2
    return TokenCodes.from_dense(z_tl, grid=(6, 5))


@needs_smaps
def test_released_pages_leave_the_resident_set_and_keep_their_data(tmp_path: Path) -> None:
    path = tmp_path / "rows.npy"
    written = np.lib.format.open_memmap(path, "w+", np.float32, (64, MIB // 16))  # 16 MiB
    for i in range(0, 64, 8):
        written[i : i + 8] = i
        release_pages(written)  # a written shared page is kept by the file
    assert resident_mib(tmp_path) < 1
    written.flush()
    del written
    mapped = np.load(path, mmap_mode="r")
    assert float(mapped.sum(dtype=np.float64)) == 8 * (MIB // 16) * sum(range(0, 64, 8))
    assert resident_mib(tmp_path) > 12  # every page was touched
    release_pages(np.asarray(mapped)[3:5])  # a plain view releases the map behind it
    assert resident_mib(tmp_path) < 1
    assert np.all(np.asarray(mapped[56]) == 56)

    private = np.load(path, mmap_mode="c")
    private[0] = -1.0
    release_pages(private, np.zeros(3))  # copy-on-write maps and in-memory arrays are left alone
    assert float(private[0, 0]) == -1.0


def test_entry_budget_chunks_give_the_one_pass_statistics() -> None:
    codes = random_codes(9)
    whole = latent_summary(codes)
    budget = codes.nnz // 7  # several images per chunk, never all of them
    chunked = latent_summary(codes, max_entries=budget)
    pd.testing.assert_frame_equal(chunked, whole)  # fp16 values: their float64 sums are exact in any order
    maxima = whole["max"].to_numpy()
    np.testing.assert_array_equal(
        latent_histograms(codes, maxima, max_entries=budget), latent_histograms(codes, maxima)
    )
    one_image = latent_summary(codes, max_entries=1)  # a budget below one image still moves on
    np.testing.assert_array_equal(one_image["frequency"], whole["frequency"])


@needs_smaps
def test_passes_over_mapped_codes_and_mean_latents_do_not_keep_them_resident(tmp_path: Path) -> None:
    random_codes(1500).save(tmp_path / "codes")  # 2.7 M entries, ~11 MiB
    codes = TokenCodes.load(tmp_path / "codes")
    assert resident_mib(tmp_path) < 1, "loading checks every page, then gives them back"
    summary = latent_summary(codes, max_entries=codes.nnz // 10)
    latent_histograms(codes, summary["max"].to_numpy(), max_entries=codes.nnz // 10)
    assert resident_mib(tmp_path) < 2.5, "at most one chunk of the codes may stay resident"

    zbar_nl = np.random.default_rng(1).random((4000, 1000), dtype=np.float32)  # ~15 MiB
    np.save(tmp_path / "mean_latents.npy", zbar_nl)
    heads = HeadLinear(("mass",), np.random.default_rng(2).normal(size=(1000, 1)), np.zeros(1))
    mapped = np.load(tmp_path / "mean_latents.npy", mmap_mode="r")
    logits = shortcut_logits(mapped, heads)
    assert resident_mib(tmp_path) < 3
    np.testing.assert_array_equal(logits, shortcut_logits(zbar_nl, heads))
