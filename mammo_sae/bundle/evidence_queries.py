"""The questions the app asks about evidence: which head matters for a study, where that head's evidence
lies on a view (one line of words), what fires at a clicked point or a ground-truth finding, which latents
carry artefact flags (as badges), which top patches hit a finding, and the shortcut audit's tables.

Bundles from before evidence maps (format < 3) lack the files: every question here then answers None
(or an empty table), never a made-up number, and ``EVIDENCE_MISSING`` is the note the app shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae.analysis.fires_here import image_entries, region_tokens, what_fires_here
from mammo_sae.analysis.regions import BOX_PREFIX, OFF_BREAST
from mammo_sae.analysis.shortcuts import SUPPRESS_DEFAULT, suppression_set
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.notes import LatentNotes
from mammo_sae.bundle.reader import Bundle
from mammo_sae.data.frames import transform_from_json

EVIDENCE_MISSING = (
    "This bundle predates evidence maps (no evidence.npy / regions.npz): the views show latent maps only. "
    "Rebuild it with python -m mammo_sae.analyze to see where each head's evidence lies."
)
#: badge text of each flag kind (``lesion:<category>`` reads "<category> lesion")
FLAG_TEXT = {"off_breast": "off-breast", "marker": "marker"}
#: the column of counterfactual_latents.parquet that says how much a latent carries the marker's logit shift
CARRIER_VALUE = "contribution_change"
ADVERSARIAL = "AUROC adversarial"  # positives without the marker against negatives with it
FAVOURABLE = "AUROC favourable"  # positives with the marker against negatives without it
COUNTERFACTUAL_NAMES = {
    "head": "head",
    "images": "images",
    "mean_shift": "mean logit shift",
    "sem": "± s.e.m.",
    "median_shift": "median shift",
    "auroc_as_is": "AUROC as analysed",
    "auroc_adversarial": ADVERSARIAL,
    "auroc_favourable": FAVOURABLE,
    "latents_changed": "latents changed",
}
SHORTCUT_COLUMNS = (
    "rank",
    "latent",
    "label",
    "flags",
    "suppressed",
    "share",
    "difference",
    "class1_mean",
    "class0_mean",
)
CARRIER_COLUMNS = (
    "latent",
    "label",
    "flags",
    CARRIER_VALUE,
    "activation_change",
    "images_more",
    "images_less",
    "share",
)
LESION = "lesion"


# --- flags as badges -----------------------------------------------------------------------------------------


def latent_flags(bundle: Bundle) -> pd.Series:
    """latent id -> its flags as a comma-separated string ("" for none; all "" on bundles without flags)."""
    latents = bundle.latents
    if "flags" not in latents:
        return pd.Series("", index=latents.index, dtype=object)
    return latents["flags"].fillna("").astype(str)


def flag_list(flags: str) -> list[str]:
    """``"off_breast,lesion:mass"`` -> ``["off_breast", "lesion:mass"]`` (order kept, blanks dropped)."""
    return [f.strip() for f in str(flags or "").split(",") if f.strip()]


def flag_text(flag: str) -> str:
    """One flag as a badge reads: ``off-breast``, ``marker``, ``mass lesion``."""
    kind, _, category = flag.partition(":")
    if kind == LESION and category:
        return f"{category} lesion"
    return FLAG_TEXT.get(flag, flag.replace("_", "-"))


def badge_suffix(flags: str) -> str:
    """Plain-text badges for a label: ``" [off-breast] [marker]"`` ("" without flags)."""
    return "".join(f" [{flag_text(f)}]" for f in flag_list(flags))


def flag_options(bundle: Bundle) -> list[str]:
    """Every flag some latent of the bundle carries, sorted (the badge column's options)."""
    return sorted({f for text in latent_flags(bundle) for f in flag_list(text)})


def labeller(bundle: Bundle, notes: LatentNotes | None, *, badges: bool = True):
    """``latent -> "#id name [badges]"`` over one read of the notes file and the flags (without the
    badges for tables that show them in their own column)."""
    name = notes.labeller() if notes is not None else (lambda t: f"#{t}")
    if not badges:
        return lambda latent: name(int(latent))
    flags = latent_flags(bundle).to_dict()  # a dict: thousands of lookups for a picker's options
    return lambda latent: name(int(latent)) + badge_suffix(flags.get(int(latent), ""))


def with_flags(bundle: Bundle, table: pd.DataFrame, column: str = "latent") -> pd.DataFrame:
    """``table`` with a ``flags`` column: the list of flags of each row's latent."""
    flags = latent_flags(bundle)
    out = table.copy()
    out["flags"] = [flag_list(flags.get(int(t), "")) for t in out[column]]
    return out


# --- the head that matters and where its evidence lies -----------------------------------------------------


def has_evidence(bundle: Bundle) -> bool:
    """Whether the bundle holds token evidence maps and regions."""
    return bool(getattr(bundle, "has_evidence", False))


def study_head(bundle: Bundle, positions: Iterable[int], positive: Iterable[str] = ()) -> str:
    """The head a study's review starts from: the first "Positive for" concept that is a head, else the
    head with the highest probability (original features) over the study's views."""
    tasks = tuple(bundle.tasks)
    for concept in positive:
        if concept in tasks:
            return concept
    positions = list(positions)
    assert positions, "a study has at least one analysed view"
    images = bundle.images.iloc[positions]
    best = {task: float(images[f"logit_{task}_original"].max()) for task in tasks}
    return max(tasks, key=lambda t: (best[t], -tasks.index(t)))


def evidence_vmax(bundle: Bundle, positions: Iterable[int], head: str) -> float | None:
    """The largest |evidence| of ``head`` over the given views (one colour scale for the whole study), or
    None without evidence maps."""
    if not has_evidence(bundle):
        return None
    h = tuple(bundle.heads.tasks).index(head)
    peaks = [float(np.abs(bundle.evidence(p)[h]).max()) for p in positions]
    return max(peaks, default=0.0)


def plural(category: str) -> str:
    """``mass`` -> ``masses``, ``calcification`` -> ``calcifications``."""
    return category + ("es" if category.endswith(("s", "x", "ch", "sh")) else "s")


def evidence_shares(bundle: Bundle, position: int, head: str) -> dict[str, float] | None:
    """Share of ``head``'s positive evidence on one view per region name (adding up to 1; all 0 when no
    token has positive evidence), or None without evidence maps."""
    if not has_evidence(bundle):
        return None
    h = tuple(bundle.heads.tasks).index(head)
    evidence_t = np.maximum(np.asarray(bundle.evidence(position)[h], dtype=np.float64).reshape(-1), 0.0)
    labels_t = np.asarray(bundle.regions(position)).reshape(-1).astype(np.int64)
    names = tuple(bundle.region_names)
    sums_r = np.bincount(labels_t, weights=evidence_t, minlength=len(names))
    total = float(sums_r.sum())
    return {name: (float(sums_r[r]) / total if total > 0 else 0.0) for r, name in enumerate(names)}


def evidence_line(bundle: Bundle, position: int, head: str) -> str | None:
    """One line under a view: "calcification evidence: 71% inside the marked calcifications, 4% off the
    breast"; "no calcification marked on this view" when the view has no box of that category (never a
    share of a box that is not there); None on bundles without evidence maps."""
    shares = evidence_shares(bundle, position, head)
    if shares is None:
        return None
    if not any(shares.values()):
        return f"{head} evidence: no token raises the {head} logit on this view"
    off = sum(shares.get(name, 0.0) for name in OFF_BREAST)
    if not bundle.labelled:  # an imported study: no box to measure against
        return f"{head} evidence: {off:.0%} off the breast (no finding boxes: the study has no labels)"
    boxes = bundle.boxes
    marked = bool(((boxes["position"] == position) & (boxes["kind"] == head)).any())
    region = f"{BOX_PREFIX}{head}"
    if region not in shares:
        inside = f"{head} is not a finding category with boxes"
    elif marked:
        inside = f"{shares[region]:.0%} inside the marked {plural(head)}"
    else:
        inside = f"no {head} marked on this view"
    return f"{head} evidence: {inside}, {off:.0%} off the breast"


# --- what fires here ------------------------------------------------------------------------------------------


def view_findings(bundle: Bundle, positions: Iterable[int]) -> pd.DataFrame:
    """The ground-truth boxes of the given views, one row each: position, kind, frame box
    (frame_x0..frame_y1) and a label such as ``R CC · calcification 2``."""
    positions = list(positions)
    boxes = bundle.boxes[bundle.boxes["position"].isin(positions)].copy()
    images = bundle.images
    boxes["number"] = boxes.groupby(["position", "kind"]).cumcount() + 1
    boxes["label"] = [
        f"{images.iloc[int(p)]['laterality']} {images.iloc[int(p)]['view']} · {k} {n}"
        for p, k, n in zip(boxes["position"], boxes["kind"], boxes["number"], strict=True)
    ]
    boxes["order"] = boxes["position"].map({p: i for i, p in enumerate(positions)})
    boxes = boxes.sort_values(["order", "kind", "number"], kind="stable")
    columns = ["position", "kind", "label", "frame_x0", "frame_y0", "frame_x1", "frame_y1"]
    return boxes[columns].reset_index(drop=True)


def spot_mask(
    bundle: Bundle,
    position: int,
    *,
    token: int | None = None,
    point: tuple[float, float] | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """[T] bool: the tokens of a spot on one view, given as a token, a point ``(x, y)`` in original pixels
    or a box in frame pixels (a ground-truth finding's ``frame_x0..frame_y1``)."""
    if point is not None:
        transform = transform_from_json(bundle.images.iloc[position]["transform"])
        frame_point = transform.points_to_frame(np.array([point], dtype=np.float64))[0]
        point = (float(frame_point[0]), float(frame_point[1]))
    return region_tokens(bundle.grid, bundle.frame_size, token=token, point=point, box=box)


def fires_here(
    bundle: Bundle,
    position: int,
    *,
    token: int | None = None,
    point: tuple[float, float] | None = None,
    box: tuple[float, float, float, float] | None = None,
    notes: LatentNotes | None = None,
    top: int | None = 25,
) -> pd.DataFrame:
    """The latents active at a spot of one view (see ``spot_mask``), strongest in-region activation first:
    latent, label ("#id name [badges]"), name, flags (list), mean_in, max_in, specificity and
    contribution_<task> (the latent's part of each head's logit from the spot). ``attrs``: n_in (tokens)."""
    region_t = spot_mask(bundle, position, token=token, point=point, box=box)
    token_e, latent_e, value_e = image_entries(bundle.codes, position)
    heads = bundle.heads
    table = what_fires_here(
        token_e, latent_e, value_e, region_t, heads.effect_lh, heads.tasks, region_t.size, top=top
    )
    entries = notes.all() if notes is not None else {}
    label = labeller(bundle, notes)
    table.insert(1, "label", [label(int(t)) for t in table["latent"]])
    table.insert(2, "name", [entries.get(int(t), {}).get("name", "") for t in table["latent"]])
    table = with_flags(bundle, table)
    columns = ["latent", "label", "name", "flags", "mean_in", "max_in", "specificity"]
    columns += [f"contribution_{t}" for t in heads.tasks]
    out = table[columns].reset_index(drop=True)
    out.attrs.update(table.attrs)
    return out


# --- the top-patch gallery ------------------------------------------------------------------------------------


def patch_hits(bundle: Bundle, patches: pd.DataFrame) -> list[list[str]]:
    """For each patch (``image`` = bundle position, ``orig_x0..orig_y1``), the kinds of the ground-truth
    boxes of its image it overlaps with positive area (sorted, each once; [] for none)."""
    boxes = bundle.boxes
    out: list[list[str]] = []
    by_position = {int(p): g for p, g in boxes.groupby("position")}
    for patch in patches.itertuples():
        group = by_position.get(int(patch.image))
        if group is None:
            out.append([])
            continue
        overlap_x = np.minimum(group["xmax"], patch.orig_x1) - np.maximum(group["xmin"], patch.orig_x0)
        overlap_y = np.minimum(group["ymax"], patch.orig_y1) - np.maximum(group["ymin"], patch.orig_y0)
        hit = (overlap_x > 0) & (overlap_y > 0)
        out.append(sorted(set(group.loc[hit.to_numpy(), "kind"])))
    return out


# --- the shortcut audit -----------------------------------------------------------------------------------------


def shortcut_summary(bundle: Bundle) -> pd.DataFrame | None:
    """Per head: the AUROC as analysed and with every off_breast + marker latent suppressed (the manifest
    summary's ``shortcut_summary``), or None on bundles without the audit."""
    summary = (bundle.manifest.get("summary") or {}).get("shortcut_summary")
    if summary is None:
        return None
    if isinstance(summary, Mapping):  # task -> record
        summary = [{"task": task, **dict(record)} for task, record in summary.items()]
    table = pd.DataFrame.from_records(list(summary))
    if "share_suppressed" in table and "suppressed_share" not in table:
        table = table.rename(columns={"share_suppressed": "suppressed_share"})
    if "auroc_drop" not in table and {"auroc", "auroc_suppressed"} <= set(table):
        table["auroc_drop"] = table["auroc"] - table["auroc_suppressed"]
    return table


def shortcut_table(bundle: Bundle, task: str, notes: LatentNotes | None = None) -> pd.DataFrame | None:
    """The flagged latents of one head ranked by their share of the split's class-1 minus class-0 logit
    difference (every one, no cap), labelled, with their flags as a list; None without the audit."""
    table = getattr(bundle, "shortcuts", None)
    if table is None:
        return None
    table = table[table["task"] == task]
    order = np.lexsort((table["latent"].to_numpy(), -table["share"].fillna(-np.inf).to_numpy()))
    table = table.iloc[order].reset_index(drop=True)
    label = labeller(bundle, notes, badges=False)
    out = table.assign(rank=np.arange(1, len(table) + 1), label=[label(int(t)) for t in table["latent"]])
    out["flags"] = [flag_list(f) for f in out["flags"]]
    return out[[c for c in SHORTCUT_COLUMNS if c in out]]


def suppressed_latents(bundle: Bundle, kinds: tuple[str, ...] = SUPPRESS_DEFAULT) -> list[int]:
    """The latents the audit suppresses (flagged with any of ``kinds``), sorted; [] without flags."""
    return [int(t) for t in suppression_set(latent_flags(bundle), kinds)]


def counterfactual_summary(bundle: Bundle) -> pd.DataFrame | None:
    """On phantom bundles with the marker counterfactual: per head, the mean logit shift from adding the
    marker and the AUROC as analysed, of the adversarial pairing (positives without a marker against
    negatives with one) and of the reverse pairing; None otherwise. The analysis' own figures (the
    manifest summary's ``counterfactual``) when recorded, else counted from the per-image logits."""
    recorded = (bundle.manifest.get("summary") or {}).get("counterfactual")
    if recorded:
        table = pd.DataFrame.from_records(list(recorded)).rename(columns=COUNTERFACTUAL_NAMES)
        return table[[c for c in COUNTERFACTUAL_NAMES.values() if c in table]]
    table = getattr(bundle, "counterfactual", None)
    if table is None or table.empty:
        return None
    records = []
    for task in bundle.tasks:
        with_col, without_col = f"logit_with_{task}", f"logit_without_{task}"
        if with_col not in table or without_col not in table:
            continue
        shift = table[with_col] - table[without_col]
        record: dict[str, Any] = {"head": task, "images": len(table), "mean logit shift": float(shift.mean())}
        if task in bundle.images:
            y = bundle.images.iloc[table["position"].to_numpy()][task].to_numpy().astype(bool)
            record[ADVERSARIAL] = _pair_auroc(
                table[without_col].to_numpy()[y], table[with_col].to_numpy()[~y]
            )
            record[FAVOURABLE] = _pair_auroc(table[with_col].to_numpy()[y], table[without_col].to_numpy()[~y])
        records.append(record)
    return pd.DataFrame.from_records(records) if records else None


def counterfactual_shifts(bundle: Bundle, task: str) -> pd.DataFrame | None:
    """Per analysed image: its label for ``task`` ("positive" / "negative"), whether it was analysed with a
    marker, and the logit shift from adding the marker; None without the counterfactual."""
    table = getattr(bundle, "counterfactual", None)
    with_col, without_col = f"logit_with_{task}", f"logit_without_{task}"
    if table is None or table.empty or with_col not in table or without_col not in table:
        return None
    label = (
        bundle.images.iloc[table["position"].to_numpy()][task].to_numpy() if task in bundle.images else None
    )
    return pd.DataFrame(
        {
            "image_id": table["image_id"].to_numpy() if "image_id" in table else table["position"].to_numpy(),
            "class": np.where(label == 1, "positive", "negative") if label is not None else "all",
            "analysed with a marker": table["had_marker"].to_numpy() if "had_marker" in table else False,
            "logit shift": (table[with_col] - table[without_col]).to_numpy(),
        }
    )


def _pair_auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (NaN when a side is empty)."""
    if not len(positive) or not len(negative):
        return float("nan")
    diff = positive[:, None] - negative[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def counterfactual_latents(
    bundle: Bundle, task: str, notes: LatentNotes | None = None, top: int | None = None
) -> pd.DataFrame | None:
    """The latents that carry the marker's logit shift of one head (both signs, largest |shift| first),
    labelled with badges; None when the bundle has no counterfactual."""
    table = getattr(bundle, "counterfactual_latents", None)
    if table is None or table.empty:
        return None
    table = table.rename(columns={"head": "task"})
    if "task" not in table or "latent" not in table:
        raise BundleError(
            "counterfactual_latents.parquet lacks its task / latent columns; rebuild the bundle"
        )
    part = table[table["task"] == task]
    if CARRIER_VALUE not in part:
        raise BundleError(
            f"counterfactual_latents.parquet lacks its {CARRIER_VALUE} column; rebuild the bundle"
        )
    part = part.iloc[np.lexsort((part["latent"].to_numpy(), -np.abs(part[CARRIER_VALUE].to_numpy())))]
    part = part.head(top) if top else part
    label = labeller(bundle, notes, badges=False)
    out = with_flags(
        bundle, part.assign(label=[label(int(t)) for t in part["latent"]]).reset_index(drop=True)
    )
    return out[[c for c in CARRIER_COLUMNS if c in out]]
