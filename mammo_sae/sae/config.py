"""TrainConfig: every knob of SAE training, one frozen dataclass that generates the command line.

Defaults are the Mammo-SAE recipe (docs/sae-training.md lists each knob with its paper value). The same
keys can come from a TOML file (``--config FILE.toml``); :func:`read_config_file` checks names, types and
choices before any work starts, and :func:`config_toml` writes the effective config back in that format.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass
from typing import Any

from mammo_sae.core.config_cli import REQUIRED, knob
from mammo_sae.core.errors import TrainError

ARCHS = ("relu", "topk", "batchtopk")
NORMALIZE = ("none", "center-scale")
B_DEC_INIT = ("zeros", "mean", "geometric-median")
DEVICES = ("cpu", "cuda")

# knobs that may differ between a run and its --resume (everything else must match the checkpoint)
RESUMABLE_CHANGES = frozenset(
    {"store", "out", "resume", "progress", "log_every", "checkpoint_every", "device", "epochs", "max_steps"}
)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of `python -m mammo_sae.train` (defaults: the Mammo-SAE paper's recipe)."""

    store: str = knob(REQUIRED, "activation store folder (the one holding metadata.json)")
    out: str = knob(REQUIRED, "output folder: SAE weights, checkpoint.pt, metrics.jsonl, eval.json")
    arch: str = knob("relu", "SAE architecture (paper: relu with L1)", choices=ARCHS)
    expansion: int = knob(8, "latents per input feature: d_sae = d x expansion (paper: 8)")
    l1: float = knob(3e-5, "L1 coefficient lambda of the relu SAE (paper: 3e-5)")
    k: int = knob(64, "active latents per token of topk / batchtopk")
    aux_k: int | None = knob(None, "AuxK: dead latents that model the residual (unset: d / 2, as OpenAI)")
    aux_coeff: float = knob(1 / 32, "AuxK loss weight (topk / batchtopk)")
    lr: float = knob(3e-4, "Adam learning rate (paper page: 3e-4; the released script used 5e-4)")
    adam_beta1: float = knob(0.9, "Adam beta1")
    adam_beta2: float = knob(0.999, "Adam beta2")
    adam_eps: float = knob(1e-8, "Adam epsilon")
    batch_size: int = knob(4096, "tokens per optimiser step, over all processes together (paper: 4096)")
    epochs: int = knob(200, "passes over the training shards (paper: 200)")
    max_steps: int | None = knob(None, "stop after this many optimiser steps (smoke runs and tests)")
    warmup_steps: int = knob(0, "linear learning-rate warm-up from 0 over this many steps (paper: 0)")
    decay_fraction: float = knob(0.0, "final fraction of the steps with a linear LR decay to 0 (paper: 0)")
    l1_warmup_steps: int = knob(0, "linear warm-up of the L1 coefficient from 0 (paper: 0)")
    grad_clip: float | None = knob(None, "clip the gradient's global norm (paper: none; modern: 1.0)")
    b_dec_init: str = knob("zeros", "initial decoder bias (paper script: zeros)", choices=B_DEC_INIT)
    normalize: str = knob(
        "none",
        "input normalisation: center-scale trains on (x - mean) * sqrt(d) / E||x - mean|| and folds it "
        "back into the saved weights (paper: none)",
        choices=NORMALIZE,
    )
    resample_every: int = knob(10, "resample dead latents every N epochs, relu only; 0 = never (paper: 10)")
    resample_inputs: int = knob(20000, "training tokens scored for resampling (paper: 20000)")
    dead_window: int = knob(4_096_000, "a latent is dead if it has not fired in this many training tokens")
    dense_threshold: float = knob(0.1, "a latent is dense if it fires on more than this fraction of tokens")
    validation_fraction: float = knob(0.05, "held-out share of the tokens, as whole shards; 0 = none")
    buffer_tokens: int = knob(2**20, "shuffle buffer size in tokens (memory: tokens x d x 2 bytes)")
    checkpoint_every: int = knob(
        1000, "write checkpoint.pt every N steps (and at every epoch end); 0 = epochs only"
    )
    resume: bool = knob(False, "continue the run in --out from its checkpoint.pt")
    log_every: int = knob(50, "append a metrics.jsonl line every N steps")
    device: str = knob("cpu", "where to train", choices=DEVICES)
    seed: int = knob(0, "seed of the SAE init, the shuffling, the split and the resampling")
    progress: bool = knob(True, "show a progress bar")

    def validate(self) -> TrainConfig:
        """Refuse impossible values with the flag's name; returns self."""
        positive = (
            "expansion", "k", "batch_size", "epochs", "buffer_tokens", "dead_window",
            "resample_inputs", "log_every", "aux_k", "max_steps",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainError(f"{flag(name)} must be >= 1, got {value}")
        for name in ("warmup_steps", "l1_warmup_steps", "checkpoint_every", "resample_every", "seed"):
            if getattr(self, name) < 0:
                raise TrainError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("l1", "aux_coeff"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise TrainError(f"{flag(name)} must be a finite number >= 0, got {getattr(self, name)}")
        for name in ("lr", "adam_eps"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise TrainError(f"{flag(name)} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainError(f"{flag(name)} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise TrainError(f"--decay-fraction must be in [0, 1], got {self.decay_fraction}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise TrainError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if not 0.0 < self.dense_threshold <= 1.0:
            raise TrainError(f"--dense-threshold must be in (0, 1], got {self.dense_threshold}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise TrainError(f"--grad-clip must be > 0 (or left out for no clipping), got {self.grad_clip}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --- TOML config files -----------------------------------------------------------------------------------


def knob_types(cls: type = TrainConfig) -> dict[str, tuple[type, bool]]:
    """``{field: (scalar type, may be None)}`` for every knob of ``cls``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        out[field.name] = (args[0], True) if args else (kind, False)
    return out


def read_config_file(path: str | os.PathLike[str], cls: type = TrainConfig) -> dict[str, Any]:
    """The knob values of a flat TOML file (keys as field names, ``-`` or ``_``), checked against ``cls``."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise TrainError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise TrainError(f"config file {path} is not valid TOML: {error}") from None
    types = knob_types(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in types:
            close = difflib.get_close_matches(name, list(types), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TrainError(
                f"config file {path}: unknown key {key!r}{hint}; the keys are the command-line flags without "
                f"'--': {', '.join(sorted(types))}"
            )
        if name in values:
            raise TrainError(f"config file {path}: {key!r} is given twice (as - and _ spellings)")
        kind, _ = types[name]
        ok = (
            isinstance(value, bool)
            if kind is bool
            else isinstance(value, int | float) and not isinstance(value, bool)
            if kind is float
            else isinstance(value, kind) and not isinstance(value, bool)
        )
        if not ok:
            raise TrainError(
                f"config file {path}: {key!r} must be {kind.__name__}, got {type(value).__name__} {value!r}"
            )
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise TrainError(f"config file {path}: {key!r} must be one of {list(choices)}, got {value!r}")
        values[name] = float(value) if kind is float else value
    return values


def config_toml(config: Any) -> str:
    """The config as a flat TOML file that ``--config`` reads back (unset optional knobs are comments)."""
    lines = [f"# {type(config).__name__} written by mammo-sae; usable as --config FILE"]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            lines.append(f"# {field.name} = (not set)")
        elif isinstance(value, bool):
            lines.append(f"{field.name} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{field.name} = {value!r}")
        else:
            lines.append(f"{field.name} = {json.dumps(str(value))}")
    return "\n".join(lines) + "\n"
