"""Region labels: their speed, and how well the burned-in marker detector finds the phantoms' markers.

Three measurements, printed (no verdicts on time):

1. ``tissue_bits + token_fractions`` per model frame (1520 x 912, grid 48 x 29), on phantom frames;
2. ``split_regions + location_profiles + token_aps`` per image on synthetic codes at the real geometry
   (48 x 29 tokens, 16,384 latents, ~16 active latents per token);
3. the marker detector on a phantom set: precision and recall of its boxes against the truth markers
   (phantom_truth.csv, mapped into the frame by each image's FrameTransform), and the share of images
   without a marker on which it finds one.

    .venv/bin/python benchmarks/regions.py [--studies 40] [--seed 31] [--images 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mammo_sae.analysis.codes import TokenCodes  # noqa: E402
from mammo_sae.analysis.profiles import location_profiles, token_aps  # noqa: E402
from mammo_sae.analysis.regions import region_names, split_regions  # noqa: E402
from mammo_sae.data.breast_mask import breast_mask, detect_markers, tissue_bits, token_fractions  # noqa: E402
from mammo_sae.data.frame_policy import FramePolicy, mapped_frame  # noqa: E402
from mammo_sae.data.phantom import TRUTH_CSV, PhantomConfig, generate_dataset  # noqa: E402
from mammo_sae.data.vindr import VindrIndex  # noqa: E402

REAL_FRAME, REAL_GRID, REAL_D_SAE = (1520, 912), (48, 29), 16384
DEMO_FRAME = (640, 384)
BOX = ["xmin", "ymin", "xmax", "ymax"]
MATCH_IOU = 0.3


def make_phantoms(out: Path, studies: int, seed: int, size: tuple[int, int] = (896, 720)) -> Path:
    """A phantom set with markers on about half of its images (confounder rate 0.5, as the demo's)."""
    config = PhantomConfig(
        studies=studies, seed=seed, height=size[0], width=size[1], confounder_rate=0.5, test_fraction=1.0
    )
    generate_dataset(out, config, workers=1)
    return out


def phantom_frames(root: Path, frame_size: tuple[int, int]):
    """(image_id, frame pixels, truth marker boxes in frame pixels) of every image of a phantom root."""
    index = VindrIndex.load(root)
    policy = FramePolicy.resolve("auto", index, frame_size)
    records, _ = policy.select(index, "all")
    truth = pd.read_csv(Path(root) / TRUTH_CSV, dtype={"image_id": str})
    markers = truth[truth["kind"] == "marker"]
    for record in records:
        mapped = mapped_frame(record, frame_size)
        mine = markers.loc[markers["image_id"] == record.image_id, BOX].to_numpy(np.float64)
        yield record.image_id, mapped.pixels, mapped.transform.boxes_to_frame(mine)


def _matches(found_d4: np.ndarray, truth_t4: np.ndarray) -> np.ndarray:
    """bool [d, t]: IoU >= MATCH_IOU, or either box's centre inside the other."""
    if len(found_d4) == 0 or len(truth_t4) == 0:
        return np.zeros((len(found_d4), len(truth_t4)), dtype=bool)
    a, b = found_d4[:, None, :], truth_t4[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    iou = iw * ih / (area(a) + area(b) - iw * ih)

    def centre_in(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
        cx, cy = (inner[..., 0] + inner[..., 2]) / 2, (inner[..., 1] + inner[..., 3]) / 2
        return (cx >= outer[..., 0]) & (cx <= outer[..., 2]) & (cy >= outer[..., 1]) & (cy <= outer[..., 3])

    return (iou >= MATCH_IOU) | centre_in(a, b) | centre_in(b, a)


@dataclass(frozen=True)
class MarkerScore:
    images: int
    with_marker: int
    truth_markers: int
    detections: int
    true_detections: int
    found_markers: int
    images_without_marker_with_detection: int

    @property
    def precision(self) -> float:
        return self.true_detections / self.detections if self.detections else float("nan")

    @property
    def recall(self) -> float:
        return self.found_markers / self.truth_markers if self.truth_markers else float("nan")

    @property
    def false_positive_rate(self) -> float:
        clean = self.images - self.with_marker
        return self.images_without_marker_with_detection / clean if clean else float("nan")

    def line(self) -> str:
        return (
            f"{self.images} images ({self.with_marker} with a marker): precision {self.precision:.3f} "
            f"({self.true_detections}/{self.detections} boxes), recall {self.recall:.3f} "
            f"({self.found_markers}/{self.truth_markers}), false-positive rate on images without a marker "
            f"{self.false_positive_rate:.3f} ({self.images_without_marker_with_detection}/"
            f"{self.images - self.with_marker})"
        )


def measure_markers(root: Path, frame_size: tuple[int, int]) -> MarkerScore:
    """The detector's boxes against the truth markers of every image of a phantom root."""
    counts = dict.fromkeys(
        ("images", "with_marker", "truth", "found", "true", "markers_found", "clean_with_detection"), 0
    )
    for _, pixels, truth in phantom_frames(root, frame_size):
        found = detect_markers(pixels, breast_mask(pixels))
        hit = _matches(found, truth)
        counts["images"] += 1
        counts["with_marker"] += int(len(truth) > 0)
        counts["truth"] += len(truth)
        counts["found"] += len(found)
        counts["true"] += int(hit.any(axis=1).sum())
        counts["markers_found"] += int(hit.any(axis=0).sum())
        counts["clean_with_detection"] += int(len(truth) == 0 and len(found) > 0)
    return MarkerScore(
        counts["images"],
        counts["with_marker"],
        counts["truth"],
        counts["found"],
        counts["true"],
        counts["markers_found"],
        counts["clean_with_detection"],
    )


def time_tissue(root: Path, frames: int = 20, repeat: int = 3) -> tuple[float, float]:
    """Median and fastest ms of tissue_bits + token_fractions on a real-size frame."""
    pixels = [p for _, p, _ in _take(phantom_frames(root, REAL_FRAME), frames)]
    times = []
    for _ in range(repeat):
        for frame in pixels:
            start = time.perf_counter()
            token_fractions(tissue_bits(frame), REAL_GRID)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * min(times)


def _take(iterator, n: int):
    for k, item in enumerate(iterator):
        if k >= n:
            return
        yield item


def synthetic_codes(n_images: int, seed: int = 0, per_token: int = 16) -> TokenCodes:
    """Codes at the real geometry: ~per_token active latents per token (skewed latent frequencies)."""
    rng = np.random.default_rng(seed)
    rows = n_images * REAL_GRID[0] * REAL_GRID[1]
    weights = 1.0 / np.arange(1, REAL_D_SAE + 1) ** 0.8
    latent = rng.choice(REAL_D_SAE, size=(rows, per_token), p=weights / weights.sum())
    latent.sort(axis=1)
    keep = np.ones_like(latent, dtype=bool)
    keep[:, 1:] = latent[:, 1:] != latent[:, :-1]
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    value = rng.gamma(2.0, 0.5, size=int(indptr[-1])).astype(np.float16) + np.float16(0.01)
    return TokenCodes(REAL_GRID, REAL_D_SAE, indptr, latent[keep].astype(np.int32), value)


def synthetic_tissue(n_images: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """[n, 3, T] tissue shares of an elliptical breast against the left edge, and a few boxes per image."""
    rng = np.random.default_rng(seed)
    gh, gw = REAL_GRID
    rr, cc = np.mgrid[0:gh, 0:gw]
    tissue = np.zeros((n_images, 3, gh * gw), dtype=np.float16)
    rows = []
    for i in range(n_images):
        radius = rng.uniform(0.7, 1.0) * gw
        inside = ((cc / radius) ** 2 + ((rr - gh / 2) / (gh / 2)) ** 2) <= 1
        rim = inside & (((cc / radius) ** 2 + ((rr - gh / 2) / (gh / 2)) ** 2) > 0.85)
        tissue[i, 0], tissue[i, 1] = inside.ravel(), rim.ravel()
        for kind in ("mass", "calcification", "marker"):
            if rng.random() < 0.4:
                x0, y0 = rng.uniform(0, 800), rng.uniform(0, 1400)
                size = rng.uniform(20, 120)
                rows.append((i, kind, x0, y0, x0 + size, y0 + size))
    boxes = pd.DataFrame(rows, columns=["position", "kind", "frame_x0", "frame_y0", "frame_x1", "frame_y1"])
    return tissue, boxes


def time_profiles(n_images: int) -> dict[str, float]:
    """ms per image of each step on synthetic codes at the real geometry."""
    categories = ("mass", "calcification")
    names = region_names(categories)
    codes = synthetic_codes(n_images)
    tissue, boxes = synthetic_tissue(n_images)
    out = {}
    start = time.perf_counter()
    labels = split_regions(tissue, boxes, categories, REAL_GRID, REAL_FRAME)
    out["split_regions"] = time.perf_counter() - start
    start = time.perf_counter()
    location_profiles(codes, labels, names)
    out["location_profiles"] = time.perf_counter() - start
    start = time.perf_counter()
    token_aps(codes, labels, [names.index(f"box:{c}") for c in categories])
    out["token_aps (2 categories)"] = time.perf_counter() - start
    return {k: 1000 * v / n_images for k, v in out.items()} | {"nnz per image": codes.nnz / n_images}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40, help="phantom studies (4 images each)")
    parser.add_argument("--seed", type=int, default=31, help="phantom seed")
    parser.add_argument("--size", default="896x720", help="phantom size HxW (the demo's: 896x720)")
    parser.add_argument("--images", type=int, default=200, help="synthetic images for the profile timing")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = make_phantoms(Path(tmp) / "phantoms", args.studies, args.seed, size)
        print(
            f"phantoms: {args.studies} studies x 4 views, seed {args.seed}, {args.size}, confounder rate 0.5"
        )
        median, fastest = time_tissue(root)
        print(
            f"tissue_bits + token_fractions, 1520x912 frame, grid 48x29: {median:.1f} ms/frame median, "
            f"{fastest:.1f} fastest"
        )
        for frame_size in (DEMO_FRAME, REAL_FRAME):
            score = measure_markers(root, frame_size)
            print(f"marker detector at {frame_size[0]}x{frame_size[1]}: {score.line()}")
    for step, value in time_profiles(args.images).items():
        unit = "" if step.startswith("nnz") else " ms/image"
        print(f"{step} ({args.images} images, 48x29 tokens, 16384 latents): {value:.2f}{unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
