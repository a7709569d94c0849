"""Time evidence maps and "what fires here" at the real Mammo-CLIP geometry (budget: 50 ms each).

Builds seeded data shaped like a real bundle: a 48 x 29 token grid on a 1520 x 912 frame, 16,384 latents,
2 heads, ~16 active latents per token (random codes), and per-token evidence [images, heads, tokens]
float32 written to a memory-mapped ``evidence.npy``. Times (median of repeats, one view = one image):

  (a) one view's evidence map: its row of the stored evidence, reshaped to the grid and upsampled to the frame;
  (b) one latent's evidence map from the codes: its token map times its effect / N, upsampled to the frame;
  (c) what_fires_here for one point (region_tokens + image_entries + the table);
  (d) what_fires_here for a box (about 8 x 5 tokens).

It is a report: the exit code is 0 whether or not the budgets are met.

    .venv/bin/python benchmarks/evidence.py [--images 4000 --code-images 64 --active 16 --repeat 21]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mammo_sae.analysis.codes import TokenCodes  # noqa: E402
from mammo_sae.analysis.fires_here import image_entries, region_tokens, what_fires_here  # noqa: E402
from mammo_sae.analysis.localisation import upsample_map  # noqa: E402

GRID, FRAME, D_SAE, TASKS = (48, 29), (1520, 912), 16384, ("mass", "calcification")
BUDGET_MS = 50.0


def random_codes(images: int, active: int, seed: int = 0) -> TokenCodes:
    """CSR codes with ``active`` distinct random latents per token and exponential values."""
    rng = np.random.default_rng(seed)
    tokens = images * GRID[0] * GRID[1]
    latent_tk = np.sort(rng.random((tokens, D_SAE // 64)).argsort(axis=1)[:, :active], axis=1)
    latent_tk = latent_tk * 64 + rng.integers(0, 64, latent_tk.shape)  # spread over all latents, distinct
    value = rng.exponential(1.0, tokens * active).astype(np.float16) + np.float16(0.01)
    indptr = np.arange(tokens + 1, dtype=np.int64) * active
    return TokenCodes(GRID, D_SAE, indptr, latent_tk.reshape(-1).astype(np.uint16), value)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="images in the stored evidence file")
    parser.add_argument("--code-images", type=int, default=64, help="images of random codes")
    parser.add_argument("--active", type=int, default=16, help="active latents per token")
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    n_tokens = GRID[0] * GRID[1]
    effect_lh = rng.normal(size=(D_SAE, len(TASKS))) * 0.05
    codes = random_codes(args.code_images, args.active)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evidence.npy"
        stored = np.lib.format.open_memmap(path, "w+", np.float32, (args.images, len(TASKS), n_tokens))
        for start in range(0, args.images, 256):
            stop = min(start + 256, args.images)
            stored[start:stop] = rng.normal(size=(stop - start, len(TASKS), n_tokens)) * 1e-3
        stored.flush()
        del stored
        evidence_nht = np.load(path, mmap_mode="r")
        picks = iter(np.random.default_rng(2).integers(0, args.images, 10_000))
        code_picks = iter(np.random.default_rng(3).integers(0, args.code_images, 10_000))

        def view_map() -> np.ndarray:
            i = int(next(picks))
            return upsample_map(np.asarray(evidence_nht[i, 1], np.float32).reshape(GRID), FRAME)

        def latent_map() -> np.ndarray:
            i = int(next(code_picks))
            latent = int(codes.image(i).latent[0])
            token_map = codes.latent_map(i, latent).astype(np.float64) * effect_lh[latent, 1] / n_tokens
            return upsample_map(token_map, FRAME)

        def at_point() -> object:
            i = int(next(code_picks))
            region = region_tokens(GRID, FRAME, point=(455.0, 760.0))
            return what_fires_here(*image_entries(codes, i), region, effect_lh, TASKS, n_tokens)

        def in_box() -> object:
            i = int(next(code_picks))
            region = region_tokens(GRID, FRAME, box=(300.0, 600.0, 450.0, 850.0))
            return what_fires_here(
                *image_entries(codes, i), region, effect_lh, TASKS, n_tokens, rank_by="contribution_mass"
            )

        n_box = int(region_tokens(GRID, FRAME, box=(300.0, 600.0, 450.0, 850.0)).sum())
        rows = [
            ("evidence map, one view (stored, upsampled)", median_ms(view_map, args.repeat)),
            ("one latent's evidence map from codes", median_ms(latent_map, args.repeat)),
            ("what_fires_here, one point", median_ms(at_point, args.repeat)),
            (f"what_fires_here, a box of {n_box} tokens", median_ms(in_box, args.repeat)),
        ]
    print(
        f"geometry {GRID[0]} x {GRID[1]} tokens, frame {FRAME[0]} x {FRAME[1]}, {D_SAE} latents, "
        f"{len(TASKS)} heads, {args.active} active latents per token; evidence of {args.images} images, "
        f"codes of {args.code_images} images; median of {args.repeat}"
    )
    for name, ms in rows:
        verdict = "ok" if ms <= BUDGET_MS else "OVER"
        print(f"  {name:<46} {ms:8.2f} ms   (target <= {BUDGET_MS:.0f} ms: {verdict})")


if __name__ == "__main__":
    main()
