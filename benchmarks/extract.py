"""Extraction overhead and backbone speed, measured in one run on this machine.

1. images/s of the whole `extract` path (index, decoding and preprocessing in DataLoader workers, the
   backbone, token sampling, fp16 shard commits) against a bare `forward_features` loop over the same
   preprocessed tensors already in memory, same batches. Target: overhead under 10 %.
2. our Mammo-CLIP B5 (timm, pinned static padding, channels_last) against the reference
   `efficientnet_pytorch` 0.7.1 on the same 1520x912 input.

    python benchmarks/extract.py [--images 12] [--batch-size 2] [--workers 1]

Uses random-weight files in the released checkpoint format (no real weights are needed or downloaded)
and synthetic phantoms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from model_fixtures import lukemelas_state, reference_encoder, released_checkpoint, save

from mammo_sae.core.distributed import DistContext
from mammo_sae.data.frame_policy import FramePolicy
from mammo_sae.data.phantom import PhantomConfig, generate_dataset
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.config import ExtractConfig
from mammo_sae.extraction.images import FrameDataset
from mammo_sae.extraction.run import run_extraction
from mammo_sae.models import create_backbone


def bare_loop(backbone: torch.nn.Module, inputs: list[torch.Tensor], batch_size: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            batch = torch.stack(inputs[i : i + batch_size]).to(memory_format=torch.channels_last)
            backbone.forward_features(batch)
    return time.perf_counter() - start


def timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "phantoms"
        generate_dataset(data, PhantomConfig(studies=(args.images + 3) // 4, seed=0))
        checkpoint = save(released_checkpoint(lukemelas_state(seed=0)), root / "b5-model-best-epoch-7.tar")
        spec = f"mammoclip-b5:{checkpoint}"

        config = ExtractConfig(
            data=str(data),
            out=str(root / "stores"),
            backbone=spec,
            split="all",
            limit=args.images,
            batch_size=args.batch_size,
            workers=args.workers,
            dtype="fp32",  # random BatchNorm statistics can exceed the fp16 range at full resolution
            progress=False,
        )
        backbone = create_backbone(spec).eval().to(memory_format=torch.channels_last)
        index = VindrIndex.load(data)
        records, _ = FramePolicy.resolve("auto", index).select(index, "all", args.images)
        dataset = FrameDataset(records, config.frame_size)
        inputs = [dataset[i][1] for i in range(len(dataset))]
        bare_loop(backbone, inputs[: args.batch_size], args.batch_size)  # warm-up

        bare = bare_loop(backbone, inputs, args.batch_size)
        start = time.perf_counter()
        summary = run_extraction(config, DistContext())
        whole = time.perf_counter() - start
        n = summary["images_this_run"]
        print(f"images: {n} at 1520x912, batch {args.batch_size}, {args.workers} loader worker(s), fp32 CPU")
        print(f"bare forward_features loop : {n / bare:6.3f} images/s ({bare:.1f} s)")
        print(f"whole extraction path      : {n / whole:6.3f} images/s ({whole:.1f} s, incl. model load)")
        print(f"extraction overhead        : {100 * (whole / bare - 1):+.1f} %  (target < 10 %)")

        x = inputs[0][None]
        reference = reference_encoder(seed=0).eval()
        with torch.inference_mode():
            t_ref = timed(lambda: reference.extract_features(x))
            t_ours = timed(lambda: backbone.forward_features(x.to(memory_format=torch.channels_last)))
        print(f"reference efficientnet_pytorch B5 : {t_ref:.2f} s / image")
        print(f"mammo-sae B5 (timm, channels_last): {t_ours:.2f} s / image")
        print(f"speed ratio ours / reference      : {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
