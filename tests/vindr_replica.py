"""A replica of the VinDr-Mammo release CSVs: the real columns and value formats, the published counts.

The real CSVs are credentialed (PhysioNet) and never enter this repository. This generator writes
``breast-level_annotations.csv`` and ``finding_annotations.csv`` with the release's structure and the
counts of FACTS.md 4 (images per split, positives per image and per row, conflicting images), so the
index and its summary can be tested against the exact published numbers. Ids, sizes, boxes, BI-RADS and
density are random but seeded. No image files are written.
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_sae.data.vindr import BREAST_COLUMNS, FINDING_COLUMNS

MASS = ("Mass",)
CALC = ("Suspicious Calcification",)
BOTH = ("Suspicious Calcification", "Mass")  # one row with two categories, as the release writes it
OTHER = ("<other>",)  # replaced by one (sometimes two) of OTHER_CATEGORIES
NO_FINDING = ("No Finding",)
OTHER_CATEGORIES = (
    "Focal Asymmetry",
    "Architectural Distortion",
    "Asymmetry",
    "Suspicious Lymph Node",
    "Skin Thickening",
    "Global Asymmetry",
    "Nipple Retraction",
    "Skin Retraction",
)
OTHER_WEIGHTS = np.array([0.34, 0.16, 0.12, 0.12, 0.1, 0.06, 0.06, 0.04])

# Per split: (number of images, the category lists of each image's rows). Every other image of the split
# has a single "No Finding" row. Chosen so that the counts below come out exactly.
RECIPES: dict[str, tuple[tuple[int, tuple[tuple[str, ...], ...]], ...]] = {
    "training": (
        (694, (MASS,)),
        (60, (MASS, MASS)),
        (80, (MASS, OTHER)),
        (10, (MASS, MASS, OTHER)),
        (222, (CALC,)),
        (30, (CALC, CALC)),
        (35, (CALC, OTHER)),
        (30, (BOTH,)),
        (20, (MASS, CALC)),
        (146, (OTHER, OTHER)),
        (900, (OTHER,)),
    ),
    "test": (
        (163, (MASS,)),
        (16, (MASS, MASS)),
        (22, (MASS, OTHER)),
        (2, (MASS, MASS, OTHER)),
        (67, (CALC,)),
        (10, (CALC, CALC)),
        (12, (CALC, OTHER)),
        (10, (BOTH,)),
        (6, (MASS, CALC)),
        (25, (OTHER, OTHER)),
        (220, (OTHER,)),
    ),
}

# The numbers of FACTS.md 4 (and those that follow from them).
STUDIES = {"training": 4000, "test": 1000}
IMAGES = {"training": 16000, "test": 4000}
ROWS = {"training": 16391, "test": 4095}
IMAGE_POSITIVES = {
    "training": {"mass": 894, "calcification": 337},
    "test": {"mass": 219, "calcification": 105},
}
TEST_ROW_POSITIVES = {"mass": 237, "calcification": 115}
TEST_CONFLICTING_IMAGES = 42  # rows disagree on mass or on calcification

# Image sizes (height, width) of the release's devices: heights 2812-3580, widths varied.
SIZES = ((3518, 2800), (2812, 2012), (3580, 2702), (3328, 2560), (3062, 2394), (2994, 2294))
DENSITY_WEIGHTS = np.array([0.01, 0.1, 0.76, 0.13])
VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


def build_replica(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(breast-level table, finding table) as the release's CSVs hold them (all cells as written)."""
    rng = np.random.default_rng(seed)
    n_studies = sum(STUDIES.values())
    split_of_study = np.array(["training"] * STUDIES["training"] + ["test"] * STUDIES["test"])
    rng.shuffle(split_of_study)

    # Which images get which rows: recipes land on random images of their split.
    rows_of: dict[tuple[int, int], tuple[tuple[str, ...], ...]] = {}
    for split, recipes in RECIPES.items():
        slots = [(s, v) for s in np.flatnonzero(split_of_study == split) for v in range(len(VIEWS))]
        order = rng.permutation(len(slots))
        expanded = [rows for count, rows in recipes for _ in range(count)]
        assert len(expanded) <= len(slots), f"{split}: more recipes than images"
        for k, rows in enumerate(expanded):
            rows_of[slots[order[k]]] = rows

    breast_rows, finding_rows = [], []
    for s in range(n_studies):
        study_id = _hex(rng)
        height, width = SIZES[rng.integers(len(SIZES))]
        density = "DENSITY " + "ABCD"[rng.choice(4, p=DENSITY_WEIGHTS)]
        series = {side: _hex(rng) for side in ("L", "R")}
        study_images = []
        for v, (side, view) in enumerate(VIEWS):
            image_rows = [_finding(rows, rng, height, width) for rows in rows_of.get((s, v), (NO_FINDING,))]
            study_images.append((_hex(rng), side, view, image_rows))
        # BI-RADS belongs to the breast: the worst finding over both of its views, else 1 or 2.
        breast_birads = {}
        for side in ("L", "R"):
            scores = [row[1] for _, lat, _, rows in study_images if lat == side for row in rows if row[1]]
            breast_birads[side] = max(scores) if scores else int(rng.choice([1, 2], p=[0.8, 0.2]))
        for image_id, side, view, image_rows in study_images:
            common = [
                study_id,
                series[side],
                image_id,
                side,
                view,
                height,
                width,
                f"BI-RADS {breast_birads[side]}",
                density,
            ]
            breast_rows.append([*common, split_of_study[s]])
            for categories, birads, box in image_rows:
                finding_birads = f"BI-RADS {birads}" if birads else ""
                finding_rows.append([*common, str(list(categories)), finding_birads, *box, split_of_study[s]])
    breast = pd.DataFrame(breast_rows, columns=BREAST_COLUMNS)
    finding = pd.DataFrame(finding_rows, columns=FINDING_COLUMNS)
    check_replica(breast, finding)
    return breast, finding


