"""The bundle's headline numbers and its ``report.md``: tables that mirror the Mammo-SAE paper's, beside
the paper's VinDr numbers (labelled as such). A metric that a split cannot define (a head without positives
or negatives) reads "undefined (no positives)", never a number or an empty table."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mammo_sae.analysis import paper
from mammo_sae.analysis.peaks import MARKER_MIN_POINTING, marker_latents
from mammo_sae.analysis.tables import VARIANTS
from mammo_sae.core.metrics import undefined_reason

HEADLINE_KEEP_K, HEADLINE_SUPPRESS_K = "10", "50"
REPORT_TOP = 10  # rows of each concept-and-class ranking shown (rankings.parquet holds them all)
REPORT_MARKERS = 20  # marker latents shown (latents.parquet holds every one)
VARIANT_NAMES = {"original": "original", "sae": "with SAE", "sae_error": "SAE + error"}


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pick(table: pd.DataFrame, **where: Any) -> pd.DataFrame:
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        mask &= table[column] == value
    return table[mask]


def _one(table: pd.DataFrame, column: str, **where: Any) -> float:
    rows = _pick(table, **where)
    return float(rows[column].iloc[0]) if len(rows) else float("nan")


def headline(
    baselines: pd.DataFrame,
    curves: pd.DataFrame,
    localisation: pd.DataFrame,
    quality: dict[str, float],
    tasks: tuple[str, ...],
    concepts: tuple[str, ...],
) -> dict[str, Any]:
    """JSON-ready key numbers (per image): SAE quality, and per head the AUROC original / with the SAE, top-10
    kept, top-50 suppressed (own concept), and the best class-1 latent's pointing game, with the pointing
    tolerance and strictly inside the boxes (bundles from before the strict game lack it). NaN stays NaN
    here; the manifest writes it as null."""
    out: dict[str, Any] = {"sae": {k: round(v, 4) for k, v in quality.items() if isinstance(v, float)}}
    out["sae"]["tokens"] = quality["tokens"]
    for task in tasks:
        entry = {
            variant: _one(baselines, "auroc", head=task, unit="image", variant=variant)
            for variant in VARIANTS
        }
        if task in concepts:
            own = _pick(curves, head=task, concept=task, unit="image", error_term=False)
            entry["keep_top10"] = _one(own, "auroc", mode="keep", k_label=HEADLINE_KEEP_K)
            entry["suppress_top50"] = _one(own, "auroc", mode="suppress", k_label=HEADLINE_SUPPRESS_K)
            top = _pick(localisation, concept=task, cls=1, target=task, rank=0)
            entry["top_latent"] = int(top["latent"].iloc[0]) if len(top) else None
            entry["top_latent_pointing"] = _one(top, "pointing")
            if "pointing_strict" in localisation:
                entry["top_latent_pointing_strict"] = _one(top, "pointing_strict")
        out[task] = {
            k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in entry.items()
        }
    return out


def _markdown(frame: pd.DataFrame, empty: str = "_(none)_") -> str:
    if frame.empty:
        return f"{empty}\n"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_number(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _metric_cell(value: float, metric: str, reason: str | None, noisy: bool) -> str:
    """One AUROC / AUPRC cell: the number, or why the split cannot define it."""
    if reason == "no positives" or (reason == "no negatives" and metric == "AUROC"):
        return f"undefined ({reason})"
    text = _number(value)
    if reason == "no negatives":
        return f"{text} (no negatives)"  # every image is positive: precision is 1 at every threshold
    return f"{text} (float noise)" if noisy and metric == "AUROC" else text


def baseline_rows(baselines: pd.DataFrame, noise_heads: frozenset[str] = frozenset()) -> pd.DataFrame:
    """One row per head and unit: n, positives, AUROC and AUPRC with the original features, the SAE
    reconstruction and reconstruction + error (every head kept, with the reason where a metric is undefined)."""
    rows = []
    for (head, unit), group in baselines.groupby(["head", "unit"], sort=False):
        first = group.iloc[0]
        reason = undefined_reason(int(first["n"]), int(first["positives"]))
        row: dict[str, Any] = {
            "head": head,
            "unit": unit,
            "n": int(first["n"]),
            "positives": int(first["positives"]),
        }
        for metric, column in (("AUROC", "auroc"), ("AUPRC", "auprc")):
            for variant in VARIANTS:
                value = _one(group, column, variant=variant)
                row[f"{metric} {VARIANT_NAMES[variant]}"] = _metric_cell(
                    value, metric, reason, head in noise_heads
                )
        rows.append(row)
    return pd.DataFrame(rows)


def _baseline_section(baselines: pd.DataFrame, noise_heads: frozenset[str]) -> str:
    paper_rows = pd.DataFrame(
        [
            {"model": f"{task} {kind}", "AUROC original": a, "AUROC with SAE": b}
            for (task, kind), (a, b) in paper.SAE_AUROC.items()
        ]
    )
    return (
        "## Classifier AUROC and AUPRC: original features vs the SAE reconstruction\n\n"
        + _markdown(baseline_rows(baselines, noise_heads), "_(no head has labels in this split)_")
        + f"\nFor reference, {paper.SOURCE} (AUROC):\n\n"
        + _markdown(paper_rows)
    )


def _curve_section(curves: pd.DataFrame, concepts: list[str]) -> str:
    parts = ["## Keep / suppress the top-k latents per class (AUROC, per image, no error term)\n"]
    view = _pick(curves, unit="image", error_term=False)
    for concept in concepts:
        own = view[(view["concept"] == concept) & (view["head"] == concept)]
        if own.empty:
            continue  # the concept has no head of its own
        title = f"\n### {concept} head, latents ranked for {concept}\n\n"
        reason = undefined_reason(int(own["n"].iloc[0]), int(own["n_pos"].iloc[0]))
        if reason is not None:
            parts.append(title + f"AUROC undefined ({reason} in the analysed split).\n")
            continue
        table = own.pivot_table(
            index="k_label", columns="mode", values="auroc", sort=False, dropna=False
        ).reset_index()
        table = table.rename(columns={"k_label": "k", "keep": "kept", "suppress": "suppressed"})
        ref = {
            "paper kept": [paper.KEEP_AUROC.get(concept, {}).get(_as_int(k)) for k in table["k"]],
            "paper suppressed": [paper.SUPPRESS_AUROC.get(concept, {}).get(_as_int(k)) for k in table["k"]],
        }
        table = table.assign(**ref)
        parts.append(title + _markdown(table))
    parts.append(f"\nPaper columns: {paper.SOURCE}, fine-tuned models.\n")
    return "".join(parts)


def _as_int(label: str) -> int | None:
    return int(label) if str(label).isdigit() else None


def _metric(metrics: pd.Series | None, column: str) -> float:
    return float(metrics[column]) if metrics is not None and column in metrics else float("nan")


def _latent_row(item: Any, metrics: pd.Series | None, latents: pd.DataFrame, strict: bool) -> dict[str, Any]:
    """One row of a top-latent table: the ranking's scores, then the localisation against the concept."""
    row = {
        "rank": item.rank + 1,
        "latent": item.latent,
        "class mean": float(item.zbar),
        "minus all-image mean": float(item.deviation),
        "peak minus all": float(getattr(item, "peak_deviation", float("nan"))),
        "peak AUROC": float(getattr(item, "peak_auroc", float("nan"))),
        "frequency": float(latents.loc[item.latent, "frequency"]),
        "pointing": _metric(metrics, "pointing"),
    }
    if strict:
        row["pointing (strict)"] = _metric(metrics, "pointing_strict")
    row |= {"mean IoU": _metric(metrics, "mean_iou"), "AP@0.3": _metric(metrics, "ap30")}
    row["AP@0.5"] = _metric(metrics, "ap50")
    if "flags" in latents:
        row["flags"] = str(latents.loc[item.latent, "flags"] or "") or "–"
    return row


