"""A sweep: a family of SAEs that differ in one knob, trained on one pass of the store (every member is fed
the same batches), one folder per member and a sweep index.

    members = sweep_members(config, "l1=1e-3,3e-3,1e-2")    # the member configs, out = OUT/l1-1e-3, ...
    summary = train_sweep(config)                          # config.sweep set; writes OUT/sweep.json

Knobs that decide the batches (store, batch size, seed, epochs, steps, buffer, validation share) cannot be
swept: the members would no longer see the same tokens. Every other knob can, the architecture included.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.config_cli import knobs
from mammo_sae.core.distributed import DistContext
from mammo_sae.core.errors import TrainError
from mammo_sae.core.hashing import strict_json_text
from mammo_sae.sae.config import TrainConfig

SWEEP_INDEX = "sweep.json"
#: knobs that decide which tokens arrive in which batch, or where and how the run goes: never swept
FIXED_KNOBS = frozenset(
    {
        "store", "out", "batch_size", "epochs", "max_steps", "seed", "buffer_tokens", "validation_fraction",
        "resume", "progress", "device", "checkpoint_every", "log_every", "sweep",
    }
)  # fmt: skip


def parse_sweep(text: str) -> tuple[str, tuple[str, ...]]:
    """``"l1=1e-3,3e-3"`` -> ("l1", ("1e-3", "3e-3")); the knob may be written with ``-`` or ``_``."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    listed = tuple(v.strip() for v in values.split(";" if ";" in values else ",") if v.strip())
    if not sep or not name or len(listed) < 2:
        raise TrainError(
            f"--sweep {text!r}: give one knob and two or more values, e.g. --sweep l1=1e-3,3e-3,1e-2 "
            "(values holding commas, such as --matryoshka-groups, separated by ';')"
        )
    return name, listed


def _value(name: str, text: str) -> Any:
    known = {k.name: k for k in knobs(TrainConfig)}
    if name not in known:
        raise TrainError(f"--sweep: {name!r} is not a train knob")
    if name in FIXED_KNOBS:
        raise TrainError(
            f"--sweep: {name} decides the batches or the run itself; the members must share them"
        )
    k = known[name]
    if k.optional and text.lower() == "none":
        return None
    try:
        value = k.parse(text) if k.parse is not None else {"true": True, "false": False}[text.lower()]
    except (ValueError, KeyError, TypeError):
        raise TrainError(f"--sweep: {text!r} is not a value of --{name.replace('_', '-')}") from None
    if k.choices and value not in k.choices:
        raise TrainError(f"--sweep: {name}={text!r} is not one of {', '.join(map(str, k.choices))}")
    return value


def member_folder(name: str, text: str) -> str:
    """A member's folder name: ``l1-1e-3``, ``arch-topk``, ``matryoshka_groups-8_24``."""
    return f"{name}-{re.sub(r'[^A-Za-z0-9.+-]+', '_', text)}"


def sweep_members(config: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """(value as written, member config) per value of ``config.sweep``; members write under ``config.out``."""
    assert config.sweep is not None
    name, values = parse_sweep(config.sweep)
    if len(set(values)) != len(values):
        raise TrainError(f"--sweep {config.sweep!r} repeats a value")
    out = Path(config.out)
    members = []
    for text in values:
        member = dataclasses.replace(
            config, **{name: _value(name, text)}, sweep=None, out=str(out / member_folder(name, text))
        )
        members.append((text, member.validate()))
    return members


def train_sweep(config: TrainConfig, context: DistContext | None = None) -> dict[str, Any]:
    """Train every member on the same batches in one pass of the store; write and return the sweep index."""
    from mammo_sae.sae.trainer import Trainer  # torch-heavy

    started = time.perf_counter()
    name, _ = parse_sweep(config.sweep or "")
    members = sweep_members(config)
    trainers = [Trainer(member, context) for _, member in members]
    lead = trainers[0]
    steps = {t.step for t in trainers}
    if len(steps) > 1:
        raise TrainError(
            f"the sweep's members were checkpointed at different steps ({sorted(steps)}): an interruption "
            "fell between their checkpoints. Rerun with --no-resume to start the sweep again"
        )
    for trainer in trainers[1:]:  # one stream for all: the same batches, one read of the store
        trainer.stream = lead.stream
    for trainer in trainers:
        trainer.begin()
    with lead.progress_bar(f"sweep {name} x{len(trainers)}") as bar:
        while not lead.finished():
            completed = True
            for batch in lead.stream:
                for trainer in trainers:
                    trainer.after_step(trainer.train_step(batch), bar if trainer is lead else None)
                if lead.stopped_mid_epoch():
                    completed = False
                    break
            if completed:
                for trainer in trainers:
                    trainer.end_of_epoch()
    summaries = [trainer.complete() for trainer in trainers]
    index = {
        "knob": name,
        "store": str(lead.reader.path),
        "store_id": lead.reader.store_id,
        "steps": lead.step,
        "tokens": lead.tokens,
        "seconds": round(time.perf_counter() - started, 3),
        "members": [
            {"value": text, "folder": Path(member.out).name, "eval": summary.get("eval")}
            for (text, member), summary in zip(members, summaries, strict=True)
        ],
    }
    if lead.is_main:
        Path(config.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(config.out) / SWEEP_INDEX, strict_json_text(index, indent=1) + "\n")
    return index
