"""`python -m mammo_sae.extract`: backbone features of a VinDr-layout dataset into an activation store.

    python -m mammo_sae.extract --data ROOT --backbone mammoclip-b5:b5-model-best-epoch-7.tar \\
        --split training --out stores/ [--tokens-per-image 0.25] [--augment] [--device cuda]
    torchrun --nproc_per_node 4 -m mammo_sae.extract ...      # ranks split the shards

Rerunning the same command resumes an interrupted extraction. Prints a JSON summary at the end; exit
code 2 for bad arguments or input. Research use only.
"""

from __future__ import annotations

import argparse
import sys

from mammo_sae.core.config_cli import add_config_arguments, config_from_args
from mammo_sae.core.distributed import run_command
from mammo_sae.extraction.config import ExtractConfig
from mammo_sae.extraction.run import run_extraction


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m mammo_sae.extract",
        description="Extract a layer's feature-map tokens over a dataset split into a resumable, sharded "
        "activation store (fp16, memory-mapped). Research use only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser, ExtractConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, already explained by argparse)
        return int(exc.code or 0)
    config = config_from_args(ExtractConfig, args)
    return run_command(parser.prog, config.device, lambda context: run_extraction(config, context))


if __name__ == "__main__":
    sys.exit(main())
