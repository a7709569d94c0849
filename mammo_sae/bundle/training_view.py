"""The SAE training report of a bundle, ready to draw: one panel per group of logged metrics, each on a log
axis when its values span a decade or more; where the dead window filled and where dead latents were
resampled (from the SAE's ``cfg.json``); why the dead fraction reads 0 before that; and, for a log of one
step, the values instead of curves."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.queries import training_metrics
from mammo_sae.bundle.reader import Bundle

PANELS = (
    ("Loss parts", ("loss", "mse", "sparsity", "aux")),
    ("Active latents per token (L0)", ("l0",)),
    ("Fraction of variance unexplained", ("fvu",)),
    ("Dead and dense latents (fraction of the dictionary)", ("dead_fraction", "dense_fraction")),
    ("Learning rate and sparsity coefficient", ("lr", "l1_coeff")),
)
DECADE = 10.0  # a panel whose largest positive value is this many times its smallest goes on a log axis


@dataclass(frozen=True)
class Panel:
    title: str
    x: str  # "tokens" or "step"
    long: pd.DataFrame  # x, metric, value
    log: bool
    note: str | None  # e.g. metrics left out because they were 0 throughout; why the dead fraction reads 0
    rules: pd.DataFrame | None = None  # at (x units), what: events drawn as vertical lines


@dataclass(frozen=True)
class TrainingReport:
    panels: list[Panel]
    steps: int
    rules: pd.DataFrame  # at (x units), what
    dead_note: str | None
    single: pd.DataFrame | None  # metric, value: the one logged step, when there is only one


def spans_decades(values: np.ndarray) -> bool:
    """Whether a log axis suits ``values``: all positive and the largest at least 10 times the smallest."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return bool(len(values)) and bool((values > 0).all()) and values.max() >= DECADE * values.min()


def _panel(metrics: pd.DataFrame, x: str, title: str, wanted: tuple[str, ...]) -> Panel | None:
    fields = [f for f in wanted if f in metrics]
    flat = [f for f in fields if metrics[f].nunique(dropna=True) <= 1]
    zero = [f for f in flat if float(metrics[f].fillna(0).abs().max()) == 0]
    drawn = [f for f in fields if f not in zero]
    if not drawn:
        return None
    long = metrics[[x, *drawn]].melt(x, var_name="metric", value_name="value").dropna()
    note = f"{', '.join(zero)}: 0 at every logged step (not drawn)." if zero else None
    return Panel(title, x, long, spans_decades(long["value"].to_numpy()), note)


def _sae_training(bundle: Bundle) -> tuple[dict, dict]:
    """(train_config, training record) from the SAE's cfg.json metadata (empty when it kept none)."""
    path = bundle.sae_dir / "cfg.json"
    try:
        metadata = json.loads(path.read_text()).get("metadata") or {}
    except (OSError, ValueError):
        return {}, {}
    return dict(metadata.get("train_config") or {}), dict(metadata.get("training") or {})


def _at(metrics: pd.DataFrame, x: str, step: float) -> float:
    """A training step in ``x`` units (tokens interpolated from the log)."""
    if x == "step":
        return float(step)
    return float(np.interp(step, metrics["step"].to_numpy(float), metrics["tokens"].to_numpy(float)))


def _dead_story(
    metrics: pd.DataFrame, x: str, config: dict, training: dict
) -> tuple[pd.DataFrame, str | None]:
    window, batch = config.get("dead_window"), config.get("batch_size")
    if "dead_fraction" not in metrics or not window:
        return pd.DataFrame({"at": [], "what": []}), None
    resamples = [r for r in training.get("resamples") or [] if "step" in r]
    fill_step = float(window) / float(batch) if batch else None
    rules = []
    if fill_step is not None and "step" in metrics:
        at = float(window) if x == "tokens" else fill_step
        rules.append({"at": at, "what": f"dead window filled ({int(window):,} tokens)"})
    for r in resamples:
        if "step" in metrics:
            rules.append(
                {"at": _at(metrics, x, r["step"]), "what": f"resampled {r.get('resampled', 0)} dead latents"}
            )
    when = f" (about step {fill_step:,.0f})" if fill_step is not None else ""
    note = (
        f"A latent counts as dead once it has not fired for {int(window):,} training tokens (the dead "
        f"window). Before that many tokens had passed{when} no latent could count as dead, so the dead "
        "fraction reads 0 there whatever the latents did: it measures nothing yet."
    )
    if resamples:
        steps = ", ".join(f"{r['step']:,} ({r.get('resampled', 0)})" for r in resamples)
        note += (
            f" Dead latents were resampled at steps {steps} (latents restarted in brackets); a "
            "resampling that restarts latents lowers the fraction."
        )
    elif config.get("arch") == "relu" and not config.get("resample_every"):
        note += " This run never resampled dead latents (resample_every = 0)."
    if "dense_fraction" in metrics and len(metrics) and float(metrics["dense_fraction"].iloc[0]) > 0.5:
        note += (
            " The dense fraction starts near 1 because a freshly initialised SAE fires almost everywhere; "
            f"dense = firing on more than {config.get('dense_threshold', 0.1):.0%} of a window's tokens."
        )
    return pd.DataFrame(rules, columns=["at", "what"]), note


def training_report(bundle: Bundle) -> TrainingReport:
    """The report of the bundle's SAE (BundleError when it kept no log or an empty one)."""
    metrics = training_metrics(bundle)
    if metrics.empty:
        raise BundleError(f"the SAE's training log in {bundle.sae_dir} holds no step: nothing to plot")
    x = "tokens" if "tokens" in metrics else "step"
    metrics = metrics.sort_values(x).reset_index(drop=True)
    config, training = _sae_training(bundle)
    if len(metrics) == 1:
        row = metrics.iloc[0]
        single = pd.DataFrame({"metric": list(row.index), "value": [row[c] for c in row.index]})
        return TrainingReport([], 1, pd.DataFrame({"at": [], "what": []}), None, single)
    panels = [p for title, wanted in PANELS if (p := _panel(metrics, x, title, wanted)) is not None]
    rules, note = _dead_story(metrics, x, config, training)
    panels = [
        replace(p, rules=rules, note=" ".join(t for t in (p.note, note) if t) or None)
        if "dead_fraction" in set(p.long["metric"])
        else p
        for p in panels
    ]
    return TrainingReport(panels, len(metrics), rules, note, None)
