"""`python -m mammo_sae.train`: train a sparse autoencoder on an activation store (the Mammo-SAE recipe).

    python -m mammo_sae.train --store STORE --out RUN [--config FILE.toml] [--arch relu|topk|batchtopk] ...
    python -m mammo_sae.train --store STORE --out RUN          # again: continues after an interruption
    python -m mammo_sae.train --store STORE --out SWEEP --sweep l1=1e-3,3e-3,1e-2   # a family, one pass
    torchrun --nproc_per_node 4 -m mammo_sae.train --store ... --out ...  # ranks split every batch
    python -m mammo_sae.train import-mammosae sparse_autoencoder_final.pt --out DIR [--metadata JSON]

Every flag is a key of the TOML file given with --config (flags given on the command line win). Prints a
JSON summary at the end; exit code 2 for bad arguments, bad input or a diverged run. Research use only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mammo_sae.core.config_cli import REQUIRED, Command, knob, module_prog
from mammo_sae.core.errors import TrainError
from mammo_sae.sae.config import TrainConfig

if TYPE_CHECKING:
    from mammo_sae.core.distributed import DistContext

PROG = module_prog("train")
IMPORT_COMMAND = "import-mammosae"


@dataclass(frozen=True)
class ImportConfig:
    """Every knob of `python -m mammo_sae.train import-mammosae`."""

    file: str = knob(REQUIRED, "the published .pt file (sparse_autoencoder_final.pt)", positional=True)
    out: str = knob(REQUIRED, "output folder")
    metadata: str | None = knob(
        None, "extra metadata for cfg.json: a JSON object, or the path of a .json file holding one"
    )


def read_metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise TrainError(f"--metadata {text!r} is neither a JSON object nor an existing .json file")
        source = path.read_text(encoding="utf-8")
    try:
        value = json.loads(source)
    except json.JSONDecodeError as error:
        raise TrainError(f"--metadata is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise TrainError("--metadata must be a JSON object ({...})")
    return value


def import_weights(config: ImportConfig) -> dict[str, Any]:
    """Convert the published state dict into an SAE folder; the summary names its sizes."""
    from mammo_sae.sae import import_mammosae

    if not Path(config.file).is_file():
        raise TrainError(f"{config.file} does not exist")
    try:
        sae = import_mammosae(config.file, config.out, metadata=read_metadata(config.metadata))
    except (ValueError, KeyError, RuntimeError) as error:  # torch.load / state-dict surprises
        raise TrainError(f"{config.file} is not the published Mammo-SAE state dict: {error}") from None
    summary: dict[str, Any] = {"out": str(config.out), "source": str(config.file)}
    for name in ("d_in", "d_sae"):
        if hasattr(sae, name):
            summary[name] = int(getattr(sae, name))
    return summary


def run(config: TrainConfig, context: DistContext) -> dict[str, Any]:
    if config.sweep is not None:
        from mammo_sae.sae.sweep import train_sweep

        return train_sweep(config, context)
    from mammo_sae.sae.trainer import train  # torch-heavy: not needed for --help

    return train(config, context)


IMPORT = Command(
    prog=f"{PROG} {IMPORT_COMMAND}",
    config=ImportConfig,
    job=import_weights,
    about="convert the published Mammo-SAE weights (sparse_autoencoder_final.pt) into an SAE folder",
    description="Convert the published Mammo-SAE state dict (sparse_autoencoder_final.pt) into an SAE "
    "folder (sae_weights.safetensors + cfg.json) that load_sae reads. Research use only.",
)
COMMAND = Command(
    prog=PROG,
    config=TrainConfig,
    job=run,
    distributed=True,
    description="Train a sparse autoencoder on the tokens of an activation store. Defaults are the "
    "Mammo-SAE paper's recipe (relu SAE, L1 3e-5, Adam lr 3e-4, batch 4096, 200 epochs, expansion 8, "
    "resampling every 10 epochs). Research use only.",
    epilog="docs/sae-training.md explains every knob.",
    subcommands={IMPORT_COMMAND: IMPORT},
)


def build_parser() -> argparse.ArgumentParser:
    return COMMAND.parser()


def parse_config(argv: Sequence[str]) -> TrainConfig:
    """The effective config: defaults < --config file < command-line flags (raises on bad input)."""
    return COMMAND.parse(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
