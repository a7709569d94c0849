"""The questions the dashboard asks of a bundle, answered as small tables (the views only lay them out)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mammo_sae.analysis.interventions import scale_vector
from mammo_sae.analysis.scores import describe_ranking
from mammo_sae.bundle.cases import sigmoid, view_boxes
from mammo_sae.bundle.evidence_queries import badge_suffix, flag_list, latent_flags, patch_hits
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.notes import LatentNotes
from mammo_sae.bundle.reader import Bundle
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.metrics import auprc, auroc

BASELINE_NAMES = {
    "original": "original features",
    "sae": "SAE reconstruction",
    "sae_error": "reconstruction + error",
}
TRAINING_PANELS = (
    ("Loss parts", ("loss", "mse", "sparsity", "aux")),
    ("Active latents per token (L0)", ("l0",)),
    ("Fraction of variance unexplained", ("fvu",)),
    ("Dead and dense latents (fraction)", ("dead_fraction", "dense_fraction")),
)
ZOOM_CENTRES = ("heatmap peak", "first box", "image centre")


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


def labelled(
    table: pd.DataFrame, top: int, notes: LatentNotes | None, flags: pd.Series | None = None
) -> pd.DataFrame:
    """The first ``top`` rows of a contributions table with a ``label`` column (``#id name [badges]``)
    and, given the latents' ``flags`` (latent -> "off_breast,..."), a ``flags`` list column."""
    out = table.head(top).copy()
    label = notes.labeller() if notes else (lambda t: f"#{t}")
    flags = flags if flags is not None else pd.Series(dtype=object)
    out["label"] = [label(int(t)) + badge_suffix(flags.get(int(t), "")) for t in out["latent"]]
    out["flags"] = [flag_list(flags.get(int(t), "")) for t in out["latent"]]
    return out


def contributions_table(
    bundle: Bundle, position: int, task: str, top: int = 15, notes: LatentNotes | None = None
) -> pd.DataFrame:
    """A case's largest latent contributions to one head's logit, labelled with latent names and flags."""
    return labelled(bundle.contributions(position, task), top, notes, latent_flags(bundle))


def strongest_view(bundle: Bundle, positions: list[int], task: str) -> int:
    """Of a study's analysed views (bundle positions), the one with the highest original ``task`` logit."""
    assert positions, "a study has at least one analysed view"
    logits = bundle.images[f"logit_{task}_original"].to_numpy()
    return max(positions, key=lambda p: float(logits[p]))


def baseline_table(bundle: Bundle, unit: str = "image") -> pd.DataFrame:
    """AUROC per head (rows) and variant (original features, SAE reconstruction, + error; columns)."""
    baselines = bundle.baselines
    table = baselines[baselines["unit"] == unit].pivot_table(index="head", columns="variant", values="auroc")
    return table.rename(columns=BASELINE_NAMES)


def ranking_caption(bundle: Bundle, cls: int) -> str:
    """What orders the concept table, in words; a manifest naming an unknown score says so, not raises."""
    try:
        ranked_by = f"Ranked by {describe_ranking(bundle.rank_by, cls)}"
    except MammoSaeError as error:  # a hand-edited manifest: the table itself is intact
        ranked_by = f"Ranking score not recognised in this bundle's manifest ({error})"
    return f"{ranked_by}, on the {bundle.manifest['splits']['score']} split"


def curve_rows(bundle: Bundle, unit: str, error_term: bool) -> pd.DataFrame:
    """The precomputed keep / suppress curves of one unit (image or row), with or without the error term."""
    curves = bundle.curves
    return curves[(curves["unit"] == unit) & (curves["error_term"] == error_term)]


def top_patches(bundle: Bundle, latent: int, n: int = 12) -> pd.DataFrame:
    """The latent's ``n`` top-activating patches, strongest first, with ``study_id`` and ``hits`` (the
    kinds of the ground-truth boxes each patch overlaps)."""
    patches = bundle.patches
    top = patches[patches["latent"] == latent].sort_values("rank").head(n).reset_index(drop=True)
    top["study_id"] = bundle.images["study_id"].to_numpy()[top["image"].to_numpy()]
    top["hits"] = patch_hits(bundle, top)
    return top


def latent_stats(bundle: Bundle, latent: int) -> dict[str, float]:
    """How often and how strongly a latent fires on the analysed split."""
    row = bundle.latents.loc[latent]
    return {key: float(row[key]) for key in ("frequency", "images", "mean_active", "max")}


def live_probabilities(case, tasks: tuple[str, ...]) -> pd.DataFrame:
    """Per head, an uploaded case's probability with the original features and with the SAE in place."""
    return pd.DataFrame(
        {
            "head": list(tasks),
            "original": [float(sigmoid(case.logits_original[t])) for t in tasks],
            "sae": [float(sigmoid(case.logits_sae[t])) for t in tasks],
        }
    )


def live_contributions_table(
    live, case, task: str, top: int = 15, notes: LatentNotes | None = None, flags: pd.Series | None = None
) -> pd.DataFrame:
    """An uploaded case's largest latent contributions to one head's logit, labelled like a bundle case."""
    return labelled(live.contributions(case, task), top, notes, flags)


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
    flags = latent_flags(bundle)
    table.insert(2, "flags", [flag_list(flags.get(int(t), "")) for t in table["latent"]])
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


def latent_by_label_long(bundle: Bundle, latent: int) -> pd.DataFrame:
    """``latent_by_label`` with one row per (image, concept): columns concept and label, for a box plot."""
    return latent_by_label(bundle, latent).melt(
        ["image_id", "study_id", "mean activation"], var_name="concept", value_name="label"
    )


def latent_effects(bundle: Bundle, latent: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "head": list(bundle.tasks),
            "effect": [float(bundle.heads.effect_lh[latent, h]) for h in range(len(bundle.tasks))],
        }
    )


