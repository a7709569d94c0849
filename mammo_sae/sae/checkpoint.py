"""Training checkpoints: ``checkpoint.pt`` written atomically (with its sha256 inside), read back with
every check a resume needs, and the metrics lines a resumed run rewrites.

The state is a plain dict (``torch.save``): the SAE and optimiser state dicts, the stream position, the
latent activity, the RNG states, the normalisation, the resampling reports, the config and the split,
plus ``format`` / ``version``. ``training_state`` gathers it from a Trainer and ``restore_training_state``
puts it back; the other functions write, read and check the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mammo_sae import __version__
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.errors import TrainError
from mammo_sae.core.weightfiles import load_checked, save_checked
from mammo_sae.sae.config import RESUMABLE_CHANGES, flag
from mammo_sae.sae.io import CHECKPOINT_FILE, TRAIN_CONFIG_FILE
from mammo_sae.store import StoreError

if TYPE_CHECKING:
    from mammo_sae.sae.trainer import Trainer

CHECKPOINT_FORMAT = "mammo-sae-train-checkpoint"
CHECKPOINT_VERSION = 1


def training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resumed run needs to continue with the same weights as an uninterrupted one."""
    device = trainer.device
    return {
        "config": trainer.config.to_dict(),
        "store_id": trainer.reader.store_id,
        "d": trainer.d,
        "d_sae": trainer.d_sae,
        "split": trainer.split.checkpoint_record(),
        "step": trainer.step,
        "tokens": trainer.tokens,
        "epoch": trainer.stream.epoch,
        "stream": trainer.stream.state_dict(),
        "sae": {key: value.detach().cpu() for key, value in trainer.sae.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "activity": trainer.activity.state_dict(),
        "normalisation": trainer.norm,
        "resamples": trainer.resamples,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        },
        "world_size": trainer.context.world_size,
    }


def restore_training_state(trainer: Trainer, state: Mapping[str, Any]) -> None:
    """Put a checked checkpoint's state (``read_checkpoint``) back into a freshly built Trainer."""
    trainer.sae.load_state_dict(state["sae"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    try:
        trainer.stream.load_state_dict(state["stream"])
    except StoreError as error:
        raise TrainError(f"the checkpoint's stream position does not fit this store: {error}") from None
    trainer.activity.load_state_dict(state["activity"])
    trainer.step, trainer.tokens = int(state["step"]), int(state["tokens"])
    trainer.resamples = list(state["resamples"])
    torch.set_rng_state(state["rng"]["torch"])
    if trainer.device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"], trainer.device)


def write_checkpoint(out: Path, state: Mapping[str, Any]) -> None:
    """``out/checkpoint.pt`` atomically: the previous one stays until the new one is complete."""
    record = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "package_version": __version__}
    save_checked({**record, **state}, out / CHECKPOINT_FILE)


def remove_partial_writes(out: Path) -> None:
    """Delete the temporary file of a checkpoint write that a kill cut short."""
    for leftover in out.glob(f".{CHECKPOINT_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)


def repair_hint(out: Path) -> str:
    return (
        f"delete it (rm -f {out / CHECKPOINT_FILE}) and run python -m mammo_sae.train --config "
        f"{out / TRAIN_CONFIG_FILE} --resume (training restarts from step 0)"
    )


def read_checkpoint(
    out: Path,
    *,
    store_id: str,
    store_path: Path,
    d: int,
    config: Mapping[str, Any],
    split: Mapping[str, Any],
) -> dict[str, Any] | None:
    """The checkpoint in ``out`` (None when there is none), refused with TrainError when it belongs to
    another store, another feature size, other settings (beyond ``RESUMABLE_CHANGES``) or another split."""
    path = out / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = load_checked(path, repair=repair_hint(out), error=TrainError)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path} is not a mammo-sae training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise TrainError(
            f"{path} has checkpoint version {state.get('version')}; this trainer reads {CHECKPOINT_VERSION}"
        )
    if state["store_id"] != store_id or state["d"] != d:
        raise TrainError(
            f"{path} was trained on store {state['store_id']} (d={state['d']}), but --store {store_path} "
            f"is store {store_id} (d={d}); resume with the original store, pass --no-resume to start over, or choose another --out"
        )
    saved = state["config"]
    different = {key for key in config if key not in RESUMABLE_CHANGES and saved.get(key) != config[key]}
    if different:
        detail = ", ".join(
            f"{flag(key)}: saved {saved.get(key)!r}, now {config[key]!r}" for key in sorted(different)
        )
        raise TrainError(
            f"--resume with other settings than the checkpoint in {out} ({detail}); rerun with the saved "
            f"settings ({TRAIN_CONFIG_FILE} holds them), pass --no-resume to start over, or choose another --out"
        )
    if state["split"] != dict(split):
        raise TrainError(
            f"{path} used another train/validation split of the store; resume with the original settings"
        )
    return state


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the metrics lines up to ``last_step`` (a resumed run rewrites the steps after its checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if int(record.get("step", 0)) <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
