"""Generate a synthetic mammography phantom dataset in the VinDr-Mammo layout (research use only).

    python -m mammo_sae.phantom --out data/phantoms --studies 50 --seed 0 [--size 1280x1024]
        [--confounder-rate 0.8 --confounder-finding calcification] [--overwrite]

Prints a JSON summary on stdout at the end; exit code 2 for bad arguments or a refused output folder.
"""

from __future__ import annotations

import argparse
import json
import sys

from mammo_sae.core.config_cli import add_config_arguments, config_from_args
from mammo_sae.data.phantom import (
    DEFAULT_SIZE,
    OutputNotEmptyError,
    PhantomConfig,
    PhantomConfigError,
    generate_dataset,
    parse_size,
)


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except PhantomConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m mammo_sae.phantom",
        description=(
            "Generate synthetic mammography phantoms (NOT patient data, no diagnostic validity) in the "
            "VinDr-Mammo layout: images/<study>/<image>.dicom, breast-level and finding CSVs, metadata.csv, "
            "plus phantom_truth.csv (every planted object) and phantom.json (parameters, checksums)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, help="output folder (created; a previous phantom dataset is replaced)"
    )
    parser.add_argument(
        "--size", type=_size, default=DEFAULT_SIZE, metavar="HxW", help="image size in pixels, e.g. 1280x1024"
    )
    add_config_arguments(parser, PhantomConfig)
    parser.add_argument("--workers", type=int, default=0, help="rendering processes (0 = one per CPU core)")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty folder that is not a phantom dataset"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 2 bad arguments or refused output folder)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argparse error (2, message already printed)
        return int(exc.code or 0)
    height, width = args.size
    try:
        config = config_from_args(PhantomConfig, args, height=height, width=width).validate()
        if args.workers < 0:
            raise PhantomConfigError(f"--workers must be >= 0 (0 = one per CPU core), got {args.workers}")
        summary = generate_dataset(
            args.out, config, overwrite=args.overwrite, workers=args.workers, progress=not args.no_progress
        )
    except (PhantomConfigError, OutputNotEmptyError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
