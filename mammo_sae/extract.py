"""`python -m mammo_sae.extract`: backbone features of a VinDr-layout dataset into an activation store.

    python -m mammo_sae.extract --data ROOT --backbone mammoclip-b5:b5-model-best-epoch-7.tar \\
        --split training --out stores/ [--tokens-per-image 0.25] [--augment] [--device cuda]
    torchrun --nproc_per_node 4 -m mammo_sae.extract ...      # ranks split the shards

Rerunning the same command resumes an interrupted extraction. Prints a JSON summary at the end; exit
code 2 for bad arguments or input. Research use only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mammo_sae.core.config_cli import Command, module_prog
from mammo_sae.extraction.config import ExtractConfig

if TYPE_CHECKING:
    from mammo_sae.core.distributed import DistContext


def run(config: ExtractConfig, context: DistContext) -> dict[str, Any]:
    from mammo_sae.extraction.run import run_extraction  # torch-heavy: not needed for --help

    return run_extraction(config, context)


COMMAND = Command(
    prog=module_prog("extract"),
    config=ExtractConfig,
    job=run,
    distributed=True,
    description="Extract a layer's feature-map tokens over a dataset split into a resumable, sharded "
    "activation store (fp16, memory-mapped). Rerunning the same command resumes an interrupted "
    "extraction. Research use only.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
