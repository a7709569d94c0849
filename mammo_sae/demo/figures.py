"""The demo's figures (issue 18, points 8 and 9), measured from one bundle's files, each rate or AUROC over
images with its study-level bootstrap interval, and the table that puts several held-out sets side by side.

    python -m mammo_sae.demo.figures weights/demo/bundle OTHER/bundle ... --json figures.json --markdown figures.md

A figure whose table the bundle lacks (evidence maps, latent flags, the shortcut audit, the marker
counterfactual) is None, never an error: older bundles predate them. Every figure is a record
``{"value", "low", "high", "studies", ...}`` named ``"<figure>.<head or kind>"``; ``figures_table`` lays
the records of several sets out as markdown, a target counting as met only if it holds on every set.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae.analysis.bootstrap import Interval, auroc_statistic, rate_statistic, study_bootstrap
from mammo_sae.analysis.evidence_regions import evidence_pointing
from mammo_sae.analysis.localisation import pointing_hits
from mammo_sae.analysis.peaks import FRAME_BOX, TOLERANCE_COLUMNS, marker_latents, pointing_tolerances
from mammo_sae.bundle.reader import Bundle, open_bundle
from mammo_sae.bundle.writing.report import dataset_line
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.config_cli import REQUIRED, Command, knob, module_prog
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.demo import quality

CONTRIBUTORS_TOP = 20  # case-contributor latents pooled over the positive images
CONTRIBUTOR_HEAD = "calcification"
SUPPRESSED_FLAGS = ("off_breast", "marker")  # what the shortcut audit suppresses

#: figure name -> (comparison, bound); a target is met on a set when the figure's value satisfies it
TARGETS: dict[str, tuple[str, float]] = {
    "auroc.calcification": quality.TARGETS["classifier_auroc.calcification"],
    "auroc.mass": quality.TARGETS["classifier_auroc.mass"],
    "pointing.calcification": quality.TARGETS["pointing_top_latent.calcification"],
    "pointing.mass": quality.TARGETS["pointing_top_latent.mass"],
    "marker_latents.flagged_marker": (">=", 0.90),
    "dead_latents.analysed": quality.TARGETS["sae.dead_fraction"],
}

#: figure prefix -> how the table names it (the suffix, a head or kind, follows)
LABELS = {
    "auroc": "classifier AUROC (original features)",
    "pointing": "pointing game of the top class-1 latent, with the tolerance",
    "pointing_strict": "pointing game of the top class-1 latent, strictly inside the box",
    "marker_latents.count": "marker latents (the report's criterion)",
    "marker_latents.flagged_marker": "share of the marker latents flagged `marker` (the flag includes the criterion)",
    "marker_latents.profile_rule": "share of the marker latents whose activation share on markers alone meets the flag",
    "breast_pooling_auroc": "AUROC with the head pooled over breast tokens only (no retraining)",
    "case_contributors.off_breast": "share of the top-20 calcification case contributors flagged `off_breast`",
    "case_contributors.marker": "share of the top-20 calcification case contributors flagged `marker`",
    "evidence_exactness": "evidence map sum minus (logit - bias), max |error|",
    "evidence_pointing": "pointing game of the head's evidence map on positive images, with the tolerance",
    "evidence_pointing_strict": "pointing game of the head's evidence map on positive images, strict",
    "shortcut_auroc": "AUROC with every off_breast + marker latent suppressed",
    "marker_rate.positive": "share of confounder-positive images with a marker",
    "marker_rate.negative": "share of confounder-negative images with a marker",
    "marker_pairing.without_vs_with": "AUROC, positives without a marker vs negatives with one (as observed)",
    "marker_pairing.with_vs_without": "AUROC, positives with a marker vs negatives without one (as observed)",
    "marker_shift": "mean logit shift from adding the marker (counterfactual)",
    "counterfactual_pairing.without_vs_with": "AUROC, positives without vs negatives with marker (counterfactual)",
    "counterfactual_pairing.with_vs_without": "AUROC, positives with vs negatives without marker (counterfactual)",
    "dead_latents.analysed": "dead latents over the analysed tokens",
    "dead_latents.sae_validation": "dead latents on the SAE's validation tokens",
    "dead_latents.sae_training": "dead latents over the SAE's last training window",
}


class FiguresError(MammoSaeError):
    """The figures cannot be measured (a bundle without images, a table that contradicts the manifest)."""


# --- records -------------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _record(interval: Interval, **extra: Any) -> dict[str, Any]:
    return interval.as_dict() | {k: _clean(v) for k, v in extra.items()}


def _value(value: Any, **extra: Any) -> dict[str, Any]:
    return {"value": _clean(value)} | {k: _clean(v) for k, v in extra.items()}


@dataclass(frozen=True)
class _Set:
    """What every figure of one bundle needs: the bundle, its images' studies and labels, its boxes with
    per-axis pointing tolerances, and the bootstrap settings."""

    bundle: Bundle
    studies_n: np.ndarray
    boxes: pd.DataFrame
    n_boot: int
    seed: int

    def bootstrap(self, statistic: Any, *arrays: np.ndarray) -> Interval:
        return study_bootstrap(statistic, self.studies_n, *arrays, n_boot=self.n_boot, seed=self.seed)

    @property
    def images(self) -> pd.DataFrame:
        return self.bundle.images

    def labels(self, task: str) -> np.ndarray | None:
        return self.images[task].to_numpy().astype(np.int64) if task in self.images else None

    def kind_boxes(self, kind: str) -> dict[int, pd.DataFrame]:
        part = self.boxes[self.boxes["kind"] == kind]
        return {int(p): g for p, g in part.groupby("position")}


def _boxes_with_tolerances(bundle: Bundle) -> pd.DataFrame:
    """The bundle's boxes with per-axis pointing tolerances (recorded, else from the manifest's setting)."""
    boxes = bundle.boxes
    if set(TOLERANCE_COLUMNS) <= set(boxes):
        return boxes
    original_px = float(bundle.manifest["config"].get("pointing_tolerance", 0.0))
    return boxes.drop(columns=["tolerance"], errors="ignore").join(pointing_tolerances(boxes, original_px))


def _flag_sets(bundle: Bundle) -> pd.Series | None:
    """latent -> its set of flags; None on bundles without flags."""
    latents = bundle.latents
    if "flags" not in latents:
        return None
    return (
        latents["flags"].fillna("").astype(str).map(lambda f: {x.strip() for x in f.split(",") if x.strip()})
    )


# --- the figures -------------------------------------------------------------------------------------------------


def auroc_figures(s: _Set) -> dict[str, Any]:
    """Per head: AUROC of the original logits over the images, with its study interval."""
    out = {}
    for task in s.bundle.tasks:
        labels = s.labels(task)
        if labels is None:
            continue
        scores = s.images[f"logit_{task}_original"].to_numpy(np.float64)
        out[f"auroc.{task}"] = _record(s.bootstrap(auroc_statistic, labels, scores), images=len(labels))
    return out


def top_latent_pointing(s: _Set) -> dict[str, Any]:
    """Per concept: the pointing game of the top class-1 latent on the images holding the concept's boxes,
    with the per-axis tolerance and strictly inside (the interval resamples the set's studies)."""
    out = {}
    ranked = s.bundle.rankings
    for concept in s.bundle.concepts:
        top = ranked[(ranked["concept"] == concept) & (ranked["cls"] == 1) & (ranked["rank"] == 0)]
        groups = s.kind_boxes(concept)
        if top.empty or not groups:
            out[f"pointing.{concept}"] = out[f"pointing_strict.{concept}"] = None
            continue
        latent = int(top["latent"].iloc[0])
        positions = sorted(groups)
        maps = [s.bundle.latent_map(p, latent) for p in positions]
        gt = [groups[p][FRAME_BOX].to_numpy() for p in positions]
        tolerances = [tuple(groups[p][TOLERANCE_COLUMNS].iloc[0].to_numpy(np.float64)) for p in positions]
        tolerant, strict = pointing_hits(maps, gt, s.bundle.frame_size, tolerances)
        mask = np.zeros(len(s.images), dtype=bool)
        mask[positions] = True
        for name, hits in (("pointing", tolerant), ("pointing_strict", strict)):
            values = np.zeros(len(s.images))
            values[positions] = hits
            interval = s.bootstrap(rate_statistic, values, mask)
            out[f"{name}.{concept}"] = _record(interval, latent=latent, images=len(positions))
    return out


def marker_latent_figures(s: _Set, flags: pd.Series | None) -> dict[str, Any]:
    """How many latents meet the report's marker criterion, and the share of them flagged ``marker``."""
    latents = s.bundle.latents
    if "peak_in_marker" not in latents:
        return {"marker_latents.count": None, "marker_latents.flagged_marker": None}
    n_markers = int((s.boxes["kind"] == "marker").sum())
    hits = marker_latents(latents, n_markers)
    count = _value(len(hits), support=hits.attrs["support"])
    if flags is None or not len(hits):
        return {"marker_latents.count": count, "marker_latents.flagged_marker": None}
    flagged = int(sum("marker" in flags.loc[i] for i in hits.index))
    share = _value(flagged / len(hits), count=flagged, of=len(hits))
    # the flag includes the report's own criterion (so those latents are badged wherever they are listed);
    # the independent check is the location profile's activation-share rule on its own
    threshold = float(s.bundle.manifest["config"].get("flag_marker", 0.5))
    by_share = (
        int((latents.loc[hits.index, "share_marker"] >= threshold).sum()) if "share_marker" in latents else 0
    )
    profile = _value(by_share / len(hits), count=by_share, of=len(hits), threshold=threshold)
    return {
        "marker_latents.count": count,
        "marker_latents.flagged_marker": share,
        "marker_latents.profile_rule": profile if "share_marker" in latents else None,
    }


def case_contributors(s: _Set, flags: pd.Series | None, task: str = CONTRIBUTOR_HEAD) -> dict[str, Any]:
    """The top-20 latents by total positive contribution ``zbar_i * effect_i`` to ``task``'s logit over the
    task's positive images, and the share of them flagged ``off_breast`` and ``marker`` (None without flags;
    the ``off_breast`` record lists the latents either way)."""
    labels = s.labels(task)
    if labels is None or task not in s.bundle.tasks or not labels.any():
        return {}
    effect_l = s.bundle.heads.effect_lh[:, s.bundle.heads.index(task)]
    zbar_nl = np.asarray(s.bundle.mean_latents[np.flatnonzero(labels)], dtype=np.float64)
    total_l = np.maximum(zbar_nl * effect_l, 0.0).sum(axis=0)
    top = [int(t) for t in np.argsort(-total_l, kind="stable")[:CONTRIBUTORS_TOP] if total_l[t] > 0]
    share = float(total_l[top].sum() / total_l.sum()) if top else None
    about = {"latents": top, "share_of_positive_contribution": share, "images": int(labels.sum())}
    out: dict[str, Any] = {}
    for flag in ("off_breast", "marker"):
        flagged = None if flags is None else [t for t in top if flag in flags.loc[t]]
        value = len(flagged) / len(top) if flagged is not None and top else None
        out[f"case_contributors.{flag}"] = _value(
            value,
            count=None if flagged is None else len(flagged),
            of=len(top),
            flagged=flagged,
            **(about if flag == "off_breast" else {}),
        )
    return out


def _evidence_nht(bundle: Bundle) -> np.ndarray | None:
    """[n, heads, T] evidence of every image, or None when the bundle has no evidence maps."""
    if not getattr(bundle, "has_evidence", False):
        return None
    maps = [bundle.evidence(p) for p in range(len(bundle.images))]
    return np.stack([m.reshape(m.shape[0], -1) for m in maps])


def breast_pooling(s: _Set, evidence_nht: np.ndarray, bias_h: np.ndarray) -> dict[str, Any]:
    """Per head: the AUROC when the head pools over breast tokens only (background, border and marker tokens
    left out, the mean taken over the rest), from the evidence maps: does the head need what lies off the
    breast? Measured without retraining."""
    labels_nt, names = s.bundle._regions if s.bundle.has_evidence else (None, ())
    out: dict[str, Any] = {}
    if labels_nt is None:
        return out
    left_out = [names.index(n) for n in ("background", "border", "marker") if n in names]
    keep_nt = ~np.isin(labels_nt, left_out)
    tokens = labels_nt.shape[1]
    for h, task in enumerate(s.bundle.tasks):
        labels = s.labels(task)
        if labels is None:
            continue
        kept = np.maximum(keep_nt.sum(axis=1), 1)
        logit_n = bias_h[h] + (evidence_nht[:, h] * keep_nt).sum(axis=1) * tokens / kept
        interval = s.bootstrap(auroc_statistic, labels, logit_n)
        out[f"breast_pooling_auroc.{task}"] = _record(interval)
    return out


def evidence_figures(s: _Set) -> dict[str, Any]:
    """How exactly the evidence maps sum to each logit minus its bias, and per head the pointing game of its
    evidence map on the positive images holding its category's boxes."""
    tasks = s.bundle.tasks
    evidence_nht = _evidence_nht(s.bundle)
    if evidence_nht is None:
        empty: dict[str, Any] = {"evidence_exactness": None}
        for task in tasks:
            empty[f"evidence_pointing.{task}"] = empty[f"evidence_pointing_strict.{task}"] = None
        return empty
    with np.load(s.bundle.path / "heads.npz") as heads:
        bias_h = heads["bias_h"].astype(np.float64)
    logits_nh = np.stack([s.images[f"logit_{t}_original"].to_numpy(np.float64) for t in tasks], axis=1)
    error = np.abs(evidence_nht.astype(np.float64).sum(axis=2) + bias_h - logits_nh)
    out: dict[str, Any] = {"evidence_exactness": _value(float(error.max()), mean=float(error.mean()))}
    out |= breast_pooling(s, evidence_nht, bias_h)
    for h, task in enumerate(tasks):
        labels, groups = s.labels(task), s.kind_boxes(task)
        positions = sorted(p for p in groups if labels is not None and labels[p] == 1)
        if not positions:
            out[f"evidence_pointing.{task}"] = out[f"evidence_pointing_strict.{task}"] = None
            continue
        gt = [groups[p][FRAME_BOX].to_numpy() for p in positions]
        mask = np.zeros(len(s.images), dtype=bool)
        mask[positions] = True
        for name, tolerances in (
            ("evidence_pointing", [tuple(groups[p][TOLERANCE_COLUMNS].iloc[0]) for p in positions]),
            ("evidence_pointing_strict", [(0.0, 0.0)] * len(positions)),
        ):
            hits = evidence_pointing(
                evidence_nht[positions, h], gt, s.bundle.grid, s.bundle.frame_size, tolerances
            )
            values = np.zeros(len(s.images))
            values[positions] = hits
            out[f"{name}.{task}"] = _record(s.bootstrap(rate_statistic, values, mask), images=len(positions))
    return out


def _reported_shortcuts(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest summary's ``shortcut_summary`` as task -> record (it may be a mapping or a list)."""
    summary = (manifest.get("summary") or {}).get("shortcut_summary")
    if summary is None:
        return {}
    if isinstance(summary, Mapping):
        return {str(task): dict(record) for task, record in summary.items()}
    return {str(record["task"]): dict(record) for record in summary if "task" in record}


def _suppressed_auroc(record: Mapping[str, Any]) -> float | None:
    keys = [k for k in record if "auroc" in k.lower() and "suppress" in k.lower()]
    return float(record[keys[0]]) if keys and record[keys[0]] is not None else None


def shortcut_figures(s: _Set, flags: pd.Series | None) -> dict[str, Any]:
    """Per head: the AUROC with every ``off_breast`` + ``marker`` latent suppressed (the SAE reconstruction
    plus the error term, as the analysed variant ``sae_error``), beside the manifest's reported value."""
    reported = _reported_shortcuts(s.bundle.manifest)
    out: dict[str, Any] = {}
    if flags is None:
        return {f"shortcut_auroc.{task}": None for task in s.bundle.tasks}
    suppressed = np.array([bool(f & set(SUPPRESSED_FLAGS)) for f in flags.sort_index()])
    heads = s.bundle.heads
    assert len(suppressed) == heads.d_sae, "latents.parquet holds one row per latent"
    effect_lh = heads.effect_lh * (~suppressed)[:, None]
    zbar_nl = np.asarray(s.bundle.mean_latents, dtype=np.float64)
    for h, task in enumerate(heads.tasks):
        labels = s.labels(task)
        if labels is None:
            continue
        logits = zbar_nl @ effect_lh[:, h] + heads.const_h[h] + s.images[f"error_{task}"].to_numpy(np.float64)
        interval = s.bootstrap(auroc_statistic, labels, logits)
        record = reported.get(task)
        out[f"shortcut_auroc.{task}"] = _record(
            interval,
            suppressed=int(suppressed.sum()),
            reported=_suppressed_auroc(record) if record else None,
        )
    return out


def _marker_positions(s: _Set) -> np.ndarray:
    """[n] bool: the images holding a burned-in marker box."""
    has = np.zeros(len(s.images), dtype=bool)
    has[s.boxes.loc[s.boxes["kind"] == "marker", "position"].to_numpy(np.int64)] = True
    return has


def confounder_figures(s: _Set) -> dict[str, Any]:
    """On phantom sets with markers: the marker rate among the confounder finding's positive and negative
    images, and for that head the AUROC of each adversarial pairing of classes with and without markers."""
    phantom = (s.bundle.manifest["inputs"]["dataset"].get("phantom") or {}).get("parameters") or {}
    task = phantom.get("confounder_finding", CONTRIBUTOR_HEAD)
    labels = s.labels(task)
    if not (s.boxes["kind"] == "marker").any() or labels is None:
        return {}
    marker = _marker_positions(s).astype(np.float64)
    out = {
        "marker_rate.positive": _record(s.bootstrap(rate_statistic, marker, labels == 1), finding=task),
        "marker_rate.negative": _record(s.bootstrap(rate_statistic, marker, labels == 0), finding=task),
    }
    if task in s.bundle.tasks:
        logits = s.images[f"logit_{task}_original"].to_numpy(np.float64)
        has = marker.astype(bool)
        pos, neg = labels == 1, labels == 0
        pairings = (
            ("without_vs_with", (pos & ~has) | (neg & has)),
            ("with_vs_without", (pos & has) | (neg & ~has)),
        )
        for name, keep in pairings:
            # the images of the other pairing weigh 0: a resample draws the set's studies as for every figure
            interval = s.bootstrap(auroc_statistic, labels, logits, keep)
            out[f"marker_pairing.{name}.{task}"] = _record(interval, images=int(keep.sum()))
    return out


def counterfactual_figures(s: _Set) -> dict[str, Any]:
    """From ``counterfactual.parquet`` (each image's logits with and without its marker, columns
    ``logit_with_<task>`` / ``logit_without_<task>``, or ``logit_<task>_with`` / ``_without``): per head the
    mean logit shift from adding the marker and the AUROC of both adversarial pairings; {} without the table."""
    table = getattr(s.bundle, "counterfactual", None)
    if table is None or table.empty or "position" not in table:
        return {}
    positions = table["position"].to_numpy(np.int64)
    studies = s.studies_n[positions]
    out: dict[str, Any] = {}
    for task in s.bundle.tasks:
        names = [
            (f"logit_with_{task}", f"logit_without_{task}"),
            (f"logit_{task}_with", f"logit_{task}_without"),
        ]
        found = [pair for pair in names if pair[0] in table and pair[1] in table]
        if not found:
            continue
        with_col, without_col = found[0]
        with_, without = table[with_col].to_numpy(np.float64), table[without_col].to_numpy(np.float64)

        def boot(statistic: Any, *arrays: np.ndarray, rows: np.ndarray = studies) -> Interval:
            return study_bootstrap(statistic, rows, *arrays, n_boot=s.n_boot, seed=s.seed)

        out[f"marker_shift.{task}"] = _record(boot(rate_statistic, with_ - without), images=len(table))
        labels = s.labels(task)
        if labels is None:
            continue
        y = labels[positions]
        for name, pos_scores, neg_scores in (
            ("without_vs_with", without, with_),
            ("with_vs_without", with_, without),
        ):
            scores = np.where(y == 1, pos_scores, neg_scores)
            out[f"counterfactual_pairing.{name}.{task}"] = _record(boot(auroc_statistic, y, scores))
    return out


def _sae_folder(bundle: Bundle) -> Path | None:
    """The bundle's SAE folder on this machine, found by identity, else beside the bundle; None if neither."""
    try:
        return bundle.sae_dir
    except MammoSaeError:
        pass
    name = bundle.manifest["inputs"]["sae"].get("name") or "sae"
    folder = bundle.path.parent / name
    return folder if (folder / "cfg.json").is_file() else None


def dead_latent_figures(bundle: Bundle) -> dict[str, Any]:
    """Dead latents (never active) over the analysed tokens, beside the SAE's own validation figure and its
    last training window, each with the number of tokens it was measured on."""
    sae = bundle.manifest["summary"]["sae"]
    d_sae = bundle.d_sae
    analysed = _value(
        sae.get("dead_fraction"),
        tokens=sae.get("tokens"),
        latents=round(float(sae["dead_fraction"]) * d_sae) if sae.get("dead_fraction") is not None else None,
        of=d_sae,
    )
    out: dict[str, Any] = {"dead_latents.analysed": analysed}
    out["dead_latents.sae_validation"] = out["dead_latents.sae_training"] = None
    folder = _sae_folder(bundle)
    if folder is None:
        return out
    cfg = json.loads((folder / "cfg.json").read_text()) if (folder / "cfg.json").is_file() else {}
    metadata = cfg.get("metadata") or {}
    evaluation = metadata.get("eval")
    if (folder / "eval.json").is_file():
        evaluation = json.loads((folder / "eval.json").read_text())
    if evaluation and evaluation.get("dead_fraction") is not None:
        out["dead_latents.sae_validation"] = _value(
            float(evaluation["dead_fraction"]),
            tokens=evaluation.get("n_tokens"),
            latents=round(float(evaluation["dead_fraction"]) * d_sae),
            of=d_sae,
            on=evaluation.get("on"),
        )
    log = folder / "metrics.jsonl"
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        last = json.loads(lines[-1]) if lines else {}
        if last.get("dead_fraction") is not None:
            window = (metadata.get("train_config") or {}).get("dead_window")
            out["dead_latents.sae_training"] = _value(
                float(last["dead_fraction"]), tokens=window, step=last.get("step"), of=d_sae
            )
    return out


def demo_figures(bundle_dir: str | Path, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every figure of issue 18's points 8 and 9 from one bundle's files: ``{"bundle", "dataset", "images",
    "studies", "figures": {name: record or None}}``; rates and AUROCs over images carry their study-level
    bootstrap 95% interval (``n_boot`` resamples, ``seed``)."""
    bundle = open_bundle(bundle_dir, check_inputs=False)
    images = bundle.images
    if images.empty:
        raise FiguresError(f"{bundle_dir} analyses no image; nothing to measure")
    if not images["position"].equals(pd.Series(np.arange(len(images)), name="position")):
        raise FiguresError(f"{bundle_dir}: images.parquet is not in position order; rebuild the bundle")
    s = _Set(
        bundle=bundle,
        studies_n=images["study_id"].astype(str).to_numpy(),
        boxes=_boxes_with_tolerances(bundle),
        n_boot=n_boot,
        seed=seed,
    )
    flags = _flag_sets(bundle)
    figures: dict[str, Any] = {}
    figures |= auroc_figures(s)
    figures |= top_latent_pointing(s)
    figures |= marker_latent_figures(s, flags)
    figures |= case_contributors(s, flags)
    figures |= evidence_figures(s)
    figures |= shortcut_figures(s, flags)
    figures |= confounder_figures(s)
    figures |= counterfactual_figures(s)
    figures |= dead_latent_figures(bundle)
    return {
        "bundle": str(bundle_dir),
        "dataset": dataset_line(bundle.manifest),
        "images": len(images),
        "studies": int(images["study_id"].nunique()),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "unit": "study"},
        "figures": figures,
    }


# --- the table ---------------------------------------------------------------------------------------------------


def figure_label(name: str) -> str:
    """``pointing_strict.mass`` -> "pointing game ..., strictly inside the box (mass)"."""
    for prefix in sorted(LABELS, key=len, reverse=True):
        if name == prefix:
            return LABELS[prefix]
        if name.startswith(prefix + "."):
            return f"{LABELS[prefix]} ({name[len(prefix) + 1 :]})"
    return name


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def figure_cell(record: Mapping[str, Any] | None) -> str:
    """One set's figure: value [low, high] for intervals, with "k/n" for shares of counted latents."""
    if record is None or record.get("value") is None:
        return "–"
    text = _number(record["value"])
    if record.get("low") is not None and record.get("high") is not None:
        text += f" [{_number(record['low'])}, {_number(record['high'])}]"
    if record.get("count") is not None and record.get("of") is not None:
        text += f" ({record['count']}/{record['of']})"
    elif record.get("tokens") is not None:
        text += f" ({_number(int(record['tokens']))} tokens)"
    return text


def target_met(name: str, record: Mapping[str, Any] | None) -> bool | None:
    """Whether the figure meets its target (None: no target, or not measured)."""
    if name not in TARGETS or record is None or record.get("value") is None:
        return None
    op, bound = TARGETS[name]
    return record["value"] >= bound if op == ">=" else record["value"] <= bound


def figures_table(figures_by_set: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per figure, one column per held-out set, the target, and whether it is met on all
    of them (a set where the figure is missing counts as not met)."""
    sets = list(figures_by_set)
    names: list[str] = []
    for figures in figures_by_set.values():
        names += [n for n in figures["figures"] if n not in names]
    header = ["figure", "target", *sets, f"met on all {len(sets)}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name in names:
        records = [figures_by_set[s]["figures"].get(name) for s in sets]
        if all(r is None for r in records):
            continue
        target = f"{TARGETS[name][0]} {TARGETS[name][1]:g}" if name in TARGETS else ""
        met = [target_met(name, r) for r in records]
        verdict = "" if name not in TARGETS else ("yes" if all(m is True for m in met) else "no")
        lines.append(
            "| " + " | ".join([figure_label(name), target, *map(figure_cell, records), verdict]) + " |"
        )
    intervals = (
        "Study-level bootstrap 95% intervals in brackets; – where the bundle lacks the table or the set cannot "
        "define the figure."
    )
    return "\n".join(lines) + f"\n\n{intervals}\n"


# --- the command -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FiguresConfig:
    """Every knob of `python -m mammo_sae.demo.figures`."""

    bundles: tuple[str, ...] = knob(
        REQUIRED,
        "bundle folders, one per held-out set (the first is the shipped one)",
        positional=True,
        repeat=True,
        metavar="BUNDLE",
    )
    json: str | None = knob(None, "write every set's figures to this JSON file")
    markdown: str | None = knob(None, "write the side-by-side markdown table to this file")
    n_boot: int = knob(1000, "bootstrap resamples of the studies")
    seed: int = knob(0, "seed of the bootstrap resamples")

    def validate(self) -> FiguresConfig:
        if self.n_boot < 1:
            raise FiguresError(f"--n-boot must be >= 1, got {self.n_boot}")
        return self


def set_names(bundles: Sequence[str]) -> list[str]:
    """A column name per bundle: its folder and the one above (``demo/bundle``), made unique."""
    names: list[str] = []
    for folder in bundles:
        path = Path(folder).resolve()
        name = f"{path.parent.name}/{path.name}"
        names.append(name if name not in names else f"{name} ({len(names) + 1})")
    return names


def run(config: FiguresConfig) -> dict[str, Any]:
    by_set = {
        name: demo_figures(folder, n_boot=config.n_boot, seed=config.seed)
        for name, folder in zip(set_names(config.bundles), config.bundles, strict=True)
    }
    if config.json:
        atomic_write_text(Path(config.json), json.dumps(by_set, indent=1) + "\n")
    table = figures_table(by_set)
    if config.markdown:
        atomic_write_text(Path(config.markdown), table)
    return by_set


COMMAND = Command(
    prog=module_prog("demo.figures"),
    config=FiguresConfig,
    job=run,
    description="Measure the demo's figures (classifier AUROC, pointing, marker latents and flags, case "
    "contributors, evidence pointing, shortcut audit, marker confounder, dead latents) from one or more "
    "bundles, each with its study-level bootstrap 95% interval, and lay them side by side.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
