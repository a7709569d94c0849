"""`python -m mammo_sae.analyze`: concept scores, top patches, latent maps, localisation and intervention
curves of an SAE over a dataset split, written as a bundle folder the app opens.

    python -m mammo_sae.analyze --data ROOT --classifier calc.safetensors --sae runs/sae --out bundles/calc \\
        [--backbone SPEC] [--split test] [--score-split training] [--limit N]

Rerunning the same command resumes an interrupted analysis (or does nothing when the bundle is
complete). Prints a JSON summary at the end; exit code 2 for bad arguments or input. Research use only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from mammo_sae.bundle.writing.config import AnalyzeConfig
from mammo_sae.core.config_cli import Command, module_prog


def run(config: AnalyzeConfig) -> dict[str, Any]:
    from mammo_sae.bundle.writing.run import analyze  # torch-heavy: not needed for --help

    return analyze(config)


COMMAND = Command(
    prog=module_prog("analyze"),
    config=AnalyzeConfig,
    job=run,
    description="Analyse an SAE over a dataset split (concept scores, top-activating patches, latent maps "
    "and localisation, keep/suppress curves) into a resumable bundle folder with a report. Rerunning the "
    "same command resumes an interrupted analysis. Research use only.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())
