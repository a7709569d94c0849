"""The phantom pixel fingerprint: equal for another CPU's rounding, different for anything drawn differently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.phantom import PhantomConfig, generate_dataset, load_manifest
from mammo_sae.data.phantom import pixel_fingerprint as fingerprint
from mammo_sae.data.phantom.dataset import image_relpath
from mammo_sae.data.phantom.plan import plan_dataset

CONFIG = PhantomConfig(studies=2, seed=21, height=256, width=208, mass_rate=0.5, calcification_rate=0.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fingerprint") / "ds"
    generate_dataset(root, CONFIG, workers=1)
    return root


def decoded(root: Path) -> list[np.ndarray]:
    return [read_mammogram(root / image_relpath(plan)).stored for plan in plan_dataset(CONFIG)]


def encoded(images: list[np.ndarray]) -> str:
    return fingerprint.encode(np.stack([fingerprint.block_means(s) for s in images]))


def test_block_means_cover_the_image_in_a_grid() -> None:
    stored_hw = np.arange(10 * 9, dtype=np.uint16).reshape(10, 9)
    means_gg = fingerprint.block_means(stored_hw)
    assert means_gg.shape == (fingerprint.GRID, fingerprint.GRID)
    assert means_gg[0, 0] == pytest.approx(stored_hw[:3, :3].mean())  # 10 rows split 3, 3, 2, 2
    assert means_gg[-1, -1] == pytest.approx(stored_hw[8:, 7:].mean())
    assert np.average(means_gg, weights=np.outer([3, 3, 2, 2], [3, 2, 2, 2])) == pytest.approx(
        stored_hw.mean()
    )
    assert np.array_equal(fingerprint.decode(fingerprint.encode(means_gg[None])), means_gg[None].astype("f4"))


def test_the_manifest_fingerprint_is_the_block_means_of_the_written_files(dataset: Path) -> None:
    recorded = load_manifest(dataset)["pixel_fingerprint"]
    assert recorded["method"] == fingerprint.METHOD
    expected_ngg = np.stack([fingerprint.block_means(s) for s in decoded(dataset)])
    assert np.allclose(fingerprint.decode(recorded["value"]), expected_ngg, atol=1e-2)


def test_rounding_agrees_and_a_drawn_speck_does_not(dataset: Path) -> None:
    images = decoded(dataset)
    original = fingerprint.encode(np.stack([fingerprint.block_means(s) for s in images]))
    rng = np.random.default_rng(0)
    rounded = []
    for stored in images:  # another CPU: one stored value off on 0.1% of the pixels (measured: 0.02%)
        moved = stored.astype(np.int64)
        where = rng.random(moved.shape) < 1e-3
        moved[where] += rng.choice([-1, 1], size=int(where.sum()))
        rounded.append(np.clip(moved, 0, 65535))
    assert fingerprint.agree(
        original, fingerprint.encode(np.stack([fingerprint.block_means(s) for s in rounded]))
    )
    speck = [s.astype(np.int64) for s in images]
    speck[1][100:103, 60:63] += 400  # a 3x3 calcification speck more on one view: within what CPUs do
    one_view = fingerprint.compare(original, encoded(speck))
    assert one_view.largest == pytest.approx(9 * 400 / (64 * 52), rel=1e-3)
    assert one_view.moved_share == pytest.approx(1 / (len(images) * fingerprint.GRID**2))
    assert fingerprint.agree(original, encoded(speck)), "one block of one image: only the checksum tells"
    for stored in speck:  # a generator that draws a speck more on every view
        stored[100:103, 60:63] += 400
    every_view = fingerprint.compare(original, encoded(speck))
    assert every_view.moved_share == pytest.approx(1 / fingerprint.GRID**2)
    assert not fingerprint.agree(original, encoded(speck))
    brighter = encoded(
        [s.astype(np.int64) + 1 for s in images]
    )  # another contrast: every block moves a little
    assert fingerprint.compare(original, brighter).mean == pytest.approx(1.0, abs=1e-3)
    assert not fingerprint.agree(original, brighter)
    assert not fingerprint.agree(
        original, fingerprint.encode(np.stack([fingerprint.block_means(s) for s in images[:-1]]))
    )
    assert not fingerprint.agree(original, None) and not fingerprint.agree(original, "not base64!")


def test_same_pixels_takes_the_checksum_then_the_fingerprint(dataset: Path) -> None:
    manifest = load_manifest(dataset)
    record = {"pixel_checksum": manifest["pixel_checksum"]["value"], "pixel_fingerprint": None}
    assert fingerprint.same_pixels(manifest, record)
    other_cpu = {"pixel_checksum": "0" * 64, "pixel_fingerprint": manifest["pixel_fingerprint"]["value"]}
    assert fingerprint.same_pixels(manifest, other_cpu)
    older_record = {"pixel_checksum": "0" * 64}  # a bundle written before fingerprints: the checksum decides
    assert not fingerprint.same_pixels(manifest, older_record)


@pytest.mark.slow
def test_numpy_on_another_instruction_set_makes_the_same_fingerprint(dataset: Path, tmp_path: Path) -> None:
    """The generator under numpy's baseline code paths (as on an older CPU) against this CPU's own."""
    from numpy._core import _multiarray_umath as umath

    extra = [name for name in umath.__cpu_dispatch__ if umath.__cpu_features__.get(name)]
    if not extra:
        pytest.skip("this CPU has no numpy code path beyond the baseline")
    script = (
        "import sys; from pathlib import Path; from mammo_sae.data.phantom import generate_dataset, PhantomConfig; "
        f"generate_dataset(Path(sys.argv[1]), PhantomConfig(**{json.dumps(CONFIG.to_dict())}), workers=1)"
    )
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(extra)}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "baseline")], env=env, check=True, timeout=300
    )
    here, baseline = load_manifest(dataset), load_manifest(tmp_path / "baseline")
    record = {
        "pixel_checksum": here["pixel_checksum"]["value"],
        "pixel_fingerprint": here["pixel_fingerprint"]["value"],
    }
    if here["pixel_checksum"] == baseline["pixel_checksum"]:
        pytest.skip("numpy's code paths made the same pixels on this CPU: nothing to tolerate")
    assert fingerprint.same_pixels(baseline, record)
    difference = fingerprint.compare(
        here["pixel_fingerprint"]["value"], baseline["pixel_fingerprint"]["value"]
    )
    assert difference.mean < fingerprint.MEAN_TOLERANCE / 2, difference.describe()
    assert difference.moved_share < fingerprint.MOVED_SHARE / 2, difference.describe()
