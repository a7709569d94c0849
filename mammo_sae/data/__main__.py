"""`python -m mammo_sae.data <command>`: inspect a VinDr-Mammo root. Research use only.

Commands: ``summary ROOT`` prints the index summary as JSON (counts per split, labels per image and per
row, BI-RADS, density, missing files). ``check FILE...`` reads each DICOM (or PNG) as the pipeline does and
prints one line per file. Bad input exits with code 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mammo_sae.core.errors import DataError, MammoSaeError
from mammo_sae.data.vindr import VindrIndex


def _optional_location(text: str) -> str | None:
    """'none' skips an optional input; anything else ('auto' or a path) is passed on."""
    return None if text.lower() == "none" else text


def _summary(args: argparse.Namespace) -> int:
    index = VindrIndex.load(
        args.root,
        images_dir=args.images_dir,
        image_suffix=args.image_suffix,
        check_files=args.check_files,
        mammo_clip_csv=args.mammo_clip_csv,
        png_dir=args.png_dir,
    )
    print(json.dumps(index.summary(max_listed=args.list_missing), indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    """One line per file: what it holds, or why it is refused (stderr); 2 when any file is refused."""
    refused = 0
    for name in args.files:
        try:
            print(f"{name}: ok, {_describe_image(Path(name))}")
        except MammoSaeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            refused += 1
    return 2 if refused else 0


def _describe_image(path: Path) -> str:
    """Read one image the way extraction and the app do; a short description of what was read."""
    from mammo_sae.data.dicom import read_mammogram

    if path.suffix.lower() != ".png":
        image = read_mammogram(path)
        meta = image.metadata
        return f"{meta.rows} x {meta.columns} {image.photometric} {meta.modality}, {meta.transfer_syntax}"
    from mammo_sae.bundle.live import decode_png  # torch-heavy: imported only for PNG files

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    height, width = decode_png(path.read_bytes(), str(path)).shape
    return f"{height} x {width} PNG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per job (only ``summary`` for now)."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m mammo_sae.data",
        description="Inspect a VinDr-Mammo dataset root (research use only).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    summary = commands.add_parser(
        "summary",
        help="print a JSON summary of a VinDr-Mammo root",
        description="Index ROOT (breast-level_annotations.csv, finding_annotations.csv, images/) and print "
        "counts per split as JSON: images, studies, positives per image and per CSV row, categories, "
        "BI-RADS, density, conflicting labels and missing files.",
    )
    summary.add_argument("root", metavar="ROOT", help="the VinDr-Mammo release folder")
    summary.add_argument(
        "--no-check-files",
        dest="check_files",
        action="store_false",
        help="do not look for the image files on disk",
    )
    summary.add_argument(
        "--images-dir", default="images", help="image folder, relative to ROOT (default: images)"
    )
    summary.add_argument("--image-suffix", default=".dicom", help="image file suffix (default: .dicom)")
    summary.add_argument(
        "--mammo-clip-csv",
        type=_optional_location,
        default="auto",
        help="Mammo-CLIP vindr_detection_v1_folds.csv: 'auto' (search ROOT and ROOT/mammo_clip), a path, or 'none'",
    )
    summary.add_argument(
        "--png-dir",
        type=_optional_location,
        default="auto",
        help="Mammo-CLIP PNG folder: 'auto' (search for images_png), a path, or 'none'",
    )
    summary.add_argument(
        "--list-missing",
        type=int,
        default=10,
        metavar="N",
        help="list the first N missing files (default: 10)",
    )
    summary.set_defaults(run=_summary)
    check = commands.add_parser(
        "check",
        help="read DICOM or PNG files as the pipeline does; one line per file",
        description="Read each FILE as extraction and the app's upload page do (a DICOM mammogram, or a .png "
        "frame) and print one line per file: its size and encoding, or why it is refused (on stderr). "
        "Exit code 2 when any file is refused.",
    )
    check.add_argument("files", metavar="FILE", nargs="+", help="DICOM (.dcm, .dicom) or PNG files")
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 bad input or bad arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): return the code instead of exiting
        return int(exc.code or 0)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except MammoSaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
