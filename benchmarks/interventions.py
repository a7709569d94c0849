"""Time latent interventions on synthetic mean latents (budgets: full curve < 1 s, one case < 20 ms).

Builds seeded data shaped like the paper's VinDr test split: zbar [images, latents] float32 with ~90% zeros
and exponential values, linear heads, and two latent rankings for one concept. Times (median of repeats):

  (a) the full keep + suppress curve over the 12 PAPER_KS with AUROC / AUPRC (intervention_curves);
  (b) one case: scale vector from topk_union(k=10), shortcut_logits for its row, and contributions;
  (c) for context, the naive curve: one explicit masked float64 matmul per k and mode; printed as the ratio
      naive / one-pass, measured in the same run.

It is a report: the exit code is 0 whether or not the budgets are met.

    .venv/bin/python benchmarks/interventions.py [--images 4000 --latents 16384 --heads 2 --repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mammo_sae.analysis.interventions import (  # noqa: E402
    PAPER_KS,
    CurveInputs,
    HeadLinear,
    contributions,
    curve_logits,
    intervention_curves,
    scale_vector,
    shortcut_logits,
    topk_union,
    union_entry,
)

CURVE_BUDGET_S = 1.0
CASE_BUDGET_S = 0.020


def synthetic(images: int, latents: int, n_heads: int, seed: int = 0) -> tuple:
    """zbar [images, latents] float32 (~90% zeros), heads, labels for every head and two rankings."""
    rng = np.random.default_rng(seed)
    zbar_nl = rng.exponential(1.0, (images, latents)).astype(np.float32)
    zbar_nl[rng.random((images, latents), dtype=np.float32) < 0.9] = 0.0
    tasks = tuple(f"task{h}" for h in range(n_heads))
    heads = HeadLinear(tasks, rng.standard_normal((latents, n_heads)) * 0.05, rng.standard_normal(n_heads))
    logits_nh = shortcut_logits(zbar_nl, heads)
    noisy_nh = logits_nh + rng.standard_normal(logits_nh.shape) * logits_nh.std(axis=0)
    labels = {
        task: (noisy_nh[:, h] > np.median(noisy_nh[:, h])).astype(np.int64) for h, task in enumerate(tasks)
    }
    rank0, rank1 = rng.permutation(latents), rng.permutation(latents)
    return zbar_nl, heads, labels, CurveInputs("mass", rank0, rank1)


def timed(repeat: int, run: Callable[[], object]) -> float:
    """Median wall time in seconds over `repeat` runs after one warm-up."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_curve(zbar_nl: np.ndarray, heads: HeadLinear, curve: CurveInputs) -> list[np.ndarray]:
    """The obvious way: for every k and mode, build the mask and run one float64 masked matmul."""
    d_sae = heads.d_sae
    zbar64_nl = zbar_nl.astype(np.float64)
    out = []
    for k in PAPER_KS:
        union = topk_union(curve.rank0, curve.rank1, k, d_sae)
        for mask_l in (scale_vector(d_sae, keep=union), scale_vector(d_sae, suppress=union)):
            out.append((zbar64_nl * mask_l) @ heads.effect_lh + heads.const_h)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--latents", type=int, default=16384)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each measurement (default 5)")
    args = parser.parse_args()

    zbar_nl, heads, labels, curve = synthetic(args.images, args.latents, args.heads)
    d_sae = heads.d_sae
    print(
        f"zbar {zbar_nl.shape} float32 ({zbar_nl.nbytes / 2**20:.0f} MiB, {np.mean(zbar_nl == 0):.0%} zeros)"
    )

    entry_l = union_entry(curve.rank0, curve.rank1, d_sae)
    keep_knh, suppress_knh = curve_logits(zbar_nl, heads, entry_l, PAPER_KS)
    naive = naive_curve(zbar_nl, heads, curve)
    one_pass = [logits for i in range(len(PAPER_KS)) for logits in (keep_knh[i], suppress_knh[i])]
    worst = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(one_pass, naive, strict=True))
    print(f"one-pass vs naive: max relative difference {worst:.1e}")

    curve_s = timed(
        args.repeat, lambda: intervention_curves(zbar_nl, heads, [curve], {"image": labels}, PAPER_KS)
    )
    logits_s = timed(args.repeat, lambda: curve_logits(zbar_nl, heads, entry_l, PAPER_KS))

    def one_case() -> None:
        scale_l = scale_vector(d_sae, keep=topk_union(curve.rank0, curve.rank1, 10, d_sae))
        shortcut_logits(zbar_nl[17:18], heads, scale_l)
        contributions(zbar_nl[17], heads, heads.tasks[0], scale_l)

    case_s = timed(max(args.repeat, 20), one_case)
    naive_s = timed(max(1, args.repeat // 2), lambda: naive_curve(zbar_nl, heads, curve))

    rows = [
        ("(a) curve, 12 ks x keep/suppress + AUROC/AUPRC", curve_s, CURVE_BUDGET_S),
        ("    of which curve_logits (one GEMM)", logits_s, None),
        ("(b) one case: scale + logits + contributions", case_s, CASE_BUDGET_S),
        ("(c) naive curve logits (24 masked matmuls)", naive_s, None),
    ]
    print(f"\n{'measurement':<50} {'median':>10} {'budget':>8}  result")
    for name, seconds, budget in rows:
        verdict = "" if budget is None else ("PASS" if seconds < budget else "FAIL")
        budget_text = "" if budget is None else f"{budget * 1e3:.0f} ms"
        print(f"{name:<50} {seconds * 1e3:>7.1f} ms {budget_text:>8}  {verdict}".rstrip())
    print(f"\nnaive / one-pass curve logits: {naive_s / logits_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
