"""`python -m mammo_sae.train`: train a sparse autoencoder on an activation store (the Mammo-SAE recipe).

    python -m mammo_sae.train --store STORE --out RUN [--config FILE.toml] [--arch relu|topk|batchtopk] ...
    python -m mammo_sae.train --store STORE --out RUN --resume         # continue after an interruption
    torchrun --nproc_per_node 4 -m mammo_sae.train --store ... --out ...  # ranks split every batch
    python -m mammo_sae.train import-mammosae sparse_autoencoder_final.pt --out DIR [--metadata JSON]

Every flag is a key of the TOML file given with --config (flags given on the command line win). Prints a
JSON summary at the end; exit code 2 for bad arguments, bad input or a diverged run. Research use only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mammo_sae.core.config_cli import add_config_arguments, config_from_args
from mammo_sae.core.distributed import run_command
from mammo_sae.core.errors import MammoSaeError, TrainError
from mammo_sae.sae.config import TrainConfig, read_config_file

PROG = "python -m mammo_sae.train"
IMPORT_COMMAND = "import-mammosae"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=PROG,
        description="Train a sparse autoencoder on the tokens of an activation store. Defaults are the "
        "Mammo-SAE paper's recipe (relu SAE, L1 3e-5, Adam lr 3e-4, batch 4096, 200 epochs, expansion 8, "
        "resampling every 10 epochs). Research use only.",
        epilog=f"Other command: {PROG} {IMPORT_COMMAND} FILE --out DIR converts the published Mammo-SAE "
        "weights (sparse_autoencoder_final.pt) into this project's SAE folder. docs/sae-training.md "
        "explains every knob.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        help="TOML file whose keys are these flags' names (store = '...', batch_size = 4096, ...); flags "
        "given on the command line override it",
    )
    add_config_arguments(parser, TrainConfig)
    return parser


def build_import_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=f"{PROG} {IMPORT_COMMAND}",
        description="Convert the published Mammo-SAE state dict (sparse_autoencoder_final.pt) into an SAE "
        "folder (sae_weights.safetensors + cfg.json) that load_sae reads. Research use only.",
    )
    parser.add_argument("file", help="the published .pt file")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--metadata",
        help="extra metadata for cfg.json: a JSON object, or the path of a .json file holding one",
    )
    return parser


def parse_config(argv: list[str]) -> TrainConfig:
    """The effective config: defaults < --config file < command-line flags (raises TrainError)."""
    parser = build_parser()
    early = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    early.add_argument("--config")
    known, _ = early.parse_known_args(argv)
    if known.config is not None:
        values = read_config_file(known.config)
        parser.set_defaults(**values)
        for action in parser._actions:  # a key in the file satisfies a required flag
            if action.dest in values:
                action.required = False
    args = parser.parse_args(argv)
    return config_from_args(TrainConfig, args).validate()


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


def import_main(argv: list[str]) -> int:
    parser = build_import_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        from mammo_sae.sae import import_mammosae

        if not Path(args.file).is_file():
            raise TrainError(f"{args.file} does not exist")
        sae = import_mammosae(args.file, args.out, metadata=read_metadata(args.metadata))
    except (MammoSaeError, OSError, ValueError, KeyError, RuntimeError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {"out": str(args.out), "source": str(args.file)}
    for name in ("d_in", "d_sae"):
        if hasattr(sae, name):
            summary[name] = int(getattr(sae, name))
    print(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == IMPORT_COMMAND:
        return import_main(argv[1:])
    try:
        config = parse_config(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, already explained by argparse)
        return int(exc.code or 0)
    except MammoSaeError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    from mammo_sae.sae.trainer import train

    return run_command(PROG, config.device, lambda context: train(config, context))


if __name__ == "__main__":
    sys.exit(main())
