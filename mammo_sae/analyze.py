"""`python -m mammo_sae.analyze`: concept scores, top patches, latent maps, localisation and intervention
curves of an SAE over a dataset split, written as a bundle folder the app opens.

    python -m mammo_sae.analyze --data ROOT --classifier calc.safetensors --sae runs/sae --out bundles/calc \\
        [--backbone SPEC] [--split test] [--score-split training] [--limit N]

Rerunning the same command resumes an interrupted analysis (or does nothing when the bundle is
complete). Prints a JSON summary at the end; exit code 2 for bad arguments or input. Research use only.
"""

from __future__ import annotations

import argparse
import sys

from mammo_sae.core.config_cli import add_config_arguments, run_config_command


def build_parser() -> argparse.ArgumentParser:
    from mammo_sae.analysis.run import AnalyzeConfig

    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m mammo_sae.analyze",
        description="Analyse an SAE over a dataset split (concept scores, top-activating patches, latent maps and "
        "localisation, keep/suppress curves) into a resumable bundle folder with a report. Research use only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser, AnalyzeConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mammo_sae.analysis.run import AnalyzeConfig, analyze

    return run_config_command(build_parser(), argv, AnalyzeConfig, analyze)


if __name__ == "__main__":
    sys.exit(main())
