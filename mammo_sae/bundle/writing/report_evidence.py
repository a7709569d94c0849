"""The report's sections on where the evidence lies and what the classifier rests on: the evidence's regions
over the split, the evidence map's pointing game, and the shortcut audit."""

from __future__ import annotations

import math

import pandas as pd

from mammo_sae.bundle import format as bf
from mammo_sae.bundle.writing.evidence_tables import EvidenceTables

SHOWN = 15  # rows of a long table shown in the report (the bundle table has them all)


def _pct(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def _num(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _rows(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def evidence_section(tables: EvidenceTables) -> str:
    """ "Where the evidence lies": each head's class-1 minus class-0 logit difference split over in-box,
    near-box, far, marker and off-breast tokens, and the evidence peak's pointing game on positives."""
    parts = [
        "## Where the evidence lies\n",
        "Each head's logit is a sum over tokens (exact: the head is linear over the mean of the token "
        f"features). Per head, the mean logit of the positive images minus that of the negative images, split "
        f"over where the tokens lie (`{bf.EVIDENCE_SPLIT}`; per image in `{bf.EVIDENCE_REGIONS}`):\n",
    ]
    split = tables.split
    if split.empty:
        parts.append("_(no head has labels on this split)_\n")
    else:
        groups = list(dict.fromkeys(split["group"]))
        rows = []
        for task, rows_t in split.groupby("task", sort=False):
            shares = dict(zip(rows_t["group"], rows_t["share"], strict=True))
            total = float(rows_t["difference"].sum())
            rows.append([task, _num(total), *[_pct(shares.get(g, math.nan)) for g in groups]])
        parts.append(_rows(["head", "logit difference", *[g.replace("_", " ") for g in groups]], rows))
    pointing = tables.pointing
    if not pointing.empty:
        parts.append(
            "\nPointing game of each head's evidence map on its positive images with a box of its category "
            "(does the map's strongest token lie in a box; with the pointing tolerance / strictly inside):\n"
        )
        parts.append(
            _rows(
                ["head", "images", "pointing", "strict"],
                [
                    [r.task, str(r.images), _pct(r.pointing), _pct(r.pointing_strict)]
                    for r in pointing.itertuples()
                ],
            )
        )
    return "\n".join(parts)


def shortcut_section(tables: EvidenceTables) -> str:
    """ "Shortcut audit": the flagged latents' share of each head's logit difference, and each head's AUROC
    with every off-breast and marker latent suppressed."""
    summary, flagged = tables.shortcut_summary, tables.shortcuts
    parts = [
        "## Shortcut audit\n",
        "How much of each head rests on latents flagged `off_breast` (their activation lies mostly on the "
        "background or the frame border) or `marker` (mostly on burned-in marks): the head's AUROC with all of "
        "them suppressed (set to zero), beside the AUROC as analysed.\n",
    ]
    if summary.empty:
        return "\n".join([*parts, "_(no head has both classes on this split)_\n"])
    parts.append(
        _rows(
            [
                "head",
                "AUROC",
                "flagged suppressed",
                "drop",
                "latents suppressed",
                "their share of the difference",
            ],
            [
                [
                    str(r.task),
                    _num(r.auroc),
                    _num(r.auroc_suppressed),
                    _num(r.auroc - r.auroc_suppressed),
                    str(int(r.n_suppressed)),
                    _pct(r.share_suppressed),
                ]
                for r in summary.itertuples()
            ],
        )
    )
    for task, rows_t in flagged.groupby("task", sort=False):
        suppressed = rows_t[rows_t["suppressed"]] if "suppressed" in rows_t else rows_t
        shown = suppressed.head(SHOWN)
        parts.append(
            f"\nSuppressed latents carrying the most of the {task} logit difference ({len(suppressed)} suppressed, "
            f"{len(rows_t)} flagged in all; the first {len(shown)} here, every flagged latent in "
            f"`{bf.SHORTCUTS}`):\n"
        )
        parts.append(
            _rows(
                ["latent", "flags", "share of the difference"],
                [[str(int(r.latent)), str(r.flags), _pct(r.share)] for r in shown.itertuples()],
            )
        )
    return "\n".join(parts)


def flag_counts(profiles: pd.DataFrame) -> dict[str, int]:
    """How many latents carry each flag (for the manifest summary)."""
    counts: dict[str, int] = {}
    for flags in profiles["flags"]:
        for flag in filter(None, str(flags).split(",")):
            counts[flag] = counts.get(flag, 0) + 1
    return dict(sorted(counts.items()))
