"""Checks for degenerate inputs, where an analysis first sees them: logits that differ only by float noise
(features that are the same for every image), a head whose split lacks a class, and an SAE that reconstructs
nothing. Each returns plain sentences for the manifest's ``warnings`` and the report; none raises, so a
broken input is reported beside its numbers instead of hidden or fatal."""

from __future__ import annotations

from typing import Any

import numpy as np

from mammo_sae.core.metrics import undefined_reason

#: logits whose spread across images is below this fraction of their magnitude (at least 1) are float noise
LOGIT_NOISE = 1e-6
#: an SAE with this share of latents that never fire on the split is reported
DEAD_WARNING = 0.9


def noise_spread(logits_n: np.ndarray) -> float | None:
    """The spread (max - min) of one head's logits across images when it is float noise, else None."""
    values = np.asarray(logits_n, dtype=np.float64)
    if len(values) < 2 or not np.isfinite(values).all():
        return None
    spread = float(np.ptp(values))
    return spread if spread <= LOGIT_NOISE * max(1.0, float(np.abs(values).max())) else None


def logit_warnings(logits_nh: np.ndarray, tasks: tuple[str, ...]) -> list[str]:
    """A warning per head whose original logits do not vary across the analysed images beyond float noise."""
    warnings = []
    for h, task in enumerate(tasks):
        spread = noise_spread(logits_nh[:, h])
        if spread is not None:
            warnings.append(
                f"the {task} head's logits differ across the analysed images by at most {spread:.1e} (float "
                "noise): the features are (nearly) the same for every image, so its AUROC ranks noise; check "
                "the encoder's weights (a broken or random-weight checkpoint does this)"
            )
    return warnings


def class_warnings(labels: dict[str, dict[str, np.ndarray]], tasks: tuple[str, ...], split: str) -> list[str]:
    """A warning per head and evaluation unit whose labels in ``split`` lack a class."""
    warnings = []
    for unit, by_task in labels.items():
        for task in tasks:
            if task not in by_task:
                continue
            y = np.asarray(by_task[task])
            reason = undefined_reason(len(y), int(np.sum(y == 1)))
            if reason is not None:
                warnings.append(
                    f"the {split} split has {reason} for the {task} head (per {unit}, {len(y)} {unit}s): its "
                    "AUROC is undefined"
                )
    return warnings


def reconstruction_quality(
    recon: np.ndarray, fired_l: np.ndarray, frequency_l: np.ndarray, d_in: int
) -> dict[str, Any]:
    """SAE quality on the split from streamed sums ``recon`` = [tokens, sse, l0 sum, sum x [d], sum x^2 [d]]:
    tokens, FVU (NaN when the features do not vary), L0, dead and dense fractions."""
    assert len(recon) == 3 + 2 * d_in, "recon holds tokens, sse, l0 and two d-vectors"
    n_tokens, sse, l0 = recon[0], recon[1], recon[2]
    sum_x, sum_x2 = recon[3 : 3 + d_in], recon[3 + d_in :]
    sst = float(np.sum(sum_x2 - sum_x**2 / n_tokens))
    return {
        "tokens": int(n_tokens),
        "fvu": float(sse / sst) if sst > 0 else float("nan"),
        "l0": float(l0 / n_tokens),
        "dead_fraction": float(np.mean(fired_l == 0)),
        "dense_fraction": float(np.mean(frequency_l > 0.1)),
    }


def quality_warnings(quality: dict[str, Any]) -> list[str]:
    """Warnings for an SAE that explains none of the features' variance or whose latents mostly never fire."""
    warnings = []
    fvu = quality["fvu"]
    if np.isnan(fvu):
        warnings.append("the features do not vary over the analysed tokens: the SAE's FVU is undefined")
    elif fvu >= 1.0:
        warnings.append(
            f"the SAE reconstructs the analysed features worse than their mean (FVU {fvu:,.4g} >= 1): it was "
            "trained on other features, or these features are degenerate"
        )
    if quality["dead_fraction"] >= DEAD_WARNING:
        warnings.append(
            f"{100 * quality['dead_fraction']:.1f}% of the SAE's latents never fire on the analysed split"
        )
    return warnings
