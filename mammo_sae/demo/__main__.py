"""`python -m mammo_sae.demo`: build the demo (phantoms -> classifier -> SAE -> analysis bundle).

    python -m mammo_sae.demo --quick                       # toy sizes into the cache folder, ~1 minute
    python -m mammo_sae.demo --out weights/demo --work build/demo --replace-shipped   # the shipped build

Synthetic phantoms only; every quality figure is measured on held-out phantoms and recorded in
OUT/demo.json. Rerunning continues an interrupted build; ``--rebuild STAGE`` discards that stage and every
later one, then runs them again. Research use only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from mammo_sae.core.config_cli import Command, module_prog
from mammo_sae.demo.config import STAGE_NAMES, DemoConfig

__all__ = ["COMMAND", "STAGE_NAMES", "main"]


def run(config: DemoConfig) -> dict[str, Any]:
    from mammo_sae.demo.build import FULL, QUICK, build, summary

    manifest = build(
        QUICK if config.quick else FULL,
        config.out_dir(),
        config.work_dir(),
        workers=config.workers,
        rebuild=config.rebuild,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    return summary(manifest, config.out_dir())


COMMAND = Command(
    prog=module_prog("demo"),
    config=DemoConfig,
    job=run,
    description="Build the demo bundle on synthetic phantoms with the project's own commands (phantom, "
    "finetune, extract, train, analyze, each given its config object) and measure its quality on held-out "
    "phantoms. Without --out the build goes to the cache folder; the shipped weights/demo is replaced only "
    "with --out weights/demo --replace-shipped.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
