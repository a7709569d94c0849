"""What a sweep of three members costs against one member's training, measured in one run on this machine.

A store of sparse combinations of a planted dictionary (the demo's feature width by default: d = 368,
expansion 8, so d_sae = 2,944) is trained on three times, back to back: one TopK member alone, a sweep
``k=16,32,64`` of three members on one pass of the store (the same batches fed to each), the member alone
again (the faster single run counts). The sweep's time
over the single run's is the figure (issue 21 target: <= 1.6x); the steps a single run spends reading and
shuffling the store are what a sweep shares.

    .venv/bin/python benchmarks/sae_sweep.py [--d 368] [--images 400] [--steps 300] [--batch 1024]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from sae_train_helpers import dictionary_store  # noqa: E402

from mammo_sae.sae.config import TrainConfig  # noqa: E402
from mammo_sae.sae.sweep import train_sweep  # noqa: E402
from mammo_sae.sae.trainer import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--d", type=int, default=368)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        reader, _ = dictionary_store(
            Path(work) / "stores", d=args.d, atoms=4 * args.d, active=16, n_images=args.images,
            tokens_per_image=160, images_per_shard=25,
        )  # fmt: skip
        common = {
            "store": str(reader.path), "arch": "topk", "batch_size": args.batch, "max_steps": args.steps,
            "progress": False, "validation_fraction": 0.05,
        }  # fmt: skip
        singles = []
        for run in ("one-before", "sweep", "one-after"):  # the single run on both sides of the sweep
            started = time.perf_counter()
            if run == "sweep":
                index = train_sweep(TrainConfig(out=str(Path(work) / run), sweep="k=16,32,64", **common))
                sweep = time.perf_counter() - started
            else:
                train(TrainConfig(out=str(Path(work) / run), k=32, **common))
                singles.append(time.perf_counter() - started)
        one = min(singles)
    ratio = sweep / one
    print(
        f"store: {reader.n_tokens:,} tokens of d={args.d}; d_sae={8 * args.d:,}; {args.steps} steps of {args.batch}"
    )
    print(
        f"one member (k=32):          {one:7.1f} s (before / after the sweep: {singles[0]:.1f} / {singles[1]:.1f} s)"
    )
    print(f"sweep k=16,32,64 (3 members): {sweep:7.1f} s  = {ratio:.2f}x one member (target <= 1.6x) "
          f"{'ok' if ratio <= 1.6 else 'MISSED'}")  # fmt: skip
    for member in index["members"]:
        print(f"  {member['folder']}: FVU {member['eval']['fvu']:.3f}, L0 {member['eval']['l0']:.1f}")


if __name__ == "__main__":
    main()
