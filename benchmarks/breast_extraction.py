"""Breast extraction under robust conditioning on phantoms with the artefacts of real files added (issue 20,
point 6): the fraction of breast pixels that reach the model frame (target >= 99.5 %) and of label pixels
left out of it (labels, markers, borders, strips, tape, padding; target >= 95 %), per artefact kind and
overall. Exits 1 when a target is missed, overall or by any kind.

The seeds (8101-8110) were never used to choose a threshold: the constants of ``data/conditioning.py``
were set on seeds 7001-7006, and the tests use 7101. Every case goes the whole way a user's file does:
written as DICOM in its encoding (RLE Lossless or uncompressed for the films), read back, conditioned
and cropped by the Mammo-CLIP breast extraction. Pixels count inside the recipe's 5-pixel border crop.

    .venv/bin/python benchmarks/breast_extraction.py [--seeds 8101-8110] [--views 4] [--no-film]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mammo_sae.data.dicom import read_mammogram  # noqa: E402
from mammo_sae.data.phantom.artefacts import (  # noqa: E402
    ARTEFACTS,
    artefact_case,
    extraction_scores,
    kept_pixels,
    write_case,
)

TARGETS = {"kept": 0.995, "excluded": 0.95}


def seed_list(text: str) -> list[int]:
    """ "8101-8110" or "8101,8105" -> the seeds."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-"))
        return list(range(first, last + 1))
    return [int(v) for v in text.split(",")]


def score_kind(kind: str, seeds: list[int], views: int, work: Path) -> dict[str, float]:
    """Pooled pixel fractions of one kind over the seeds and views, and the worst single image."""
    kept_n = breast_n = shown_n = label_n = 0
    worst_kept, worst_excluded = 1.0, 1.0
    for seed in seeds:
        for view in range(views):
            case = artefact_case(kind, seed, view)
            path = write_case(case, work / f"{kind}-{seed}-{view}.dcm")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kept_hw = kept_pixels(read_mammogram(path))
            path.unlink()
            kept, excluded = extraction_scores(case, kept_hw)
            inner = np.zeros(kept_hw.shape, bool)
            inner[5:-5, 5:-5] = True
            breast, label = case.breast_hw & inner, case.label_hw & inner
            kept_n += int((kept_hw & breast).sum())
            breast_n += int(breast.sum())
            shown_n += int((kept_hw & label).sum())
            label_n += int(label.sum())
            worst_kept = min(worst_kept, kept)
            worst_excluded = min(worst_excluded, 1.0 if excluded is None else excluded)
    return {
        "kept": kept_n / breast_n,
        "excluded": 1.0 - shown_n / label_n if label_n else float("nan"),
        "worst_kept": worst_kept,
        "worst_excluded": worst_excluded if label_n else float("nan"),
        "breast_px": breast_n,
        "label_px": label_n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="8101-8110", help="held-out phantom seeds, e.g. 8101-8110")
    parser.add_argument("--views", type=int, default=4, help="views per seed (1-4)")
    parser.add_argument("--no-film", action="store_true", help="skip the 4000 x 3200 film cases (slow)")
    args = parser.parse_args(argv)
    seeds = seed_list(args.seeds)
    kinds = [k for k in ARTEFACTS if not (args.no_film and k.startswith("film"))]
    print(f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), {args.views} views each; targets: breast kept >= "
          f"{TARGETS['kept']:.1%}, labels excluded >= {TARGETS['excluded']:.0%}")  # fmt: skip
    print(f"{'artefact':16s} {'kept':>8s} {'worst':>8s} {'excluded':>9s} {'worst':>8s} {'seconds':>8s}")
    totals = {"kept": 0, "breast": 0, "shown": 0, "label": 0}
    missed = []
    with tempfile.TemporaryDirectory(prefix="breast-extraction-") as tmp:
        for kind in kinds:
            start = time.perf_counter()
            row = score_kind(kind, seeds, args.views, Path(tmp))
            totals["kept"] += row["kept"] * row["breast_px"]
            totals["breast"] += row["breast_px"]
            if row["label_px"]:
                totals["shown"] += (1 - row["excluded"]) * row["label_px"]
                totals["label"] += row["label_px"]
            if row["kept"] < TARGETS["kept"] or row["excluded"] < TARGETS["excluded"]:  # NaN compares False
                missed.append(kind)
            excluded = "-" if np.isnan(row["excluded"]) else f"{row['excluded']:.4%}"
            worst = "-" if np.isnan(row["worst_excluded"]) else f"{row['worst_excluded']:.2%}"
            print(
                f"{kind:16s} {row['kept']:8.4%} {row['worst_kept']:8.2%} {excluded:>9s} {worst:>8s} "
                f"{time.perf_counter() - start:8.1f}",
                flush=True,
            )
    kept = totals["kept"] / totals["breast"]
    excluded = 1 - totals["shown"] / totals["label"]
    print(f"{'overall':16s} {kept:8.4%} {'':8s} {excluded:9.4%}")
    ok = kept >= TARGETS["kept"] and excluded >= TARGETS["excluded"] and not missed
    print("targets met, overall and per kind" if ok else f"TARGET MISSED (kinds: {missed or 'overall'})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
