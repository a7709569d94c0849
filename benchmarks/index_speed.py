"""Time `VindrIndex.load` on the 20,000-image replica (budget: < 2 s with the existence check).

Builds the replica CSVs in a temporary folder and writes 20,000 empty image files beside them so the
disk scan does real work, then compares the index with a naive per-row pandas approach (iterrows,
ast.literal_eval per row, one os.path.exists per image).

    .venv/bin/python benchmarks/index_speed.py [--repeat 5] [--no-files]
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import vindr_replica  # noqa: E402

from mammo_sae.data.categories import category_key  # noqa: E402
from mammo_sae.data.vindr import VindrIndex  # noqa: E402

BUDGET_S = 2.0


def naive_index(root: Path) -> pd.DataFrame:
    """The obvious way: per-row Python over the finding CSV and one stat per image."""
    breast = pd.read_csv(root / "breast-level_annotations.csv")
    findings = pd.read_csv(root / "finding_annotations.csv")
    labels: dict[str, set[str]] = {}
    for _, row in findings.iterrows():
        names = ast.literal_eval(row["finding_categories"])
        labels.setdefault(row["image_id"], set()).update(category_key(name) for name in names)
    rows = []
    for _, row in breast.iterrows():
        path = root / "images" / row["study_id"] / f"{row['image_id']}.dicom"
        found = labels.get(row["image_id"], set())
        rows.append(
            {
                "image_id": row["image_id"],
                "exists": os.path.exists(path),
                "mass": int("mass" in found),
                "calcification": int("calcification" in found),
            }
        )
    return pd.DataFrame(rows)


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    """(median, min) wall time in seconds over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of the index (default 5)")
    parser.add_argument("--no-files", action="store_true", help="do not write the 20,000 empty image files")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vindr-bench-") as folder:
        root = vindr_replica.write_replica(Path(folder))
        breast = pd.read_csv(root / "breast-level_annotations.csv", dtype=str)
        if not args.no_files:
            for study, image in zip(breast["study_id"], breast["image_id"], strict=True):
                (root / "images" / study).mkdir(parents=True, exist_ok=True)
                (root / "images" / study / f"{image}.dicom").touch()

        index = VindrIndex.load(root)  # warm-up (imports, page cache)
        n_images, n_rows = len(index.images), len(index.findings)
        found = int(index.images["exists"].sum())
        median, fastest = best_of(args.repeat, lambda: VindrIndex.load(root))
        no_check, _ = best_of(args.repeat, lambda: VindrIndex.load(root, check_files=False))
        naive, _ = best_of(1, lambda: naive_index(root))
        reference = naive_index(root).set_index("image_id")
        ours = index.images.set_index("image_id")
        agree = all(
            reference[name].equals(ours[name].astype(reference[name].dtype)) for name in reference.columns
        )

    print(f"replica: {n_images} images, {n_rows} finding rows, {found} image files on disk")
    print(
        f"VindrIndex.load with existence check: median {median:.3f} s, best {fastest:.3f} s (budget {BUDGET_S} s)"
    )
    print(f"VindrIndex.load without file check:   median {no_check:.3f} s")
    print(
        f"naive per-row pandas approach:        {naive:.3f} s  ({naive / median:.1f}x slower; same labels: {agree})"
    )
    return 0 if median < BUDGET_S and agree else 1


if __name__ == "__main__":
    sys.exit(main())
