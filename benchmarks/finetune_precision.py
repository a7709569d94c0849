"""Fine-tuning step speed on this CPU: fp32 against bf16 autocast, measured in one run.

One step is what ``mammo_sae.finetune`` does per batch (forward through backbone and heads, the tied
token scores, both losses, backward, AdamW), on random frames, channels-last. The two precisions are
timed in interleaved rounds, so both see the same machine; the table gives the median step time of each
and the median of the per-round ratios. bf16 pays only on CPUs that compute it natively
(``mammo_sae.core.precision.cpu_has_native_bf16``); elsewhere the finetune command stays in fp32.

    python benchmarks/finetune_precision.py [--backbone timm:regnetx_002@os16] [--frame 640x384]
        [--batch 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mammo_sae.core.precision import autocast, cpu_has_native_bf16
from mammo_sae.data.phantom.config import parse_size
from mammo_sae.finetuning.token_heads import token_head
from mammo_sae.models import Classifier, create_backbone

TASKS = ("mass", "calcification")


def make_step(backbone: str, frame: tuple[int, int], batch: int, dtype: torch.dtype | None):
    """A closure running one training step in ``dtype`` (None: fp32)."""
    torch.manual_seed(0)
    model = Classifier.create(create_backbone(backbone), {t: 1 for t in TASKS})
    heads = token_head("tied", model, TASKS)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([*model.parameters(), *heads.parameters()], lr=1e-4)
    pixels = torch.randn(batch, 3, *frame).to(memory_format=torch.channels_last)
    targets = torch.randint(0, 2, (batch, len(TASKS))).float()
    cpu = torch.device("cpu")

    def step() -> None:
        with autocast(cpu, dtype):
            fmap = model.forward_features(pixels)
            logits = torch.cat([model.forward_head(fmap)[t] for t in TASKS], dim=1)
            tokens = heads(fmap)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
        loss = loss + tokens.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="timm:regnetx_002@os16")
    parser.add_argument("--frame", default="640x384", help="frame size HxW")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frame = parse_size(args.frame)
    native = cpu_has_native_bf16()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native}")
    steps = {"fp32": make_step(args.backbone, frame, args.batch, None)}
    steps["bf16"] = make_step(args.backbone, frame, args.batch, torch.bfloat16)
    for step in steps.values():  # warm-up: oneDNN picks its kernels on the first calls
        step(), step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    ratios = []
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(timed(step))
        ratios.append(times["fp32"][-1] / times["bf16"][-1])
    print(f"{args.backbone}, frames {frame[0]}x{frame[1]}, batch {args.batch}, {args.rounds} rounds")
    print("| precision | median step (s) | images/s |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {args.batch / median:.1f} |")
    print(f"bf16 speed-up (median of per-round fp32/bf16 ratios): {statistics.median(ratios):.2f}x")
    if not native:
        print("this CPU has no native bf16: the finetune command trains in fp32 here")


if __name__ == "__main__":
    main()