def write_replica(root: Path, seed: int = 0) -> Path:
    """Write both CSVs under ``root`` (created if needed) and return it; no images are written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    breast, finding = build_replica(seed)
    breast.to_csv(root / "breast-level_annotations.csv", index=False)
    finding.to_csv(root / "finding_annotations.csv", index=False)
    return root


def write_mammo_clip_csv(root: Path, finding: pd.DataFrame, folder: str = "mammo_clip") -> Path:
    """A Mammo-CLIP style ``vindr_detection_v1_folds.csv`` (33 columns) derived from a finding table.

    Resized boxes here are a plain rescale to 912x1520 (no breast crop) and folds are arbitrary: only the
    structure matters for the index.
    """
    out = finding.rename(columns={"study_id": "patient_id", "view_position": "view"}).copy()
    out["image_id"] = out["image_id"] + ".png"
    out["fold"] = np.where(out["split"] == "test", 0, 1 + out.index.to_numpy() % 4)
    for name, scale in (("xmin", 912), ("ymin", 1520), ("xmax", 912), ("ymax", 1520)):
        size = out["width" if name.startswith("x") else "height"].astype(float)
        out[f"resized_{name}"] = (pd.to_numeric(out[name].replace("", np.nan)) * scale / size).round(2)
    for category in ("Mass", "Suspicious Calcification", *OTHER_CATEGORIES, "No Finding"):
        out[category.replace(" ", "_")] = out["finding_categories"].str.contains(f"'{category}'").astype(int)
    out["density"] = out["breast_density"].str[-1].map({"A": 0, "B": 1, "C": 2, "D": 3})
    assert out.shape[1] == 33, out.shape
    path = Path(root) / folder / "vindr_detection_v1_folds.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return path


def check_replica(breast: pd.DataFrame, finding: pd.DataFrame) -> None:
    """Assert the published counts by plain counting (independent of the index under test)."""
    assert tuple(breast.columns) == BREAST_COLUMNS and tuple(finding.columns) == FINDING_COLUMNS
    assert breast["image_id"].is_unique and len(breast) == sum(IMAGES.values())
    assert dict(Counter(breast["split"])) == IMAGES
    assert dict(Counter(finding["split"])) == ROWS
    for split, count in STUDIES.items():
        assert breast.loc[breast["split"] == split, "study_id"].nunique() == count
    assert breast.groupby("study_id")["split"].nunique().max() == 1, "a study lies in two splits"
    assert (breast.groupby("study_id").size() == len(VIEWS)).all()

    lists: dict[str, list[list[str]]] = defaultdict(list)
    split_of = dict(zip(breast["image_id"], breast["split"], strict=True))
    for image_id, text in zip(finding["image_id"], finding["finding_categories"], strict=True):
        lists[image_id].append(ast.literal_eval(text))
    assert set(lists) == set(split_of), "every image has at least one finding row"
    for split, expected in IMAGE_POSITIVES.items():
        images = [rows for image_id, rows in lists.items() if split_of[image_id] == split]
        counted = {
            "mass": sum(any("Mass" in row for row in rows) for rows in images),
            "calcification": sum(any("Suspicious Calcification" in row for row in rows) for rows in images),
        }
        assert counted == expected, (split, counted)
    test_rows = [row for image_id, rows in lists.items() if split_of[image_id] == "test" for row in rows]
    counted_rows = {
        "mass": sum("Mass" in row for row in test_rows),
        "calcification": sum("Suspicious Calcification" in row for row in test_rows),
    }
    assert counted_rows == TEST_ROW_POSITIVES, counted_rows
    conflicting = 0
    for image_id, rows in lists.items():
        if split_of[image_id] == "test":
            flags = [
                {("Mass" in row) for row in rows},
                {("Suspicious Calcification" in row) for row in rows},
            ]
            conflicting += any(len(flag) == 2 for flag in flags)
    assert conflicting == TEST_CONFLICTING_IMAGES, conflicting
    no_finding = finding["finding_categories"] == "['No Finding']"
    assert (finding.loc[no_finding, ["xmin", "finding_birads"]] == "").all().all()
    assert (finding.loc[~no_finding, "xmin"] != "").all()
    assert breast["height"].between(2812, 3580).all() and breast["width"].nunique() > 3


def _finding(
    categories: tuple[str, ...], rng: np.random.Generator, height: int, width: int
) -> tuple[tuple[str, ...], int | None, list[object]]:
    """One finding row: (category list, finding BI-RADS or None, box cells)."""
    if categories == NO_FINDING:
        return categories, None, ["", "", "", ""]
    if categories == OTHER:
        k = 2 if rng.random() < 0.08 else 1
        categories = tuple(OTHER_CATEGORIES[i] for i in rng.choice(8, size=k, replace=False, p=OTHER_WEIGHTS))
    elif categories == MASS and rng.random() < 0.03:
        categories = ("Mass", "Architectural Distortion")
    small = "Suspicious Calcification" in categories and "Mass" not in categories
    box_w, box_h = rng.uniform(30, 250, size=2) if small else rng.uniform(80, 600, size=2)
    x0, y0 = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
    box = [round(float(x0), 2), round(float(y0), 2), round(float(x0 + box_w), 2), round(float(y0 + box_h), 2)]
    birads = int(rng.choice([3, 4, 5], p=[0.45, 0.4, 0.15]))
    return categories, birads, box


def _hex(rng: np.random.Generator) -> str:
    """A 32-hex-digit id like the release's de-identified ones."""
    return rng.bytes(16).hex()
