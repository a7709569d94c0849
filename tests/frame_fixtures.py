"""A VinDr-layout root with Mammo-CLIP PNGs beside its DICOMs, as a real root with ``mammo_clip/`` has.

The PNGs and the Mammo-CLIP CSV's resized boxes are made by the project's own preprocessing at the Mammo-CLIP
PNG size (1520x912), so they are what Mammo-CLIP's release holds for these DICOMs. Then the root is made
untidy the way real roots are: some images keep only their PNG (the DICOM is gone), one keeps only its
DICOM, and one PNG is altered so that its DICOM no longer reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mammo_sae.data.csv_tables import BOX_COLUMNS, MAMMO_CLIP_CSV, MAMMO_CLIP_PNG_DIR, RESIZED_BOX_COLUMNS
from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.frame_policy import PNG_SIZE
from mammo_sae.data.frames import FrameTransform
from mammo_sae.data.phantom import PhantomConfig, generate_dataset
from mammo_sae.data.preprocess import preprocess_mammogram
from mammo_sae.data.vindr import VindrIndex


@dataclass(frozen=True)
class ClipRoot:
    root: Path
    both: tuple[str, ...]  # DICOM and an untouched PNG
    png_only: tuple[str, ...]  # the PNG alone (one per split)
    dicom_only: str  # the DICOM alone
    altered: str  # both, but the PNG differs from the DICOM's preprocessing
    transforms: dict[str, FrameTransform]  # every image's DICOM transform onto the 1520x912 PNG
    pngs: dict[str, np.ndarray]  # every image's PNG as the preprocessing made it (before any change)


def build_clip_root(folder: Path, *, studies: int = 3, seed: int = 7) -> ClipRoot:
    root = folder / "vindr"
    config = PhantomConfig(
        studies=studies, seed=seed, height=256, width=208, mass_rate=0.5, calcification_rate=0.5
    )
    generate_dataset(root, config, workers=1)
    index = VindrIndex.load(root)
    images = index.images

    def pick(split: str, boxed: bool) -> list[str]:
        chosen = images[(images["split"] == split) & ((images["n_findings"] > 0) == boxed)]
        return chosen["image_id"].tolist()

    png_only = (pick("training", True)[0], pick("test", True)[0])  # with boxes, to place them without DICOM
    dicom_only = pick("training", False)[0]
    altered = next(i for i in images.loc[images["split"] == "test", "image_id"] if i != png_only[1])

    clip = root / "mammo_clip"
    transforms, pngs, rows = {}, {}, []
    for image in images.itertuples(index=False):
        prepared = preprocess_mammogram(read_mammogram(image.path), PNG_SIZE)
        transforms[image.image_id], pngs[image.image_id] = prepared.transform, prepared.png
        png = prepared.png.copy()
        if image.image_id == altered:
            png[200:400, 100:300] = np.clip(png[200:400, 100:300].astype(np.int16) + 40, 0, 255)
        if image.image_id != dicom_only:
            out = clip / MAMMO_CLIP_PNG_DIR / image.study_id / f"{image.image_id}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(out), png)
        findings = index.findings[index.findings["image_id"] == image.image_id]
        frame_boxes = prepared.transform.boxes_to_frame(findings[list(BOX_COLUMNS)].to_numpy(np.float64))
        for k in range(len(findings)):
            row = {"patient_id": image.study_id, "image_id": f"{image.image_id}.png"}
            row |= {"laterality": image.laterality, "split": image.split, "fold": 0}
            rows.append(row | dict(zip(RESIZED_BOX_COLUMNS, frame_boxes[k], strict=True)))
    pd.DataFrame(rows).to_csv(clip / MAMMO_CLIP_CSV, index=False)
    for image_id in png_only:
        Path(images.set_index("image_id").loc[image_id, "path"]).unlink()
    both = tuple(i for i in images["image_id"] if i not in {*png_only, dicom_only, altered})
    return ClipRoot(root, both, png_only, dicom_only, altered, transforms, pngs)
