"""Write a phantom dataset in the VinDr-Mammo layout, with ground truth and a manifest.

    OUT/images/<study_id>/<image_id>.dicom
    OUT/breast-level_annotations.csv, OUT/finding_annotations.csv, OUT/metadata.csv  (VinDr layout)
    OUT/phantom_truth.csv   one row per planted object (masses, calcification clusters, benign, markers)
    OUT/phantom.json        generator, version, every parameter, counts, checksums (written last)

Images are rendered in parallel (a process pool over images); the output does not depend on the
number of workers. No timestamps are written, so a seed gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.data.csv_tables import (
    BREAST_COLUMNS,
    BREAST_CSV,
    FINDING_COLUMNS,
    FINDING_CSV,
    IMAGE_SUFFIX,
    IMAGES_DIR,
    METADATA_CSV,
    table_text,
)
from mammo_sae.data.dicom.read import read_mammogram
from mammo_sae.data.dicom.write import DicomEncoding, intensity_to_stored, write_mammogram
from mammo_sae.data.phantom import pixel_fingerprint as fingerprint
from mammo_sae.data.phantom.config import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    OutputNotEmptyError,
    PhantomConfig,
    PhantomError,
    PhantomRunConfig,
)
from mammo_sae.data.phantom.encoding import build_encoding
from mammo_sae.data.phantom.plan import ImagePlan, plan_dataset
from mammo_sae.data.phantom.render import TruthObject, render_image

SYNTHETIC_NOTICE = "SYNTHETIC PHANTOM - NOT PATIENT DATA"
TRUTH_CSV = "phantom_truth.csv"
MANIFEST = "phantom.json"
IN_PROGRESS = ".phantom-in-progress"
#: Physical height of the simulated detector field, to give the images a plausible pixel spacing.
FIELD_HEIGHT_MM = 300.0

METADATA_COLUMNS = (
    "study_id",
    "series_id",
    "image_id",
    "laterality",
    "view_position",
    "rows",
    "columns",
    "photometric_interpretation",
    "bits_stored",
    "transfer_syntax",
    "window_center",
    "window_width",
    "window_explanation",
    "voi_lut_function",
    "presentation_intent",
    "pixel_spacing_mm",
    "burned_in_annotation",
    "manufacturer",
)
TRUTH_COLUMNS = (
    "image_id",
    "study_id",
    "laterality",
    "view_position",
    "split",
    "lesion_id",
    "kind",
    "subtype",
    "n_specks",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
    "contrast",
)
CATEGORY = {"mass": "Mass", "calcification": "Suspicious Calcification"}
PIXEL_CHECKSUM_METHOD = (
    "sha256 over the lines '<image_id> <rows>x<cols> <sha256 of the stored pixel values as uint16 "
    "little-endian, row-major>\\n', in breast-level CSV order"
)
_HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ImageResult:
    """What a worker reports back about one written image."""

    plan: ImagePlan
    rows: int
    cols: int
    objects: tuple[TruthObject, ...]
    encoding: DicomEncoding
    pixel_sha256: str
    file_sha256: str
    block_means_gg: np.ndarray  # the pixel fingerprint's block means of this image

    @property
    def relpath(self) -> str:
        return image_relpath(self.plan)


def image_relpath(plan: ImagePlan) -> str:
    """Path of an image inside the dataset root, as in the VinDr release."""
    return f"{IMAGES_DIR}/{plan.study_id}/{plan.image_id}{IMAGE_SUFFIX}"


def stored_sha256(stored: np.ndarray) -> str:
    """sha256 of stored pixel values as uint16 little-endian, row-major (container independent)."""
    return hashlib.sha256(np.ascontiguousarray(stored, dtype="<u2").tobytes()).hexdigest()


def combine_pixel_checksums(entries: list[tuple[str, int, int, str]]) -> str:
    """The dataset pixel checksum from (image_id, rows, cols, pixel_sha256) in breast-level CSV order."""
    lines = "".join(f"{image_id} {rows}x{cols} {digest}\n" for image_id, rows, cols, digest in entries)
    return hashlib.sha256(lines.encode()).hexdigest()


def _dicom_tags(plan: ImagePlan, rows: int) -> dict[str, object]:
    spacing = f"{FIELD_HEIGHT_MM / rows:.6g}"
    return {
        # VinDr-style anonymised UIDs: the hex ids themselves (readers must accept them).
        "StudyInstanceUID": plan.study_id,
        "SeriesInstanceUID": plan.series_id,
        "SOPInstanceUID": plan.image_id,
        "PatientName": "SYNTHETIC^PHANTOM",
        "PatientID": plan.study_id,
        "PatientSex": "F",
        "PatientIdentityRemoved": "YES",
        "DeidentificationMethod": "SYNTHETIC PHANTOM - NO PATIENT",
        "Manufacturer": GENERATOR_NAME,
        "ManufacturerModelName": f"phantom {GENERATOR_VERSION}",
        "ImageComments": SYNTHETIC_NOTICE,
        "StudyDescription": "SYNTHETIC PHANTOM MAMMOGRAM",
        "SeriesDescription": f"{plan.laterality} {plan.view}",
        "BurnedInAnnotation": "YES" if plan.marker else "NO",
        "ImagerPixelSpacing": [spacing, spacing],
        "InstanceNumber": plan.view_index + 1,
    }


def produce_image(plan: ImagePlan, size_hw: tuple[int, int], root: str) -> ImageResult:
    """Render, encode and write one image; return its truth and checksums (runs in a worker)."""
    rendered = render_image(plan, size_hw)
    encoding = build_encoding(plan.encoding, rendered.intensity)
    stored = intensity_to_stored(rendered.intensity, encoding)
    path = Path(root) / image_relpath(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI", category=UserWarning)
        write_mammogram(
            path,
            stored,
            laterality=plan.laterality,
            view=plan.view,
            encoding=encoding,
            tags=_dicom_tags(plan, size_hw[0]),
        )
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    rows, cols = stored.shape
    return ImageResult(
        plan,
        rows,
        cols,
        rendered.objects,
        encoding,
        stored_sha256(stored),
        file_sha,
        fingerprint.block_means(stored),
    )


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only contend


def _produce_job(job: tuple[ImagePlan, tuple[int, int], str]) -> ImageResult:
    return produce_image(*job)


# ----------------------------------------------------------------------------------------------
# Output folder safety


def is_phantom_dataset(folder: str | os.PathLike[str]) -> bool:
    """True if `folder` holds a phantom dataset (finished, or interrupted while being written)."""
    folder = Path(folder)
    if (folder / IN_PROGRESS).is_file():
        return True
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR_NAME


def _clear_previous(folder: Path) -> None:
    """Remove the files a previous phantom run wrote (and only those), so no stale image survives."""
    for name in (MANIFEST, BREAST_CSV, FINDING_CSV, METADATA_CSV, TRUTH_CSV):
        (folder / name).unlink(missing_ok=True)
    images = folder / IMAGES_DIR
    if not images.is_dir():
        return
    for study in images.iterdir():
        if not (study.is_dir() and _HEX32.fullmatch(study.name)):
            continue
        for item in study.iterdir():
            ours = _HEX32.fullmatch(item.name.removesuffix(IMAGE_SUFFIX)) and item.suffix == IMAGE_SUFFIX
            leftover = item.name.startswith(".") and item.name.endswith(".tmp")
            if item.is_file() and (ours or leftover):
                item.unlink()
        if not any(study.iterdir()):
            study.rmdir()
    if not any(images.iterdir()):
        images.rmdir()


def prepare_output(folder: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Create `folder` or make it ready: a previous phantom dataset is cleared; any other non-empty
    folder is refused unless `overwrite` (then files are written into it, nothing else is deleted)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputNotEmptyError(f"output path {folder} is a file; give a folder path")
    if folder.is_dir() and any(folder.iterdir()):
        if is_phantom_dataset(folder):
            _clear_previous(folder)
        elif not overwrite:
            raise OutputNotEmptyError(
                f"output folder {folder} is not empty and is not a phantom dataset; choose an empty or new "
                "folder, or pass --overwrite (overwrite=True) to write into it anyway"
            )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / IN_PROGRESS).write_text(f"{GENERATOR_NAME} {GENERATOR_VERSION}\n")
    return folder


# ----------------------------------------------------------------------------------------------
# Tables


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _breast_row(r: ImageResult) -> dict[str, object]:
    p = r.plan
    return {
        "study_id": p.study_id,
        "series_id": p.series_id,
        "image_id": p.image_id,
        "laterality": p.laterality,
        "view_position": p.view,
        "height": r.rows,
        "width": r.cols,
        "breast_birads": f"BI-RADS {p.breast_birads}",
        "breast_density": f"DENSITY {p.density}",
        "split": p.split,
    }


def _finding_rows(r: ImageResult) -> list[dict[str, object]]:
    """One row per finding (objects of one group share a row); one 'No Finding' row otherwise."""
    base = _breast_row(r)
    split = base.pop("split")
    planned = {o.lesion_id: o for o in r.plan.objects}
    groups: dict[int, list[TruthObject]] = {}
    for obj in r.objects:
        if obj.kind in CATEGORY:
            groups.setdefault(obj.group, []).append(obj)
    if not groups:
        empty = {"xmin": "", "ymin": "", "xmax": "", "ymax": ""}
        return [
            {**base, "finding_categories": "['No Finding']", "finding_birads": "", **empty, "split": split}
        ]
    rows = []
    for group in sorted(groups):
        members = groups[group]
        kinds = {o.kind for o in members}
        names = [CATEGORY[k] for k in ("calcification", "mass") if k in kinds]
        birads = max(planned[o.lesion_id].birads for o in members)
        boxes = np.array([o.box for o in members])
        rows.append(
            {
                **base,
                "finding_categories": str(names),
                "finding_birads": f"BI-RADS {birads}",
                "xmin": _fmt(boxes[:, 0].min()),
                "ymin": _fmt(boxes[:, 1].min()),
                "xmax": _fmt(boxes[:, 2].max()),
                "ymax": _fmt(boxes[:, 3].max()),
                "split": split,
            }
        )
    return rows


def _metadata_row(r: ImageResult) -> dict[str, object]:
    p, e = r.plan, r.encoding
    return {
        "study_id": p.study_id,
        "series_id": p.series_id,
        "image_id": p.image_id,
        "laterality": p.laterality,
        "view_position": p.view,
        "rows": r.rows,
        "columns": r.cols,
        "photometric_interpretation": e.photometric,
        "bits_stored": e.bits_stored,
        "transfer_syntax": e.transfer_syntax,
        "window_center": "\\".join(f"{w.center:g}" for w in e.windows),
        "window_width": "\\".join(f"{w.width:g}" for w in e.windows),
        "window_explanation": "\\".join(w.name for w in e.windows),
        "voi_lut_function": e.voi_lut_function or "",
        "presentation_intent": e.presentation_intent,
        "pixel_spacing_mm": f"{FIELD_HEIGHT_MM / r.rows:.6g}",
        "burned_in_annotation": "YES" if p.marker else "NO",
        "manufacturer": GENERATOR_NAME,
    }


def _truth_rows(r: ImageResult) -> list[dict[str, object]]:
    p = r.plan
    return [
        {
            "image_id": p.image_id,
            "study_id": p.study_id,
            "laterality": p.laterality,
            "view_position": p.view,
            "split": p.split,
            "lesion_id": o.lesion_id,
            "kind": o.kind,
            "subtype": o.subtype,
            "n_specks": o.n_specks,
            "xmin": _fmt(o.box[0]),
            "ymin": _fmt(o.box[1]),
            "xmax": _fmt(o.box[2]),
            "ymax": _fmt(o.box[3]),
            "contrast": f"{o.contrast:.4f}",
        }
        for o in r.objects
    ]


def _image_entry(r: ImageResult, confounder: str) -> dict[str, object]:
    p, e = r.plan, r.encoding
    marker = next((o for o in r.objects if o.kind == "marker"), None)
    return {
        "image_id": p.image_id,
        "study_id": p.study_id,
        "path": r.relpath,
        "laterality": p.laterality,
        "view_position": p.view,
        "split": p.split,
        "breast_birads": f"BI-RADS {p.breast_birads}",
        "breast_density": f"DENSITY {p.density}",
        "labels": {"mass": p.has("mass"), "calcification": p.has("calcification")},
        "confounder_positive": p.has(confounder),
        "marker": p.marker,
        "marker_box": list(marker.box) if marker else None,
        "encoding": {
            "photometric": e.photometric,
            "bits_stored": e.bits_stored,
            "transfer_syntax": e.transfer_syntax,
            "windows": [[w.name, w.center, w.width] for w in e.windows],
            "voi_lut_function": e.voi_lut_function,
        },
        "rows": r.rows,
        "columns": r.cols,
        "pixel_sha256": r.pixel_sha256,
    }


def _counts(results: list[ImageResult], confounder: str) -> dict[str, object]:
    plans = [r.plan for r in results]
    pos = [p for p in plans if p.has(confounder)]
    neg = [p for p in plans if not p.has(confounder)]
    return {
        "studies": len({p.study_id for p in plans}),
        "images": len(plans),
        "images_by_split": {s: sum(p.split == s for p in plans) for s in ("training", "test")},
        "mass_positive_images": sum(p.has("mass") for p in plans),
        "calcification_positive_images": sum(p.has("calcification") for p in plans),
        "both_positive_images": sum(p.has("mass") and p.has("calcification") for p in plans),
        "benign_structure_images": sum(p.has("benign") for p in plans),
        "density_images": {d: sum(p.density == d for p in plans) for d in "ABCD"},
        "marker_images": sum(p.marker for p in plans),
        "marker_rate_given_positive": round(sum(p.marker for p in pos) / len(pos), 4) if pos else None,
        "marker_rate_given_negative": round(sum(p.marker for p in neg) / len(neg), 4) if neg else None,
        "finding_rows": sum(len(_finding_rows(r)) for r in results),
        "truth_objects": sum(len(r.objects) for r in results),
        "jpeg2000_files": sum(r.encoding.transfer_syntax.startswith("jpeg2000") for r in results),
        "monochrome1_files": sum(r.encoding.photometric == "MONOCHROME1" for r in results),
        "sigmoid_files": sum(r.encoding.voi_lut_function == "SIGMOID" for r in results),
    }


# ----------------------------------------------------------------------------------------------
# The generator


def _render_all(
    plans: list[ImagePlan],
    config: PhantomConfig,
    root: Path,
    workers: int,
    progress: bool,
    on_image: Callable[[int, int], None] | None = None,
) -> list[ImageResult]:
    jobs = [(p, config.size, str(root)) for p in plans]
    bar = tqdm(total=len(jobs), unit="img", desc="phantoms", disable=not progress)

    def done(results: list[ImageResult]) -> None:
        bar.update()
        if on_image is not None:
            on_image(len(results), len(jobs))

    try:
        if workers <= 1:
            results = []
            for job in jobs:
                results.append(_produce_job(job))
                done(results)
            return results
        context = multiprocessing.get_context("spawn")  # no inherited threads or state: safe everywhere
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            results = []
            with _workers_skip_the_main_script():  # map() submits every job, so every worker starts here
                mapped = pool.map(_produce_job, jobs, chunksize=max(1, min(4, len(jobs) // (4 * workers))))
            for result in mapped:
                results.append(result)
                done(results)
            return results
    finally:
        bar.close()


@contextlib.contextmanager
def _workers_skip_the_main_script() -> Iterator[None]:
    """Start spawned workers without re-running the caller's ``__main__`` script. Under Streamlit that is the
    app's page (the script runner installs it as ``__main__``): every worker would import and run the page
    again before rendering a single image, or fail where the page's own imports are not on the path."""
    main = sys.modules.get("__main__")
    if main is None or not getattr(main, "__file__", None) or getattr(main, "__spec__", None) is not None:
        yield  # a module run by name (python -m ...) or an interactive main: spawn handles it as it is
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def default_workers(n_images: int) -> int:
    """One worker per CPU core, never more than there are images (1 = render in this process)."""
    return max(1, min(os.cpu_count() or 1, n_images))


