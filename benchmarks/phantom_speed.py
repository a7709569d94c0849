"""Phantom generator speed: the whole 50-study dataset (200 images, everything included) and per-stage
costs of one image, rendered in this process.

    .venv/bin/python benchmarks/phantom_speed.py [--studies 50] [--size 1280x1024] [--workers 0]

Budget (issue brief): 50 studies at the default size in < 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace

from mammo_sae.data.dicom.write import intensity_to_stored, write_mammogram
from mammo_sae.data.phantom import DEFAULT_SIZE, PhantomConfig, generate_dataset, parse_size, plan_dataset
from mammo_sae.data.phantom.encoding import build_encoding
from mammo_sae.data.phantom.render import render_image


def stage_times(config: PhantomConfig, n_images: int = 8) -> dict[str, float]:
    """Mean seconds per image for rendering, encoding and writing (in this process, no pool)."""
    plans = plan_dataset(replace(config, studies=max(1, n_images // 4)))[:n_images]
    totals = {"render_s": 0.0, "encode_write_s": 0.0}
    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        for i, plan in enumerate(plans):
            t0 = time.perf_counter()
            rendered = render_image(plan, config.size)
            t1 = time.perf_counter()
            encoding = build_encoding(plan.encoding, rendered.intensity)
            stored = intensity_to_stored(rendered.intensity, encoding)
            write_mammogram(
                f"{tmp}/{i}.dicom", stored, laterality=plan.laterality, view=plan.view, encoding=encoding
            )
            t2 = time.perf_counter()
            totals["render_s"] += t1 - t0
            totals["encode_write_s"] += t2 - t1
    return {k: round(v / len(plans), 4) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, metavar="HxW")
    parser.add_argument("--workers", type=int, default=0, help="0 = one per CPU core")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = PhantomConfig(studies=args.studies, seed=args.seed, height=args.size[0], width=args.size[1])

    per_image = stage_times(config)
    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        started = time.perf_counter()
        summary = generate_dataset(f"{tmp}/ds", config, workers=args.workers)
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "size": f"{config.height}x{config.width}",
                "studies": config.studies,
                "images": summary["images"],
                "workers": summary["workers"],
                "total_seconds": round(seconds, 2),
                "images_per_second": round(summary["images"] / seconds, 2),
                "per_image_in_process": per_image,
                "within_60s_budget_for_50_studies": seconds * 50 / config.studies < 60,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
