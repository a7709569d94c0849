"""TrainConfig: every knob of SAE training, one frozen dataclass that generates the command line.

Defaults are the Mammo-SAE recipe (docs/sae-training.md lists each knob with its paper value). The same
keys can come from a TOML file (``--config FILE.toml``); :func:`read_config_file` checks names, types and
choices before any work starts, and :func:`config_toml` writes the effective config back in that format
(both are the generic ones of :mod:`mammo_sae.core.config_cli`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from mammo_sae.core import config_cli
from mammo_sae.core.config_cli import REQUIRED, config_toml, knob, resume_knob
from mammo_sae.core.config_cli import flag_name as flag
from mammo_sae.core.errors import TrainError
from mammo_sae.sae.registry import BUILTIN_ARCHITECTURES

__all__ = ["TrainConfig", "config_toml", "flag", "read_config_file"]

ARCHS = BUILTIN_ARCHITECTURES  # the --arch choices: sae/registry.py lists the shipped architectures
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
    k: int = knob(64, "active latents per token of topk / batchtopk / matryoshka")
    matryoshka_groups: str | None = knob(
        None,
        "matryoshka: the nested groups' sizes, comma-separated, adding up to d_sae (unset: 1/16, 1/16, 1/8, "
        "1/4 and 1/2 of it)",
    )
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
    resume: bool = resume_knob()
    log_every: int = knob(50, "append a metrics.jsonl line every N steps")
    device: str = knob("cpu", "where to train", choices=DEVICES)
    seed: int = knob(0, "seed of the SAE init, the shuffling, the split and the resampling")
    progress: bool = knob(True, "show a progress bar")
    sweep: str | None = knob(
        None,
        "train a family that differs in one knob on one pass of the store, e.g. l1=1e-3,3e-3,1e-2 or "
        "k=16,32,64 (';' between values that hold commas): one folder per member under --out, and sweep.json",
    )

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


def read_config_file(path: str | os.PathLike[str], cls: type = TrainConfig) -> dict[str, Any]:
    """The knob values of a flat TOML file (keys as field names, ``-`` or ``_``), checked against ``cls``."""
    return config_cli.read_config_file(path, cls)