def _top_latent_section(
    ranked: pd.DataFrame, localisation: pd.DataFrame, latents: pd.DataFrame, concepts, score_split: str
) -> str:
    parts = [
        f"## Top-{REPORT_TOP} latents per concept and class, with localisation against the concept's boxes\n"
    ]
    parts.append(
        '\nScores are class-wise means over the score split of each image\'s mean activation ("class mean", '
        "the paper's concept score) and of each image's peak activation (\"peak\"), minus their all-image "
        'values, and the AUROC with which the per-image peak separates the class ("peak AUROC"); the '
        "manifest's `rank_by` says which score orders the table. A peak within the pointing tolerance "
        '(`pointing_tolerance` original pixels on each axis, in the manifest) of a box is a hit; "strict" '
        f"counts only a peak inside a box. Each table shows the first {REPORT_TOP} of the ranking: "
        "`rankings.parquet` holds every latent's rank, and `localisation.parquet` the first `localise_top` "
        "(manifest `config`).\n"
    )
    strict = "pointing_strict" in localisation
    for concept in concepts:
        for cls in (1, 0):
            top = _pick(ranked, concept=concept, cls=cls).sort_values("rank").head(REPORT_TOP)
            loc = _pick(localisation, concept=concept, cls=cls, target=concept).set_index("latent")
            rows = [
                _latent_row(item, loc.loc[item.latent] if item.latent in loc.index else None, latents, strict)
                for item in top.itertuples(index=False)
            ]
            empty = f"_(not ranked: no {score_split} image has {concept} = {cls})_"
            parts.append(f"\n### {concept}, class {cls}\n\n" + _markdown(pd.DataFrame(rows), empty))
    parts.append(
        "\nFor reference, the paper reports a localisation mAP of about 0.30 for the top 4 class-1 neurons of the "
        "fine-tuned mass model and 0.02-0.05 for the linear probe (VinDr-Mammo).\n"
    )
    return "".join(parts)


