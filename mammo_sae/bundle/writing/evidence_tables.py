"""The bundle's answer to "where is the evidence?": token evidence and regions of the analysed split, where
each head's evidence lies (per image and over the split), every latent's location profile and flags, and the
shortcut audit. The numbers come from ``mammo_sae.analysis``; this module gathers its inputs from the
committed chunks and lays its results out as bundle tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.evidence_regions import (
    evidence_groups,
    evidence_pointing,
    image_region_table,
    split_difference_shares,
)
from mammo_sae.analysis.interventions import HeadLinear
from mammo_sae.analysis.peaks import FRAME_BOX, image_tolerance
from mammo_sae.analysis.profiles import FlagThresholds, latent_flags, location_profiles, token_aps
from mammo_sae.analysis.regions import BOX_PREFIX, RegionSettings, region_names, split_regions
from mammo_sae.analysis.shortcuts import shortcut_audit
from mammo_sae.bundle.writing.work import load_chunk


@dataclass
class EvidenceTables:
    """Everything the bundle says about where evidence and activations lie."""

    evidence_nht: np.ndarray  # [n, heads, T] float32: each token's share of each head's original logit
    labels_nt: np.ndarray  # [n, T] uint8 region labels
    names: tuple[str, ...]  # region names (label i -> names[i])
    image_regions: pd.DataFrame  # per (position, task): share_<region>, logit_<region>
    split: pd.DataFrame  # per (task, group): the share of the class-1 minus class-0 logit difference
    profiles: pd.DataFrame  # per latent: share_<region>, token_ap_<category>, flags
    shortcuts: pd.DataFrame  # flagged latents per task, ranked by their share of the logit difference
    shortcut_summary: pd.DataFrame  # per task: AUROC as analysed and with the flagged latents suppressed
    pointing: pd.DataFrame  # per task: does the evidence peak land in a box of the head's category


def read_token_arrays(chunks: list[Path], d_sae: int) -> tuple[np.ndarray, np.ndarray]:
    """(evidence [n, heads, T] float32, tissue fractions [n, 3, T] float16) of the analysed split's chunks."""
    evidence, tissue = [], []
    for path in chunks:
        chunk = load_chunk(path, d_sae, heavy=False)
        if len(chunk.positions):
            assert chunk.evidence_nht is not None and chunk.tissue_n3t is not None, (
                "analysed chunks carry maps"
            )
            evidence.append(chunk.evidence_nht)
            tissue.append(chunk.tissue_n3t)
    return np.concatenate(evidence).astype(np.float32), np.concatenate(tissue)


def finding_categories(concepts: tuple[str, ...], dataset_categories: tuple[str, ...]) -> tuple[str, ...]:
    """The finding categories that get box regions: the dataset's categories (the concepts first), whether or
    not this split has boxes of them, so a bundle's region names do not depend on its split."""
    return tuple(dict.fromkeys((*concepts, *dataset_categories)))


def head_pointing(
    evidence_nht: np.ndarray,
    boxes: pd.DataFrame,
    images: pd.DataFrame,
    tasks: tuple[str, ...],
    grid: tuple[int, int],
    frame_size: tuple[int, int],
) -> pd.DataFrame:
    """Per head: on the positive images with a box of its category, how often the evidence map's peak lands
    in one (with the pointing tolerance, and strictly inside)."""
    records = []
    for h, task in enumerate(tasks):
        kind = boxes[boxes["kind"] == task]
        positive = set(images.loc[images[task] == 1, "position"]) if task in images else set()
        groups = [(int(p), g) for p, g in kind.groupby("position") if int(p) in positive]
        if not groups:
            records.append({"task": task, "images": 0, "pointing": np.nan, "pointing_strict": np.nan})
            continue
        positions = np.array([p for p, _ in groups])
        maps = evidence_nht[positions, h]
        per_image = [g[FRAME_BOX].to_numpy() for _, g in groups]
        tolerant = evidence_pointing(
            maps, per_image, grid, frame_size, [image_tolerance(g) for _, g in groups]
        )
        strict = evidence_pointing(maps, per_image, grid, frame_size, [(0.0, 0.0)] * len(groups))
        records.append(
            {
                "task": task,
                "images": len(groups),
                "pointing": float(np.mean(tolerant)),
                "pointing_strict": float(np.mean(strict)),
            }
        )
    return pd.DataFrame.from_records(records)


def evidence_tables(
    chunks: list[Path],
    codes: TokenCodes,
    zbar_nl: np.ndarray,
    images: pd.DataFrame,
    boxes: pd.DataFrame,
    latents: pd.DataFrame,
    head: HeadLinear,
    error_nh: np.ndarray,
    categories: tuple[str, ...],
    frame_size: tuple[int, int],
    settings: RegionSettings,
    thresholds: FlagThresholds,
) -> EvidenceTables:
    """Compute every evidence table of the analysed split (``boxes`` carry their pointing tolerances)."""
    grid, tasks = codes.grid, head.tasks
    evidence_nht, tissue_n3t = read_token_arrays(chunks, codes.d_sae)
    assert evidence_nht.shape == (len(images), len(tasks), grid[0] * grid[1]), evidence_nht.shape
    names = region_names(categories)
    labels_nt = split_regions(tissue_n3t, boxes, categories, grid, frame_size, settings)
    image_regions = image_region_table(evidence_nht, labels_nt, names, tasks)

    labelled = [t for t in tasks if t in images and images[t].notna().any()]  # none on an unlabelled root
    split_parts = []
    for h, task in enumerate(tasks):
        if task not in labelled or task not in categories:
            continue
        groups_nt = evidence_groups(labels_nt, names, grid, task, settings.near_tokens)
        shares = split_difference_shares(evidence_nht[:, h], groups_nt, images[task].to_numpy())
        split_parts.append(shares.assign(task=task))
    split = pd.concat(split_parts, ignore_index=True) if split_parts else pd.DataFrame()

    profiles = location_profiles(codes, labels_nt, names)
    ap_kl = token_aps(codes, labels_nt, [names.index(f"{BOX_PREFIX}{c}") for c in categories])  # one sort
    for category, ap_l in zip(categories, ap_kl, strict=True):
        profiles[f"token_ap_{category}"] = ap_l
    n_box_images = {str(k): int(g["position"].nunique()) for k, g in boxes.groupby("kind")}
    profiles["flags"] = latent_flags(latents.join(profiles), categories, n_box_images, thresholds)

    labels = {t: images[t].to_numpy() for t in labelled}
    audit = shortcut_audit(zbar_nl, head, labels, profiles["flags"], error_nh)
    return EvidenceTables(
        evidence_nht=evidence_nht,
        labels_nt=labels_nt,
        names=names,
        image_regions=image_regions,
        split=split,
        profiles=profiles,
        shortcuts=audit.flagged,
        shortcut_summary=audit.summary,
        pointing=head_pointing(evidence_nht, boxes, images, tasks, grid, frame_size),
    )
