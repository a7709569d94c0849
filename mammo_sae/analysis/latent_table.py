"""Per-latent tables of an analysis: the rankings per concept and class, the latent table (frequency,
statistics, logit effects, class scores, pointing screens) and the localisation of the top latents."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.interventions import HeadLinear
from mammo_sae.analysis.latent_stats import latent_histograms, latent_summary
from mammo_sae.analysis.localisation import MapThreshold, localise
from mammo_sae.analysis.peaks import RELEASE_EVERY, PointingScreen, image_tolerance
from mammo_sae.analysis.scores import rank_latents

FRAME_BOX = ["frame_x0", "frame_y0", "frame_x1", "frame_y1"]


@dataclass(frozen=True)
class Rankings:
    """Latents ranked per (concept, class), best first; a class absent from the score split ranks none."""

    by_class: dict[tuple[str, int], np.ndarray]
    warnings: list[str]


def concept_rankings(scores: pd.DataFrame, concepts: tuple[str, ...], rank_by: str, split: str) -> Rankings:
    by_class, warnings = {}, []
    for concept in concepts:
        for cls in (0, 1):
            if int(scores.query("concept == @concept and cls == @cls")["n_images"].max()) == 0:
                warnings.append(f"no {split} image has {concept} = {cls}: its latents are not ranked")
                by_class[(concept, cls)] = np.zeros(0, dtype=np.int64)
            else:
                by_class[(concept, cls)] = rank_latents(scores, concept, cls, rank_by)
    return Rankings(by_class, warnings)


def latent_table(
    codes: TokenCodes,
    fired_l: np.ndarray,
    n_tokens: int,
    head: HeadLinear,
    scores: pd.DataFrame,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(per-latent table indexed by latent, [d_sae, 32] activation histograms).

    ``fired_l`` counts the tokens each latent fired on before any top-n cut of the stored codes, so
    ``frequency`` covers every code and ``stored_frequency`` what the codes keep."""
    latents = latent_summary(codes)
    stored_frequency = latents["frequency"].to_numpy()
    latents["frequency"] = fired_l / n_tokens
    latents["stored_frequency"] = stored_frequency
    hist = latent_histograms(codes, latents["max"].to_numpy())
    latents["hist_max"] = latents["max"]
    for h, task in enumerate(head.tasks):
        latents[f"effect_{task}"] = head.effect_lh[:, h]
    for (concept, cls), group in scores.groupby(["concept", "cls"]):
        group = group.sort_values("latent")
        latents[f"zbar_{concept}_{cls}"] = group["zbar"].to_numpy()
        latents[f"score_{concept}_{cls}"] = group["deviation"].to_numpy()
        latents[f"peak_score_{concept}_{cls}"] = group["peak_deviation"].to_numpy()
        latents[f"peak_auroc_{concept}_{cls}"] = group["peak_auroc"].to_numpy()
    return latents, hist


def with_pointing_screens(
    latents: pd.DataFrame,
    codes: TokenCodes,
    boxes: pd.DataFrame,
    kinds: tuple[str, ...],
    grid: tuple[int, int],
    frame_size: tuple[int, int],
) -> pd.DataFrame:
    """``latents`` joined with the token-level pointing screen (``peak_in_<kind>``, ``fired_<kind>``) of
    each box kind; ``boxes`` carries each box's ``tolerance_x`` / ``tolerance_y`` in frame px."""
    screen = PointingScreen(grid, frame_size, codes.d_sae)
    for kind in kinds:
        latents = latents.join(screen.run(codes, boxes[boxes["kind"] == kind], kind))
        codes.release()  # the screen read the codes of every image holding this kind of box
    return latents


def latent_maps(
    codes: TokenCodes, positions: list[int], latent: int, release_every: int = RELEASE_EVERY
) -> list[np.ndarray]:
    """One latent's token maps on the images at ``positions``; memory-mapped codes give their pages back
    every ``release_every`` images, so the pass does not keep the codes of every image with a box."""
    maps = []
    for i, position in enumerate(positions, start=1):
        maps.append(codes.latent_map(position, latent))
        if i % release_every == 0:
            codes.release()
    codes.release()
    return maps


def localisation_table(
    codes: TokenCodes,
    boxes: pd.DataFrame,
    rankings: dict[tuple[str, int], np.ndarray],
    frame_size: tuple[int, int],
    threshold: MapThreshold,
    localise_top: int,
    extra_targets: tuple[str, ...],
) -> pd.DataFrame:
    """Pointing game, IoU and AP of the top ``localise_top`` latents of each concept and class, on the images
    holding boxes of that concept (and of each extra target kind, e.g. the phantoms' burned-in markers).
    ``boxes`` carries each box's pointing tolerance in frame px per axis (``tolerance_x``, ``tolerance_y``;
    none: 0); ``pointing`` is the game with it, ``pointing_strict`` without."""
    records = []
    for (concept, cls), ranked in rankings.items():
        for target in (concept, *extra_targets):
            target_boxes = boxes[boxes["kind"] == target]
            groups = [(int(k), g) for k, g in target_boxes.groupby("position", sort=True)]
            positions = [p for p, _ in groups]
            gt = [g[FRAME_BOX].to_numpy() for _, g in groups]
            tolerances = [image_tolerance(g) for _, g in groups]
            for rank, latent in enumerate(ranked[:localise_top]):
                maps = latent_maps(codes, positions, int(latent))
                result = localise(maps, gt, frame_size, threshold, tolerances=tolerances)
                records.append(
                    {"concept": concept, "cls": cls, "rank": rank, "latent": int(latent), "target": target}
                    | result.as_dict()
                )
    return pd.DataFrame.from_records(records)
