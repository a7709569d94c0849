"""Generate a synthetic mammography phantom dataset in the VinDr-Mammo layout (research use only).

    python -m mammo_sae.phantom --out data/phantoms --studies 50 --seed 0 [--size 1280x1024]
        [--confounder-rate 0.8 --confounder-finding calcification] [--overwrite]

Prints a JSON summary on stdout at the end; exit code 2 for bad arguments or a refused output folder.
"""

from __future__ import annotations

import argparse
import json
import sys

from mammo_sae.data.phantom import (
    DEFAULT_SIZE,
    OutputNotEmptyError,
    PhantomConfig,
    PhantomConfigError,
    generate_dataset,
    parse_size,
)
from mammo_sae.data.phantom.config import CONFOUNDER_FINDINGS

_DEFAULTS = PhantomConfig()


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except PhantomConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _weights(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated weights A,B,C,D, got {text!r}")
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        "--studies", type=int, default=_DEFAULTS.studies, help="number of studies (4 views each)"
    )
    parser.add_argument(
        "--seed", type=int, default=_DEFAULTS.seed, help="random seed (>= 0); same seed, same files"
    )
    parser.add_argument(
        "--size", type=_size, default=DEFAULT_SIZE, metavar="HxW", help="image size in pixels, e.g. 1280x1024"
    )
    parser.add_argument(
        "--mass-rate", type=_probability, default=_DEFAULTS.mass_rate, help="P(a breast has a mass)"
    )
    parser.add_argument(
        "--calcification-rate",
        type=_probability,
        default=_DEFAULTS.calcification_rate,
        help="P(a breast has a suspicious calcification cluster)",
    )
    parser.add_argument(
        "--co-located-rate",
        type=_probability,
        default=_DEFAULTS.co_located_rate,
        help="P(the calcifications lie inside the mass | a breast has both)",
    )
    parser.add_argument(
        "--benign-rate",
        type=_probability,
        default=_DEFAULTS.benign_rate,
        help="P(a breast has a benign bright structure: coarse or vascular calcification, not a finding)",
    )
    parser.add_argument(
        "--confounder-rate",
        type=_probability,
        default=_DEFAULTS.confounder_rate,
        help="marker/label correlation R: P(marker | positive) = 0.5 + R/2, P(marker | negative) = 0.5 - R/2",
    )
    parser.add_argument(
        "--confounder-finding",
        choices=CONFOUNDER_FINDINGS,
        default=_DEFAULTS.confounder_finding,
        help="the finding the burned-in marker correlates with",
    )
    parser.add_argument(
        "--density-weights",
        type=_weights,
        default=_DEFAULTS.density_weights,
        metavar="A,B,C,D",
        help="relative frequency of the density classes (per patient)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=_DEFAULTS.test_fraction,
        help="fraction of studies in the test split",
    )
    parser.add_argument(
        "--jpeg2000-rate",
        type=_probability,
        default=_DEFAULTS.jpeg2000_rate,
        help="share of JPEG 2000 lossless files",
    )
    parser.add_argument(
        "--monochrome1-rate",
        type=_probability,
        default=_DEFAULTS.monochrome1_rate,
        help="share of MONOCHROME1 files",
    )
    parser.add_argument(
        "--sigmoid-rate",
        type=_probability,
        default=_DEFAULTS.sigmoid_rate,
        help="share of files with VOILUTFunction SIGMOID",
    )
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
        config = PhantomConfig(
            studies=args.studies,
            seed=args.seed,
            height=height,
            width=width,
            mass_rate=args.mass_rate,
            calcification_rate=args.calcification_rate,
            co_located_rate=args.co_located_rate,
            benign_rate=args.benign_rate,
            confounder_rate=args.confounder_rate,
            confounder_finding=args.confounder_finding,
            density_weights=args.density_weights,
            test_fraction=args.test_fraction,
            jpeg2000_rate=args.jpeg2000_rate,
            monochrome1_rate=args.monochrome1_rate,
            sigmoid_rate=args.sigmoid_rate,
        ).validate()
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
