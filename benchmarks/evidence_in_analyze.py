"""What the evidence, region and profile steps add to `analyze` at the real geometry, as a ratio in one run.

The per-image work these steps add to an analysis (tissue planes of the frame in the data workers, each
token's evidence from the feature map, the region labels, the location profiles, token AP per category,
the per-image region shares, and per run the shortcut audit over every image's mean latents) is timed on
real-geometry arrays (1520 x 912 frames, a 48 x 29 x 2048 feature map, 16,384 latents, ~16 active latents
per token), beside the B5 forward pass of the same images, the floor under analyze's own cost per image.
The ratio is an upper bound on the share these steps add (analyze costs more than the forward alone).

    .venv/bin/python benchmarks/evidence_in_analyze.py [--images 2] [--split-images 4000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mammo_sae.analysis.codes import TokenCodes  # noqa: E402
from mammo_sae.analysis.evidence_regions import image_region_table  # noqa: E402
from mammo_sae.analysis.interventions import HeadLinear  # noqa: E402
from mammo_sae.analysis.profiles import location_profiles, token_aps  # noqa: E402
from mammo_sae.analysis.regions import region_names, split_regions  # noqa: E402
from mammo_sae.analysis.shortcuts import shortcut_audit  # noqa: E402
from mammo_sae.analysis.stream import token_evidence  # noqa: E402
from mammo_sae.data.breast_mask import tissue_bits, token_fractions  # noqa: E402

FRAME, GRID, D_IN, D_SAE, ACTIVE = (1520, 912), (48, 29), 2048, 16384, 16
CATEGORIES = ("mass", "calcification")


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def phantom_like_frame(rng: np.random.Generator) -> np.ndarray:
    """A 1520 x 912 uint8 frame with a breast-shaped bright region, air and a small bright label."""
    yy, xx = np.mgrid[0 : FRAME[0], 0 : FRAME[1]]
    breast = ((xx / 800.0) ** 2 + ((yy - 760) / 700.0) ** 2) < 1.0
    frame = np.where(breast, 90 + rng.integers(0, 120, FRAME), rng.integers(0, 20, FRAME)).astype(np.uint8)
    frame[60:90, 700:820] = 250
    return frame


def random_codes(rng: np.random.Generator, n_images: int) -> TokenCodes:
    tokens = n_images * GRID[0] * GRID[1]
    indptr = np.arange(tokens + 1, dtype=np.int64) * ACTIVE
    latent = rng.integers(0, D_SAE, tokens * ACTIVE).astype(np.uint16)
    value = rng.exponential(1.0, tokens * ACTIVE).astype(np.float16) + np.float16(0.01)
    return TokenCodes(grid=GRID, d_sae=D_SAE, indptr=indptr, latent=latent, value=value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2, help="images through the B5 forward and the steps")
    parser.add_argument("--split-images", type=int, default=4000, help="images of the shortcut audit's split")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    n = args.images

    backbone = timm.create_model("efficientnet_b5", pretrained=False, num_classes=0, global_pool="").eval()
    pixels = torch.randn(n, 3, *FRAME)
    with torch.inference_mode():
        backbone.forward_features(pixels[:1])  # warm-up
        forward_s = best_of(lambda: backbone.forward_features(pixels), repeats=2) / n
        fmap = backbone.forward_features(pixels)
    assert fmap.shape[1:] == (D_IN, *GRID), fmap.shape
    heads_w_hd = torch.randn(2, D_IN, dtype=torch.float64) / D_IN**0.5

    frames = [phantom_like_frame(rng) for _ in range(n)]
    tissue_s = best_of(lambda: [token_fractions(tissue_bits(f), GRID) for f in frames]) / n
    evidence_s = best_of(lambda: token_evidence(fmap, heads_w_hd)) / n

    codes = random_codes(rng, n)
    tissue_n3t = np.stack([token_fractions(tissue_bits(f), GRID).reshape(3, -1) for f in frames]).astype(
        np.float16
    )
    boxes = pd.DataFrame(
        {
            "position": np.arange(n),
            "kind": ["mass"] * n,
            "frame_x0": 300.0,
            "frame_y0": 600.0,
            "frame_x1": 420.0,
            "frame_y1": 700.0,
        }
    )
    names = region_names(CATEGORIES)
    labels_nt = split_regions(tissue_n3t, boxes, CATEGORIES, GRID, FRAME)
    evidence_nht = token_evidence(fmap, heads_w_hd)
    box_labels = [names.index(f"box:{c}") for c in CATEGORIES]
    per_image = {
        "regions": best_of(lambda: split_regions(tissue_n3t, boxes, CATEGORIES, GRID, FRAME)) / n,
        "profiles": best_of(lambda: location_profiles(codes, labels_nt, names)) / n,
        "token AP": best_of(lambda: token_aps(codes, labels_nt, box_labels)) / n,
        "region shares": best_of(lambda: image_region_table(evidence_nht, labels_nt, names, ("mass", "x")))
        / n,
    }

    split = args.split_images
    zbar_nl = rng.exponential(0.01, (split, D_SAE)).astype(np.float32)
    head = HeadLinear(("mass", "calcification"), rng.standard_normal((D_SAE, 2)), np.zeros(2))
    labels = {t: rng.integers(0, 2, split) for t in head.tasks}
    flags = pd.Series(np.where(rng.random(D_SAE) < 0.15, "off_breast", ""), index=np.arange(D_SAE))
    audit_s = best_of(lambda: shortcut_audit(zbar_nl, head, labels, flags), repeats=1) / split

    added = tissue_s + evidence_s + sum(per_image.values()) + audit_s
    print(
        f"real geometry: frame {FRAME[0]}x{FRAME[1]}, grid {GRID[0]}x{GRID[1]}, d_sae {D_SAE:,}, {ACTIVE} codes/token"
    )
    print(f"B5 forward per image (the floor of analyze's own cost): {1000 * forward_s:9.1f} ms")
    print(f"tissue planes + token fractions (data workers):        {1000 * tissue_s:9.2f} ms")
    print(f"token evidence from the feature map:                   {1000 * evidence_s:9.2f} ms")
    for name, seconds in per_image.items():
        print(f"{name + ':':<55}{1000 * seconds:9.2f} ms")
    print(f"shortcut audit, per image of a {split:,}-image split:     {1000 * audit_s:9.2f} ms")
    print(
        f"added per image: {1000 * added:.1f} ms = {100 * added / forward_s:.2f}% of the B5 forward (target <= 25%)"
    )


if __name__ == "__main__":
    main()
