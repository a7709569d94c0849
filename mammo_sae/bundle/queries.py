"""The questions the dashboard asks of a bundle, answered as small tables (the views only lay them out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_sae.analysis.interventions import scale_vector
from mammo_sae.bundle.cases import sigmoid
from mammo_sae.bundle.format import BundleError, resolve_from
from mammo_sae.bundle.notes import LatentNotes
from mammo_sae.bundle.reader import Bundle
from mammo_sae.core.metrics import auprc, auroc


def intervention_scale(
    bundle: Bundle,
    *,
    concept: str | None,
    k: int,
    mode: str,
    latents: list[int] = (),  # type: ignore[assignment]
    scales: dict[int, float] | None = None,
) -> np.ndarray:
    """The per-latent scale of an intervention: keep or suppress the top-k union of a concept's two class
    rankings plus any listed latents, then per-latent scales on top."""
    if mode not in ("keep", "suppress", "none"):
        raise BundleError(f"mode must be keep, suppress or none, got {mode!r}")
    chosen = set(int(t) for t in latents)
    if concept is not None and k > 0:
        chosen |= set(bundle.topk_union(concept, k).tolist())
    chosen_list = sorted(chosen)
    if mode == "keep":
        return scale_vector(bundle.d_sae, keep=chosen_list, scales=scales)
    if mode == "suppress":
        return scale_vector(bundle.d_sae, suppress=chosen_list, scales=scales)
    return scale_vector(bundle.d_sae, scales=scales)


def case_intervention(
    bundle: Bundle, position: int, scale_l: np.ndarray, *, error_term: bool = False
) -> pd.DataFrame:
    """Per head: the probability with the SAE in place, then with the intervention (and the original)."""
    before = bundle.logits(None, [position], error_term=error_term)[0]
    after = bundle.logits(scale_l, [position], error_term=error_term)[0]
    row = bundle.images.iloc[position]
    return pd.DataFrame(
        {
            "head": list(bundle.tasks),
            "original": [float(sigmoid(row[f"logit_{t}_original"])) for t in bundle.tasks],
            "before": sigmoid(before),
            "after": sigmoid(after),
            "change": sigmoid(after) - sigmoid(before),
        }
    )


def dataset_metrics(
    bundle: Bundle, scale_l: np.ndarray | None, *, error_term: bool = False, unit: str = "image"
) -> pd.DataFrame:
    """AUROC / AUPRC of each head over the analysed split with the intervention (per image or per CSV row)."""
    logits = bundle.logits(scale_l, error_term=error_term)
    if unit == "image":
        positions, labels = np.arange(len(bundle.images)), bundle.images
    elif unit == "row":
        positions, labels = bundle.rows["position"].to_numpy(), bundle.rows
    else:
        raise BundleError(f"unit must be image or row, got {unit!r}")
    records = []
    for h, task in enumerate(bundle.tasks):
        if task not in labels:
            continue
        y, scores = labels[task].to_numpy(), logits[positions, h]
        records.append(
            {
                "head": task,
                "auroc": auroc(y, scores),
                "auprc": auprc(y, scores),
                "n": len(y),
                "positives": int(y.sum()),
            }
        )
    return pd.DataFrame.from_records(records)


def contributions_table(
    bundle: Bundle, position: int, task: str, top: int = 15, notes: LatentNotes | None = None
) -> pd.DataFrame:
    """A case's largest latent contributions to one head's logit, labelled with latent names."""
    table = bundle.contributions(position, task).head(top).copy()
    label = notes.labeller() if notes else (lambda t: f"#{t}")
    table["label"] = [label(int(t)) for t in table["latent"]]
    return table


def concept_table(
    bundle: Bundle, concept: str, cls: int, top: int = 50, notes: LatentNotes | None = None
) -> pd.DataFrame:
    """The ranked latents of a concept and class with their scores, statistics, effects and localisation."""
    ranked = bundle.rankings[(bundle.rankings["concept"] == concept) & (bundle.rankings["cls"] == cls)]
    ranked = ranked.sort_values("rank").head(top)
    latents = bundle.latents.loc[ranked["latent"].to_numpy()]
    table = pd.DataFrame(
        {
            "rank": ranked["rank"].to_numpy() + 1,
            "latent": ranked["latent"].to_numpy(),
            "class mean": ranked["zbar"].to_numpy(),
            "score": ranked["deviation"].to_numpy(),
            **({"peak score": ranked["peak_deviation"].to_numpy()} if "peak_deviation" in ranked else {}),
            "frequency": latents["frequency"].to_numpy(),
            "mean active": latents["mean_active"].to_numpy(),
            **{f"effect {t}": latents[f"effect_{t}"].to_numpy() for t in bundle.tasks},
        }
    )
    loc = bundle.localisation
    loc = loc[(loc["concept"] == concept) & (loc["cls"] == cls) & (loc["target"] == concept)].set_index(
        "latent"
    )
    for column, name in (("pointing", "pointing"), ("mean_iou", "IoU"), ("ap30", "AP@0.3")):
        table[name] = [float(loc.loc[t, column]) if t in loc.index else np.nan for t in table["latent"]]
    if notes is not None:
        entries = notes.all()
        table["name"] = [entries.get(int(t), {}).get("name", "") for t in table["latent"]]
    return table


def latent_histogram(bundle: Bundle, latent: int) -> pd.DataFrame:
    """The latent's non-zero activations binned over (0, max]."""
    counts = bundle.histograms[latent]
    peak = float(bundle.latents.loc[latent, "max"])
    edges = np.linspace(0, peak, len(counts) + 1)
    return pd.DataFrame({"from": edges[:-1], "to": edges[1:], "tokens": counts})


def latent_by_label(bundle: Bundle, latent: int) -> pd.DataFrame:
    """Each analysed image's mean activation of the latent with its labels (where it fires, by class)."""
    values = np.asarray(bundle.mean_latents[:, latent], dtype=np.float64)
    frame = bundle.images[["image_id", "study_id", *bundle.concepts]].copy()
    frame["mean activation"] = values
    return frame


def latent_effects(bundle: Bundle, latent: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "head": list(bundle.tasks),
            "effect": [float(bundle.heads.effect_lh[latent, h]) for h in range(len(bundle.tasks))],
        }
    )


def training_metrics(bundle: Bundle) -> pd.DataFrame:
    """The SAE's logged training metrics (``metrics.jsonl`` beside its weights)."""
    sae_dir = resolve_from(bundle.manifest["inputs"]["sae"]["path"], bundle.path)
    path = Path(sae_dir) / "metrics.jsonl"
    if not path.is_file():
        raise BundleError(f"no training log at {path}: the SAE was imported or its log was not kept")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut by an interrupted run
    return pd.DataFrame(rows)


def latent_peak(bundle: Bundle, position: int, latent: int) -> tuple[float, float]:
    """(x, y) in original pixels of the centre of the latent's strongest token on an image."""
    from mammo_sae.analysis.frames import transform_from_json

    row, col = np.unravel_index(int(np.argmax(bundle.latent_map(position, latent))), bundle.grid)
    (gh, gw), (frame_h, frame_w) = bundle.grid, bundle.frame_size
    transform = transform_from_json(bundle.images.iloc[position]["transform"])
    point = transform.points_to_original(
        np.array([[(col + 0.5) * frame_w / gw, (row + 0.5) * frame_h / gh]])
    )[0]
    return float(point[0]), float(point[1])
