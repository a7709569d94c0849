"""SAE training-step speed against the matmul roofline, measured in one run on this machine.

1. fp32 matmul rate of a 1024x2048 @ 2048x16384 product -> the dense roofline: a ReLU SAE step is
   5 GEMMs = 10 * d_in * d_sae FLOP per token.
2. The hand-written dense ReLU step (``loss_and_grad(kernel="dense")``): tokens/s and % of roofline.
3. The sparsity-aware ReLU step at L0 ~ 1 % of d_sae (b_enc shifted down): speed ratio against the dense
   step, and the largest relative gradient difference ||g_sparse - g_dense|| / ||g_dense||.
4. The TopK (k=64), BatchTopK (k=64) and Matryoshka BatchTopK (k=64, five nested groups) sparse steps:
   speed ratio per token against the dense ReLU step, their gradient difference against the autograd
   reference, and Matryoshka's step time against BatchTopK's (target <= 1.3x).
5. Once each: the autograd reference step, the sparse ReLU step at more L0 values (the crossover behind
   ``fast.SPARSE_L0_FRACTION``), TopK with 5 % dead latents (AuxK), and (--adam) one Adam step on the
   67M parameters: default, foreach and fused.

    python benchmarks/sae_train.py [--d-in 2048] [--d-sae 16384] [--batch 1024] [--rounds 5] [--adam]

The machine may be shared and its speed drifts, so items 1-4 are timed in interleaved rounds (matmul,
dense step, matmul, then each other step right after a dense step): the table gives the best time of
each over all rounds (the least disturbed one), and the median over rounds of the ratios taken within a
round (neighbours in time see the same machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from mammo_sae.sae import create_sae
from mammo_sae.sae.base import SparseAutoencoder


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def grads(sae: SparseAutoencoder) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)]


def rel_diff(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    return max(
        float((g.double() - w.double()).norm() / w.double().norm().clamp_min(1e-30))
        for g, w in zip(got, want, strict=True)
    )


def set_l0(sae: SparseAutoencoder, x: torch.Tensor, fraction: float) -> float:
    """Shift b_enc so that about ``fraction`` of the code fires on x; returns the measured L0 / d_sae."""
    with torch.no_grad():
        pre = sae.pre_activations(x[:128]) - sae.b_enc
        sae.b_enc.fill_(-float(pre.flatten().quantile(1 - fraction)))
        return float((sae.pre_activations(x) > 0).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--d-in", type=int, default=2048)
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--adam", action="store_true", help="also time one Adam step (default/foreach/fused)")
    parser.add_argument(
        "--crossover", default="0.02,0.03,0.05", help="more L0 fractions for the sparse ReLU step"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, d, h = args.batch, args.d_in, args.d_sae
    flop_per_token = 10 * d * h
    print(f"d_in={d} d_sae={h} batch={B} fp32, {torch.get_num_threads()} threads, {args.rounds} rounds")

    a, b, out = torch.randn(B, d), torch.randn(d, h), torch.empty(B, h)
    x = torch.randn(B, d)
    dense = create_sae("relu", d, h)
    sparse = create_sae("relu", d, h)
    l0 = set_l0(sparse, x, 0.01)
    topk = create_sae("topk", d, h, k=args.k)
    batchtopk = create_sae("batchtopk", d, h, k=args.k)
    matryoshka = create_sae("matryoshka", d, h, k=args.k)
    steps: dict[str, Callable[[], object]] = {
        "matmul": lambda: torch.mm(a, b, out=out),
        "dense": lambda: dense.loss_and_grad(x, kernel="dense"),
        "sparse": lambda: sparse.loss_and_grad(x, kernel="sparse"),
        "topk": lambda: topk.loss_and_grad(x),
        "batchtopk": lambda: batchtopk.loss_and_grad(x),
        "matryoshka": lambda: matryoshka.loss_and_grad(x),
    }
    for step in steps.values():  # warm-up: allocations, page faults, MKL's first-call setup
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    ratios: dict[str, list[float]] = {
        "roofline": [], "sparse": [], "topk": [], "batchtopk": [], "matryoshka": [], "nested": []
    }  # fmt: skip
    for _ in range(args.rounds):
        t_mm = timed(steps["matmul"])
        t_dense = timed(steps["dense"])
        t_mm = min(t_mm, timed(steps["matmul"]))
        times["matmul"].append(t_mm)
        times["dense"].append(t_dense)
        ratios["roofline"].append(2 * B * d * h / t_mm / flop_per_token / (B / t_dense))
        for name in ("sparse", "topk", "batchtopk", "matryoshka"):
            t_dense = timed(steps["dense"])
            times["dense"].append(t_dense)
            times[name].append(timed(steps[name]))
            ratios[name].append(t_dense / times[name][-1])
        ratios["nested"].append(times["matryoshka"][-1] / times["batchtopk"][-1])
    best = {name: min(values) for name, values in times.items()}
    rate = 2 * B * d * h / best["matmul"]
    roofline = rate / flop_per_token

    print(f"matmul {B}x{d} @ {d}x{h}: {rate / 1e9:.1f} GFLOP/s -> dense roofline {roofline:.0f} tokens/s")
    print(
        f"relu dense step:  {best['dense'] * 1e3:6.0f} ms  {B / best['dense']:6.0f} tokens/s  "
        f"{100 * B / best['dense'] / roofline:5.1f} % of roofline (median of rounds: "
        f"{100 / statistics.median(ratios['roofline']):.1f} %)"
    )
    dense.loss_and_grad(x, kernel="dense")
    sparse.loss_and_grad(x, kernel="dense")
    want = grads(sparse)
    sparse.loss_and_grad(x, kernel="sparse")
    diff = rel_diff(grads(sparse), want)
    sparse.loss_and_grad(x)
    print(
        f"relu sparse step at L0 = {100 * l0:.2f} % of d_sae: {best['sparse'] * 1e3:6.0f} ms  "
        f"{best['dense'] / best['sparse']:5.2f}x the dense step (median of rounds "
        f"{statistics.median(ratios['sparse']):.2f}x); grad rel diff to dense {diff:.1e}; "
        f"auto picks {sparse.last_kernel}"
    )
    for name, sae in (("topk", topk), ("batchtopk", batchtopk), ("matryoshka", matryoshka)):
        sae.loss_and_grad(x, kernel="autograd")
        want = grads(sae)
        sae.loss_and_grad(x)
        print(
            f"{name} k={args.k} step: {best[name] * 1e3:6.0f} ms  {B / best[name]:6.0f} tokens/s  "
            f"{best['dense'] / best[name]:5.2f}x the dense relu step per token (median of rounds "
            f"{statistics.median(ratios[name]):.2f}x); grad rel diff to autograd {rel_diff(grads(sae), want):.1e}"
        )

    nested = best["matryoshka"] / best["batchtopk"]
    print(
        f"matryoshka ({len(matryoshka.widths)} nested groups) vs batchtopk step: {nested:.2f}x (median of rounds "
        f"{statistics.median(ratios['nested']):.2f}x; target <= 1.30x) {'ok' if nested <= 1.3 else 'MISSED'}"
    )

    print("once each (no interleaving):")
    print(f"relu autograd step: {timed(lambda: dense.loss_and_grad(x, kernel='autograd')) * 1e3:6.0f} ms")
    print(f"relu dense step:    {timed(steps['dense']) * 1e3:6.0f} ms (for the ratios below)")
    for fraction in (float(f) for f in args.crossover.split(",") if f):
        l0 = set_l0(sparse, x, fraction)
        sparse.loss_and_grad(x, kernel="sparse")
        t_sparse = timed(lambda: sparse.loss_and_grad(x, kernel="sparse"))
        t_dense = timed(lambda: sparse.loss_and_grad(x, kernel="dense"))
        sparse.loss_and_grad(x)
        print(
            f"relu at L0 = {100 * l0:.2f} %: sparse {t_sparse * 1e3:6.0f} ms, dense {t_dense * 1e3:6.0f} ms "
            f"({t_dense / t_sparse:.2f}x); auto picks {sparse.last_kernel}"
        )
    dead = torch.zeros(h, dtype=torch.bool)
    dead[torch.randperm(h, generator=torch.Generator().manual_seed(1))[: h // 20]] = True
    topk.loss_and_grad(x, dead_mask=dead)
    t_aux = timed(lambda: topk.loss_and_grad(x, dead_mask=dead))
    print(f"topk step with 5 % dead latents (AuxK, aux_k={topk.aux_k}): {t_aux * 1e3:6.0f} ms")
    if args.adam:
        for name, kwargs in (
            ("default", {"foreach": False}),
            ("foreach", {"foreach": True}),
            ("fused", {"fused": True}),
        ):
            opt = torch.optim.Adam(dense.parameters(), lr=1e-4, **kwargs)
            opt.step()
            print(f"Adam step ({name}): {min(timed(opt.step) for _ in range(3)) * 1e3:6.0f} ms")


if __name__ == "__main__":
    main()
