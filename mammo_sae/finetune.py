"""`python -m mammo_sae.finetune`: train mass / calcification heads (and the backbone) on a VinDr-layout root.

    python -m mammo_sae.finetune --data ROOT --backbone mammoclip-b5:b5-model-best-epoch-7.tar --out runs/clf \\
        [--tasks mass,calcification] [--no-train-backbone] [--device cuda]

The best epoch on a study-level validation slice is saved as out/classifier.safetensors (the project's
classifier format) with out/validation.json. Rerunning the same command resumes (``--no-resume`` starts
over). Research use only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from mammo_sae.core.config_cli import Command, module_prog
from mammo_sae.finetuning.config import FinetuneConfig


def run(config: FinetuneConfig) -> dict[str, Any]:
    from mammo_sae.finetuning.loop import finetune  # torch-heavy: not needed for --help

    return finetune(config)


COMMAND = Command(
    prog=module_prog("finetune"),
    config=FinetuneConfig,
    job=run,
    description="Fine-tune binary classification heads (and optionally the backbone) with class-weighted "
    "BCE, AdamW, warm-up + cosine and augmentation; keeps the best validation epoch. Research use only.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
