"""`python -m mammo_sae.analyze`: concept scores, top patches, latent maps, localisation and intervention
curves of an SAE over a dataset split, written as a bundle folder the app opens.

    python -m mammo_sae.analyze --data ROOT --classifier calc.safetensors --sae runs/sae --out bundles/calc \\
        [--backbone SPEC] [--split test] [--score-split training] [--limit N]

Rerunning the same command resumes an interrupted analysis (or does nothing when the bundle is
complete). Prints a JSON summary at the end; exit code 2 for bad arguments or input. Research use only.
"""

from __future__ import annotations

import argparse
import json
import sys

from mammo_sae.cli_config import add_config_arguments, config_from_args
from mammo_sae.errors import MammoSaeError


def build_parser() -> argparse.ArgumentParser:
    from mammo_sae.analysis.run import AnalyzeConfig

    parser = argparse.ArgumentParser(
        prog="python -m mammo_sae.analyze",
        description="Analyse an SAE over a dataset split (concept scores, top-activating patches, latent maps and "
        "localisation, keep/suppress curves) into a resumable bundle folder with a report. Research use only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser, AnalyzeConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mammo_sae.analysis.run import AnalyzeConfig, analyze

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, already explained by argparse)
        return int(exc.code or 0)
    try:
        summary = analyze(config_from_args(AnalyzeConfig, args))
    except MammoSaeError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
