"""What the Interventions page shows of one case: the view with the finding, the chosen head's evidence map
before and after the intervention (one colour scale for both), the k choices and curves that fit the SAE,
and the colour of a rise or a fall (a rise of a finding's probability is warm, a fall cool, as on the maps).

``before`` is the map of the logit the page reports as "before": the SAE in place (each token's latents,
from the bundle's codes, plus its share of the decoder bias) or, with the error term added back, the model's
own features (the bundle's evidence map, exact). ``after`` adds each token's change from the scaled
latents (``analysis.intervened_evidence``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.analysis.intervened_evidence import code_shares, intervened_evidence
from mammo_sae.bundle.cases import view_boxes
from mammo_sae.bundle.evidence_queries import study_head
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.queries import strongest_view
from mammo_sae.bundle.reader import Bundle
from mammo_sae.bundle.viewer import RenderedView, ViewOptions, render_view
from mammo_sae.data.dicom import MammogramDicom
from mammo_sae.data.frames import transform_from_json

KS = tuple(range(10, 55, 5))  # the page's top-k choices: 10 .. 50
RISE, FALL, SAME = "red", "blue", "gray"  # Streamlit's named colours for a probability change
SAME_WITHIN = 5e-4  # a change that rounds to 0.000 is no change


def intervention_ks(d_sae: int) -> list[int]:
    """The top-k choices (10 to 50 latents per class ranking), none above the SAE's size."""
    assert d_sae > 0
    return [k for k in KS if k <= d_sae] or [d_sae]


def change_colour(change: float) -> str:
    """``red`` for a rise, ``blue`` for a fall, ``gray`` for none (to 3 decimals)."""
    if change > SAME_WITHIN:
        return RISE
    return FALL if change < -SAME_WITHIN else SAME


def finding_head(bundle: Bundle, positions: list[int]) -> str:
    """The head a study opens on: the first head whose finding is on one of its views (ground truth),
    else the head the model finds most probable."""
    images = bundle.images.iloc[positions]
    for task in bundle.tasks:
        if task in images and bool((images[task] == 1).any()):
            return task
    return study_head(bundle, positions)


def finding_view(bundle: Bundle, positions: list[int], head: str) -> int:
    """The view (bundle position) to open: the one with ``head``'s finding (the strongest of them when
    several have it), else the view the model scores highest for ``head``."""
    assert positions, "a study has at least one analysed view"
    labels = bundle.images[head].to_numpy() if head in bundle.images else np.zeros(len(bundle.images))
    positive = [p for p in positions if labels[p] == 1]
    return strongest_view(bundle, positive or positions, head)


def curves_within(curves: pd.DataFrame, d_sae: int) -> pd.DataFrame:
    """The curve rows whose k fits the SAE (k <= d_sae, and "all"): a larger k keeps or suppresses every
    latent, the same point as "all"."""
    labels = curves["k_label"].astype(str)
    fits = [label == "all" or (label.isdigit() and int(label) <= d_sae) for label in labels]
    return curves[np.array(fits, dtype=bool)]


@dataclass(frozen=True)
class EvidencePair:
    """One view's evidence for one head, before and after an intervention: ``map.sum() + bias`` is the
    logit (to within the codes' float16 rounding); the logits are the exact ones the page reports."""

    head: str
    before_gw: np.ndarray  # [gh, gw] float64
    after_gw: np.ndarray  # [gh, gw] float64
    bias: float
    logit_before: float
    logit_after: float

    @property
    def vmax(self) -> float:
        """One colour scale for both maps: their largest magnitude."""
        return float(max(np.abs(self.before_gw).max(), np.abs(self.after_gw).max()))

    @property
    def change_gw(self) -> np.ndarray:
        return self.after_gw - self.before_gw


def evidence_pair(
    bundle: Bundle, position: int, head: str, scale_l: np.ndarray, *, error_term: bool = False
) -> EvidencePair:
    """``head``'s evidence map on view ``position`` before and after scaling the latents by ``scale_l``
    (BundleError on a bundle without evidence maps)."""
    if not bundle.has_evidence:
        raise BundleError(
            f"the bundle {bundle.path} predates evidence maps; rebuild it with python -m mammo_sae.analyze"
        )
    h = bundle.heads.index(head)
    original_gw = np.asarray(bundle.evidence(position)[h], dtype=np.float64)
    bias = float(bundle.images.iloc[position][f"logit_{head}_original"]) - float(original_gw.sum())
    codes = bundle.codes.image(position)
    effect_l1 = bundle.heads.effect_lh[:, h : h + 1]
    if error_term:
        before_gw = original_gw
    else:
        decoder_share = (float(bundle.heads.const_h[h]) - bias) / original_gw.size  # w . b_dec / N
        before_gw = code_shares(codes, effect_l1)[0] + decoder_share
    after_gw = intervened_evidence(before_gw[None], codes, effect_l1, scale_l)[0]
    before = bundle.logits(None, [position], error_term=error_term)[0, h]
    after = bundle.logits(scale_l, [position], error_term=error_term)[0, h]
    return EvidencePair(head, before_gw, after_gw, bias, float(before), float(after))


def render_pair(
    bundle: Bundle,
    position: int,
    image: MammogramDicom,
    options: ViewOptions,
    pair: EvidencePair,
    kinds: tuple[str, ...],
) -> tuple[RenderedView, RenderedView]:
    """The view with the ``before`` and the ``after`` map on one diverging scale (warm raises the head's
    logit, cool lowers it), with the ground-truth boxes of ``kinds``."""
    row = bundle.images.iloc[position]
    boxes = view_boxes(bundle, position, kinds)
    drawn = [
        render_view(
            image,
            row["laterality"],
            options,
            boxes=boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy(),
            box_kinds=boxes["kind"].tolist(),
            token_map=token_map.astype(np.float32),
            transform=transform_from_json(row["transform"]),
            diverging=True,
            vmax=pair.vmax,
        )
        for token_map in (pair.before_gw, pair.after_gw)
    ]
    return drawn[0], drawn[1]