def training_metrics(bundle: Bundle) -> pd.DataFrame:
    """The SAE's logged training metrics (``metrics.jsonl`` beside its weights)."""
    path = bundle.sae_dir / "metrics.jsonl"
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


def training_panels(metrics: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """The training report's panels: (title, x column, long table of x / metric / value) for each panel
    whose metrics were logged; x is tokens seen when logged, else the step."""
    x = "tokens" if "tokens" in metrics else "step"
    panels = []
    for title, wanted in TRAINING_PANELS:
        fields = [f for f in wanted if f in metrics]
        if fields:
            panels.append((title, x, metrics[[x, *fields]].melt(x, var_name="metric", value_name="value")))
    return panels


def zoom_centre(
    bundle: Bundle, position: int, choice: str, latent: int | None, shape: tuple[int, ...]
) -> tuple[float, float]:
    """(x, y) in original pixels where the zoom window centres: the latent's peak, the first ground-truth
    box or the image centre (``shape``: the full-resolution image's), falling back to the centre."""
    if choice not in ZOOM_CENTRES:
        raise BundleError(f"the zoom centres on one of {', '.join(ZOOM_CENTRES)}, got {choice!r}")
    if choice == "heatmap peak" and latent is not None:
        return latent_peak(bundle, position, latent)
    if choice == "first box":
        boxes = view_boxes(bundle, position, bundle.concepts)
        if len(boxes):
            b = boxes.iloc[0]
            return float((b.xmin + b.xmax) / 2), float((b.ymin + b.ymax) / 2)
    return shape[1] / 2, shape[0] / 2


def latent_peak(bundle: Bundle, position: int, latent: int) -> tuple[float, float]:
    """(x, y) in original pixels of the centre of the latent's strongest token on an image."""
    from mammo_sae.data.frames import transform_from_json

    row, col = np.unravel_index(int(np.argmax(bundle.latent_map(position, latent))), bundle.grid)
    (gh, gw), (frame_h, frame_w) = bundle.grid, bundle.frame_size
    transform = transform_from_json(bundle.images.iloc[position]["transform"])
    point = transform.points_to_original(
        np.array([[(col + 0.5) * frame_w / gw, (row + 0.5) * frame_h / gh]])
    )[0]
    return float(point[0]), float(point[1])