def _marker_section(latents: pd.DataFrame, n_marker_boxes: int) -> str:
    if "peak_in_marker" not in latents:
        return ""
    hits = marker_latents(latents, n_marker_boxes)
    support, total = hits.attrs["support"], hits.attrs["total"]
    shown = hits.head(REPORT_MARKERS).reset_index(names="latent")
    flagged = ""
    if "flags" in latents:
        marker_flag = latents.loc[hits.index, "flags"].fillna("").str.split(",").map(lambda f: "marker" in f)
        shown["flags"] = [str(latents.loc[i, "flags"] or "") or "–" for i in shown["latent"]]
        flagged = (
            f" {int(marker_flag.sum())} of the {total} carry the `marker` flag (activation mostly on the "
            "markers, the location-profile criterion)."
        )
    count = (
        f"{total} latents meet this criterion; the table shows the first {len(shown)}, and `latents.parquet` "
        f"holds them all (`peak_in_marker` >= {MARKER_MIN_POINTING}, `fired_marker` >= {support}).{flagged}\n\n"
        if total
        else "\n\n"
    )
    return (
        "## Latents that fire on the burned-in markers (confounder check)\n\n"
        "Latents whose strongest token lies inside a marker box on at least half of the marker images where they "
        f"fire (and fire on at least {support}); their class scores and their direct effect on each "
        "head's logit show whether the ranking or the classifier uses them. " + count + _markdown(shown)
    )


def dataset_line(manifest: dict[str, Any]) -> str:
    """What the analysed dataset is, by identity (no path of the machine that built the bundle)."""
    dataset = manifest["inputs"]["dataset"]
    phantom = dataset.get("phantom")
    name = dataset.get("name") or dataset.get("root", "")
    if phantom:
        return (
            f"{manifest['dataset_kind']} `{name}` (generator {phantom['generator_version']}, seed {phantom['seed']}, "
            f"{phantom['parameters'].get('studies')} studies, pixel checksum {phantom['pixel_checksum'][:12]})"
        )
    csv = next(iter(dataset["files"].values()))
    return f"{manifest['dataset_kind']} `{name}` (breast-level CSV sha256 {csv[:12]})"


def render(
    manifest: dict[str, Any],
    baselines: pd.DataFrame,
    curves: pd.DataFrame,
    localisation: pd.DataFrame,
    ranked: pd.DataFrame,
    latents: pd.DataFrame,
    quality: dict[str, float],
    n_marker_boxes: int = 0,
    noise_heads: frozenset[str] = frozenset(),
) -> str:
    concepts = manifest["concepts"]
    banner = (
        "> **SYNTHETIC PHANTOM DATA.** These numbers describe a synthetic phantom dataset made by mammo-sae, not "
        "mammograms; they show that the pipeline works, not how a model behaves on patients.\n"
        if manifest["synthetic"]
        else "> Research use only; not for diagnosis.\n"
    )
    sae = manifest["sae"]
    inputs = manifest["inputs"]
    lines = [
        "# Mammo-SAE analysis report\n",
        banner,
        f"- Dataset: {dataset_line(manifest)}; analysed split `{manifest['splits']['analysis']}` "
        f"({manifest['summary']['images']} images), latents ranked on `{manifest['splits']['score']}`",
        f"- Backbone: {inputs['backbone']['architecture']}, layer `{inputs['backbone']['layer']}`, frame "
        f"{manifest['frame_size'][0]}x{manifest['frame_size'][1]}, token grid {manifest['grid'][0]}x{manifest['grid'][1]}",
        f"- SAE: {sae['architecture']}, {sae['d_in']} -> {sae['d_sae']} latents; on this split FVU "
        f"{_number(quality['fvu'])}, L0 {_number(quality['l0'], 1)}, dead {_number(100 * quality['dead_fraction'], 1)}%",
        f"- Heads: {', '.join(manifest['tasks'])}",
        f"- Built by (run in the folder that holds the bundle): `{manifest['command']}`",
    ]
    lines += [f"  - {name}: {meaning}" for name, meaning in manifest.get("placeholders", {}).items()]
    lines += [f"- Warning: {w}" for w in manifest["warnings"]]
    lines.append("")
    body = [
        _baseline_section(baselines, noise_heads),
        _curve_section(curves, concepts),
        _top_latent_section(ranked, localisation, latents, concepts, manifest["splits"]["score"]),
        _marker_section(latents, n_marker_boxes),
    ]
    return "\n".join(lines) + "\n" + "\n".join(part for part in body if part)