def generate_dataset(
    out_dir: str | os.PathLike[str],
    config: PhantomConfig,
    *,
    overwrite: bool = False,
    workers: int = 0,
    progress: bool = False,
    on_image: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Generate the dataset described by `config` into `out_dir`; return a JSON-ready summary.

    `workers`: processes rendering images (0 = one per CPU core); the files do not depend on it.
    `on_image(done, total)` is called after each image is written (a progress bar's hook).
    Raises OutputNotEmptyError for a non-empty folder that is not a phantom dataset (unless
    `overwrite`), PhantomConfigError for bad settings.
    """
    config.validate()
    started = time.perf_counter()
    existing = _complete_same(Path(out_dir), config)
    if existing is not None:
        return existing
    plans = plan_dataset(config)
    root = prepare_output(out_dir, overwrite=overwrite)
    n_workers = default_workers(len(plans)) if workers <= 0 else min(workers, len(plans))
    results = _render_all(plans, config, root, n_workers, progress, on_image)

    confounder = config.confounder_finding
    tables = {
        BREAST_CSV: table_text(BREAST_COLUMNS, [_breast_row(r) for r in results]),
        FINDING_CSV: table_text(FINDING_COLUMNS, [row for r in results for row in _finding_rows(r)]),
        METADATA_CSV: table_text(METADATA_COLUMNS, [_metadata_row(r) for r in results]),
        TRUTH_CSV: table_text(TRUTH_COLUMNS, [row for r in results for row in _truth_rows(r)]),
    }
    for name, text in tables.items():
        atomic_write_text(root / name, text)
    files = {r.relpath: r.file_sha256 for r in results}
    files.update({name: hashlib.sha256(text.encode()).hexdigest() for name, text in tables.items()})
    pixel_checksum = combine_pixel_checksums(
        [(r.plan.image_id, r.rows, r.cols, r.pixel_sha256) for r in results]
    )
    counts = _counts(results, confounder)
    manifest = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "notice": f"{SYNTHETIC_NOTICE}. Research use only; no diagnostic validity.",
        "seed": config.seed,
        "parameters": config.to_dict(),
        "layout": "VinDr-Mammo",
        "counts": counts,
        "pixel_checksum": {"algorithm": "sha256", "method": PIXEL_CHECKSUM_METHOD, "value": pixel_checksum},
        "pixel_fingerprint": {
            "method": fingerprint.METHOD,
            "value": fingerprint.encode(np.stack([r.block_means_gg for r in results])),
        },
        "files": dict(sorted(files.items())),
        "images": [_image_entry(r, confounder) for r in results],
    }
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    (root / IN_PROGRESS).unlink(missing_ok=True)

    seconds = time.perf_counter() - started
    return _summary(
        root,
        config,
        pixel_checksum,
        counts,
        workers=n_workers,
        seconds=round(seconds, 2),
        images_per_second=round(len(results) / seconds, 2) if seconds > 0 else None,
    )


def _summary(
    root: Path, config: PhantomConfig, pixel_checksum: str, counts: dict[str, object], **extra: object
) -> dict[str, object]:
    """The JSON summary of a generated (or reused) dataset."""
    return {
        "out": str(root),
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "size": f"{config.height}x{config.width}",
        **extra,
        "pixel_checksum": pixel_checksum,
        **counts,
    }


def _complete_same(root: Path, config: PhantomConfig) -> dict[str, object] | None:
    """The summary of a finished dataset in ``root`` made by this generator version with exactly ``config``
    (generation is deterministic, so it would be rewritten identically); None otherwise."""
    if (root / IN_PROGRESS).exists() or not (root / MANIFEST).is_file():
        return None
    try:
        manifest = load_manifest(root)
    except PhantomError:
        return None
    if (
        manifest.get("generator_version") != GENERATOR_VERSION
        or manifest.get("parameters") != config.to_dict()
    ):
        return None
    return _summary(
        root,
        config,
        manifest["pixel_checksum"]["value"],
        manifest["counts"],
        reused="already complete with these settings",
    )


def load_manifest(root: str | os.PathLike[str]) -> dict:
    """Read OUT/phantom.json; raises PhantomError when it is missing or not a phantom manifest."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PhantomError(
            f"cannot read the phantom manifest {path} ({exc}); regenerate the dataset"
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR_NAME:
        raise PhantomError(f"{path} is not a {GENERATOR_NAME} manifest")
    return manifest


def pixel_checksum(root: str | os.PathLike[str]) -> str:
    """Recompute the dataset pixel checksum by decoding every image listed in the breast-level CSV."""
    root = Path(root)
    entries = []
    with open(root / BREAST_CSV, newline="") as handle:
        for row in csv.DictReader(handle):
            image = read_mammogram(root / IMAGES_DIR / row["study_id"] / f"{row['image_id']}{IMAGE_SUFFIX}")
            rows, cols = image.stored.shape
            entries.append((row["image_id"], rows, cols, stored_sha256(image.stored)))
    return combine_pixel_checksums(entries)


def verify_dataset(root: str | os.PathLike[str], *, pixels: bool = True) -> list[str]:
    """Problems found when checking a dataset against its manifest (empty list = intact)."""
    root = Path(root)
    manifest = load_manifest(root)
    problems = []
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            problems.append(f"missing file {rel}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"file {rel} differs from the manifest's sha256")
    if pixels and not problems and pixel_checksum(root) != manifest["pixel_checksum"]["value"]:
        problems.append("pixel checksum differs from the manifest")
    return problems


def generate_from_config(config: PhantomRunConfig) -> dict[str, Any]:
    """`python -m mammo_sae.phantom` as a library call: generate the dataset a run config describes."""
    return generate_dataset(
        config.out,
        config.generator,
        overwrite=config.overwrite,
        workers=config.workers,
        progress=config.progress,
    )
