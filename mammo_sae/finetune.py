"""`python -m mammo_sae.finetune`: train mass / calcification heads (and the backbone) on a VinDr-layout root.

    python -m mammo_sae.finetune --data ROOT --backbone mammoclip-b5:b5-model-best-epoch-7.tar --out runs/clf \\
        [--tasks mass,calcification] [--no-train-backbone] [--device cuda]

The best epoch on a study-level validation slice is saved as out/classifier.safetensors (the project's
classifier format) with out/validation.json. Rerunning the same command resumes. Research use only.
"""

from __future__ import annotations

import argparse
import sys

from mammo_sae.core.config_cli import add_config_arguments, run_config_command
from mammo_sae.finetuning.config import FinetuneConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m mammo_sae.finetune",
        description="Fine-tune binary classification heads (and optionally the backbone) with class-weighted BCE, "
        "AdamW, warm-up + cosine and augmentation; keeps the best validation epoch. Research use only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser, FinetuneConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mammo_sae.finetuning.loop import finetune

    return run_config_command(build_parser(), argv, FinetuneConfig, finetune)


if __name__ == "__main__":
    sys.exit(main())
